from __future__ import annotations

import numpy as np
import pytest

from attrret.data.captions import all_pedestrian_captions, pedestrian_caption, vehicle_caption
from attrret.data.synth.priors import sample_pedestrian, sample_vehicle
from attrret.data.track2 import read_label_file
from attrret.schema import load_schema

SCHEMA = load_schema()


BASE = dict(gender="female", age="18-60", orientation="front", hat="no", glasses="no", handbag="no", bag="none",
            holding="no", sleeve="short", upper="none", coat="no", skirt="no")


@pytest.mark.parametrize("which", ["val_sample", "pa100k_mini"])
def test_every_real_caption_is_reachable_from_its_code(which, request):
    path = request.getfixturevalue(which)
    path = path / "labels.txt" if path.is_dir() else path
    lines = [ll for ll in read_label_file(path) if ll.kind == "pedestrian" and "boots" not in ll.caption]
    assert len(lines) > 1000
    missing = [ll.caption for ll in lines if ll.caption not in set(all_pedestrian_captions(ll.values))]
    assert missing == []


def test_carry_priority_and_form_a():
    v = {**BASE, "handbag": "yes", "bag": "backpack", "holding": "yes", "hat": "yes", "coat": "yes", "upper": "stripe", "skirt": "yes"}
    for cap in all_pedestrian_captions(v):
        assert "handbag" in cap and "backpack" not in cap and "holds" not in cap
        assert "wearning a hat," in cap and ("longcoat" in cap or "coat that is long" in cap)
        assert "stripe" not in cap and "skirt" not in cap and "sleeve" not in cap and "boots" not in cap
    v = {**BASE, "bag": "backpack", "holding": "yes", "upper": "plaid", "skirt": "yes", "gender": "male"}
    caps = set(all_pedestrian_captions(v))
    assert all("backpack" in c and "holds" not in c and "plaid" in c and "skirt or dress" in c and " He is in " in c for c in caps)
    assert "A walking man who is between 18 and 60 years old, with his body facing the camera and carrying a backpack. He is in a tee shirt with short sleeves with an upper plaid and wearing skirt or dress." in caps


def test_pedestrian_caption_needs_complete_values():
    with pytest.raises(ValueError, match="missing: hat"):
        pedestrian_caption({k: v for k, v in BASE.items() if k != "hat"}, np.random.default_rng(0))


def test_vehicle_captions():
    rng = np.random.default_rng(0)
    caps = {vehicle_caption({"color": "red", "brand": "Balong Heavy Truck", "type": "Truck"}, rng) for _ in range(40)}
    assert caps == {"This is a red Balong Heavy Truck Truck.", "A red Balong Heavy Truck Truck."}
    caps = {vehicle_caption({"color": "orange", "brand": "Audi"}, rng) for _ in range(40)}
    assert caps == {"This is an orange Audi.", "An orange Audi."}
    assert vehicle_caption({"type": "SUV"}, rng) in ("A SUV.", "This is a SUV.")


def _expected_known(v: dict[str, str]) -> dict[str, str]:
    """Groups the Track-2 grammar fixes (stated or implied) for a caption of ``v`` (docs/track2.md)."""
    known = {g: v[g] for g in ("gender", "age", "orientation")}
    if v["handbag"] == "yes":
        known["handbag"] = "yes"
    elif v["bag"] == "shoulder":
        known.update(handbag="no", bag="shoulder")
    elif v["bag"] == "backpack":
        known.update(handbag="no", bag="backpack")
    elif v["holding"] == "yes":
        known.update(handbag="no", bag="none", holding="yes")
    else:
        known.update(handbag="no", bag="none", holding="no")
    known.update({g: v[g] for g in ("hat", "glasses", "coat")})
    if "yes" not in (v["hat"], v["glasses"], v["coat"]):
        known.update({g: v[g] for g in ("sleeve", "upper", "skirt")})
    return known


def test_round_trip_through_the_parser():
    try:
        from attrret.parser import CaptionParser
    except ImportError:
        pytest.skip("attrret.parser.CaptionParser not available yet")
    parser = CaptionParser()
    schema = load_schema()
    rng = np.random.default_rng(0)
    bad = []
    for i in range(600):
        v = sample_pedestrian(rng, schema)
        if i % 3 == 0:  # oversample the rare groups so every clause is exercised
            v.update({g: str(rng.choice(schema.pedestrian.group(g).classes)) for g in ("hat", "holding", "upper", "age", "coat")})
        cap = pedestrian_caption(v, rng)
        q = parser.parse(cap)
        known = {**q.implied, **q.stated}
        if q.kind != "pedestrian" or known != _expected_known(v):
            bad.append((cap, known, _expected_known(v)))
    for i in range(200):
        v = sample_vehicle(rng, test=bool(i % 2), schema=schema)
        cap = vehicle_caption(v, rng, schema)
        q = parser.parse(cap)
        if q.kind != "vehicle" or {**q.implied, **q.stated} != v:
            bad.append((cap, q.stated, v))
    assert bad == []


def test_a_partial_caption_states_only_known_values_and_parses_back_to_them():
    """Imported labels may lack groups: the caption must claim nothing unknown, and what it
    states must be what the labels say (read back with the real caption parser)."""
    from attrret.data.captions import known_pedestrian_caption
    from attrret.parser import CaptionParser

    parser = CaptionParser()
    rng = np.random.default_rng(0)
    schema = load_schema()
    for i in range(60):
        full = sample_pedestrian(rng, schema)
        known = {g: c for g, c in full.items() if rng.random() < 0.6}
        caption = known_pedestrian_caption(known, rng)
        stated = parser.parse(caption).stated
        assert set(stated.items()) <= set(known.items()), (known, caption, stated)
        for g in ("gender", "age", "orientation"):
            assert (g in stated) == (g in known), (g, known, caption)
    assert known_pedestrian_caption(BASE, np.random.default_rng(1)) == pedestrian_caption(BASE, np.random.default_rng(1))


def test_the_clothing_sentence_parses_back_to_the_values_it_states():
    """Synthetic captions' third sentence (some of the groups outside the code): what it says it
    states -- every colour of a garment it names, lower type, hair -- is what the parser reads
    back, and nothing else outside the code."""
    from attrret.data.captions import clothing_sentence
    from attrret.parser import CaptionParser

    parser = CaptionParser(grammar_table=False)
    coded = {g.name for g in SCHEMA.pedestrian.groups if g.bits}
    rng = np.random.default_rng(7)
    parts = set()
    for _ in range(300):
        values = sample_pedestrian(rng)
        sentence, said = clothing_sentence(values, rng)
        assert sentence and said and all(values[g] == c for g, c in said.items())
        parts |= {g.split("_color")[0] for g in said}
        q = parser.parse(pedestrian_caption(values, rng) + " " + sentence)
        assert q.kind == "pedestrian" and not q.unmatched and not q.unsupported, sentence
        read = {g: c for g, c in q.stated.items() if g not in coded}
        if said.get("lower_type") == "skirt":  # "skirt" states the Track-2 group
            assert q.stated["skirt"] == "yes"
            said = {g: c for g, c in said.items() if g != "lower_type"}
        assert read == said, sentence
    assert parts == {"hair", "upper", "lower", "lower_type"}  # each part is said, now and then
    assert clothing_sentence({"gender": "male"}, rng) == ("", {})  # nothing outside the code: no sentence
