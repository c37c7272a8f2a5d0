"""Temperature scaling: fitted on the selection split, stored in the checkpoint, applied by predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from tiny_classifier_data import make_folder

from attrret.classifiers.calibration import TEMPERATURE_RANGE, fit_temperature, view_nll
from attrret.classifiers.checkpoint import load_checkpoint
from attrret.classifiers.train import TrainConfig, train_tasks


def _logits(scale: float, n: int = 400, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two views of logits whose argmax is right 70% of the time, multiplied by ``scale``:
    a large scale is overconfident (wants T > 1), a small one timid (wants T < 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    guess = np.where(rng.random(n) < 0.7, labels, (labels + 1) % classes)
    base = rng.normal(0, 0.3, (n, classes))
    base[np.arange(n), guess] += 1.0
    views = np.stack([base, base + rng.normal(0, 0.05, base.shape)])
    return views * scale, labels


@pytest.mark.parametrize(("scale", "direction"), [(20.0, 1), (0.1, -1)])
def test_the_fit_undoes_over_and_under_confidence(scale, direction):
    logits, labels = _logits(scale)
    t = fit_temperature(logits, labels)
    assert math.copysign(1, math.log(t)) == direction
    assert view_nll(logits, labels, t) < view_nll(logits, labels) - 0.05


def test_the_fit_is_the_minimum_of_a_fine_scan():
    logits, labels = _logits(5.0)
    t = fit_temperature(logits, labels)
    scan = np.exp(np.linspace(math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]), 2001))
    assert view_nll(logits, labels, t) <= min(view_nll(logits, labels, s) for s in scan) + 1e-6


def test_no_samples_or_perfect_scale_keep_one():
    assert fit_temperature(np.zeros((2, 0, 3)), np.zeros(0, int)) == 1.0
    logits = np.zeros((2, 10, 3))  # uniform whatever T is: every temperature ties, 1 is kept
    assert fit_temperature(logits, np.zeros(10, int)) == 1.0
    with pytest.raises(ValueError, match="views, n, classes"):
        fit_temperature(np.zeros((10, 3)), np.zeros(10, int))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, TrainConfig]:
    root = tmp_path_factory.mktemp("calib")
    data = make_folder(root / "data")
    cfg = TrainConfig(task="pedestrian.gender", data=str(data), workdir=str(root / "w"), backbone="timm:test_efficientnet",
                      pretrained=False, img_size=32, epochs=2, batch_size=8)
    train_tasks(cfg, progress=False)
    return root / "w", cfg


def test_training_stores_a_temperature_that_lowers_validation_nll(trained):
    w, _ = trained
    metrics = json.loads((w / "models" / "pedestrian.gender" / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert cal["fitted_on"] == metrics["n_val"] > 0
    assert cal["val_nll_calibrated"] <= cal["val_nll"]
    ck = load_checkpoint(w / "models" / "pedestrian.gender")
    assert ck.meta["temperature"] == pytest.approx(cal["temperature"])
    assert TEMPERATURE_RANGE[0] <= ck.meta["temperature"] <= TEMPERATURE_RANGE[1]


def test_no_calibrate_stores_one(trained, tmp_path):
    _, cfg = trained
    off = TrainConfig(**{**cfg.as_dict(), "workdir": str(tmp_path / "w"), "calibrate": False})
    train_tasks(off, progress=False)
    ck = load_checkpoint(tmp_path / "w" / "models" / "pedestrian.gender")
    assert ck.meta["temperature"] == 1.0
    assert json.loads((tmp_path / "w" / "models" / "pedestrian.gender" / "metrics.json").read_text())["calibration"] is None
