"""Accuracy and mA (mean per-class recall, the pedestrian-attribute literature's metric), and the
average precision of a ranking (what a yes/no group that is only ever ranked is selected by)."""

from __future__ import annotations

import numpy as np

__all__ = ["average_precision", "classification_metrics"]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...] | list[str]) -> dict:
    """``accuracy``, ``mA`` over the classes present in ``y_true``, per-class recall and support.

    Classes absent from ``y_true`` have no recall and are left out of mA rather than counted as 0.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = len(y_true)
    recall: dict[str, float | None] = {}
    support: dict[str, int] = {}
    for k, cls in enumerate(classes):
        mask = y_true == k
        support[cls] = int(mask.sum())
        recall[cls] = float((y_pred[mask] == k).mean()) if mask.any() else None
    present = [r for r in recall.values() if r is not None]
    return {
        "n": int(n),
        "accuracy": float((y_true == y_pred).mean()) if n else 0.0,
        "mA": float(np.mean(present)) if present else 0.0,
        "recall": recall,
        "support": support,
    }


def average_precision(relevant: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision of ranking the items by ``scores``, highest first: the mean, over the
    relevant items, of the precision at each one's rank (ties keep the input order). None when
    no item is relevant."""
    relevant = np.asarray(relevant, bool)
    if not relevant.any():
        return None
    hits = relevant[np.argsort(-np.asarray(scores, np.float64), kind="stable")]
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))
