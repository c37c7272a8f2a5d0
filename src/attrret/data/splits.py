"""Deterministic splits: the one module that decides which items train, select and test.

- :func:`holdout_split`: the fixed split behind every real-image number in the README: the
  items sorted by image name, permuted with ``numpy.random.default_rng(seed)``, the last
  ``n_holdout`` held out. For ``pa100k-mini`` (1,500 images) with the defaults this is the
  documented 1,200 train / 300 held split.
- :func:`stratified_split`: a selection split in which every class keeps its proportion.
- :func:`fold_split`: fold ``fold`` of a stratified ``n_folds``-fold split (``--fold k/K``).
- :func:`identity_split`: train / val / test by identity (``attrret data import`` of a set
  without a split): no person is in two splits.

Items are anything; the stratified splits read each item's class with ``label`` (default:
``item[1]``, the class index of a ``(path, class)`` training sample). Every function is
independent of input order given the same items and seed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np

from attrret.errors import AttrretError

__all__ = ["PA100K_MINI_HOLDOUT", "holdout_split", "stratified_split", "fold_split", "identity_split", "parse_fold"]

T = TypeVar("T")

PA100K_MINI_HOLDOUT = 300


def _second(item: Any) -> Hashable:
    return item[1]


def holdout_split(items: Sequence[T], n_holdout: int = PA100K_MINI_HOLDOUT, seed: int = 0, key=None) -> tuple[list[T], list[T]]:
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


def _by_class(items: Sequence[T], seed: int, label: Callable[[T], Hashable]) -> list[list[int]]:
    """Indices of each class (classes in sorted order), each shuffled by one seeded generator."""
    rng = np.random.default_rng(seed)
    groups: dict[Hashable, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(label(item), []).append(i)
    return [[idx[j] for j in rng.permutation(len(idx))] for _, idx in sorted(groups.items())]


def _partition(items: Sequence[T], val_idx: set[int]) -> tuple[list[T], list[T]]:
    return [s for i, s in enumerate(items) if i not in val_idx], [s for i, s in enumerate(items) if i in val_idx]


def stratified_split(items: Sequence[T], fraction: float, seed: int = 0,
                     label: Callable[[T], Hashable] = _second) -> tuple[list[T], list[T]]:
    """``(train, val)``: per class, ``round(fraction * n)`` items go to val, at least one when the
    class has two or more (so rare classes, hat 4% or holding 1%, appear on both sides) and
    none when it has one. Both lists keep the input order."""
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    val_idx: set[int] = set()
    for idx in _by_class(items, seed, label):
        n = min(max(round(fraction * len(idx)), 1), len(idx) - 1) if len(idx) >= 2 else 0
        val_idx.update(idx[:n])
    return _partition(items, val_idx)


def fold_split(items: Sequence[T], fold: int, n_folds: int, seed: int = 0,
               label: Callable[[T], Hashable] = _second) -> tuple[list[T], list[T]]:
    """``(train, val)`` for fold ``fold`` (0-based) of a stratified ``n_folds``-fold split: within
    each shuffled class, item j goes to fold ``j % n_folds``; the folds partition the items."""
    if n_folds < 2 or not 0 <= fold < n_folds:
        raise ValueError(f"need n_folds >= 2 and 0 <= fold < n_folds, got fold={fold}, n_folds={n_folds}")
    val_idx = {i for idx in _by_class(items, seed, label) for j, i in enumerate(idx) if j % n_folds == fold}
    return _partition(items, val_idx)


def identity_split(identities: Sequence[str], val_fraction: float, test_fraction: float, seed: int = 0) -> dict[str, str]:
    """``{identity: "train" | "val" | "test"}``: the distinct identities, sorted, permuted with
    ``numpy.random.default_rng(seed)``; the first ``round(test_fraction * n)`` go to test, the
    next ``round(val_fraction * n)`` to val, the rest to train. Fractions count identities, not
    images, and every image of an identity follows it, so no person is in two splits."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val and test fractions must be in [0, 1) and sum to less than 1, got {val_fraction} and {test_fraction}")
    ordered = sorted(set(identities))
    perm = np.random.default_rng(seed).permutation(len(ordered))
    n_test = round(test_fraction * len(ordered))
    n_val = round(val_fraction * len(ordered))
    out = {}
    for rank, i in enumerate(perm):
        out[ordered[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def parse_fold(spec: str | None) -> tuple[int, int] | None:
    """``"k/K"`` (``--fold``) as ``(fold, n_folds)``; None for no fold."""
    if not spec:
        return None
    try:
        k, n = (int(v) for v in spec.split("/"))
    except ValueError:
        raise AttrretError(f"--fold must look like k/K (e.g. 0/5), got {spec!r}") from None
    if not (n >= 2 and 0 <= k < n):
        raise AttrretError(f"--fold {spec}: need K >= 2 and 0 <= k < K")
    return k, n
