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


def test_a_subset_reads_the_cache_of_its_superset_unless_an_image_changed(setup, tmp_path, monkeypatch):
    """The anchor member's images inside the several-dataset run's: read from that cache, no
    front computed; a changed image of the subset makes it compute its own (never stale)."""
    bb, model, images = setup
    logs: list[str] = []
    whole = _open(bb, model, images, tmp_path, logs)
    calls = []
    real = Classifier.front
    monkeypatch.setattr(Classifier, "front", lambda self, x: calls.append(len(x)) or real(self, x))
    part = _open(bb, model, images[1:4], tmp_path, logs)
    assert part.reused and calls == [1] and set(part.rows) == set(images[1:4])  # [1]: the output-shape probe only
    assert np.array_equal(part.batch(images[1:4], [0, 1, 0]).numpy(), whole.batch(images[1:4], [0, 1, 0]).numpy())
    assert any("3 of its 6 images" in m for m in logs)
    os.utime(images[2], ns=(5, 5))
    fresh = _open(bb, model, images[1:4], tmp_path, logs)
    assert not fresh.reused and sum(calls) > 2 and set(fresh.rows) == set(images[1:4])


def test_the_members_of_one_run_share_its_cache():
    from attrret.classifiers.train import cache_root

    assert cache_root("/w") == Path("/w")
    assert cache_root("/w/members/anchor") == Path("/w") and cache_root("/w/members/x1.25") == Path("/w")
    assert cache_root("/w/other/anchor") == Path("/w/other/anchor")
