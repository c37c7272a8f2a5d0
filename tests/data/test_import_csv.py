"""``attrret data import csv`` and the ``<split>_unknown.jsonl`` side file every label reader applies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attrret.data.importers import ImportOptions
from attrret.data.importers.build import import_dataset
from attrret.data.records import load_records
from attrret.data.track2 import read_label_file
from attrret.errors import InputError
from attrret.retrieval.evaluate import load_relevance

from import_fixtures import error_line, run, tiny_image

CSV = """image,kind,split,identity,gender,age,hat,bag,color,type,brand
crops/p1.png,pedestrian,train,anna,female,18-60,no,backpack,,,
crops/p2.png,pedestrian,,anna,female,,yes,,,,
crops/p3.png,pedestrian,test,ben,male,over60,,none,,,
cars/v1.jpg,vehicle,train,,,,,,red,SUV,Audi
cars/v2.jpg,vehicle,test,,,,,,white,,
cars/v3.jpg,vehicle,val,,,,,,,Sedan,
"""


def make_csv(root: Path, text: str = CSV) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, line in enumerate(text.splitlines()[1:]):
        tiny_image(root / line.split(",")[0], i)
    (root / "labels.csv").write_text(text, encoding="utf-8")
    return root / "labels.csv"


def test_csv_rows_become_records_with_their_known_groups(tmp_path, capsys):
    csv = make_csv(tmp_path / "src")
    out = tmp_path / "out"
    code, stdout, err = run("data", "import", "csv", csv, "--out", out, "--test-fraction", "0.5", "--val-fraction", "0",
                            capsys=capsys)
    assert code == 0, err
    recs = {r.image: (r.label_file.parent.name, r.kind, r.values) for r in load_records(out, "all")}
    assert recs == {
        "crops_p1.png": ("train", "pedestrian", {"gender": "female", "age": "18-60", "hat": "no", "bag": "backpack"}),
        "crops_p2.png": ("train", "pedestrian", {"gender": "female", "hat": "yes"}),  # follows anna's split
        "crops_p3.png": ("test", "pedestrian", {"gender": "male", "age": "over60", "bag": "none"}),
        "cars_v1.jpg": ("train", "vehicle", {"color": "red", "type": "SUV", "brand": "Audi"}),
        "cars_v2.jpg": ("test", "vehicle", {"color": "white"}),
        "cars_v3.jpg": ("val", "vehicle", {"type": "Sedan"}),
    }
    lines = (out / "train" / "train_label.txt").read_text().splitlines()
    assert [ln.split("$")[0] for ln in lines] == ["cars_v1.jpg", "crops_p1.png", "crops_p2.png"]  # vehicles first
    assert lines[0].split("$")[1] == "red Audi SUV."
    side = [json.loads(ln) for ln in (out / "train" / "train_unknown.jsonl").read_text().splitlines()]
    assert side[1] == {"image": "crops_p2.png", "unknown": ["age", "orientation", "glasses", "handbag", "bag", "holding",
                                                            "sleeve", "upper", "coat", "skirt"]}
    # the caption states only what is known: no orientation clause, her hat
    caption = lines[2].split("$")[2]
    assert caption.startswith(("A female pedestrian", "A walking woman")) and "hat" in caption and "camera" not in caption


def test_a_kind_option_for_single_kind_csvs_and_the_seeded_split(tmp_path):
    text = "image,gender\n" + "".join(f"p{i}.png,{'female' if i % 2 else 'male'}\n" for i in range(20))
    csv = make_csv(tmp_path / "src", text)
    opts = ImportOptions(kind="pedestrian", val_fraction=0.25, test_fraction=0.25, seed=1)
    s = import_dataset("csv", csv, tmp_path / "out", opts, link=True)
    assert {k: c["pedestrian"] for k, c in s.counts.items()} == {"train": 10, "val": 5, "test": 5}
    assert s.known["train"] == {"pedestrian.gender": 10}


@pytest.mark.parametrize("text, extra, message", [
    ("image,gender,nose\np.png,male,big\n", ("--kind", "pedestrian"),
     "unknown column 'nose'; valid columns: image, kind, split, identity, gender, age, orientation"),
    ("image,gender\np.png,man\n", ("--kind", "pedestrian"), "labels.csv:2: gender: unknown class 'man'; valid: female, male"),
    ("image,gender\np.png,male\n", (), "no 'kind' column: give --kind pedestrian or --kind vehicle"),
    ("image,kind,color\np.png,vehicle,\n", (), "labels.csv:2: a vehicle needs at least one of color, type, brand"),
    ("image,kind,gender\np.png,vehicle,male\n", (), "labels.csv:2: gender is not a vehicle group (valid: color, type, brand)"),
    ("image,kind,split,gender\np.png,pedestrian,dev,male\n", (), "labels.csv:2: split: Input should be 'train', 'val' or 'test', got 'dev'"),
    ("img,gender\np.png,male\n", (), "no 'image' column (columns: img, gender)"),
])
def test_csv_errors_name_the_valid_choices(tmp_path, capsys, text, extra, message):
    root = tmp_path / "src"
    root.mkdir()
    tiny_image(root / "p.png", 0)
    (root / "labels.csv").write_text(text)
    line = error_line(*run("data", "import", "csv", root / "labels.csv", "--out", tmp_path / "o", *extra,
                           capsys=capsys)[:3:2])
    assert message in line


def test_a_missing_image_is_named_with_its_row(tmp_path, capsys):
    csv = make_csv(tmp_path / "src")
    (tmp_path / "src" / "cars" / "v2.jpg").unlink()
    line = error_line(*run("data", "import", "csv", csv, "--out", tmp_path / "o", capsys=capsys)[:3:2])
    assert "labels.csv:6: image 'v2.jpg' listed but missing" in line


def test_the_unknown_side_file_is_checked_and_applied_by_every_label_reader(tmp_path):
    csv = make_csv(tmp_path / "src")
    out = import_dataset("csv", csv, tmp_path / "out", ImportOptions(val_fraction=0, test_fraction=0)).out
    label = out / "train" / "train_label.txt"
    assert read_label_file(label)[2].values == {"gender": "female", "hat": "yes"}
    # the label file alone (side file gone) would claim every group
    side = out / "train" / "train_unknown.jsonl"
    text = side.read_text()
    side.unlink()
    assert len(read_label_file(label)[2].values) == 12  # every group of the code
    # groups outside the code come from the side file's values
    side.write_text('{"image": "crops_p2.png", "unknown": [], "values": {"hair": "long", "upper_color_red": "yes"}}\n')
    assert {"hair": "long", "upper_color_red": "yes"}.items() <= read_label_file(label)[2].values.items()
    # evaluation needs complete pedestrian labels: one clear error, not a wrong score
    side.write_text(text)
    with pytest.raises(InputError, match="pedestrian labels leave groups unknown"):
        load_relevance(labels=label)
    for bad, why in [('{"image": "nope.png", "unknown": []}', "'nope.png' is not in the label file"),
                     ('{"image": "cars_v1.jpg", "unknown": ["color"]}', "is a vehicle"),
                     ('{"image": "crops_p1.png", "unknown": ["nose"]}', "not pedestrian groups: nose"),
                     ('{"image": "crops_p1.png", "unknown": [], "values": {"hat": "yes"}}', "hat is in the code"),
                     ('{"image": "crops_p1.png", "unknown": [], "values": {"hair": "blue"}}', "hair: unknown class 'blue'"),
                     ("[1, 2]", 'expected {"image": name, "unknown": [group, ...], "values": {group: class, ...}}')]:
        side.write_text(bad + "\n")
        with pytest.raises(InputError, match="train_unknown.jsonl:1: ") as exc:
            read_label_file(label)
        assert why in str(exc.value)


def test_a_custom_schema_imports_its_own_groups_and_classes(tmp_path, capsys):
    """--schema: a CSV column for a group only a custom schema has (umbrella, bit 21 of a 22-bit
    code) and a colour only it has (beige) reach the label files, and read back under that schema."""
    from attrret.schema import load_schema

    from tests.schema.test_custom_schema import make_toy_schema

    schema_dir = make_toy_schema(tmp_path / "schema")
    text = "image,kind,split,gender,umbrella,color\np.png,pedestrian,train,female,yes,\nv.jpg,vehicle,train,,,beige\n"
    csv = make_csv(tmp_path / "src", text)
    code, _, err = run("data", "import", "csv", csv, "--out", tmp_path / "out", "--schema", schema_dir, capsys=capsys)
    assert code == 0, err
    recs = {r.image: r.values for r in load_records(tmp_path / "out", "all", schema=load_schema(schema_dir))}
    assert recs == {"p.png": {"gender": "female", "umbrella": "yes"}, "v.jpg": {"color": "beige"}}
    code, _, err = run("data", "import", "csv", csv, "--out", tmp_path / "out2", capsys=capsys)  # the packaged schema
    assert code == 1 and "umbrella" in err
