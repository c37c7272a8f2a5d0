"""Fixtures of the ONNX export tests: a tiny trained workdir whose tasks need three different inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.classifiers.tiny_classifier_data import make_folder


@pytest.fixture(autouse=True)
def fp32(monkeypatch):
    """PyTorch predict in fp32 (bf16 autocast on CPUs with fast bf16 would round to about 3 digits),
    so the graph can be held to 1e-4."""
    from attrret.precisions import PRECISION_ENV

    monkeypatch.setenv(PRECISION_ENV, "fp32")


@pytest.fixture(scope="session")
def geo_workdir(tmp_path_factory) -> tuple[Path, Path]:
    """``(data, workdir)``: pedestrian.gender (2 classes) and .age (3) on the offline pretrained
    tf_efficientnet_lite0 (lean checkpoints, one shared front) at 64x32; on timm's random ``test_efficientnet`` (a stored front), pedestrian.hat at
    64x32 with the ``top`` crop and the router head-only at 24x24. Three preprocessings, three fronts."""
    from attrret.classifiers.train import TrainConfig, train_tasks

    root = tmp_path_factory.mktemp("onnx")
    data = make_folder(root / "data")
    base = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(root / "w"), img_size=(64, 32), epochs=1,
                       batch_size=8, crop="full", device="cpu")
    train_tasks(base, progress=False)
    train_tasks(TrainConfig(**{**base.as_dict(), "task": "pedestrian.age"}), progress=False)  # gender's front, 3 classes
    tiny = {**base.as_dict(), "backbone": "timm:test_efficientnet", "pretrained": False}
    train_tasks(TrainConfig(**{**tiny, "task": "pedestrian.hat", "crop": "top"}), progress=False)
    train_tasks(TrainConfig(**{**tiny, "task": "router", "img_size": (24, 24), "trainable_blocks": 0}), progress=False)
    return data, root / "w"

