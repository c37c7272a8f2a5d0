"""Mixed precision is correct by construction: every task of a front group runs its own tail.

Predict once loaded each task's tail into one shared module in turn, inside one autocast region;
autocast caches the low-precision copy of each weight for the region, so under bf16 (and CUDA
fp16) every task after the first ran the first task's tail. These tests force bf16 and fp16, so
they run that path on every host, with or without native bf16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_classifier_data import make_folder

from attrret.classifiers.checkpoint import build_classifier, list_model_dirs, load_checkpoint, save_checkpoint
from attrret.classifiers.preprocess import load_input, to_tensor
from attrret.classifiers.engine import group_key
from attrret.classifiers.engine import predict_probs
from attrret.classifiers.runtime import resolve_precision
from attrret.classifiers.train import TrainConfig, train_tasks
from attrret.precisions import MIXED_TOLERANCE

TASKS = ("pedestrian.gender", "pedestrian.hat", "pedestrian.sleeve")


@pytest.fixture(scope="module")
def group(tmp_path_factory) -> tuple[list[Path], list[Path]]:
    """Three pedestrian tasks on one random-init front (one predict group), each tail then made
    clearly its own: one epoch barely moves tails from their shared initialisation, and tails
    that are alike would hide a task running another task's tail. Heads x20 at temperature 1 make
    the probabilities decisive (a tiny model's are all near 0.5, where every tail looks alike)."""
    root = tmp_path_factory.mktemp("precision")
    data = make_folder(root / "data")
    base = TrainConfig(task=TASKS[0], data=str(data), workdir=str(root / "w"), backbone="timm:test_efficientnet",
                       pretrained=False, img_size=32, epochs=1, batch_size=8, precision="fp32")
    for task in TASKS:
        train_tasks(TrainConfig(**{**base.as_dict(), "task": task}), progress=False)
    dirs = list_model_dirs(root / "w")
    gen = torch.Generator().manual_seed(0)
    for d in dirs:
        ck = load_checkpoint(d)
        tail = build_classifier(ck).tail_keys()  # the front stays as trained: the group key promises one front
        state = {k: v + v.float().std() * torch.randn(v.shape, generator=gen) if k in tail and v.dim() > 1 else v
                 for k, v in ck.stored.items()}
        state["head.weight"] = 20 * state["head.weight"]
        save_checkpoint(d / "model.pt", {**ck.meta, "temperature": 1.0}, state)
    return dirs, sorted((data / "images").glob("*.jpg"))


def alone(ck, images, precision: str) -> np.ndarray:
    """The task's own model, built by itself (no other task anywhere near it), with flip TTA."""
    model = build_classifier(ck).to(memory_format=torch.channels_last)
    pre = ck.preprocess
    x = torch.stack([to_tensor(load_input(i, pre), pre) for i in images])
    views = [v.contiguous(memory_format=torch.channels_last) for v in (x, torch.flip(x, dims=[3]))]
    with torch.no_grad(), resolve_precision(precision, torch.device("cpu")).autocast():
        logits = [model(v).float() for v in views]
    t = ck.meta.get("temperature", 1.0)
    return (sum((z / t).softmax(-1) for z in logits) / 2).numpy()


def test_the_tasks_share_one_front_group(group):
    dirs, _ = group
    assert len({group_key(load_checkpoint(d)) for d in dirs}) == 1  # else the tests below prove nothing


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_each_task_of_a_front_group_gets_its_own_probabilities(group, precision):
    dirs, images = group
    ref = predict_probs(dirs, images, precision="fp32", progress=False)
    got = predict_probs(dirs, images, precision=precision, progress=False)
    for d in dirs:
        ck = load_checkpoint(d)
        p, q = got[ck.task], ref[ck.task]
        assert p.dtype == np.float32 and np.isfinite(p).all()
        assert np.abs(p - q).max() <= MIXED_TOLERANCE, ck.task
        assert (p.argmax(1) == q.argmax(1)).mean() >= 0.9, ck.task
        assert np.allclose(q, alone(ck, images, "fp32"), atol=1e-4), ck.task  # fp32: exactly the task's own model
        assert np.abs(p - alone(ck, images, precision)).max() <= 0.02, ck.task  # rounding only, not another tail


def test_the_tails_are_different_enough_to_tell_apart(group):
    """The guard on the test itself: swapping two tasks' tails moves probabilities far beyond the tolerance."""
    dirs, images = group
    first, second = load_checkpoint(dirs[0]), load_checkpoint(dirs[1])
    keys = build_classifier(first).tail_keys() - {"head.weight", "head.bias"}
    swapped = build_classifier(second)
    swapped.load_state_dict({k: first.stored[k] for k in keys}, strict=False)
    pre = second.preprocess
    x = torch.stack([to_tensor(load_input(i, pre), pre) for i in images])
    with torch.no_grad():
        wrong = swapped(x).softmax(-1).numpy()
        right = build_classifier(second)(x).softmax(-1).numpy()
    assert np.abs(wrong - right).max() > 2 * MIXED_TOLERANCE
