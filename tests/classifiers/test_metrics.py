"""Accuracy, mA, and the dataset-balanced mA training selects on."""

from __future__ import annotations

import numpy as np
import pytest

from attrret.classifiers.metrics import balanced_mA, classification_metrics

CLASSES = ("a", "b", "c")


def _case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, n)
    return truth, np.where(rng.random(n) < 0.6, truth, rng.integers(0, 3, n))


def test_mA_is_the_mean_recall_over_the_classes_present():
    m = classification_metrics(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), CLASSES)
    assert m["mA"] == pytest.approx((0.5 + 2 / 3) / 2) and m["recall"]["c"] is None and m["accuracy"] == pytest.approx(0.6)


@pytest.mark.parametrize("seed", range(5))
def test_balanced_mA_counts_each_dataset_once(seed):
    (ta, pa), (tb, pb) = _case(seed, 40), _case(seed + 100, 400)
    truth, pred = np.concatenate([ta, tb]), np.concatenate([pa, pb])
    origin = np.repeat([0, 1], [len(ta), len(tb)])
    per = [classification_metrics(t, p, CLASSES)["mA"] for t, p in ((ta, pa), (tb, pb))]
    assert balanced_mA(truth, pred, origin, CLASSES) == pytest.approx(np.mean(per))
    # the larger dataset taken three times over does not move it
    big = np.concatenate([ta, tb, tb, tb]), np.concatenate([pa, pb, pb, pb]), np.repeat([0, 1], [len(ta), 3 * len(tb)])
    assert balanced_mA(*big, CLASSES) == pytest.approx(np.mean(per))
    # one dataset: its plain mA
    assert balanced_mA(ta, pa, np.zeros(len(ta), int), CLASSES) == classification_metrics(ta, pa, CLASSES)["mA"]
    assert balanced_mA(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), CLASSES) == 0.0
