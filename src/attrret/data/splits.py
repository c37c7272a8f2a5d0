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

__all__ = ["PA100K_MINI_HOLDOUT", "PA100K_MINI_SEED", "holdout_split"]

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
