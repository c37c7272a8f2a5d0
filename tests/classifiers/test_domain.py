"""The domain gate's fit and file: what attrret.classifiers.domain promises, checked by rule."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from attrret.classifiers.domain import GATE_FLOOR, DomainGate, DomainGateHead, accuracy_by_dataset, fit_logistic, pooled
from attrret.errors import CheckpointError
from attrret.geometry import Preprocess


def _gate(weight, bias=0.0) -> DomainGate:
    return DomainGate(arch="a", front_hash="f" * 20, preprocess=Preprocess(32, 16, (0.5,) * 3, (0.5,) * 3), cut=3, crop="full",
                      weight=tuple(map(float, weight)), bias=float(bias), datasets=("A", "B"))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sizes", [(200, 200), (40, 400), (400, 30)])
def test_the_fit_separates_two_feature_clouds_whatever_their_scale_and_sizes(seed, sizes):
    """Two Gaussian clouds apart along a random direction, on features of wildly different
    scales and offsets (as a front's channels are): the fitted gate puts each cloud on its own
    side, the small one too (class-balanced), and its probabilities are those of the
    standardised model (the standardisation folded into weight and bias)."""
    rng = np.random.default_rng(seed)
    d = 12
    scale, offset = 10.0 ** rng.uniform(-2, 2, d), rng.normal(0, 50, d)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    x = np.concatenate([rng.normal(size=(n, d)) + (3.0 if k == 0 else -3.0) * direction for k, n in enumerate(sizes)])
    y = np.repeat([1.0, 0.0], sizes)
    x = x * scale + offset
    weight, bias = fit_logistic(x, y)
    prob = _gate(weight, bias).probability(x)
    acc = accuracy_by_dataset(prob, np.repeat([0, 1], sizes), ("A", "B"))
    assert acc["A"] > 0.95 and acc["B"] > 0.95, acc


def test_the_fit_refuses_what_it_cannot_learn():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="both"):
        fit_logistic(x, np.ones(4))
    with pytest.raises(ValueError, match="0/1 labels"):
        fit_logistic(x, np.array([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="0/1 labels"):
        fit_logistic(x, np.ones(3))


def test_the_head_averages_the_views_logits_and_floors_the_probability():
    """The engine's head: channel means of each view, the logits averaged over the views, then
    the sigmoid, never below GATE_FLOOR; equal to DomainGate.probability on one view."""
    gen = torch.Generator().manual_seed(0)
    gate = _gate(torch.randn(5, generator=gen).tolist(), bias=0.3)
    head = DomainGateHead(gate)
    feats = torch.randn(2 * 3, 5, 4, 2, generator=gen)  # 2 views of 3 images
    z = pooled(feats).double() @ torch.tensor(gate.weight, dtype=torch.float64) + gate.bias
    want = torch.sigmoid(z.reshape(2, 3).mean(0)).numpy()
    assert np.allclose(head(feats, 2).squeeze(1).numpy(), want, atol=1e-6)
    assert np.allclose(head(feats[:3], 1).squeeze(1).numpy(), gate.probability(pooled(feats[:3]).numpy()), atol=1e-6)
    low = DomainGateHead(dataclasses.replace(gate, bias=-1e4))
    assert (low(feats, 2) == torch.tensor(GATE_FLOOR, dtype=torch.float32)).all()


def test_a_gate_file_round_trips_and_a_bad_one_is_one_clear_error(tmp_path):
    gate = dataclasses.replace(_gate([0.5, -1.0, 2.0], bias=0.25), metrics={"val_accuracy": {"A": 0.99}})
    path = tmp_path / "g.json"
    gate.save(path)
    assert DomainGate.load(path) == gate
    doc = json.loads(path.read_text())
    for broken in ({**doc, "format": 99}, {k: v for k, v in doc.items() if k != "weight"}, {**doc, "bias": "nan"},
                   {**doc, "weight": [1.0, float("inf")]}):
        path.write_text(json.dumps(broken))
        with pytest.raises(CheckpointError, match="g.json"):
            DomainGate.load(path)
    path.write_text("")
    with pytest.raises(CheckpointError, match="not a readable domain gate"):
        DomainGate.load(path)
    with pytest.raises(CheckpointError, match="not a readable domain gate"):
        DomainGate.load(tmp_path / "missing.json")
