"""``attrret data import pa100k``: annotation.mat (scipy.io.savemat, the real key layout) + images -> Track-2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from attrret.data.importers.pa100k import PA100K_ATTRIBUTES, TRACK2_BIT
from attrret.data.captions import all_pedestrian_captions
from attrret.data.records import load_records
from attrret.data.track2 import read_label_file, read_test_text
from attrret.retrieval.index import open_index
from attrret.schema import load_schema
from attrret.schema.codes import values_to_code21

from import_fixtures import error_line, run, tiny_image


def to_pa100k_row(bits21, on: tuple[str, ...] = ()) -> np.ndarray:
    """The 26-column PA-100K row of a 21-bit Track-2 code, with the attributes outside it in ``on`` set."""
    row = np.zeros(len(PA100K_ATTRIBUTES), np.uint8)
    for j, name in enumerate(PA100K_ATTRIBUTES):
        if name in TRACK2_BIT:
            row[j] = bits21[TRACK2_BIT[name]]
        elif name in on:
            row[j] = 1
    return row


def save_annotation(path: Path, splits: dict[str, list[tuple[str, np.ndarray]]], attributes=PA100K_ATTRIBUTES) -> None:
    """annotation.mat as PA-100K ships it: cell arrays of names (column), uint8 label matrices."""
    doc = {"attributes": np.array([[a] for a in attributes], dtype=object)}
    for split, rows in splits.items():
        doc[f"{split}_images_name"] = np.array([[n] for n, _ in rows], dtype=object)
        doc[f"{split}_label"] = np.array([r for _, r in rows], dtype=np.uint8).reshape(len(rows), -1)
    scipy.io.savemat(str(path), doc)


SCHEMA = load_schema()
#: Each VALUES row's attributes outside the code, and what they map to.
CLOTHING = [(("Skirt&Dress",), {"lower_type": "skirt", "boots": "no"}),
            (("Trousers", "boots"), {"lower_type": "trousers", "boots": "yes"}),
            (("Trousers", "Shorts"), {"boots": "no"})]  # two lower types: unknown
VALUES = [
    {"gender": "female", "age": "18-60", "orientation": "back", "hat": "no", "glasses": "no", "handbag": "no",
     "bag": "shoulder", "holding": "no", "sleeve": "short", "upper": "none", "coat": "no", "skirt": "yes"},
    {"gender": "male", "age": "over60", "orientation": "front", "hat": "yes", "glasses": "yes", "handbag": "yes",
     "bag": "backpack", "holding": "yes", "sleeve": "long", "upper": "splice", "coat": "yes", "skirt": "no"},
    {"gender": "male", "age": "under18", "orientation": "side", "hat": "no", "glasses": "no", "handbag": "no",
     "bag": "none", "holding": "no", "sleeve": "long", "upper": "logo", "coat": "no", "skirt": "no"},
]


@pytest.fixture
def pa100k(tmp_path) -> Path:
    """PA-100K's release layout: annotation.mat + data/NNNNNN.jpg; 3 train, 2 val, 2 test images."""
    root = tmp_path / "PA-100K"
    names = [f"{i:06d}.jpg" for i in range(1, 8)]
    for i, n in enumerate(names):
        tiny_image(root / "data" / n, i)
    rows = [(n, to_pa100k_row(values_to_code21(VALUES[i % 3], SCHEMA.pedestrian), CLOTHING[i % 3][0]))
            for i, n in enumerate(names)]
    save_annotation(root / "annotation.mat", {"train": rows[:3], "val": rows[3:5], "test": rows[5:]})
    return root


def test_pa100k_keeps_its_split_and_every_group(pa100k, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run("data", "import", "pa100k", pa100k, "--out", out, capsys=capsys)
    assert code == 0, stderr
    by_split = {s: load_records(out, s) for s in ("train", "val", "test")}
    assert {s: [r.image for r in rs] for s, rs in by_split.items()} == {
        "train": ["000001.jpg", "000002.jpg", "000003.jpg"], "val": ["000004.jpg", "000005.jpg"],
        "test": ["000006.jpg", "000007.jpg"]}
    for rs in by_split.values():
        for r in rs:
            i = (int(r.image[:6]) - 1) % 3
            assert r.values == VALUES[i] | CLOTHING[i][1]  # lower type and boots from the side file
            assert r.path.read_bytes() == (pa100k / "data" / r.image).read_bytes()
    side = [json.loads(x) for x in (out / "train" / "train_unknown.jsonl").read_text().splitlines()]
    assert side[0] == {"image": "000001.jpg", "unknown": [], "values": CLOTHING[0][1]}  # PA-100K knows every Track-2 group
    captions = [ll.caption for ll in read_label_file(out / "test" / "test_label.txt")]
    assert read_test_text(out / "test" / "test_text.txt") == captions
    assert captions[0] in set(all_pedestrian_captions(VALUES[2]))  # 000006.jpg: the Track-2 grammar
    marker = json.loads((out / "import.json").read_text())
    assert marker["format"] == "pa100k" and marker["counts"]["train"] == {"vehicle": 0, "pedestrian": 3}
    assert "pedestrian.orientation" in stdout


def test_images_in_release_data_or_given_with_images_are_found(pa100k, tmp_path, capsys):
    (pa100k / "release_data").mkdir()
    shutil.move(pa100k / "data", pa100k / "release_data" / "release_data")
    code, _, err = run("data", "import", "pa100k", pa100k / "annotation.mat", "--out", tmp_path / "a", capsys=capsys)
    assert code == 0, err
    elsewhere = shutil.move(pa100k / "release_data" / "release_data", tmp_path / "imgs")
    line = error_line(*run("data", "import", "pa100k", pa100k, "--out", tmp_path / "b", capsys=capsys)[:3:2])
    assert "image '000001.jpg' not found in" in line and "give --images DIR" in line
    code, _, err = run("data", "import", "pa100k", pa100k, "--out", tmp_path / "b", "--images", elsewhere, capsys=capsys)
    assert code == 0, err


def test_invalid_bits_leave_that_group_unknown(tmp_path):
    from attrret.data.importers.build import import_dataset

    root = tmp_path / "src"
    tiny_image(root / "data" / "000001.jpg", 0)
    row = to_pa100k_row(values_to_code21(VALUES[0], SCHEMA.pedestrian))
    row[PA100K_ATTRIBUTES.index("Front")] = 1  # front AND back
    save_annotation(root / "annotation.mat", {"train": [("000001.jpg", row)]})
    summary = import_dataset("pa100k", root, tmp_path / "out")
    (r,) = load_records(summary.out, "train")
    assert r.values == {k: v for k, v in VALUES[0].items() if k != "orientation"} | {"boots": "no", "lower_type": "skirt"}
    assert summary.skipped == {"orientation left unknown: its bits break the group's rule": 1}


def test_pa100k_errors_are_one_clear_line(pa100k, tmp_path, capsys):
    def err(*extra, out="o"):
        return error_line(*run("data", "import", "pa100k", pa100k, "--out", tmp_path / out, *extra, capsys=capsys)[:3:2])

    (pa100k / "data" / "000006.jpg").unlink()
    line = err()
    assert "test_images_name[0]: image '000006.jpg' listed but missing" in line and "--skip-missing" in line
    code, _, stderr = run("data", "import", "pa100k", pa100k, "--out", tmp_path / "o", "--skip-missing", capsys=capsys)
    assert code == 0 and "1 x image listed but missing" in stderr
    assert len(load_records(tmp_path / "o", "all")) == 6
    # --force replaces that earlier import, but never a folder attrret did not make
    assert run("data", "import", "pa100k", pa100k, "--out", tmp_path / "o", "--skip-missing", "--force",
               capsys=capsys)[0] == 0
    assert "output folder exists and is not empty (use --force" in err()
    (tmp_path / "empty").mkdir()  # an empty folder made beforehand is fine
    assert run("data", "import", "pa100k", pa100k, "--out", tmp_path / "empty", "--skip-missing", capsys=capsys)[0] == 0
    mine = tmp_path / "mine"
    (mine / "train").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    line = error_line(*run("data", "import", "pa100k", pa100k, "--out", mine, "--force", capsys=capsys)[:3:2])
    assert "not an imported set attrret made" in line
    assert (mine / "notes.txt").read_text() == "keep me"

    scipy.io.savemat(str(pa100k / "annotation.mat"), {"images": np.zeros(3)})
    line = err(out="new")
    assert "not a PA-100K annotation.mat: expected keys attributes and <split>_images_name" in line
    assert "found images" in line
    rows = [("000001.jpg", np.zeros(3, np.uint8))]
    save_annotation(pa100k / "annotation.mat", {"train": rows}, attributes=("Female", "Hatt", "Side"))
    assert "unknown PA-100K attribute names: Hatt (expected some of: Female, AgeOver60" in err(out="new")
    save_annotation(pa100k / "annotation.mat", {"train": rows}, attributes=("Female", "Hat"))
    assert "train_label has shape (3,), expected (1, 2): one row per image" in err(out="new")
    (pa100k / "annotation.mat").write_bytes(b"not a mat file")
    assert "not a readable MATLAB .mat file" in err(out="new")
    (pa100k / "annotation.mat").unlink()
    assert "missing annotation.mat" in err(out="new")
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".new*"))


def test_the_readme_three_commands_on_real_pa100k_crops(pa100k_mini, tmp_path, capsys):
    """A user's PA-100K (here 60 real pa100k-mini crops with a real-format annotation.mat):
    import, train, predict + rank, exactly as the README shows them."""
    lines = read_label_file(pa100k_mini / "labels.txt")[:60]
    src = tmp_path / "PA-100K"
    (src / "data").mkdir(parents=True)
    rows = []
    for ll in lines:
        shutil.copyfile(pa100k_mini / "images" / ll.image, src / "data" / ll.image)
        rows.append((ll.image, to_pa100k_row([int(b) for b in ll.attribute.split(",")])))
    save_annotation(src / "annotation.mat", {"train": rows[:40], "val": rows[40:50], "test": rows[50:]})
    data, work = tmp_path / "pa100k", tmp_path / "work"

    # 1. import
    code, _, err = run("data", "import", "pa100k", src, "--out", data, capsys=capsys)
    assert code == 0, err
    coded = {g.name for g in SCHEMA.pedestrian.groups if g.bits}
    assert [{g: c for g, c in r.values.items() if g in coded} for r in load_records(data, "all")] == [ll.values for ll in lines]
    # 2. train (tiny settings; a user keeps the defaults)
    code, out, err = run("train", "--data", data, "--workdir", work, "--task", "pedestrian",
                         "--backbone", "timm:test_efficientnet", "--random-init", "--img-size", "32", "--epochs", "1",
                         "--batch-size", "16", "--quiet", capsys=capsys)
    assert code == 0, err
    # 3. predict the test images, then rank them for the test captions
    code, out, err = run("predict", "--images", data, "--workdir", work, "-o", tmp_path / "index", "--quiet",
                         capsys=capsys)
    assert code == 0, err
    assert len(open_index(tmp_path / "index")) == 10
    code, out, err = run("rank", "--queries", data / "test" / "test_text.txt", "--index", tmp_path / "index",
                         "-o", tmp_path / "submission.json", capsys=capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "submission.json").read_text())["results"]
    assert [r["text"] for r in results] == read_test_text(data / "test" / "test_text.txt")
    assert all(len(r["image_names"]) == 10 for r in results)
