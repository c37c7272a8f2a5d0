"""Images -> pixel tensors -> frozen-front features, computed once and reused every epoch.

The front of the image backbone is frozen, so its output for an image never changes during
training: computing it once per (image, flip) and keeping it (float16, in memory) turns each
training step into a pass over the small trainable tail only. For the default backbone at
160 px the cache is 192 x 5 x 5 values per view, about 19 KB per image with its flip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from attrret.classifiers.runtime import autocast
from attrret.data.images import load_image, resize_pad

__all__ = ["load_pixels", "front_features"]


def load_pixels(
    paths: Sequence[Path], size: int, mean: Sequence[float], std: Sequence[float], wheres: Sequence[str | None] | None = None
) -> torch.Tensor:
    """Load, resize-and-pad and normalise ``paths`` into ``float32[N,3,size,size]``.

    ``wheres`` (label ``file:line`` per image) makes a decode error name the label line too.
    """
    out = torch.empty(len(paths), 3, size, size)
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    for i, path in enumerate(paths):
        im = resize_pad(load_image(path, wheres[i] if wheres else None), size)
        arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out[i] = (arr - m) / s
    return out


@torch.no_grad()
def front_features(
    model,
    paths: Sequence[Path],
    size: int,
    *,
    flips: bool = True,
    batch_size: int = 64,
    wheres: Sequence[str | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Frozen-front features ``float16[N, V, C, h, w]`` with V = 2 (image, mirrored) or 1.

    Images are decoded batch by batch so memory holds one batch of pixels at a time. ``amp``:
    bfloat16 autocast where the CPU has oneDNN bf16 kernels, as attrret's classifiers
    use it (1.5-1.8x on AVX-512; fp32 on AVX2-only CPUs, see ``runtime.autocast``).
    """
    chunks = []
    for start in range(0, len(paths), batch_size):
        stop = min(start + batch_size, len(paths))
        px = load_pixels(paths[start:stop], size, model.mean, model.std, wheres[start:stop] if wheres else None)
        with autocast(torch.device("cpu"), amp):
            views = [model.encode_front(px)]
            if flips:
                views.append(model.encode_front(torch.flip(px, dims=[-1])))
        chunks.append(torch.stack(views, dim=1).to(torch.float16))
        if progress:
            progress(stop, len(paths))
    if not chunks:
        raise ValueError("no images")
    return torch.cat(chunks)
