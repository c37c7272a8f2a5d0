"""Deterministic splits.

``holdout_split`` is the fixed split used for every real-image number in the README: the
records sorted by image name, permuted with ``numpy.random.default_rng(seed)``, and the last
``n_holdout`` held out. For ``pa100k-mini`` (1,500 images) with the defaults this is the
documented 1,200 train / 300 held split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

__all__ = ["PA100K_MINI_HOLDOUT", "PA100K_MINI_SEED", "holdout_split", "stratified_split", "kfold_split"]

T = TypeVar("T")

PA100K_MINI_HOLDOUT = 300
PA100K_MINI_SEED = 0


def holdout_split(items: Sequence[T], n_holdout: int = PA100K_MINI_HOLDOUT, seed: int = PA100K_MINI_SEED, key=None) -> tuple[list[T], list[T]]:
    """Split ``items`` into ``(train, held)`` reproducibly, independent of input order.

    ``key`` gives the sort key (default: the ``image`` attribute, else the item itself).
    """
    if not 0 < n_holdout < len(items):
        raise ValueError(f"cannot hold out {n_holdout} of {len(items)} items")
    key = key or (lambda x: getattr(x, "image", x))
    ordered = sorted(items, key=key)
    perm = np.random.default_rng(seed).permutation(len(ordered))
    train = [ordered[i] for i in sorted(perm[:-n_holdout])]
    held = [ordered[i] for i in sorted(perm[-n_holdout:])]
    return train, held


def _by_class(labels: Sequence, seed: int) -> list[np.ndarray]:
    """Indices of each class (classes in sorted order), each permuted by one seeded generator."""
    rng = np.random.default_rng(seed)
    arr = np.asarray(list(labels))
    out = []
    for cls in sorted(set(arr.tolist()), key=str):
        idx = np.flatnonzero(arr == cls)
        out.append(idx[rng.permutation(len(idx))])
    return out


def stratified_split(labels: Sequence, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train_idx, val_idx)`` with every class split in the same proportion (sorted indices).

    Each class with at least two samples keeps at least one sample on each side, so rare
    classes (hat 4%, holding 1%) appear in both training and validation.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train: list[int] = []
    val: list[int] = []
    for idx in _by_class(labels, seed):
        n_val = int(round(len(idx) * val_fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return sorted(train), sorted(val)


def kfold_split(labels: Sequence, k: int, fold: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train_idx, val_idx)`` for ``fold`` of a stratified ``k``-fold split; the folds partition the data."""
    if k < 2 or not 0 <= fold < k:
        raise ValueError(f"need k >= 2 and 0 <= fold < k, got k={k}, fold={fold}")
    train: list[int] = []
    val: list[int] = []
    offset = 0
    for idx in _by_class(labels, seed):
        # deal the class round-robin, continuing where the previous class stopped, so fold sizes stay even
        folds = (np.arange(len(idx)) + offset) % k
        offset = (offset + len(idx)) % k
        val += idx[folds == fold].tolist()
        train += idx[folds != fold].tolist()
    return sorted(train), sorted(val)
