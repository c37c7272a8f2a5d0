"""predict_probs: probabilities per task, flip TTA, one shared front pass per batch for tasks that share it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_classifier_data import make_folder

from attrret.classifiers import checkpoint as checkpoint_mod
from attrret.classifiers.checkpoint import build_classifier, list_model_dirs, load_checkpoint
from attrret.classifiers.preprocess import load_input, to_tensor
from attrret.classifiers.model import Classifier
from attrret.classifiers.engine import predict_probs
from attrret.classifiers.train import TrainConfig, train_tasks
from attrret.errors import CheckpointError, InputError


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("predict")
    data = make_folder(root / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(root / "w"), backbone="timm:test_efficientnet",
                      pretrained=False, img_size=32, epochs=1, batch_size=8)
    train_tasks(cfg, progress=False)
    train_tasks(TrainConfig(**{**cfg.as_dict(), "task": "router"}), progress=False)
    return data, root / "w"


def flip_tta_reference(ck, images) -> np.ndarray:
    """The task's own model, built alone, on the images and their mirror images, averaged: in
    the precision and memory layout predict uses (bf16 autocast where the CPU has fast bf16), so
    the two agree to rounding and a tight tolerance can catch a wrong tail, head or flip."""
    from attrret.classifiers.runtime import autocast

    model = build_classifier(ck).to(memory_format=torch.channels_last)
    pre = ck.preprocess
    x = torch.stack([to_tensor(load_input(i, pre), pre) for i in images])
    with torch.no_grad(), autocast(torch.device("cpu")):
        views = [v.contiguous(memory_format=torch.channels_last) for v in (x, torch.flip(x, dims=[3]))]
        t = ck.meta.get("temperature", 1.0)  # the task's fitted temperature (calibration.py)
        return (sum((model(v).float() / t).softmax(-1) for v in views) / 2).numpy()


def tolerance() -> float:
    """Rounding between two runs of the same computation: fp32 here, bf16 autocast on CPUs with
    fast bf16 (about 3 significant digits)."""
    from attrret.classifiers.runtime import cpu_bf16_is_fast

    return 2e-3 if cpu_bf16_is_fast() else 1e-4


def test_probabilities_match_each_model_with_flip_tta(workdir, monkeypatch):
    data, w = workdir
    images = sorted((data / "images").glob("*.jpg"))[:5]
    calls = []
    real_front = Classifier.front
    monkeypatch.setattr(Classifier, "front", lambda self, x: calls.append(len(x)) or real_front(self, x))
    probs = predict_probs(list_model_dirs(w), images, batch_size=8, progress=False)
    assert calls == [10]  # the image and its flip in one batch, once for both tasks (they share the front)
    monkeypatch.setattr(Classifier, "front", real_front)
    assert set(probs) == {"pedestrian.gender", "router"}
    for task, p in probs.items():
        ck = load_checkpoint(w / "models" / task)
        assert p.dtype == np.float32 and p.shape == (5, len(ck.classes))
        assert np.allclose(p.sum(1), 1.0, atol=1e-4)
        assert np.allclose(p, flip_tta_reference(ck, images), atol=tolerance())
    no_tta = predict_probs(list_model_dirs(w), images, tta_flip=False, progress=False)
    assert not np.allclose(no_tta["router"], probs["router"], atol=1e-6)


def test_each_front_is_built_once_for_all_its_tasks(workdir, monkeypatch):
    """Tasks that share a front share one built trunk (each further task a tail module of its own
    on the same front tensors), not one build each: the build, with its dummy forward, was most of
    a one-image predict's time."""
    data, w = workdir
    builds = []
    real = checkpoint_mod.rebuild_backbone
    monkeypatch.setattr(checkpoint_mod, "rebuild_backbone", lambda *a, **k: builds.append(a[0]) or real(*a, **k))
    images = sorted((data / "images").glob("*.jpg"))[:2]
    probs = predict_probs(list_model_dirs(w), images, batch_size=8, progress=False)
    assert set(probs) == {"pedestrian.gender", "router"} and builds == ["timm:test_efficientnet"]
    monkeypatch.setattr(checkpoint_mod, "rebuild_backbone", real)
    again = predict_probs(list_model_dirs(w), images, batch_size=8, progress=False)
    for task in probs:  # the same answers as models built one per task
        ck = load_checkpoint(w / "models" / task)
        assert np.array_equal(probs[task], again[task])
        assert np.allclose(probs[task], flip_tta_reference(ck, images), atol=tolerance())


def test_errors_name_the_file(workdir, tmp_path):
    data, w = workdir
    with pytest.raises(InputError, match="missing.jpg"):
        predict_probs(list_model_dirs(w), [tmp_path / "missing.jpg"], progress=False)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        predict_probs([tmp_path / "nowhere"], [], progress=False)


def test_a_checkpoint_is_a_backbone(workdir):
    from attrret.classifiers.backbones import create_backbone

    _, w = workdir
    ck = load_checkpoint(w / "models" / "router")
    bb = create_backbone(str(w / "models" / "router"))
    assert bb.arch == "timm:test_efficientnet" and bb.preprocess.hw == (32, 32)
    got = bb.trunk.state_dict()
    assert all(torch.equal(got[k[len("trunk."):]], v) for k, v in ck.state_dict.items() if k.startswith("trunk."))
