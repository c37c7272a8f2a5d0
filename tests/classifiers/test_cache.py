"""Trunk cache: computed once, reused, never stale, bypassed over budget."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attrret.classifiers.backbones import create_backbone
from attrret.classifiers.cache import open_or_build
from attrret.classifiers.preprocess import load_input, to_tensor
from attrret.classifiers.model import Classifier


@pytest.fixture
def setup(tiny_folder: Path):
    torch.manual_seed(0)
    bb = create_backbone("timm:test_efficientnet", pretrained=False, img_size=32)
    model = Classifier(bb.trunk, bb.feature_dim, 2, trainable_blocks=1).eval()
    images = sorted(str(p.resolve()) for p in (tiny_folder / "images").glob("*.jpg"))[:6]
    return bb, model, images


def _open(bb, model, images, workdir, logs, budget=2**30):
    return open_or_build(model, arch=bb.arch, pre=bb.preprocess, crop="full", images=images, workdir=workdir,
                         device=torch.device("cpu"), precision="fp32", batch_size=4, budget_bytes=budget, log=logs.append)


def test_features_are_the_front_output_and_are_reused(setup, tmp_path):
    bb, model, images = setup
    logs: list[str] = []
    first = _open(bb, model, images, tmp_path, logs)
    assert first is not None and not first.reused
    x = torch.stack([to_tensor(load_input(p, bb.preprocess), bb.preprocess) for p in images[:2]])
    with torch.no_grad():
        want = model.front(x)
        want_flip = model.front(torch.flip(x, dims=[3]))
    assert torch.allclose(first.batch(images[:2], [0, 0]), want, atol=2e-2, rtol=1e-2)
    assert torch.allclose(first.batch(images[:2], [1, 1]), want_flip, atol=2e-2, rtol=1e-2)
    second = _open(bb, model, images, tmp_path, logs)
    assert second.reused and second.directory == first.directory
    assert np.array_equal(np.asarray(second.features), np.asarray(first.features))


def test_changed_image_or_weights_invalidate(setup, tmp_path):
    bb, model, images = setup
    logs: list[str] = []
    first = _open(bb, model, images, tmp_path, logs)
    Image.new("RGB", (24, 48), (255, 255, 255)).save(images[0])
    os.utime(images[0], ns=(1, 1))  # new content and mtime
    again = _open(bb, model, images, tmp_path, logs)
    assert not again.reused and any("stale" in m for m in logs)
    assert not np.array_equal(np.asarray(again.features[again.rows[images[0]]]), np.asarray(first.features[first.rows[images[0]]]))
    with torch.no_grad():
        next(iter(model.frozen_modules()[0].parameters())).mul_(2.0)
    other = _open(bb, model, images, tmp_path, logs)
    assert not other.reused and other.directory != first.directory  # keyed by the front's weights


def test_over_budget_is_bypassed_with_a_message(setup, tmp_path):
    bb, model, images = setup
    logs: list[str] = []
    assert _open(bb, model, images, tmp_path, logs, budget=10) is None
    assert any("bypassed" in m and "--cache-budget-gb" in m for m in logs)
    assert not (tmp_path / "cache").exists()
