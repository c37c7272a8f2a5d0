"""Label-safe training augmentation, chosen per task.

An augmentation must not change the answer: a hue shift turns a red car into an orange
one (vehicle.color), so colour tasks get brightness/contrast only; a horizontal flip keeps
every Track-2 attribute (side stays side), so it is always allowed. Geometric jitter is
small (a few percent) so crops of the head keep the hat and glasses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

__all__ = ["Augment", "augment_for", "COLOR_TASKS"]

#: Tasks whose label is a colour: no hue or saturation changes for them.
COLOR_TASKS = frozenset({"vehicle.color"})


@dataclass(frozen=True)
class Augment:
    """A random, label-preserving PIL -> PIL transform."""

    hue: float = 0.04  # max hue rotation as a fraction of the circle
    saturation: float = 0.25
    brightness: float = 0.25
    contrast: float = 0.25
    shift: float = 0.05  # max translation as a fraction of the size
    scale: float = 0.08  # max zoom in/out
    blur: float = 0.3  # probability of a light blur

    def __call__(self, im: Image.Image, rng: np.random.Generator) -> Image.Image:
        im = ImageEnhance.Brightness(im).enhance(1 + rng.uniform(-self.brightness, self.brightness))
        im = ImageEnhance.Contrast(im).enhance(1 + rng.uniform(-self.contrast, self.contrast))
        if self.saturation:
            im = ImageEnhance.Color(im).enhance(1 + rng.uniform(-self.saturation, self.saturation))
        if self.hue:
            h, s, v = im.convert("HSV").split()
            dh = int(rng.uniform(-self.hue, self.hue) * 255)
            h = h.point(lambda x: (x + dh) % 256)
            im = Image.merge("HSV", (h, s, v)).convert("RGB")
        if self.shift or self.scale:
            w, h_ = im.size
            z = 1 + rng.uniform(-self.scale, self.scale)
            dx, dy = rng.uniform(-self.shift, self.shift, 2) * (w, h_)
            cw, ch = w / z, h_ / z
            x0, y0 = (w - cw) / 2 + dx, (h_ - ch) / 2 + dy
            im = im.transform((w, h_), Image.Transform.EXTENT, (x0, y0, x0 + cw, y0 + ch), Image.Resampling.BILINEAR, fillcolor=(128, 128, 128))
        if rng.random() < self.blur:
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.9)))
        return im


def hflip(im: Image.Image) -> Image.Image:
    return ImageOps.mirror(im)


def augment_for(task: str) -> Callable[[Image.Image, np.random.Generator], Image.Image]:
    """The augmentation for ``task`` (e.g. ``vehicle.color`` gets no hue or saturation jitter)."""
    if task in COLOR_TASKS:
        return Augment(hue=0.0, saturation=0.0, brightness=0.2, contrast=0.2)
    return Augment()
