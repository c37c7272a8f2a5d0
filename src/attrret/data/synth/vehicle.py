"""Procedural vehicle crops (front views, like surveillance cameras) with colour, type and brand.

- colour: the body paint, one of the 11 Track-2 colours with per-car shade jitter and a
  highlight, under the lighting and colour casts of ``scene.degrade`` (grey/white/silver and
  brown/orange/red become confusable, as on real cameras);
- type: the front silhouette and proportions: Sedan (low, wide, long bonnet), SUV (taller,
  boxy, roof rails, high clearance), Minivan (tall windscreen, short bonnet), Microbus
  (tall box, near-vertical front), Bus (very tall, huge windscreen, destination board),
  Truck (cab with big grille and a cargo box rising behind it);
- brand: a grille design and emblem that are a deterministic function of the brand index
  (:func:`brand_design`): 5 emblem shapes x 13 glyphs (unique per brand), plus 6 grille
  patterns, 3 grille outlines and 4 emblem finishes. The emblem is about 8-10% of the car
  width, so after downscaling brand is hard but learnable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from attrret.data.synth.scene import background, degrade, jitter_color, occlude, sample_degrade
from attrret.schema import load_schema

__all__ = ["COLORS_RGB", "BrandDesign", "brand_design", "render_vehicle", "VEH_CANVAS"]

VEH_CANVAS = (240, 200)

COLORS_RGB: dict[str, tuple[int, int, int]] = {
    "black": (25, 25, 28), "blue": (35, 70, 160), "brown": (105, 65, 35), "green": (40, 120, 55),
    "grey": (128, 130, 132), "orange": (225, 120, 30), "pink": (225, 140, 170), "purple": (105, 50, 130),
    "red": (175, 25, 30), "white": (232, 232, 228), "yellow": (230, 200, 40),
}

#: Body proportions per type: (width fraction of canvas, height/width, windscreen fraction of body height, bonnet fraction).
_SHAPE = {
    "Sedan": (0.86, 0.50, 0.36, 0.22),
    "SUV": (0.84, 0.66, 0.36, 0.16),
    "Minivan": (0.80, 0.74, 0.45, 0.10),
    "Microbus": (0.74, 0.86, 0.48, 0.04),
    "Bus": (0.82, 0.92, 0.52, 0.0),
    "Truck": (0.78, 0.80, 0.36, 0.0),
}
_FINISH = [(200, 200, 205), (215, 180, 70), (40, 80, 170), (180, 30, 35)]


@dataclass(frozen=True)
class BrandDesign:
    """The visual identity of a brand: emblem shape and glyph, finish, grille pattern and outline."""

    shape: int  # 0 circle, 1 oval, 2 shield, 3 diamond, 4 rectangle
    glyph: int  # 0..12
    finish: int  # 0 chrome, 1 gold, 2 blue, 3 red
    grille: int  # 0 horizontal bars, 1 vertical bars, 2 mesh, 3 dots, 4 one thick bar, 5 twin kidneys
    outline: int  # 0 rectangle, 1 trapezoid, 2 hexagon


@cache
def brand_design(brand: str) -> BrandDesign:
    """Deterministic design of ``brand``; (shape, glyph) alone is unique across the 65 brands."""
    i = load_schema().vehicle.group("brand").index(brand)
    return BrandDesign(shape=i % 5, glyph=i // 5, finish=(i * 3 + i // 13) % 4, grille=(i + i // 5) % 6, outline=(i * 7 // 5) % 3)


def _glyph(d: ImageDraw.ImageDraw, g: int, cx: float, cy: float, r: float, c) -> None:
    w = max(1, int(r * 0.35))
    L = [
        [((cx, cy - r), (cx, cy + r))],
        [((cx - r, cy), (cx + r, cy))],
        [((cx, cy - r), (cx, cy + r)), ((cx - r, cy), (cx + r, cy))],
        [((cx - r, cy - r), (cx + r, cy + r)), ((cx - r, cy + r), (cx + r, cy - r))],
        [((cx - r, cy - r), (cx, cy + r)), ((cx, cy + r), (cx + r, cy - r))],
        [((cx - r, cy + r), (cx, cy - r)), ((cx, cy - r), (cx + r, cy + r))],
        [],  # ring
        [],  # dot
        [((cx - r, cy - r / 2), (cx + r, cy - r / 2)), ((cx - r, cy + r / 2), (cx + r, cy + r / 2))],
        [((cx - r / 2, cy - r), (cx - r / 2, cy + r)), ((cx + r / 2, cy - r), (cx + r / 2, cy + r))],
        [((cx - r, cy - r), (cx + r, cy - r)), ((cx + r, cy - r), (cx - r, cy + r)), ((cx - r, cy + r), (cx + r, cy + r))],
        [((cx - r, cy + r), (cx - r, cy - r)), ((cx - r, cy - r), (cx + r, cy - r)), ((cx + r, cy - r), (cx + r, cy + r))],
        [],  # three dots
    ][g]
    for a, b in L:
        d.line([a, b], fill=c, width=w)
    if g == 6:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=c, width=w)
    elif g == 7:
        d.ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], fill=c)
    elif g == 12:
        for dx in (-r * 0.7, 0, r * 0.7):
            d.ellipse([cx + dx - r / 4, cy - r / 4, cx + dx + r / 4, cy + r / 4], fill=c)


def _emblem(d: ImageDraw.ImageDraw, design: BrandDesign, cx: float, cy: float, r: float) -> None:
    fin = _FINISH[design.finish]
    dark = (25, 25, 30)
    if design.shape == 0:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fin)
    elif design.shape == 1:
        d.ellipse([cx - r * 1.5, cy - r * 0.8, cx + r * 1.5, cy + r * 0.8], fill=fin)
    elif design.shape == 2:
        d.polygon([(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r * 0.2), (cx, cy + r * 1.2), (cx - r, cy + r * 0.2)], fill=fin)
    elif design.shape == 3:
        d.polygon([(cx, cy - r * 1.2), (cx + r * 1.2, cy), (cx, cy + r * 1.2), (cx - r * 1.2, cy)], fill=fin)
    else:
        d.rectangle([cx - r * 1.6, cy - r * 0.7, cx + r * 1.6, cy + r * 0.7], fill=fin)
    _glyph(d, design.glyph, cx, cy, r * 0.6, dark)


def _grille(d: ImageDraw.ImageDraw, design: BrandDesign, box: tuple[float, float, float, float], body) -> None:
    x0, y0, x1, y1 = box
    dark, bar = (22, 22, 26), _FINISH[0] if design.finish != 0 else (90, 90, 95)
    if design.outline == 0:
        poly = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif design.outline == 1:
        k = (x1 - x0) * 0.12
        poly = [(x0, y0), (x1, y0), (x1 - k, y1), (x0 + k, y1)]
    else:
        k = (x1 - x0) * 0.1
        poly = [(x0 + k, y0), (x1 - k, y0), (x1, (y0 + y1) / 2), (x1 - k, y1), (x0 + k, y1), (x0, (y0 + y1) / 2)]
    d.polygon(poly, fill=dark)
    h, w = y1 - y0, x1 - x0
    g = design.grille
    if g == 0:
        for y in np.arange(y0 + h * 0.2, y1, max(2.0, h / 4)):
            d.line([(x0 + w * 0.08, y), (x1 - w * 0.08, y)], fill=bar, width=2)
    elif g == 1:
        for x in np.arange(x0 + w * 0.1, x1 - w * 0.05, max(3.0, w / 9)):
            d.line([(x, y0 + 2), (x, y1 - 2)], fill=bar, width=2)
    elif g == 2:
        for y in np.arange(y0 + 2, y1, max(3.0, h / 4)):
            d.line([(x0 + 3, y), (x1 - 3, y)], fill=bar, width=1)
        for x in np.arange(x0 + 3, x1, max(3.0, w / 10)):
            d.line([(x, y0 + 2), (x, y1 - 2)], fill=bar, width=1)
    elif g == 3:
        for y in np.arange(y0 + h * 0.25, y1 - 1, max(3.0, h / 3)):
            for x in np.arange(x0 + w * 0.1, x1 - w * 0.05, max(3.0, w / 12)):
                d.ellipse([x - 1, y - 1, x + 1, y + 1], fill=bar)
    elif g == 4:
        d.rectangle([x0 + w * 0.05, (y0 + y1) / 2 - h * 0.15, x1 - w * 0.05, (y0 + y1) / 2 + h * 0.15], fill=bar)
    else:  # twin kidneys split by body colour
        d.rectangle([(x0 + x1) / 2 - w * 0.06, y0, (x0 + x1) / 2 + w * 0.06, y1], fill=body)
        for y in np.arange(y0 + 2, y1, max(3.0, h / 5)):
            d.line([(x0 + w * 0.08, y), (x1 - w * 0.08, y)], fill=bar, width=1)


@dataclass(frozen=True)
class _VLook:
    shade: tuple
    glass: tuple
    plate: int
    cargo: tuple
    cx_frac: float
    scale: float
    lamp_kind: int
    highlight: float


def _sample_look(rng: np.random.Generator) -> _VLook:
    return _VLook(
        shade=tuple(rng.normal(0, 1, 4)),
        glass=jitter_color((45, 60, 75), rng, 12),
        plate=int(rng.integers(2)),
        cargo=jitter_color((150, 150, 150), rng, 40),
        cx_frac=rng.uniform(0.44, 0.56),
        scale=rng.uniform(0.86, 1.0),
        lamp_kind=int(rng.integers(3)),
        highlight=rng.uniform(0.05, 0.25),
    )


def _paint(color: str, L: _VLook) -> tuple[int, int, int]:
    base = np.array(COLORS_RGB[color], dtype=float)
    shade, ch = L.shade[0] * 14, np.array(L.shade[1:]) * 6
    return tuple(int(v) for v in np.clip(base + shade + ch, 0, 255))  # type: ignore[return-value]


def _draw_vehicle(d: ImageDraw.ImageDraw, v: Mapping[str, str], L: _VLook, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Draw the vehicle; return its bounding box (x0, y0, x1, y1) on the canvas."""
    W, H = size
    wf, ratio, screen, bonnet = _SHAPE[v["type"]]
    bw = W * wf * L.scale
    bh = bw * ratio
    cx = W * L.cx_frac
    y_bot = H * 0.93
    y_top = y_bot - bh
    x0, x1 = cx - bw / 2, cx + bw / 2
    body = _paint(v["color"], L)
    light = tuple(int(min(255, c + 255 * L.highlight)) for c in body)
    design = brand_design(v["brand"])
    tire = (15, 15, 15)
    clearance = bh * (0.1 if v["type"] in ("SUV", "Truck", "Bus") else 0.06)
    # wheels peeking below the body
    for sx in (-1, 1):
        wx = cx + sx * bw * 0.36
        d.rectangle([wx - bw * 0.07, y_bot - clearance * 1.8, wx + bw * 0.07, y_bot], fill=tire)
    if v["type"] == "Truck":  # cargo box rising behind the cab
        d.rectangle([x0 - bw * 0.06, y_top - bh * 0.25, x1 + bw * 0.06, y_top + bh * 0.5], fill=L.cargo)
        d.line([(x0 - bw * 0.06, y_top - bh * 0.05), (x1 + bw * 0.06, y_top - bh * 0.05)], fill=tuple(int(c * 0.7) for c in L.cargo), width=2)
    radius = {"Sedan": 0.35, "SUV": 0.18, "Minivan": 0.25, "Microbus": 0.22, "Bus": 0.06, "Truck": 0.05}[v["type"]]
    # body and roof taper (cars are narrower at the roof)
    taper = {"Sedan": 0.16, "SUV": 0.1, "Minivan": 0.08, "Microbus": 0.05, "Bus": 0.0, "Truck": 0.02}[v["type"]]
    y_belt = y_top + bh * (screen + 0.08)
    d.rounded_rectangle([x0, y_belt - bh * 0.06, x1, y_bot - clearance], radius=bw * 0.05, fill=body)
    d.polygon([(x0 + bw * taper, y_top), (x1 - bw * taper, y_top), (x1, y_belt), (x0, y_belt)], fill=body)
    d.rounded_rectangle([x0 + bw * taper, y_top, x1 - bw * taper, y_top + bh * 0.1], radius=bw * radius * 0.2, fill=body)
    # windscreen
    m = bw * 0.05
    sy0, sy1 = y_top + bh * 0.06, y_top + bh * screen
    d.polygon([(x0 + bw * taper + m, sy0), (x1 - bw * taper - m, sy0), (x1 - m * 0.7, sy1), (x0 + m * 0.7, sy1)], fill=L.glass)
    d.polygon([(x0 + bw * taper + m * 2, sy0 + 2), (x0 + bw * 0.4, sy0 + 2), (x0 + bw * 0.25, sy1 - 2)], fill=tuple(min(255, c + 35) for c in L.glass))
    if v["type"] == "Bus":  # destination board
        d.rectangle([x0 + m, y_top + bh * 0.015, x1 - m, y_top + bh * 0.055], fill=(20, 20, 20))
        for k in range(6):
            xk = x0 + m * 2 + k * bw * 0.1
            d.rectangle([xk, y_top + bh * 0.025, xk + bw * 0.06, y_top + bh * 0.045], fill=(240, 150, 30))
    if v["type"] == "SUV":  # roof rails
        d.line([(x0 + bw * taper, y_top + 1), (x1 - bw * taper, y_top + 1)], fill=(40, 40, 40), width=3)
    if v["type"] == "Microbus":  # split windscreen
        d.line([(cx, sy0), (cx, sy1)], fill=body, width=3)
    # bonnet highlight
    if bonnet > 0:
        d.polygon([(x0 + bw * 0.1, sy1 + 2), (x1 - bw * 0.1, sy1 + 2), (x1 - bw * 0.04, sy1 + bh * bonnet), (x0 + bw * 0.04, sy1 + bh * bonnet)], fill=light)
    # grille, lamps, emblem, bumper, plate
    front_top = sy1 + bh * bonnet + bh * 0.03
    front_bot = y_bot - clearance - bh * 0.06
    gh = (front_bot - front_top) * (0.55 if v["type"] != "Bus" else 0.3)
    gw = bw * (0.5 if v["type"] != "Truck" else 0.72)
    gy0 = front_top + (front_bot - front_top) * (0.05 if v["type"] != "Bus" else 0.5)
    _grille(d, design, (cx - gw / 2, gy0, cx + gw / 2, gy0 + gh), body)
    lamp_w = (bw - gw) / 2 * 0.75
    for sx in (-1, 1):
        lx = cx + sx * (gw / 2 + lamp_w * 0.6)
        box = [lx - lamp_w / 2, gy0, lx + lamp_w / 2, gy0 + gh * 0.5]
        if L.lamp_kind == 0:
            d.rectangle(box, fill=(235, 235, 220))
        elif L.lamp_kind == 1:
            d.ellipse(box, fill=(235, 235, 220))
        else:
            d.polygon([(box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0] + lamp_w * 0.3, box[3])], fill=(235, 235, 220))
    _emblem(d, design, cx, gy0 + gh * 0.45, max(2.5, bw * 0.04))
    pw, ph = bw * 0.2, max(4.0, bh * 0.06)
    py = min(front_bot + bh * 0.01, y_bot - clearance - ph - 1)
    d.rectangle([cx - pw / 2, py, cx + pw / 2, py + ph], fill=(30, 60, 170) if L.plate == 0 else (230, 190, 30))
    top = y_top - bh * 0.25 if v["type"] == "Truck" else y_top
    side = bw * 0.06 if v["type"] == "Truck" else 0.0
    return (x0 - side, top, x1 + side, y_bot)


def render_vehicle(
    values: Mapping[str, str],
    rng: np.random.Generator,
    size: tuple[int, int] | None = None,
    *,
    degrade_image: bool = True,
    occlusion: float = 0.15,
) -> Image.Image:
    """Render one front-view vehicle crop for complete vehicle values (colour, brand, type).

    ``size`` is the output (width, height); by default a small surveillance-like crop is drawn
    (width 96-176 px) of the vehicle's box with jittered margins, like a detector's crop.
    ``degrade_image=False`` gives the clean drawing.
    """
    out_w = int(rng.integers(96, 177))
    margins = rng.uniform(0.02, 0.12, 4)
    look = _sample_look(rng)
    im = background(VEH_CANVAS, rng)
    occ_rng = np.random.default_rng(rng.integers(2**63))
    deg_rng = np.random.default_rng(rng.integers(2**63))
    params = sample_degrade(deg_rng)
    x0, y0, x1, y1 = _draw_vehicle(ImageDraw.Draw(im), values, look, VEH_CANVAS)
    bw, bh = x1 - x0, y1 - y0
    box = (max(0, int(x0 - bw * margins[0])), max(0, int(y0 - bh * margins[1])),
           min(VEH_CANVAS[0], int(x1 + bw * margins[2])), min(VEH_CANVAS[1], int(y1 + bh * margins[3])))
    im = im.crop(box)
    if degrade_image:
        im = occlude(im, occ_rng, occlusion)
    out_h = max(8, round(out_w * im.height / im.width))
    im = im.resize(size or (out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if degrade_image:
        im = degrade(im, params, deg_rng)
    return im
