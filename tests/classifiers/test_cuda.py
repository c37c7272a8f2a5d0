"""The CUDA path: fp16 AMP with a GradScaler when training, fp16 autocast when predicting.

Runs wherever CUDA is present and skips elsewhere (the CPU suite forces bf16 and fp16 instead:
tests/classifiers/test_precision.py, tests/retrieval/test_precision_paths.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_classifier_data import make_folder

from attrret.classifiers.checkpoint import list_model_dirs, load_checkpoint
from attrret.classifiers.engine import predict_probs
from attrret.classifiers.train import TrainConfig, train_tasks
from attrret.precisions import MIXED_TOLERANCE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device on this host (torch.cuda.is_available() is False); the CUDA AMP path runs where there is one")


@pytest.mark.parametrize("backbone", ["timm:test_efficientnet", "timm:eva02_tiny_patch14_224.mim_in22k"])
def test_cuda_amp_trains_and_predicts_each_task_like_fp32(tmp_path, backbone):
    """Tasks trained on CUDA in fp16 AMP (GradScaler) are finite, record fp16, and predict within the
    tolerance of their own fp32 predictions on the CPU; EVA02 (a ViT, LayerNorms) at random init."""
    data = make_folder(tmp_path / "data")
    img = 32 if "efficientnet" in backbone else 224
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(tmp_path / "w"), backbone=backbone, pretrained=False,
                      img_size=img, epochs=1, batch_size=8, device="cuda")
    for task in ("pedestrian.gender", "pedestrian.hat"):
        train_tasks(TrainConfig(**{**cfg.as_dict(), "task": task}), progress=False)
    dirs = list_model_dirs(tmp_path / "w")
    assert {load_checkpoint(d).meta["precision"] for d in dirs} == {"fp16"}
    images = sorted((data / "images").glob("*.jpg"))
    gpu = predict_probs(dirs, images, device="cuda", progress=False)  # auto: fp16 AMP
    cpu = predict_probs(dirs, images, device="cpu", precision="fp32", progress=False)
    for task in gpu:
        assert gpu[task].dtype == np.float32 and np.isfinite(gpu[task]).all()
        assert np.abs(gpu[task] - cpu[task]).max() <= MIXED_TOLERANCE, task
