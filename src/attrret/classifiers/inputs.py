"""Image -> normalised tensor, with the per-task crop and label-preserving augmentation.

Kept inside the classifiers package (on :func:`attrret.data.images.load_image` and
``resize_pad``) so training and inference preprocess identically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from attrret.classifiers.backbones import Preprocess
from attrret.data.images import load_image, resize_pad
from attrret.schema import Schema, load_schema

__all__ = ["CROPS", "load_input", "to_tensor", "augment_image", "color_safe"]

#: Vertical crop regions (top, bottom) as fractions of the image height. Each crop is a different
#: model input, so the trunk cache and predict key their features by it.
CROPS: dict[str, tuple[float, float]] = {"full": (0.0, 1.0), "top": (0.0, 0.5), "upper": (0.0, 0.6), "bottom": (0.4, 1.0)}

def color_safe(task: str, schema: Schema | None = None) -> bool:
    """Whether photometric jitter keeps ``task``'s label true (flips and geometry always do):
    the group's ``photometric`` hint in the schema TOML (false for colours)."""
    return (schema or load_schema()).task(task).photometric


def crop_image(im: Image.Image, crop: str) -> Image.Image:
    """The vertical band ``crop`` of :data:`CROPS` (``full``: the image itself)."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; use one of {', '.join(CROPS)}")
    top, bottom = CROPS[crop]
    if (top, bottom) == (0.0, 1.0):
        return im
    return im.crop((0, int(top * im.height), im.width, max(int(top * im.height) + 1, int(bottom * im.height))))


def to_tensor(im: Image.Image, pre: Preprocess) -> torch.Tensor:
    arr = np.asarray(im, dtype=np.float32) / 255.0
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    mean = torch.tensor(pre.mean).view(3, 1, 1)
    std = torch.tensor(pre.std).view(3, 1, 1)
    return (t - mean) / std


def load_input(path: str | Path, pre: Preprocess, crop: str = "full", where: str | None = None) -> Image.Image:
    """Decode, crop and resize-pad ``path`` to the model's square input (a PIL image)."""
    return resize_pad(crop_image(load_image(path, where), crop), pre.size)


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
