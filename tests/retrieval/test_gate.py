"""Router-gated predict: each image through its own subject's models only.

On a mixed gallery, `--gate router` and `--gate none` must give the same router columns, the
same columns of each image's own subject, uniform columns of the other subject, identical
hard-gated rankings of mixed real captions, and identical attribute records.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attrret.retrieval.index import open_index
from attrret.schema import SUBJECTS, load_schema
from tests.retrieval.conftest import cli

CAPTIONS = ["a man with a hat", "a woman with a backpack and glasses, not wearing a hat", "a red car", "a white or black SUV",
            "a young person facing the camera", "a blue sedan, not a Toyota"]


@pytest.fixture(scope="module")
def trained_mixed(tmp_path_factory):
    """Router, pedestrian.gender, pedestrian.hat and vehicle.color on the tiny colour-coded folder
    (a router that tells the two kinds apart, so the gallery is mixed)."""
    from attrret.classifiers.train import TrainConfig, train_tasks
    from tests.classifiers.tiny_classifier_data import make_folder

    root = tmp_path_factory.mktemp("gate-train")
    data = make_folder(root / "data", n_ped=24, n_veh=16)
    for task in ("router", "pedestrian.gender", "pedestrian.hat", "vehicle.color"):
        train_tasks(TrainConfig(task=task, data=str(data), workdir=str(root / "w"), img_size=32, epochs=4, batch_size=8,
                                backbone="timm:test_efficientnet", pretrained=False, device="cpu"), progress=False)
    return data, root / "w"


@pytest.fixture(scope="module")
def indexes(trained_mixed, tmp_path_factory):
    data, work = trained_mixed
    root = tmp_path_factory.mktemp("gate")
    for gate in ("router", "none"):
        cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(root / gate), "--gate", gate, "--quiet")
    return root


def test_gated_rows_equal_ungated_ones_on_their_subject(indexes):
    schema = load_schema()
    gated, full = open_index(indexes / "router"), open_index(indexes / "none")
    assert gated.header.gate == "router" and full.header.gate == "none" and gated.names == full.names
    router = gated.cols(schema.router.task)
    np.testing.assert_array_equal(gated.probs[:, router], full.probs[:, router])
    kinds = np.asarray(gated.probs[:, router]).argmax(axis=1)
    assert len(set(kinds.tolist())) == 2  # a mixed gallery
    for g in schema.tasks:
        if g.task == schema.router.task or not gated.has(g.task):
            continue
        cols = gated.cols(g.task)
        own = kinds == SUBJECTS.index(g.task.split(".")[0])
        np.testing.assert_allclose(gated.probs[own, cols], full.probs[own, cols], atol=1e-6)
        assert np.all(gated.probs[~own, cols] == np.float32(1.0 / g.size))  # the other subject: uniform


def test_hard_gated_rankings_and_attributes_are_identical(indexes, tmp_path: Path):
    q = tmp_path / "q.txt"
    q.write_text("\n".join(CAPTIONS) + "\n")
    subs = {}
    for gate in ("router", "none"):
        cli("rank", "--queries", str(q), "-o", str(tmp_path / f"{gate}.json"), "--index", str(indexes / gate))
        subs[gate] = json.loads((tmp_path / f"{gate}.json").read_text())
    assert subs["router"] == subs["none"] and ".jpg" in json.dumps(subs["router"]["results"])
    records = {gate: cli("attributes", "--index", str(indexes / gate)).stdout for gate in ("router", "none")}
    def rounded(text: str) -> list:
        return [json.loads(line, parse_float=lambda x: round(float(x), 5)) for line in text.splitlines()]
    assert rounded(records["router"]) == rounded(records["none"])


def test_rows_are_not_reused_across_gates(trained_mixed, indexes, tmp_path: Path):
    data, work = trained_mixed
    out = tmp_path / "index"
    cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(out), "--gate", "none", "--quiet")
    proc = cli("predict", "--images", str(data), "--workdir", str(work), "-o", str(out), "--quiet")
    assert "recomputing every image" in proc.stderr and open_index(out).header.gate == "router"
