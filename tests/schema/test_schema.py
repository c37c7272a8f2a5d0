"""The schema registry: layout derived from data, task lookup, fingerprint, validation."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from attrret.schema import SUBJECTS, load_schema

VOCAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "track2" / "vehicle_vocab.json"


@pytest.fixture()
def schema_dir(tmp_path: Path) -> Path:
    """A writable copy of the packaged schema files."""
    for name in ("pedestrian.toml", "vehicle.toml", "router.toml"):
        src = resources.files("attrret.schema").joinpath(name)
        (tmp_path / name).write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


COLOURS = ("black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow")


def test_pedestrian_layout_begins_with_the_published_30_column_code():
    ped = load_schema().pedestrian
    coded = [g for g in ped.groups if g.bits]
    assert ped.groups[:12] == tuple(coded)  # the Track-2 groups first, in code order
    assert tuple(g.name for g in coded) == ("gender", "age", "orientation", "hat", "glasses", "handbag", "bag", "holding", "sleeve", "upper", "coat", "skirt")
    assert [g.size for g in coded] == [2, 3, 3, 2, 2, 2, 3, 2, 2, 5, 2, 2]
    assert ped.columns("skirt").stop == 30 and ped.code_bits == 21
    # then the clothing groups outside the code: two multi-label colour groups of 11 yes/no groups
    assert [g.name for g in ped.groups[12:15]] == ["lower_type", "hair", "boots"]
    assert {f: [g.label for g in gs] for f, gs in ped.families.items()} == {"upper_color": list(COLOURS), "lower_color": list(COLOURS)}
    assert all(g.classes == ("yes", "no") and not g.bits for gs in ped.families.values() for g in gs)
    assert ped.family_group("upper_color", "red").name == "upper_color_red" and ped.width == 30 + 8 + 44
    assert sorted(b for g in ped.groups for b in g.bits) == list(range(21))
    # columns tile 0..30 without gaps, in group order
    at = 0
    for g in ped.groups:
        cols = ped.columns(g.name)
        assert (cols.start, cols.stop) == (at, at + g.size)
        at = cols.stop
    assert ped.group("age").classes == ("over60", "18-60", "under18")
    assert ped.group("upper").classes[-1] == "none" and ped.group("bag").classes == ("shoulder", "backpack", "none")


def test_vehicle_vocabulary_equals_the_track2_file():
    v = load_schema().vehicle
    assert [g.size for g in v.groups] == [11, 6, 65]
    if not VOCAB.exists():
        pytest.skip(f"{VOCAB} not available")
    vocab = json.loads(VOCAB.read_text())
    assert list(v.group("color").classes) == vocab["colors"]
    assert list(v.group("type").classes) == vocab["types"]
    assert list(v.group("brand").classes) == vocab["brands"]


def test_tasks_and_selection():
    s = load_schema()
    names = [g.task for g in s.tasks]
    n = len(s.pedestrian.groups)
    assert len(names) == n + 4 and names[0] == "pedestrian.gender" and names[n:] == ["vehicle.color", "vehicle.type", "vehicle.brand", "router"]
    assert s.router.classes == SUBJECTS
    assert s.task("vehicle.color").name == "color" and s.task("vehicle.color").subject == "vehicle"
    assert s.task("router").task == "router"
    assert len(s.select_tasks("pedestrian")) == n and len(s.select_tasks("vehicle")) == 3
    assert s.select_tasks("all") == s.tasks
    assert s.select_tasks("pedestrian.hat") == (s.pedestrian.group("hat"),)
    with pytest.raises(KeyError, match="unknown task 'pedestrian.hats'"):
        s.task("pedestrian.hats")
    with pytest.raises(KeyError, match="not a class of pedestrian.hat"):
        s.pedestrian.group("hat").index("maybe")
    with pytest.raises(KeyError, match="not a pedestrian group"):
        s.pedestrian.group("color")
    with pytest.raises(KeyError, match="unknown subject"):
        s.subject("bicycle")


def test_fingerprint_is_stable_and_tracks_the_vocabulary(schema_dir):
    packaged = load_schema()
    assert len(packaged.fingerprint) == 16 and int(packaged.fingerprint, 16) >= 0
    assert load_schema(schema_dir).fingerprint == packaged.fingerprint  # same data, same hash
    assert load_schema() is packaged  # the packaged schema is built once
    path = schema_dir / "vehicle.toml"
    path.write_text(path.read_text().replace('"Audi",', '"AUDI",'))
    assert load_schema(schema_dir).fingerprint != packaged.fingerprint
    # class ORDER is part of the contract too (classifier output order)
    shutil.copy(resources.files("attrret.schema").joinpath("vehicle.toml"), path)
    path.write_text(path.read_text().replace('"black",\n  "blue",', '"blue",\n  "black",'))
    assert load_schema(schema_dir).fingerprint != packaged.fingerprint


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('classes = ["female", "male"]', 'classes = ["female", "female"]', "two distinct classes"),
        ("bits = [20]", "bits = [19]", "bits must cover"),
        ("bits = [15, 16, 17, 18]", "bits = [15, 16]\n[[groups]]\nname = \"x\"\nclasses = [\"a\", \"b\"]\nbits = [17, 18]", "cannot encode"),
        ('name = "skirt"', 'name = "coat"', "duplicate group names"),
        ('name = "hair"', 'name = "upper_color_red"', "duplicate group names"),  # a multi-label class's group
        ("multilabel = true", "multilabel = 1", "multilabel must be true or false"),
        ('"yellow"]\nmultilabel', '"light blue"]\nmultilabel', "must be one word"),
        ('"yellow"]\nmultilabel', '"yellow"]\nbits = [3]\nmultilabel', "a multi-label group has no code bits"),
    ],
)
def test_bad_schema_files_are_refused(schema_dir, old, new, message):
    path = schema_dir / "pedestrian.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ValueError, match=message):
        load_schema(schema_dir)


@pytest.mark.parametrize("where", ["file", "group"])
def test_the_schema_holds_no_training_settings(schema_dir, where):
    """How a task trains is not vocabulary (attrret.classifiers.recipes holds it): a schema file
    written with the old ``hints`` says where they go instead of training otherwise in silence."""
    toml = schema_dir / "pedestrian.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace('subject = "pedestrian"\n', 'subject = "pedestrian"\n[hints]\ninput = "64"\n', 1) if where == "file"
                    else text.replace('name = "hat"\n', 'name = "hat"\nhints = { epochs = 3 }\n'), encoding="utf-8")
    group = ": group 'hat'" if where == "group" else ""
    with pytest.raises(ValueError, match=f"pedestrian.toml{group}: training hints are no longer part of the schema: move them to recipes.toml"):
        load_schema(schema_dir)
