"""The multi-task ablation arm: one shared tail, written as ordinary per-task checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_classifier_data import make_folder, small_input_schema

from attrret.classifiers.checkpoint import build_classifier, load_checkpoint
from attrret.classifiers.multitask import train_multitask
from attrret.classifiers.train import TrainConfig
from attrret.errors import AttrretError
from attrret.retrieval.index import open_index
from attrret.retrieval.indexer import build_index, find_members


def test_one_shared_tail_is_written_as_per_task_checkpoints_predict_reads(tmp_path: Path):
    schema = small_input_schema(tmp_path / "schema")
    data = make_folder(tmp_path / "data")
    w = tmp_path / "w"
    cfg = TrainConfig(task="pedestrian", data=str(data), workdir=str(w), backbone="timm:test_efficientnet",
                      pretrained=False, epochs=2, batch_size=8, val_fraction=0.25)
    results = train_multitask(cfg, schema=schema)
    tasks = [r.task for r in results]
    assert len(tasks) >= 2 and all(t.startswith("pedestrian.") for t in tasks)
    models = {t: build_classifier(load_checkpoint(w / "models" / t, schema=schema)) for t in tasks}
    ref = models[tasks[0]].state_dict()
    for t, m in models.items():
        meta = json.loads((w / "models" / t / "metrics.json").read_text())
        assert meta["config"]["multitask"] == tasks and meta["best_epoch"] == results[0].best_epoch
        state = m.state_dict()
        # the trunk is one network: every tensor but the head is the same in every task's checkpoint
        assert all(torch.equal(v, ref[k]) for k, v in state.items() if not k.startswith("head."))
        assert state["head.weight"].shape[0] == len(schema.subject("pedestrian").group(t.split(".")[1]).classes)
    members = find_members(w, schema=schema)
    index = open_index(build_index(data / "images", tmp_path / "index", members, progress=False, schema=schema).path, schema)
    assert set(tasks) <= set(index.header.columns)


def test_a_single_task_is_refused(tmp_path: Path):
    schema = small_input_schema(tmp_path / "schema")
    data = make_folder(tmp_path / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(tmp_path / "w"), backbone="timm:test_efficientnet",
                      pretrained=False, epochs=1, batch_size=8, val_fraction=0.25)
    with pytest.raises(AttrretError, match="two or more"):
        train_multitask(cfg, schema=schema)
