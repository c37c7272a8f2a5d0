"""``--multitask``: one shared tail trained by the one training loop, written as ordinary per-task checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_classifier_data import interrupt_second_evaluation, make_folder, small_input_schema

from attrret.classifiers import train as train_mod
from attrret.classifiers.checkpoint import build_classifier, load_checkpoint
from attrret.classifiers.train import TrainConfig, Unit, train_tasks, unit_loss
from attrret.errors import AttrretError
from attrret.retrieval.index import open_index
from attrret.classifiers.engine import Ensemble
from attrret.retrieval.indexer import build_index, find_members
from attrret.schema import load_schema

TINY = dict(backbone="timm:test_efficientnet", pretrained=False, epochs=2, batch_size=8, val_fraction=0.25)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("multitask")
    schema = small_input_schema(root / "schema")
    data = make_folder(root / "data")
    cfg = TrainConfig(task="pedestrian", data=str(data), workdir=str(root / "w"), multitask=True, **TINY)
    return schema, data, cfg, train_tasks(cfg, progress=False, schema=schema)


def test_one_shared_tail_is_written_as_per_task_checkpoints_predict_reads(shared, tmp_path: Path):
    schema, data, cfg, results = shared
    w = Path(cfg.workdir)
    tasks = [r.task for r in results]
    assert len(tasks) >= 2 and all(t.startswith("pedestrian.") for t in tasks)
    models = {t: build_classifier(load_checkpoint(w / "models" / t, schema=schema)) for t in tasks}
    ref = models[tasks[0]].state_dict()
    for t, m in models.items():
        meta = json.loads((w / "models" / t / "metrics.json").read_text())
        assert meta["config"]["multitask"] and meta["config"]["tasks"] == tasks and meta["best_epoch"] == results[0].best_epoch
        assert meta["task"] == t and {"accuracy", "mA"} <= set(meta["history"][0]["val"])  # each task's own history
        state = m.state_dict()
        # the trunk is one network: every tensor but the head is the same in every task's checkpoint
        assert all(torch.equal(v, ref[k]) for k, v in state.items() if not k.startswith("head."))
        assert state["head.weight"].shape[0] == len(schema.subject("pedestrian").group(t.split(".")[1]).classes)
        assert not (w / "models" / t / "last.pt").exists()
    members = find_members(w, schema=schema)
    index = open_index(build_index(data / "images", tmp_path / "index", Ensemble.open(members), progress=False, schema=schema).path, schema)
    assert set(tasks) <= set(index.header.columns)


def test_resume_continues_an_interrupted_multitask_run(shared, tmp_path, monkeypatch):
    """The mode shares the loop's --resume: interrupted after epoch 1, it ends with the same weights."""
    schema, data, cfg, results = shared
    again = TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "w"), "resume": True})
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        interrupt_second_evaluation(patch)
        train_tasks(again, progress=False, schema=schema)
    resumed = train_tasks(again, progress=False, schema=schema)
    assert [r.weights_sha256 for r in resumed] == [r.weights_sha256 for r in results]
    assert all(r.skipped for r in train_tasks(again, progress=False, schema=schema))


def test_a_single_task_is_refused(tmp_path: Path):
    schema = small_input_schema(tmp_path / "schema")
    data = make_folder(tmp_path / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(tmp_path / "w"), multitask=True, **{**TINY, "epochs": 1})
    with pytest.raises(AttrretError, match="two or more"):
        train_tasks(cfg, progress=False, schema=schema)


def test_unit_loss_masks_unknown_labels_and_is_the_task_loss_for_one_task():
    schema = load_schema()
    gender, hat = schema.subject("pedestrian").group("gender"), schema.subject("pedestrian").group("hat")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, len(gender.classes) + len(hat.classes), generator=g)
    labels = torch.tensor([[0, -1], [1, 0], [-1, 1], [1, -1], [0, 0], [-1, -1]])
    pair = Unit((gender, hat))
    got = unit_loss(logits, labels, pair, [None, None], 0.1)
    known_g, known_h = labels[:, 0] >= 0, labels[:, 1] >= 0
    want = (train_mod.balanced_cross_entropy(logits[known_g, :2], labels[known_g, 0], None, 0.1)
            + train_mod.balanced_cross_entropy(logits[known_h, 2:], labels[known_h, 1], None, 0.1)) / 2
    assert torch.allclose(got, want)
    rows = known_g.nonzero().flatten()
    one = unit_loss(logits[rows, :2], labels[rows, :1], Unit((gender,)), [None], 0.1)
    assert torch.equal(one, train_mod.balanced_cross_entropy(logits[rows, :2], labels[rows, 0], None, 0.1))
