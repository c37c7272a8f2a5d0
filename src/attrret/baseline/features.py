"""Images -> frozen-front features, computed once and reused every epoch.

The front of the image backbone is frozen, so its output for an image never changes during
training: computing it once per (image, flip) and keeping it (float16, in memory) turns each
training step into a pass over the small trainable tail only. For the default backbone at
160 px the cache is 192 x 5 x 5 values per view, about 19 KB per image with its flip.

Images reach the front through the classifiers' one preprocessing path
(:func:`attrret.classifiers.preprocess.load_batch` and ``front_views``), so the baseline sees its
inputs exactly as attrret's classifiers do: the comparison is of methods, not of resizing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from attrret.classifiers.preprocess import front_views, load_batch

__all__ = ["front_features"]


def front_features(
    model,
    paths: Sequence[Path],
    *,
    flips: bool = True,
    batch_size: int = 64,
    wheres: Sequence[str | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    precision: str | None = "fp32",
) -> torch.Tensor:
    """Frozen-front features ``float16[N, V, C, h, w]`` with V = 2 (image, mirrored) or 1.

    ``model.preprocess`` says the input (size, normalisation). Images are decoded batch by batch
    so memory holds one batch of pixels at a time. ``wheres`` (label ``file:line`` per image)
    makes a decode error name the label line too. ``precision``: as attrret's classifiers take
    it (``auto``: bf16 autocast where the CPU has oneDNN bf16 kernels, 1.5-1.8x on AVX-512; see
    ``runtime.resolve_precision``).
    """
    chunks = []
    for start in range(0, len(paths), batch_size):
        stop = min(start + batch_size, len(paths))
        px = load_batch(paths[start:stop], model.preprocess, wheres=wheres[start:stop] if wheres else None)
        views = front_views(model.encode_front, px, torch.device("cpu"), precision, flips=flips)
        chunks.append(torch.stack(views, dim=1).to(torch.float16))
        if progress:
            progress(stop, len(paths))
    if not chunks:
        raise ValueError("no images")
    return torch.cat(chunks)
