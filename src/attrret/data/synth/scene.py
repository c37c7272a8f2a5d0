"""Surveillance-camera look shared by both renderers: backgrounds, occluders, degradations.

All random choices are drawn from the caller's generator in a FIXED order that does not
depend on the attribute values, so two renders with the same seed and values differing in
one attribute differ only where that attribute is drawn (tests rely on this).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["Degrade", "sample_degrade", "background", "occlude", "degrade", "jitter_color"]


def jitter_color(rgb: tuple[int, int, int], rng: np.random.Generator, amount: float = 18.0) -> tuple[int, int, int]:
    """The colour with a small random brightness and per-channel shift (always consumes 4 draws)."""
    shade = rng.normal(0.0, amount)
    ch = rng.normal(0.0, amount / 3, 3)
    return tuple(int(np.clip(c + shade + d, 0, 255)) for c, d in zip(rgb, ch))  # type: ignore[return-value]


def background(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A textured street background: pavement tiles, asphalt with lane marks, or a wall."""
    w, h = size
    kind = int(rng.integers(3))
    base = np.array([rng.uniform(70, 170)] * 3) + rng.normal(0, 12, 3)
    tile = int(rng.integers(10, 28))
    angle_off = rng.uniform(-0.4, 0.4)
    mark_x = rng.uniform(0.1, 0.9)
    tex = rng.normal(0, rng.uniform(6, 16), (h // 2 + 1, w // 2 + 1, 1))
    tex = np.kron(tex, np.ones((2, 2, 1)))[:h, :w]
    img = np.broadcast_to(base, (h, w, 3)) + tex
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == 0:  # pavement tiles
        grout = ((xx + (yy * angle_off).astype(int)) % tile < 2) | (yy % tile < 2)
        img = np.where(grout[..., None], img * 0.75, img)
    elif kind == 1:  # asphalt, darker, with a lane mark
        img = img * 0.6
        lane = np.abs(xx - mark_x * w - (yy - h / 2) * angle_off) < max(2, w // 30)
        img = np.where(lane[..., None], np.array([225, 225, 210]), img)
    else:  # wall / shop front: vertical colour bands
        bands = (xx // max(4, tile * 2)) % 3
        img = img + (bands[..., None] - 1) * rng.normal(0, 14, 3)
    # vertical light gradient
    img = img * np.linspace(rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1), h)[:, None, None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def occlude(im: Image.Image, rng: np.random.Generator, p: float) -> Image.Image:
    """With probability ``p`` cover part of the crop: a pole, a passer-by's edge, or a low object."""
    draws = (rng.random(), int(rng.integers(3)), rng.uniform(0.12, 0.3), rng.uniform(0, 1), rng.integers(20, 200, 3))
    if draws[0] >= p:
        return im
    _, kind, frac, pos, col = draws
    w, h = im.size
    d = ImageDraw.Draw(im)
    c = tuple(int(v) for v in col)
    if kind == 0:  # pole
        x = int(pos * w)
        d.rectangle([x, 0, x + max(2, int(w * frac * 0.4)), h], fill=c)
    elif kind == 1:  # side occluder (another person / car edge)
        x = int(w * frac)
        if pos < 0.5:
            d.rounded_rectangle([-10, int(h * 0.15), x, h + 10], radius=max(2, x // 3), fill=c)
        else:
            d.rounded_rectangle([w - x, int(h * 0.15), w + 10, h + 10], radius=max(2, x // 3), fill=c)
    else:  # low object in front (bench, bollard, car bonnet)
        d.rectangle([0, int(h * (1 - frac)), w, h], fill=c)
    return im


@dataclass(frozen=True)
class Degrade:
    """Camera and compression parameters for one crop."""

    brightness: float
    contrast: float
    cast: tuple[float, float, float]
    gamma: float
    blur: float
    noise: float
    jpeg: int
    lowres: float  # extra down-up scaling factor (1 = none)


def sample_degrade(rng: np.random.Generator, strength: float = 1.0) -> Degrade:
    s = strength
    return Degrade(
        brightness=float(np.exp(rng.normal(0, 0.22 * s))),
        contrast=float(np.clip(1 + rng.normal(0, 0.18 * s), 0.55, 1.4)),
        cast=tuple(float(np.exp(v)) for v in rng.normal(0, 0.07 * s, 3)),  # type: ignore[arg-type]
        gamma=float(np.exp(rng.normal(0, 0.15 * s))),
        blur=float(max(0.0, rng.normal(0.35, 0.35) * s)),
        noise=float(abs(rng.normal(0, 5 * s))),
        jpeg=int(np.clip(rng.normal(60, 18), 25, 95)),
        lowres=float(np.clip(1 - abs(rng.normal(0, 0.25 * s)), 0.45, 1.0)),
    )


def degrade(im: Image.Image, params: Degrade, rng: np.random.Generator) -> Image.Image:
    """Apply lighting, colour cast, low resolution, blur, sensor noise and JPEG compression."""
    noise = rng.normal(0, 1, (im.height, im.width, 3))
    a = np.asarray(im, dtype=np.float32) / 255.0
    a = a * params.brightness
    a = (a - a.mean()) * params.contrast + a.mean()
    a = a * np.asarray(params.cast, dtype=np.float32)
    a = np.clip(a, 0, 1) ** params.gamma
    out = Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))
    if params.lowres < 0.99:
        small = (max(8, int(im.width * params.lowres)), max(8, int(im.height * params.lowres)))
        out = out.resize(small, Image.Resampling.BILINEAR).resize(im.size, Image.Resampling.BILINEAR)
    if params.blur > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(params.blur))
    a = np.asarray(out, dtype=np.float32) + noise * params.noise
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=params.jpeg)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
