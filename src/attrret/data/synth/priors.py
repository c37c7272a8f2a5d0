"""Attribute priors of the synthetic benchmark, estimated from real Track-2 labels.

Pedestrian priors are per-group class frequencies CONDITIONED ON GENDER, estimated from the
1,300 pedestrian codes of ``shared/data/track2/val_sample.txt`` with :func:`estimate_pedestrian_priors`
(rounded to 3 decimals; re-run ``python -m attrret.data.synth.priors PATH`` to reproduce).
Conditioning on gender keeps the strongest real correlations (skirts, long hair cues,
shoulder bags are mostly female; glasses and hats mostly male) while staying a small table.
Sampling one class per group automatically respects the code constraints (exactly one
age/orientation/sleeve, at most one bag/upper pattern); handbag is its own bit in the code
and co-occurs with a bag in real data (47 of 1,300), so it is drawn independently.

Vehicle priors: train/val colours are near-uniform and brands follow the real label mix
(web photos); TEST vehicles are surveillance crops dominated by black/white/grey sedans and
SUVs (docs/track2.md), which both reproduces the real domain shift and gives test queries
several relevant images each. Each brand makes a few body types (``BRAND_TYPES``), so brand
and type are correlated as in reality.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from attrret.schema import Schema, load_schema

__all__ = [
    "PEDESTRIAN_PRIORS",
    "FEMALE_RATE",
    "TRAIN_COLOR_PRIOR",
    "TEST_COLOR_PRIOR",
    "TEST_TYPE_PRIOR",
    "BRAND_TYPES",
    "BRAND_ONLY_BRANDS",
    "TRAIN_LABEL_FORMS",
    "estimate_pedestrian_priors",
    "sample_pedestrian",
    "sample_vehicle",
    "train_vehicle_label",
]

#: P(female) in val_sample.txt (574 / 1,300).
FEMALE_RATE = 0.442

#: P(class | gender) per group, class order = schema order. Source: val_sample.txt (see module doc).
PEDESTRIAN_PRIORS: dict[str, dict[str, tuple[float, ...]]] = {
    "female": {
        "age": (0.012, 0.932, 0.056),
        "orientation": (0.359, 0.274, 0.368),
        "hat": (0.012, 0.988),
        "glasses": (0.084, 0.916),
        "handbag": (0.237, 0.763),
        "bag": (0.338, 0.160, 0.502),
        "holding": (0.010, 0.990),
        "sleeve": (0.618, 0.382),
        "upper": (0.052, 0.124, 0.099, 0.037, 0.688),
        "coat": (0.064, 0.936),
        "skirt": (0.249, 0.751),
    },
    "male": {
        "age": (0.017, 0.910, 0.073),
        "orientation": (0.360, 0.310, 0.331),
        "hat": (0.073, 0.927),
        "glasses": (0.262, 0.738),
        "handbag": (0.131, 0.869),
        "bag": (0.090, 0.182, 0.729),
        "holding": (0.011, 0.989),
        "sleeve": (0.547, 0.453),
        "upper": (0.054, 0.146, 0.136, 0.054, 0.610),
        "coat": (0.015, 0.985),
        "skirt": (0.000, 1.000),
    },
}

#: The groups outside the Track-2 code (no Track-2 labels to estimate them from): P(class |
#: gender), rough street frequencies; lower_type follows skirt (a skirt is the skirt class).
CLOTHING_PRIORS: dict[str, dict[str, tuple[float, ...]]] = {
    "female": {"hair": (0.80, 0.19, 0.01), "boots": (0.18, 0.82), "shorts": (0.12,)},
    "male": {"hair": (0.05, 0.90, 0.05), "boots": (0.06, 0.94), "shorts": (0.12,)},
}
#: Garment colour weights (PETA's mix: dark and neutral colours dominate, trousers more so).
UPPER_COLOR_PRIOR = {"black": 3.0, "blue": 1.5, "brown": 0.6, "green": 0.5, "grey": 2.0, "orange": 0.3, "pink": 0.4,
                     "purple": 0.3, "red": 0.8, "white": 2.0, "yellow": 0.4}
LOWER_COLOR_PRIOR = {"black": 4.0, "blue": 2.5, "brown": 0.8, "green": 0.2, "grey": 2.0, "orange": 0.1, "pink": 0.2,
                     "purple": 0.1, "red": 0.3, "white": 0.6, "yellow": 0.1}
#: Upper-body patterns that show a second colour (the garment is then labelled with both).
TWO_COLOUR_PATTERNS = ("stripe", "plaid", "splice")

#: Train/val colours: near-uniform as in val_sample.txt (purple a little rarer).
TRAIN_COLOR_PRIOR = {"black": 1.0, "blue": 1.0, "brown": 1.0, "green": 1.0, "grey": 1.0, "orange": 1.0,
                     "pink": 0.9, "purple": 0.7, "red": 1.0, "white": 0.9, "yellow": 1.0}
#: Test colours: surveillance streets, dominated by black / white / grey.
TEST_COLOR_PRIOR = {"black": 6.0, "blue": 1.0, "brown": 0.5, "green": 0.4, "grey": 4.0, "orange": 0.3,
                    "pink": 0.2, "purple": 0.2, "red": 1.2, "white": 7.0, "yellow": 0.4}
#: Test body types (weights, applied among the types the brand makes).
TEST_TYPE_PRIOR = {"Bus": 0.4, "Microbus": 0.6, "Minivan": 0.8, "SUV": 3.0, "Sedan": 6.0, "Truck": 0.6}

_BUS = ("Golden Dragon", "KINGLONG", "Yutong")
_TRUCK = ("Balong Heavy Truck", "Hongyan", "Shacman", "FOTON", "Isuzu", "JAC", "Dongfeng", "FAW", "Iveco", "JMC", "FORLAND", "China-Moto")
_VAN = ("SGMW", "Jinbei", "HAFEI", "Chana", "BAOJUN")

#: Train label forms of vehicles (val_sample.txt: 591 colour+brand, 99 type only, 10 brand only).
TRAIN_LABEL_FORMS = {"color+brand": 0.845, "type": 0.14}
#: Brand-only labels occur for these truck brands only (val_sample.txt).
BRAND_ONLY_BRANDS = ("Balong Heavy Truck", "Hongyan")


def _brand_types(schema: Schema) -> dict[str, tuple[str, ...]]:
    out = {}
    for i, brand in enumerate(schema.vehicle.group("brand").classes):
        if brand in _BUS:
            out[brand] = ("Bus", "Microbus")
        elif brand in ("Balong Heavy Truck", "Hongyan", "Shacman"):
            out[brand] = ("Truck",)
        elif brand in _TRUCK:
            out[brand] = ("Truck", "Microbus", "Minivan") if i % 2 else ("Truck", "SUV")
        elif brand in _VAN:
            out[brand] = ("Microbus", "Minivan", "Sedan")
        else:  # passenger-car makers: sedans and SUVs, a few minivans
            out[brand] = ("Sedan", "SUV", "Minivan") if i % 3 == 0 else ("Sedan", "SUV")
    return out


#: Body types each brand makes (deterministic from the vocabulary).
BRAND_TYPES: dict[str, tuple[str, ...]] = _brand_types(load_schema())


def _pick(rng: np.random.Generator, classes: tuple[str, ...], weights) -> str:
    p = np.asarray(weights, dtype=float)
    return classes[int(rng.choice(len(classes), p=p / p.sum()))]


def _colours(rng: np.random.Generator, prior: Mapping[str, float], n: int) -> set[str]:
    names = list(prior)
    p = np.array([prior[c] for c in names]) / sum(prior.values())
    return {names[i] for i in rng.choice(len(names), size=n, replace=False, p=p)}


def sample_pedestrian(rng: np.random.Generator, schema: Schema | None = None) -> dict[str, str]:
    """Complete pedestrian values: the Track-2 groups from the real (gender-conditional) priors,
    then the clothing groups the schema has (:data:`CLOTHING_PRIORS`; a patterned top two colours)."""
    ped = (schema or load_schema()).pedestrian
    gender = "female" if rng.random() < FEMALE_RATE else "male"
    values = {"gender": gender}
    for g in ped.groups:
        if g.name != "gender" and g.name in PEDESTRIAN_PRIORS[gender]:
            values[g.name] = _pick(rng, g.classes, PEDESTRIAN_PRIORS[gender][g.name])
    clothing = CLOTHING_PRIORS[gender]
    # drawn whether or not the schema has the group, so that the Track-2 groups' draws never depend on it
    extra = {"hair": _pick(rng, ("long", "short", "bald"), clothing["hair"]),
             "boots": _pick(rng, ("yes", "no"), clothing["boots"]),
             "lower_type": ("skirt" if values.get("skirt") == "yes"
                            else "shorts" if rng.random() < clothing["shorts"][0] else "trousers")}
    upper = _colours(rng, UPPER_COLOR_PRIOR, 2 if values.get("upper") in TWO_COLOUR_PATTERNS else 1)
    lower = _colours(rng, LOWER_COLOR_PRIOR, 1)
    for family, chosen in (("upper_color", upper), ("lower_color", lower)):
        for g in ped.families.get(family, ()):
            extra[g.name] = "yes" if g.label in chosen else "no"
    values |= {g.name: extra[g.name] for g in ped.groups if g.name in extra}
    return values


def sample_vehicle(rng: np.random.Generator, test: bool, schema: Schema | None = None) -> dict[str, str]:
    """Complete vehicle values: (brand, type it makes, colour), test ones surveillance-like."""
    veh = (schema or load_schema()).vehicle
    brands = veh.group("brand").classes
    brand = brands[int(rng.integers(len(brands)))]
    types = BRAND_TYPES[brand]
    type_ = _pick(rng, types, [TEST_TYPE_PRIOR[t] for t in types]) if test else types[int(rng.integers(len(types)))]
    prior = TEST_COLOR_PRIOR if test else TRAIN_COLOR_PRIOR
    colors = veh.group("color").classes
    return {"color": _pick(rng, colors, [prior[c] for c in colors]), "brand": brand, "type": type_}


def train_vehicle_label(values: Mapping[str, str], rng: np.random.Generator) -> dict[str, str]:
    """The INCOMPLETE label a train/val vehicle gets: colour+brand, type only, or (truck brands) brand only."""
    u = rng.random()
    if values["brand"] in BRAND_ONLY_BRANDS and rng.random() < 0.5:
        return {"brand": values["brand"]}
    if u < TRAIN_LABEL_FORMS["type"]:
        return {"type": values["type"]}
    return {"color": values["color"], "brand": values["brand"]}


def estimate_pedestrian_priors(label_file: str | Path, schema: Schema | None = None) -> tuple[float, dict[str, dict[str, tuple[float, ...]]]]:
    """``(P(female), {gender: {group: class frequencies}})`` from the pedestrian lines of a Track-2 label file."""
    from attrret.data.track2 import read_label_file

    schema = schema or load_schema()
    lines = [ll for ll in read_label_file(label_file, schema) if ll.kind == "pedestrian"]
    by_gender = {g: [ll.values for ll in lines if ll.values["gender"] == g] for g in ("female", "male")}
    table = {}
    for gender, rows in by_gender.items():
        table[gender] = {}
        for g in schema.pedestrian.groups:
            if g.name == "gender" or not g.bits:  # Track-2 labels hold the code's groups only
                continue
            counts = Counter(v[g.name] for v in rows)
            table[gender][g.name] = tuple(round(counts[c] / max(1, len(rows)), 3) for c in g.classes)
    return round(len(by_gender["female"]) / max(1, len(lines)), 3), table


if __name__ == "__main__":  # pragma: no cover - documentation helper
    female, table = estimate_pedestrian_priors(sys.argv[1])
    print(f"FEMALE_RATE = {female}")
    for gender, groups in table.items():
        print(gender)
        for name, freqs in groups.items():
            print(f"  {name}: {freqs}")
