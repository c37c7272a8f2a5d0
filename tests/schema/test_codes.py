"""Label encodings, both ways: 21-bit code <-> named values <-> 30-column one-hot; vehicle text <-> values."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from attrret.schema import load_schema
from attrret.schema.codes import (
    CodeError,
    code21_to_values,
    onehot_to_values,
    parse_code21,
    values_to_code21,
    values_to_onehot,
    values_to_vehicle_text,
    vehicle_text_to_values,
)

SCHEMA = load_schema()
PED = SCHEMA.pedestrian
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# docs/track2.md's example line
EXAMPLE = "1,0,1,0,0,0,1,0,0,0,1,0,0,1,0,0,0,0,0,0,0"
EXAMPLE_VALUES = {
    "gender": "female", "age": "18-60", "orientation": "back", "hat": "no", "glasses": "no", "handbag": "no",
    "bag": "shoulder", "holding": "no", "sleeve": "short", "upper": "none", "coat": "no", "skirt": "no",
}


def real_attributes() -> list[str]:
    out = []
    for rel in ("track2/val_sample.txt", "pa100k-mini/labels.txt"):
        path = SHARED / rel
        if path.exists():
            out += [line.split("$")[1] for line in path.read_text(encoding="utf-8").splitlines()]
    if not out:
        pytest.skip("shared Track-2 data not available")
    return out


def all_value_combinations():
    """Every combination of the code's groups (the clothing groups are outside it)."""
    groups = [g for g in PED.groups if g.bits]
    for combo in itertools.product(*(g.classes for g in groups)):
        yield dict(zip((g.name for g in groups), combo))


def test_code21_to_values_on_the_documented_example():
    assert code21_to_values(EXAMPLE, PED) == EXAMPLE_VALUES
    assert values_to_code21(EXAMPLE_VALUES, PED) == parse_code21(EXAMPLE, PED)


def test_code21_values_onehot_round_trip_on_every_real_code():
    for attr in (a for a in real_attributes() if "," in a):
        values = code21_to_values(attr, PED)
        assert ",".join(map(str, values_to_code21(values, PED))) == attr
        code, mask = values_to_onehot(values, PED)
        assert mask.sum() == 30 and code.sum() == 12
        assert onehot_to_values(code, PED, mask) == values


def test_round_trip_over_a_sample_of_all_103680_combinations():
    combos = list(all_value_combinations())
    assert len(combos) == 2 * 3 * 3 * 2 * 2 * 2 * 3 * 2 * 2 * 5 * 2 * 2
    for values in random.Random(0).sample(combos, 3000):
        bits = values_to_code21(values, PED)
        assert code21_to_values(bits, PED) == values
        code, mask = values_to_onehot(values, PED)
        assert onehot_to_values(code, PED, mask) == values


def test_flag_and_one_hot_or_none_encodings():
    values = dict(EXAMPLE_VALUES, gender="male", bag="none", upper="splice", hat="yes")
    bits = values_to_code21(values, PED)
    assert bits[0] == 0 and bits[7] == 1  # flags: bit 1 = classes[0]
    assert bits[10] == bits[11] == 0  # bag none = no bit
    assert bits[15:19] == (0, 0, 0, 1)


def test_partial_values_give_a_mask_of_known_groups():
    code, mask = values_to_onehot({"hat": "yes", "upper": "logo"}, PED)
    hat, upper = PED.columns("hat"), PED.columns("upper")
    assert mask.sum() == 2 + 5 and mask[hat].all() and mask[upper].all()
    assert code[hat].tolist() == [1, 0] and code[upper].tolist() == [0, 1, 0, 0, 0]
    assert onehot_to_values(code, PED, mask) == {"hat": "yes", "upper": "logo"}
    # probabilities decode by argmax
    probs = np.full(PED.width, 0.1, dtype=np.float32)
    probs[PED.columns("age").start + 2] = 0.8
    assert onehot_to_values(probs, PED)["age"] == "under18"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,0,1", "3 fields, expected 21"),
        (EXAMPLE + ",0", "22 fields"),
        (EXAMPLE.replace("1", "2", 1), "'2' is not 0 or 1"),
        ("1,1,1" + EXAMPLE[5:], "more than one"),  # two age bits
        ("1,0,0" + EXAMPLE[5:], "exactly one"),  # no age bit
        (EXAMPLE[:20] + "1,1" + EXAMPLE[23:], "more than one"),  # shoulder bag and backpack
    ],
)
def test_impossible_codes_are_refused(text, message):
    with pytest.raises(CodeError, match=message):
        code21_to_values(text, PED)


def test_encoding_needs_every_group_and_known_names():
    with pytest.raises(CodeError, match="hat is unknown"):
        values_to_code21({k: v for k, v in EXAMPLE_VALUES.items() if k != "hat"}, PED)
    with pytest.raises(CodeError, match="hats"):
        values_to_code21({**EXAMPLE_VALUES, "hats": "yes"}, PED)
    with pytest.raises(KeyError, match="maybe"):
        values_to_code21({**EXAMPLE_VALUES, "hat": "maybe"}, PED)
    with pytest.raises(CodeError, match="shape"):
        onehot_to_values(np.zeros(21), PED)


# ------------------------------------------------------------------ vehicles
@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("white Audi.", {"color": "white", "brand": "Audi"}),
        ("Truck.", {"type": "Truck"}),
        ("Balong Heavy Truck.", {"brand": "Balong Heavy Truck"}),
        ("red Balong Heavy Truck Truck.", {"color": "red", "brand": "Balong Heavy Truck", "type": "Truck"}),
        ("Golden Dragon Bus.", {"brand": "Golden Dragon", "type": "Bus"}),
        ("orange MORRIS-GARAGE SUV.", {"color": "orange", "brand": "MORRIS-GARAGE", "type": "SUV"}),
        ("grey SUV.", {"color": "grey", "type": "SUV"}),
    ],
)
def test_vehicle_text_both_ways(text, values):
    assert vehicle_text_to_values(text, SCHEMA) == values
    assert values_to_vehicle_text(values, SCHEMA) == text


def test_vehicle_text_round_trip_on_real_attributes_and_every_full_combination():
    for attr in (a for a in real_attributes() if "," not in a):
        assert values_to_vehicle_text(vehicle_text_to_values(attr, SCHEMA), SCHEMA) == attr
    v = SCHEMA.vehicle
    for c, b, t in itertools.product(*(v.group(n).classes for n in ("color", "brand", "type"))):
        values = {"color": c, "brand": b, "type": t}
        assert vehicle_text_to_values(values_to_vehicle_text(values, SCHEMA), SCHEMA) == values


@pytest.mark.parametrize("text", ["", ".", "white Audio.", "audi.", "white Audi Car.", "Truck Audi."])
def test_bad_vehicle_text_is_refused(text):
    with pytest.raises(CodeError):
        vehicle_text_to_values(text, SCHEMA)


def test_writing_vehicle_text_validates():
    with pytest.raises(CodeError):
        values_to_vehicle_text({}, SCHEMA)
    with pytest.raises(KeyError):
        values_to_vehicle_text({"color": "gray"}, SCHEMA)
