"""``attrret data import peta``: PETA's release layout -> Track-2 folder, values mapped, split by identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attrret.classifiers.data import load_task_data
from attrret.data.importers import ImportOptions
from attrret.data.importers.build import import_dataset
from attrret.data.records import load_records
from attrret.schema import load_schema

from import_fixtures import PETA_MINI, error_line, run, tiny_image

COLOURS = {"black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow"}

# identity -> its Label.txt attributes; VIPeR files are <id>_<n>.bmp, CUHK keys are whole names
LABELS = {
    "VIPeR": {
        "001": "personalFemale personalLess30 upperBodyShortSleeve upperBodyLogo lowerBodyShortSkirt carryingMessengerBag",
        "002": "personalMale personalLess45 upperBodyLongSleeve carryingBackpack accessoryHat",
        "003": "personalMale personalLarger60 upperBodyLongSleeve upperBodyPlaid accessorySunglasses",
        "004": "personalFemale personalLess15 upperBodyNoSleeve upperBodyThinStripes upperBodyLogo",
        "005": "personalMale personalLess30 carryingBackpack carryingMessengerBag",  # both bags: skipped
        "006": "personalMale personalFemale personalLess30 personalLarger60 upperBodyLongSleeve upperBodyShortSleeve",
    },
    "CUHK": {
        "0001.png": "personalMale personalLess30 upperBodyLongSleeve",
        "0002.png": "personalFemale personalLess45 upperBodyShortSleeve lowerBodyLongSkirt",
    },
}


def make_peta(root: Path) -> Path:
    seed = 0
    for subset, labels in LABELS.items():
        archive = root / subset / "archive"
        archive.mkdir(parents=True)
        (archive / "Label.txt").write_bytes("".join(f"{k} {v}\n" for k, v in labels.items()).encode("latin-1"))
        for key in labels:
            names = [key] if subset == "CUHK" else [f"{key}_{n}.bmp" for n in (1, 2)]
            for name in names:
                seed += 1
                tiny_image(archive / name, seed)
    return root


@pytest.fixture
def peta(tmp_path) -> Path:
    return make_peta(tmp_path / "peta")


def imported_values(out: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """output image name -> (split, values of the Track-2 groups) through the one reader train uses."""
    return {r.image: (r.label_file.parent.name, {g: c for g, c in r.values.items() if g in CODED})
            for r in load_records(out, "all")}


CODED = {g.name for g in load_schema().pedestrian.groups if g.bits}


def test_peta_clothing_maps_lower_type_hair_boots_and_every_colour_of_a_garment():
    from attrret.data.importers.peta import map_attributes

    v = map_attributes({"personalMale", "lowerBodyJeans", "hairShort", "footwearBoots", "upperBodyBlack",
                        "upperBodyWhite", "lowerBodyBlue"})
    assert v["lower_type"] == "trousers" and v["hair"] == "short" and v["boots"] == "yes"
    assert {c for c in COLOURS if v[f"upper_color_{c}"] == "yes"} == {"black", "white"}  # a two-colour top
    assert {c for c in COLOURS if v[f"lower_color_{c}"] == "yes"} == {"blue"}
    assert all(v[f"upper_color_{c}"] == "no" for c in COLOURS - {"black", "white"})
    # none or two kinds settle nothing; a garment without colours leaves its colours unknown
    v = map_attributes({"lowerBodyShorts", "lowerBodyLongSkirt", "hairLong", "hairBald", "upperBodyRed"})
    assert "lower_type" not in v and "hair" not in v and v["boots"] == "no"
    assert not any(g.startswith("lower_color_") for g in v) and v["upper_color_red"] == "yes"
    for attr, cls in [("lowerBodyHotPants", "shorts"), ("lowerBodyShortSkirt", "skirt"), ("lowerBodyCapri", "trousers")]:
        assert map_attributes({attr})["lower_type"] == cls


def test_peta_values_follow_the_mapping_and_unknown_groups_stay_unknown(peta, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run("data", "import", "peta", peta, "--out", out, "--val-fraction", "0.2",
                               "--test-fraction", "0.2", capsys=capsys)
    assert code == 0, stderr
    got = imported_values(out)
    assert len(got) == 5 * 2 + 2  # VIPeR 005 (both bags) skipped
    assert "VIPeR_005_1.bmp" not in got and "2 x both a backpack and a messenger bag" in " ".join(stderr.split())
    v1 = got["VIPeR_001_1.bmp"][1]
    assert v1 == {"gender": "female", "age": "18-60", "hat": "no", "glasses": "no", "bag": "shoulder",
                  "sleeve": "short", "upper": "logo", "skirt": "yes"}
    assert got["VIPeR_002_2.bmp"][1] == {"gender": "male", "age": "18-60", "hat": "yes", "glasses": "no",
                                             "bag": "backpack", "sleeve": "long", "upper": "none", "skirt": "no"}
    assert got["VIPeR_003_1.bmp"][1]["glasses"] == "yes" and got["VIPeR_003_1.bmp"][1]["age"] == "over60"
    assert got["VIPeR_003_1.bmp"][1]["upper"] == "plaid"
    v4 = got["VIPeR_004_1.bmp"][1]
    assert v4["age"] == "under18" and v4["sleeve"] == "short" and "upper" not in v4  # two patterns: unknown
    v6 = got["VIPeR_006_1.bmp"][1]  # contradictory gender, age, sleeve: unknown
    assert not {"gender", "age", "sleeve"} & set(v6) and v6["bag"] == "none"
    assert got["CUHK_0002.png"][1]["skirt"] == "yes"
    # PETA has no orientation, handbag, holding or long coat: never known
    assert all(not {"orientation", "handbag", "holding", "coat"} & set(v) for _, v in got.values())
    # the summary: per-split counts and per-group known counts
    assert "pedestrian.gender" in stdout and "pedestrian.orientation" not in stdout and "train" in stdout


def test_the_identity_split_keeps_each_person_in_one_split_and_is_seeded(peta, tmp_path, capsys):
    opts = ImportOptions(val_fraction=0.25, test_fraction=0.25, seed=5)
    a = import_dataset("peta", peta, tmp_path / "a", opts)
    b = import_dataset("peta", peta, tmp_path / "b", opts)
    got_a, got_b = imported_values(a.out), imported_values(b.out)
    assert {k: s for k, (s, _) in got_a.items()} == {k: s for k, (s, _) in got_b.items()}
    split_of: dict[str, set[str]] = {}
    for name, (split, _) in got_a.items():
        split_of.setdefault(name if name.startswith("CUHK") else name.rsplit("_", 1)[0], set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())
    assert {s for (s, _) in got_a.values()} == {"train", "val", "test"}
    for split in ("train", "val", "test"):  # the bytes too: same seed, same files
        assert (a.out / split / f"{split}_label.txt").read_bytes() == (b.out / split / f"{split}_label.txt").read_bytes()
    other = imported_values(import_dataset("peta", peta, tmp_path / "c", ImportOptions(val_fraction=0.25, test_fraction=0.25, seed=6)).out)
    assert {k: s for k, (s, _) in other.items()} != {k: s for k, (s, _) in got_a.items()}


def test_training_data_skips_unknown_groups_per_task(peta, tmp_path):
    out = import_dataset("peta", peta, tmp_path / "out", ImportOptions(val_fraction=0.0, test_fraction=0.0)).out
    schema = load_schema()
    groups = [schema.task("pedestrian.gender"), schema.task("pedestrian.orientation"), schema.task("pedestrian.upper")]
    untrainable: list[str] = []
    data = load_task_data(out, groups, on_untrainable=untrainable.append, val_fraction=0.3)
    assert "pedestrian.orientation" not in data and "pedestrian.orientation" in untrainable[0]
    gender = data["pedestrian.gender"]
    assert len(gender.train) + len(gender.val) == 12 - 2  # VIPeR 006 has no gender
    upper = data["pedestrian.upper"]
    assert len(upper.train) + len(upper.val) == 12 - 2  # VIPeR 004 has two patterns


def test_peta_errors_are_one_clear_line(peta, tmp_path, capsys):
    (peta / "CUHK" / "archive" / "Label.txt").unlink()
    line = error_line(*run("data", "import", "peta", peta, "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "CUHK/archive/Label.txt: missing Label.txt" in line
    (peta / "CUHK" / "archive" / "Label.txt").write_text("0001.png personalMale upperBodyGlitter\n", encoding="latin-1")
    line = error_line(*run("data", "import", "peta", peta, "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "Label.txt:1: attributes: unknown PETA attribute 'upperBodyGlitter'" in line
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o*"))
    line = error_line(*run("data", "import", "peta", peta, "--out", peta / "CUHK" / "o", capsys=capsys)[:3:2])
    assert "the output folder is inside the source" in line
    (tmp_path / "empty").mkdir()
    line = error_line(*run("data", "import", "peta", tmp_path / "empty", "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "no PETA subsets" in line


@pytest.mark.parametrize("root, count", [(PETA_MINI, 2500), (PETA_MINI.parent / "peta-train", 5299)], ids=["peta-mini", "peta-train"])
def test_the_real_peta_sets_import_to_their_documented_values(tmp_path, capsys, root, count):
    """Both real PETA samples; peta-train's Label.txt lines use PETA's rare attributes
    (accessoryShawl, accessoryFaceMask), which stopped the importer before."""
    if not (root / "raw").is_dir():
        pytest.skip(f"{root} not available")
    summary = import_dataset("peta", root / "raw", tmp_path / "peta", link=True)
    expected = {}
    for line in (root / "values.jsonl").read_text().splitlines():
        doc = json.loads(line)
        expected[str((root / doc["image"]).resolve())] = doc["values"]
    sources = {}
    for line in (summary.out / "sources.jsonl").read_text().splitlines():
        doc = json.loads(line)
        sources[doc["image"]] = str(Path(doc["source"]).resolve())
    records = load_records(summary.out, "all")
    coded = {g.name for g in load_schema().pedestrian.groups if g.bits}  # values.jsonl maps the Track-2 groups
    got = {sources[r.image]: {g: c for g, c in r.values.items() if g in coded} for r in records}
    assert len(records) == count and summary.skipped == {}
    assert got == expected
    # the clothing groups outside the code are there too, from the side file
    known = {g for r in records for g in r.values} - coded
    assert {"lower_type", "hair", "boots", "upper_color_black", "lower_color_blue"} <= known
    # no PETA identity in two splits
    ids: dict[str, set[str]] = {}
    for r in records:
        subset, name = r.image.split("_", 1)
        ids.setdefault(f"{subset}/{name if subset == 'CUHK' else name.split('_')[0]}", set()).add(r.label_file.parent.name)
    assert all(len(s) == 1 for s in ids.values())


def test_the_readme_two_dataset_commands_on_the_shared_data(pa100k_mini, tmp_path, capsys):
    """README, "PA-100K and PETA together": import pa100k-mini's annotation.mat and peta-train,
    train pedestrians on both (a tiny backbone here), predict and search a clothing query."""
    peta_train = PETA_MINI.parent / "peta-train" / "raw"
    if not (pa100k_mini / "annotation.mat").is_file() or not peta_train.is_dir():
        pytest.skip("shared pa100k-mini annotation.mat or peta-train not available")
    pa, peta, work = tmp_path / "pa100k", tmp_path / "peta", tmp_path / "work"
    code, _, err = run("data", "import", "pa100k", pa100k_mini, "--out", pa, "--link", capsys=capsys)
    assert code == 0, err
    code, _, err = run("data", "import", "peta", peta_train, "--out", peta, "--test-fraction", "0", "--link", capsys=capsys)
    assert code == 0, err
    code, _, err = run("train", "--task", "pedestrian", "--data", pa, "--data", peta, "--workdir", work,
                       "--backbone", "timm:test_efficientnet", "--random-init", "--img-size", "32", "--epochs", "1",
                       "--batch-size", "128", "--quiet", capsys=capsys)
    assert code == 0, err
    trained = {p.name for p in (work / "models").iterdir() if p.is_dir()}
    assert {"pedestrian.upper_color_red", "pedestrian.lower_color_black", "pedestrian.lower_type", "pedestrian.hair",
            "pedestrian.boots", "pedestrian.orientation"} <= trained  # PA-100K's groups and PETA's, in one run
    assert (work / "members" / "anchor" / "domain_gate.json").is_file()  # the gated anchor member, by default
    code, _, err = run("predict", "--images", pa, "--workdir", work, "-o", tmp_path / "index", "--quiet", capsys=capsys)
    assert code == 0, err
    from attrret.retrieval.index import open_index

    gated = {m["task"] for m in open_index(tmp_path / "index").header.models if "domain_gate" in m}
    assert "pedestrian.gender" in gated and not any(t.startswith("pedestrian.upper_color") for t in gated)
    code, out, err = run("search", "woman in a red top and black trousers", "--index", tmp_path / "index", "--json",
                         capsys=capsys)
    assert code == 0, err
    doc = json.loads(out.splitlines()[0])
    assert len(doc["results"]) == 10
    stated = doc["query"]["stated"]
    assert stated["upper_color_red"] == stated["lower_color_black"] == "yes" and stated["gender"] == "female"
    assert not any("no columns" in w for w in doc["warnings"]) and "no columns" not in err  # every group it states is scored
