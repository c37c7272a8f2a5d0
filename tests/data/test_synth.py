from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attrret.cli import app
from attrret.parser import CaptionParser
from attrret.data.records import load_records
from attrret.data.synth import MARKER, SynthConfig, brand_design, generate, render_pedestrian, render_vehicle
from attrret.data.synth.pedestrian import NAMED_COLOURS
from attrret.data.synth.priors import FEMALE_RATE, PEDESTRIAN_PRIORS, estimate_pedestrian_priors, sample_pedestrian
from attrret.data.track2 import read_gt, read_label_file, read_test_text
from attrret.errors import InputError
from attrret.schema import load_schema
from attrret.schema.codes import code21_to_values, values_to_code21

SCHEMA = load_schema()
PED = dict(gender="male", age="18-60", orientation="front", hat="no", glasses="no", handbag="no", bag="none",
           holding="no", sleeve="short", upper="none", coat="no", skirt="no")
CAR = dict(color="red", brand="Audi", type="Sedan")


def test_every_file_parses_with_attrrets_readers(tiny_synth: Path):
    for split in ("train", "val", "test"):
        lines = read_label_file(tiny_synth / split / f"{split}_label.txt")
        kinds = [ll.kind for ll in lines]
        assert kinds == sorted(kinds, key=lambda k: k != "vehicle"), f"{split}: vehicles must come first"
        assert {"vehicle", "pedestrian"} == set(kinds)
        for ll in lines:
            assert (tiny_synth / split / f"{split}_images" / ll.image).is_file()
        assert len(load_records(tiny_synth, split)) == len(lines)
    test = read_label_file(tiny_synth / "test" / "test_label.txt")
    assert read_test_text(tiny_synth / "test" / "test_text.txt") == [ll.caption for ll in test]
    assert all(set(ll.values) == {"color", "brand", "type"} for ll in test if ll.kind == "vehicle")
    assert all(ll.image.startswith("vehicle_") for ll in test if ll.kind == "vehicle")
    assert [q for q, _ in read_gt(tiny_synth / "test" / "test_gt.txt")] == [ll.caption for ll in test]
    assert json.loads((tiny_synth / MARKER).read_text())["counts"]["test"] == {"vehicle": 12, "pedestrian": 12}
    assert not (tiny_synth.parent / f".{tiny_synth.name}.partial").exists()


def test_train_vehicle_labels_are_incomplete_like_the_real_ones(tmp_path):
    out = tmp_path / "v"
    generate(out, SynthConfig(pedestrians=0, vehicles=400, test_fraction=0.1, val_fraction=0.1, seed=1, workers=2))
    forms = [frozenset(r.values) for r in load_records(out, "train")]
    assert frozenset({"color", "brand", "type"}) not in forms
    share = {f: forms.count(f) / len(forms) for f in set(forms)}
    assert 0.75 < share[frozenset({"color", "brand"})] < 0.93
    assert 0.07 < share[frozenset({"type"})] < 0.22
    brand_only = [r.values["brand"] for r in load_records(out, "train") if set(r.values) == {"brand"}]
    assert set(brand_only) <= {"Balong Heavy Truck", "Hongyan"}


PARSER = CaptionParser(grammar_table=False)


def _brute_force_relevant(lines, clothing: bool = True):
    out = []
    for q in lines:
        rel = []
        for c in lines:
            if q.kind != c.kind:
                continue
            if q.kind == "vehicle":
                ok = q.values == c.values
            else:
                qb, cb = values_to_code21(q.values, SCHEMA.pedestrian), values_to_code21(c.values, SCHEMA.pedestrian)
                ok = qb[0] == cb[0] and all(cb[i] for i in range(21) if qb[i])
                # what the caption's clothing sentence states (read back by the parser): the candidate has it
                said = {g: v for g, v in PARSER.parse(q.caption).stated.items() if not SCHEMA.pedestrian.group(g).bits}
                ok = ok and (not clothing or all(c.values[g] == v for g, v in said.items()))
            if ok:
                rel.append(c.image)
        out.append(rel)
    return out


def test_gt_equals_brute_force_relevance(tiny_synth: Path):
    lines = read_label_file(tiny_synth / "test" / "test_label.txt")
    gt = read_gt(tiny_synth / "test" / "test_gt.txt")
    assert [imgs for _, imgs in gt] == _brute_force_relevant(lines)
    by_code = _brute_force_relevant(lines, clothing=False)
    assert any(len(imgs) > 1 for imgs in by_code)  # not only self-matches
    assert any(len(a) < len(b) for (_, a), b in zip(gt, by_code))  # the clothing sentence narrows some


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, SynthConfig(pedestrians=40, vehicles=30, seed=5, workers=1))
    generate(b, SynthConfig(pedestrians=40, vehicles=30, seed=5, workers=2))
    generate(c, SynthConfig(pedestrians=40, vehicles=30, seed=6, workers=1))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != MARKER)
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != MARKER)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "test/test_text.txt").read_text() != (c / "test/test_text.txt").read_text()


def test_existing_output_is_refused_and_force_replaces(tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    with pytest.raises(InputError, match="exists"):
        generate(out, SynthConfig(pedestrians=3, vehicles=3, workers=1))
    generate(out, SynthConfig(pedestrians=3, vehicles=3, workers=1), force=True)
    assert (out / MARKER).is_file()


def _diff(a, b) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=np.int32) - np.asarray(b, dtype=np.int32)).sum(2)


def _render(values, seed=0, degrade=False):
    return render_pedestrian(values, np.random.default_rng(seed), (120, 300), degrade_image=degrade)


@pytest.mark.parametrize("seed", range(4))
def test_hat_changes_only_head_pixels(seed):
    d = _diff(_render(PED, seed), _render({**PED, "hat": "yes"}, seed))
    assert d.sum() > 0
    assert d[:90].sum() / d.sum() > 0.99  # top 30% of the crop holds the head


@pytest.mark.parametrize("orientation", ["front", "side"])
def test_glasses_visible_front_and_side_only_on_the_face(orientation):
    v = {**PED, "orientation": orientation}
    d = _diff(_render(v), _render({**v, "glasses": "yes"}))
    assert d.sum() > 0 and d[:90].sum() / d.sum() > 0.99
    back = {**PED, "orientation": "back"}
    assert _diff(_render(back), _render({**back, "glasses": "yes"})).sum() == 0


def test_attributes_change_pixels_in_their_region():
    back = {**PED, "orientation": "back"}
    d = _diff(_render(back), _render({**back, "bag": "backpack"}))
    assert d[60:180].sum() / d.sum() > 0.9  # the torso
    d = _diff(_render(PED), _render({**PED, "skirt": "yes"}))
    assert d[120:].sum() / d.sum() > 0.9  # hips and legs
    d = _diff(_render(PED), _render({**PED, "sleeve": "long"}))
    assert d[:50].sum() == 0 and d.sum() > 0  # arms, never the head
    for group, cls in [("upper", "stripe"), ("upper", "logo"), ("gender", "female"), ("age", "under18"),
                       ("age", "over60"), ("handbag", "yes"), ("holding", "yes"), ("coat", "yes"), ("bag", "shoulder")]:
        assert _diff(_render(PED), _render({**PED, group: cls})).sum() > 0, group
    # degraded renders differ too (occlusion or JPEG do not erase the change)
    assert _diff(_render(PED, 1, True), _render({**PED, "hat": "yes"}, 1, True)).sum() > 0


def test_vehicle_brand_changes_the_grille_not_the_body():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    a = render_vehicle(CAR, rng(), (240, 160), degrade_image=False)
    b = render_vehicle({**CAR, "brand": "BMW"}, rng(), (240, 160), degrade_image=False)
    c = render_vehicle({**CAR, "color": "blue"}, rng(), (240, 160), degrade_image=False)
    d_brand, d_color = _diff(a, b), _diff(a, c)
    assert d_brand.sum() > 0
    assert (d_brand > 0).mean() < 0.15 < (d_color > 0).mean()  # brand: a small part; colour: the body
    t = render_vehicle({**CAR, "type": "Bus"}, rng(), (240, 160), degrade_image=False)
    assert (_diff(a, t) > 0).mean() > 0.2


def test_65_distinct_brand_designs():
    brands = SCHEMA.vehicle.group("brand").classes
    designs = {(brand_design(b).shape, brand_design(b).glyph) for b in brands}
    assert len(designs) == len(brands) == 65


def test_render_sizes_are_surveillance_like():
    rng = np.random.default_rng(0)
    for _ in range(10):
        im = render_pedestrian(sample_pedestrian(rng), rng)
        assert 50 <= im.width <= 120 and 2.1 < im.height / im.width < 3.1
        v = render_vehicle(CAR, rng)
        assert 96 <= v.width <= 176 and v.height < 2 * v.width


def test_sampled_pedestrians_are_valid_codes_and_follow_priors():
    rng = np.random.default_rng(0)
    vals = [sample_pedestrian(rng) for _ in range(3000)]
    coded = {g.name for g in SCHEMA.pedestrian.groups if g.bits}
    for v in vals[:200]:
        assert set(v) == set(SCHEMA.pedestrian.group_names)  # complete, the clothing groups too
        assert code21_to_values(values_to_code21(v, SCHEMA.pedestrian), SCHEMA.pedestrian) == {g: v[g] for g in coded}
        assert (v["lower_type"] == "skirt") == (v["skirt"] == "yes")
        n_upper = sum(v[f"upper_color_{c}"] == "yes" for c in NAMED_COLOURS)
        assert n_upper == (2 if v["upper"] in ("stripe", "plaid", "splice") else 1)
    female = np.mean([v["gender"] == "female" for v in vals])
    assert abs(female - FEMALE_RATE) < 0.03
    adults = np.mean([v["age"] == "18-60" for v in vals])
    hats = np.mean([v["hat"] == "yes" for v in vals])
    assert 0.89 < adults < 0.95 and 0.02 < hats < 0.07  # real: 92% adults, 4.6% hats


def test_prior_table_matches_the_real_labels(val_sample):
    female, table = estimate_pedestrian_priors(val_sample)
    assert female == FEMALE_RATE
    for gender, groups in table.items():
        for name, freqs in groups.items():
            assert np.allclose(freqs, PEDESTRIAN_PRIORS[gender][name], atol=0.0015), (gender, name)


def test_preview_contact_sheet(tiny_synth: Path):
    from PIL import Image

    im = Image.open(tiny_synth / "preview.png")
    assert im.width > 500 and im.height > 300
    assert len(np.unique(np.asarray(im.convert("L")))) > 50  # not blank


def test_cli_synth(tmp_path):
    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["data", "synth", "--out", str(out), "--pedestrians", "6", "--vehicles", "4", "--seed", "2", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "train" in res.output and (out / "test" / "test_gt.txt").is_file()
    assert len(read_label_file(out / "train" / "train_label.txt")) == 3 + 4  # rest after rounded test/val shares
