"""Per-attribute accuracy and predicted agreement from a real index written by attrret's index writer."""

import json
from pathlib import Path

import numpy as np
import pytest

from attrret.data.track2 import read_label_file
from attrret.errors import AttrretError
from attrret.report import build_report
from attrret.retrieval.index import IndexHeader, write_index
from attrret.schema import load_schema

from .conftest import Track2Set
from .pagedata import page_data

# Deliberate classifier mistakes: (image, task, predicted class).
MISTAKES = [("vehicle_0000001.jpg", "vehicle.color", "white"), ("090002.jpg", "pedestrian.gender", "female")]


def write_test_index(track2_set: Track2Set, path: Path) -> None:
    """Probabilities that are the labels' one-hots (0.9 / rest), except for MISTAKES."""
    schema = load_schema()
    columns, at = {}, 0
    for g in schema.tasks:
        columns[g.task] = (at, at + g.size)
        at += g.size
    lines = read_label_file(track2_set.labels, schema)
    probs = np.full((len(lines), at), 0.01, dtype=np.float32)
    wrong = {(img, task): cls for img, task, cls in MISTAKES}
    for i, line in enumerate(lines):
        truth = {f"{line.kind}.{g}": c for g, c in line.values.items()} | {"router": line.kind}
        for task, cls in truth.items():
            g = schema.task(task)
            probs[i, columns[task][0] + g.index(wrong.get((line.image, task), cls))] = 0.9
    header = IndexHeader(schema=schema.fingerprint, count=0, columns=columns, models=(), img_sizes=(), tta="none", weights=())
    write_index(path, probs, [line.image for line in lines], [{} for _ in lines], header)


def test_accuracy_and_confusion_come_from_the_index(track2_set: Track2Set, tmp_path: Path):
    write_test_index(track2_set, tmp_path / "index")
    out = tmp_path / "report.html"
    summary = build_report(track2_set.submission, out, labels=track2_set.labels, index=tmp_path / "index")
    assert summary.tasks == 16
    html = out.read_text(encoding="utf-8")
    assert 'id="no-accuracy"' not in html
    assert f'data-task="vehicle.color" data-accuracy="{0.75!r}"' in html
    assert f'data-task="pedestrian.gender" data-accuracy="{5 / 6!r}"' in html
    assert 'data-task="router" data-accuracy="1.0"' in html
    assert 'title="red → white: 1"' in html  # the confusion cell of the colour mistake


def test_without_labels_agreement_uses_the_predictions(track2_set: Track2Set, tmp_path: Path):
    write_test_index(track2_set, tmp_path / "index")
    gt = tmp_path / "test_gt.txt"
    gt.write_text("This is a red Geely SUV.$vehicle_0000001.jpg$vehicle_0000003.jpg\n")
    sub = tmp_path / "sub.json"
    sub.write_text('{"results": [{"text": "This is a red Geely SUV.", "image_names": ["vehicle_0000001.jpg", "vehicle_0000003.jpg", "090001.jpg"]}]}')
    out = tmp_path / "report.html"
    summary = build_report(sub, out, gt=gt, images=track2_set.images, index=tmp_path / "index")
    (q,) = page_data(out)["queries"]
    assert q["r"][0][1:] == [2, 3, 1, "color=white"]  # predicted white: agrees with brand and type only
    assert q["r"][1][1:] == [3, 3, 1, ""]
    assert q["r"][2][1:3] == [0, 3] and q["r"][2][4] == "is a pedestrian"
    assert summary.tasks == 0 and 'id="no-accuracy"' in out.read_text(encoding="utf-8")


def test_index_of_another_schema_is_refused(track2_set: Track2Set, tmp_path: Path):
    write_test_index(track2_set, tmp_path / "index")
    header = tmp_path / "index" / "header.json"
    doc = json.loads(header.read_text())
    header.write_text(json.dumps({**doc, "schema": "0000000000000000"}))
    with pytest.raises(AttrretError, match="schema"):
        build_report(track2_set.submission, tmp_path / "r.html", labels=track2_set.labels, index=tmp_path / "index")
