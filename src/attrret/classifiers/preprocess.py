"""The one preprocessing path: image -> crop -> resize-pad -> tensor -> (image, flip) -> frozen front.

Training (cached and on the fly), the trunk cache, predict and the CLIP baseline all go through
:func:`load_batch` and :func:`front_views`, so "the same preprocessing" holds by construction
rather than by four copies kept in step. Only training adds something: label-preserving
augmentation (:func:`augment_image`), passed to :func:`load_batch` as ``transform``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from attrret.geometry import Preprocess
from attrret.classifiers.runtime import Precision, autocast
from attrret.data.images import load_image, resize_pad
from attrret.geometry import CROPS

__all__ = ["CROPS", "fit_input", "load_input", "load_inputs", "to_tensor", "load_batch", "front_views", "channels_last", "augment_image",
           "crop_image"]


def crop_image(im: Image.Image, crop: str) -> Image.Image:
    """The vertical band ``crop`` of :data:`CROPS` (``full``: the image itself)."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; use one of {', '.join(CROPS)}")
    top, bottom = CROPS[crop]
    if (top, bottom) == (0.0, 1.0):
        return im
    return im.crop((0, int(top * im.height), im.width, max(int(top * im.height) + 1, int(bottom * im.height))))


def to_tensor(im: Image.Image, pre: Preprocess) -> torch.Tensor:
    """A model-input image as ``float32[3, H, W]``, normalised with ``pre``'s mean and std."""
    arr = np.asarray(im, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    return (t - mean) / std


def fit_input(im: Image.Image, pre: Preprocess, crop: str = "full") -> Image.Image:
    """Crop and resize-pad a decoded image to the model's ``H x W`` input (a PIL image)."""
    return resize_pad(crop_image(im, crop), pre.hw)


def load_input(path: str | Path, pre: Preprocess, crop: str = "full", where: str | None = None) -> Image.Image:
    """Decode, crop and resize-pad ``path`` to the model's ``H x W`` input (a PIL image)."""
    return fit_input(load_image(path, where), pre, crop)


def load_batch(paths: Sequence[str | Path], pre: Preprocess, crop: str = "full", wheres: Sequence[str | None] | None = None,
               transform: Callable[[Image.Image], Image.Image] | None = None) -> torch.Tensor:
    """``float32[N, 3, H, W]`` model inputs for ``paths`` (in order), on the CPU.

    ``wheres`` (a label ``file:line`` per image) makes a decode error name the label line too;
    ``transform`` (training's augmentation) is applied to each resized image, in order.
    """
    ims = (load_input(p, pre, crop, wheres[i] if wheres else None) for i, p in enumerate(paths))
    return torch.stack([to_tensor(transform(im) if transform else im, pre) for im in ims])


def load_inputs(paths: Sequence[str | Path], inputs: Sequence[tuple[Preprocess, str]]) -> list[torch.Tensor]:
    """:func:`load_batch` for several ``(preprocessing, crop)`` inputs at once (the predict
    engine's): ``float32[N, 3, H, W]`` per input, each image decoded once."""
    per: list[list[torch.Tensor]] = [[] for _ in inputs]
    for p in paths:
        im = load_image(p)
        for j, (pre, crop) in enumerate(inputs):
            per[j].append(to_tensor(fit_input(im, pre, crop), pre))
    return [torch.stack(ts) if ts else torch.zeros(0, 3, pre.height, pre.width) for ts, (pre, _) in zip(per, inputs)]


def front_views(front: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device,
                precision: Precision | str | None = None, flips: bool = True) -> list[torch.Tensor]:
    """The frozen front's float32 output for the batch ``x`` and (``flips``) its mirror image.

    ``x`` goes to ``device`` in channels-last layout on a CPU (the layout oneDNN's convolutions
    are fastest in) and runs without gradients under :func:`runtime.autocast` in ``precision``
    (None: ``$ATTRRET_PRECISION``, else auto). The flip is the one augmentation the trunk cache
    keeps and predict's test-time augmentation.
    """
    x = x.to(device)
    with torch.no_grad(), autocast(device, precision):
        return [front(channels_last(v, device)).float() for v in ((x, torch.flip(x, dims=[3])) if flips else (x,))]


def channels_last(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A 4-d batch in channels-last layout on a CPU (as the CPU models are), else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and device.type == "cpu" else x


def augment_image(im: Image.Image, rng: np.random.Generator, photometric: bool) -> Image.Image:
    """Random flip, small scale/shift, and (when ``photometric``) brightness/contrast jitter.

    No hue change ever; for colour tasks no photometric change at all.
    """
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    w, h = im.size
    scale = rng.uniform(0.85, 1.0)
    cw, ch = int(w * scale), int(h * scale)
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = im.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR)
    if photometric:
        im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
        im = ImageEnhance.Contrast(im).enhance(rng.uniform(0.8, 1.2))
    return im
