"""Accuracy and mA (mean per-class recall, the pedestrian-attribute literature's metric)."""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_mA", "classification_metrics"]


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


def balanced_mA(y_true: np.ndarray, y_pred: np.ndarray, origin: np.ndarray, classes: tuple[str, ...] | list[str]) -> float:
    """mA on each dataset's images (``origin``: each image's dataset), averaged over the datasets.

    What training selects its epoch on when a task learns from several datasets: each
    dataset's selection split counts once, however many images it has (one dataset: its mA).
    """
    y_true, y_pred, origin = np.asarray(y_true), np.asarray(y_pred), np.asarray(origin)
    if len(y_true) == 0:
        return 0.0
    return float(np.mean([classification_metrics(y_true[origin == d], y_pred[origin == d], classes)["mA"]
                          for d in np.unique(origin)]))
