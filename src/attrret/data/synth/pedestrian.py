"""Procedural pedestrian crops in which every Track-2 pedestrian group is visibly drawn.

A figure is drawn on a 120 x 300 canvas with Pillow, then degraded and shrunk to a
PA-100K-like crop (about 50-120 px wide). Cues per group, and why they are not trivial:

- gender: hair length (mostly long for women, some short; a few long-haired men), shoulder
  vs hip width;
- age: head-to-body ratio (children), grey hair and a stoop (elderly; some adults grey too);
- orientation: face features (front), profile with nose and one eye (side), hair covering
  the head (back); side figures are narrower with a stride;
- hat: cap and brim on the head; glasses: lenses at eye level, visible only front or side;
- handbag: small bag with handle hanging from a hand; shoulder bag: a diagonal strap and a
  bag at the hip; backpack: a pack over the back (back view), a bulge behind (side view),
  only two straps from the front;
- holding: an object in front of the belly with bent forearms (hidden from the back);
- sleeve: forearm skin vs garment; upper: stripes, a chest/back logo, plaid grid, colour
  splice, or plain; coat: long coat to the knee (open at the front); skirt: skirt or dress
  with bare or stockinged legs; lower_type: trousers, shorts (bare shins) or the skirt;
- hair: long (falls behind the shoulders), short, or bald (no hair on the crown); boots: tall
  dark boots to mid-shin instead of shoes;
- upper_color / lower_color: the top's colours (a patterned top shows its two colours; a
  long coat is the top), the trousers', shorts' or skirt's colour (a dress: the top's), each
  drawn from a named colour with a small jitter.

Values without the clothing groups (another schema) get random colours, hair from gender, and
shorts on some men and women as a confuser.

Every random choice is drawn up front in a fixed order (see ``_Look``) so that two renders
with one attribute changed differ only where that attribute is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from attrret.data.synth.scene import background, degrade, jitter_color, occlude, sample_degrade
from attrret.schema import family_labels

__all__ = ["render_pedestrian", "PED_CANVAS"]

PED_CANVAS = (120, 300)  # (width, height) of the drawing canvas

_SKIN = [(241, 204, 177), (224, 172, 138), (198, 140, 100), (160, 110, 75), (110, 75, 50)]
_HAIR = [(20, 15, 10), (45, 30, 20), (80, 55, 30), (120, 90, 50), (30, 30, 30)]
_GREY_HAIR = [(190, 190, 190), (220, 220, 215), (160, 160, 160)]
_CLOTH = [
    (20, 20, 25), (235, 235, 235), (130, 130, 135), (30, 50, 120), (150, 30, 35), (40, 100, 50),
    (200, 170, 60), (90, 60, 40), (200, 110, 140), (70, 130, 190), (120, 70, 140), (210, 120, 40),
]


#: The schema's colour names, as drawn (before jitter).
NAMED_COLOURS = {"black": (20, 20, 25), "blue": (35, 60, 150), "brown": (95, 60, 35), "green": (40, 110, 50),
                 "grey": (130, 130, 135), "orange": (220, 120, 30), "pink": (225, 130, 170), "purple": (115, 60, 145),
                 "red": (175, 30, 35), "white": (235, 235, 235), "yellow": (220, 195, 50)}


def _family_colours(v: Mapping[str, str], family: str) -> list[str]:
    """The colours ``v`` says yes to for ``family`` that the renderer can draw, in NAMED_COLOURS order."""
    said = set(family_labels(v, family))
    return [c for c in NAMED_COLOURS if c in said]


def _dressed(v: Mapping[str, str], L: _Look) -> _Look:
    """``L`` with its garment colours taken from the values' colour groups, where they say."""
    jit = np.random.default_rng(int(L.dress_u * 2**31))
    named = {c: jitter_color(rgb, jit) for c, rgb in NAMED_COLOURS.items()}
    upper, lower = _family_colours(v, "upper_color"), _family_colours(v, "lower_color")
    changes = {}
    if upper:
        first, second = upper[0], upper[-1]
        changes |= {"shirt": named[first], "shirt2": named[second], "coat": named[second] if v.get("coat") == "yes" else L.coat}
    if lower:
        changes |= {"trousers": named[lower[0]], "skirt": named[lower[0]]}
    return dataclasses.replace(L, **changes) if changes else L


@dataclass(frozen=True)
class _Look:
    """Every random appearance choice for one crop (drawn whatever the attribute values)."""

    skin: tuple
    hair: tuple
    grey: tuple
    hair_len_u: float
    grey_u: float
    shirt: tuple
    shirt2: tuple
    trousers: tuple
    coat: tuple
    skirt: tuple
    dress_u: float
    shorts_u: float
    hat: tuple
    hat_kind: int
    bag: tuple
    handbag: tuple
    pack: tuple
    held: tuple
    held_kind: int
    logo_kind: int
    splice_kind: int
    stripe_w: int
    plaid_w: int
    facing: int  # -1 left, +1 right for side views
    hand_side: int
    height_frac: float
    cx_frac: float
    build: float
    stoop: float
    stride: float
    shoes: tuple


def _col(rng: np.random.Generator, palette) -> tuple:
    return jitter_color(palette[int(rng.integers(len(palette)))], rng)


def _sample_look(rng: np.random.Generator) -> _Look:
    return _Look(
        skin=_col(rng, _SKIN), hair=_col(rng, _HAIR), grey=_col(rng, _GREY_HAIR),
        hair_len_u=rng.random(), grey_u=rng.random(),
        shirt=_col(rng, _CLOTH), shirt2=_col(rng, _CLOTH), trousers=_col(rng, _CLOTH), coat=_col(rng, _CLOTH),
        skirt=_col(rng, _CLOTH), dress_u=rng.random(), shorts_u=rng.random(),
        hat=_col(rng, _CLOTH), hat_kind=int(rng.integers(3)),
        bag=_col(rng, _CLOTH), handbag=_col(rng, _CLOTH), pack=_col(rng, _CLOTH),
        held=_col(rng, _CLOTH), held_kind=int(rng.integers(3)),
        logo_kind=int(rng.integers(3)), splice_kind=int(rng.integers(3)),
        stripe_w=int(rng.integers(4, 8)), plaid_w=int(rng.integers(6, 11)),
        facing=int(rng.choice([-1, 1])), hand_side=int(rng.choice([-1, 1])),
        height_frac=rng.uniform(0.84, 0.97), cx_frac=rng.uniform(0.42, 0.58),
        build=rng.normal(1.0, 0.06), stoop=rng.uniform(0.5, 1.0), stride=rng.uniform(0.3, 1.0),
        shoes=_col(rng, _CLOTH[:3]),
    )


def _draw_figure(d: ImageDraw.ImageDraw, v: Mapping[str, str], L: _Look, size: tuple[int, int]) -> None:
    W, H = size
    Hf = H * L.height_frac
    y0 = (H - Hf) * 0.4
    cx = W * L.cx_frac
    orient = v["orientation"]
    child, old, female = v["age"] == "under18", v["age"] == "over60", v["gender"] == "female"
    hh = Hf / (5.6 if child else 7.4)  # head height
    hw = hh * 0.8
    side = orient == "side"
    f = L.facing
    stoop_dx = (hh * 0.35 * L.stoop * f if side else 0.0) if old else 0.0
    stoop_dy = hh * 0.25 * L.stoop if old else 0.0
    # body frame
    sh_half = hh * (0.62 if side else (0.92 if female else 1.12) * L.build) * (0.9 if child else 1.0)
    hip_half = hh * (0.55 if side else (0.95 if female else 0.78) * L.build)
    y_head = y0 + stoop_dy
    hcx = cx + stoop_dx
    y_sh = y_head + hh * 1.15
    y_waist = y_sh + hh * (1.9 if child else 2.3)
    y_hip = y_waist + hh * 0.45
    y_feet = y0 + Hf
    y_knee = (y_hip + y_feet) / 2
    leg_w = hh * 0.36

    skin = L.skin
    coat = v["coat"] == "yes"

    # backpack behind the body (side view bulge) / over the back (back view) is drawn after the torso
    # legs
    skirt = v["skirt"] == "yes"
    shorts = not skirt and (v["lower_type"] == "shorts" if "lower_type" in v else L.shorts_u < 0.12)
    leg_col = skin if skirt else L.trousers
    if side:
        s = L.stride * hh * 0.5
        for dx in (-s, s):
            d.polygon([(cx - leg_w / 2, y_hip), (cx + leg_w / 2, y_hip), (cx + dx + leg_w / 2, y_feet), (cx + dx - leg_w / 2, y_feet)], fill=leg_col)
        legs_x = [cx - s, cx + s]
    else:
        legs_x = [cx - hip_half * 0.5, cx + hip_half * 0.5]
        for lx in legs_x:
            d.rectangle([lx - leg_w / 2, y_hip, lx + leg_w / 2, y_feet], fill=leg_col)
    if shorts:
        for lx in legs_x:
            d.rectangle([lx - leg_w / 2, y_knee, lx + leg_w / 2, y_feet], fill=skin)
    elif not skirt:  # trousers reach the waist
        d.rectangle([cx - hip_half, y_waist, cx + hip_half, y_hip + hh * 0.2], fill=L.trousers)
    for lx in legs_x:
        if v.get("boots") == "yes":  # tall boots to mid-shin
            d.rectangle([lx - leg_w * 0.62, (y_knee + y_feet) / 2, lx + leg_w * 0.62, y_feet - hh * 0.05], fill=L.shoes)
        d.ellipse([lx - leg_w * 0.7 + f * leg_w * 0.3 * side, y_feet - hh * 0.22, lx + leg_w * 0.7 + f * leg_w * 0.3 * side, y_feet + hh * 0.05], fill=L.shoes)
    if skirt:
        # a dress takes the top's colour: with colour groups, only when the two agree
        dress = (L.dress_u < 0.5) if "lower_color_black" not in v else L.shirt == L.skirt
        sk = L.shirt if dress else L.skirt
        d.polygon([(cx - hip_half, y_waist), (cx + hip_half, y_waist), (cx + hip_half * 1.35, y_knee + hh * 0.2), (cx - hip_half * 1.35, y_knee + hh * 0.2)], fill=sk)

    # torso
    torso = [(cx + stoop_dx * 0.6 - sh_half, y_sh), (cx + stoop_dx * 0.6 + sh_half, y_sh), (cx + hip_half, y_waist), (cx - hip_half, y_waist)]
    d.polygon(torso, fill=L.shirt)
    _pattern(d, v["upper"], L, torso, orient, hh)
    if coat:
        y_hem = y_knee + hh * 0.35
        coat_poly = [(torso[0][0] - 2, y_sh), (torso[1][0] + 2, y_sh), (cx + hip_half * 1.25, y_hem), (cx - hip_half * 1.25, y_hem)]
        d.polygon(coat_poly, fill=L.coat)
        if orient == "front":  # open coat shows the shirt in a strip
            gap = sh_half * 0.35
            d.polygon([(cx - gap, y_sh + hh * 0.1), (cx + gap, y_sh + hh * 0.1), (cx + gap * 0.6, y_hem), (cx - gap * 0.6, y_hem)], fill=L.shirt)
            _pattern(d, v["upper"], L, [(cx - gap, y_sh), (cx + gap, y_sh), (cx + gap * 0.6, y_waist), (cx - gap * 0.6, y_waist)], orient, hh)

    # bags on / behind the torso
    holding = v["holding"] == "yes"
    if v["bag"] == "backpack":
        if orient == "back":
            d.rounded_rectangle([cx - sh_half * 0.8, y_sh + hh * 0.15, cx + sh_half * 0.8, y_waist + hh * 0.1], radius=hh * 0.3, fill=L.pack)
            d.line([(cx - sh_half * 0.5, y_sh + hh * 0.5), (cx + sh_half * 0.5, y_sh + hh * 0.5)], fill=tuple(int(c * 0.6) for c in L.pack), width=2)
        elif side:
            bx = cx - f * sh_half
            d.rounded_rectangle([min(bx, bx - f * hh * 0.75), y_sh + hh * 0.1, max(bx, bx - f * hh * 0.75), y_waist], radius=hh * 0.25, fill=L.pack)
            d.line([(cx, y_sh), (cx - f * sh_half * 0.6, y_waist - hh * 0.3)], fill=L.pack, width=max(2, int(hh * 0.12)))
        else:  # front: only the straps
            for sx in (-1, 1):
                d.line([(cx + sx * sh_half * 0.55, y_sh), (cx + sx * sh_half * 0.5, y_waist - hh * 0.2)], fill=L.pack, width=max(2, int(hh * 0.14)))
    elif v["bag"] == "shoulder":
        s = L.hand_side
        d.line([(cx - s * sh_half * 0.7, y_sh), (cx + s * hip_half * 1.1, y_waist + hh * 0.1)], fill=tuple(int(c * 0.7) for c in L.bag), width=max(2, int(hh * 0.1)))
        bx = cx + s * hip_half * 1.15
        d.rectangle([bx - hh * 0.4, y_waist - hh * 0.1, bx + hh * 0.4, y_waist + hh * 0.55], fill=L.bag)

    # arms
    arm_w = hh * 0.3
    y_elbow = y_sh + hh * 1.35
    y_hand = y_sh + hh * 2.6
    arm_xs = [cx + stoop_dx * 0.6] if side else [cx - sh_half - arm_w * 0.3, cx + sh_half + arm_w * 0.3]
    sleeve_col = L.coat if coat else L.shirt
    long_sleeve = v["sleeve"] == "long"
    for i, ax in enumerate(arm_xs):
        out = 0 if side else (-1 if i == 0 else 1)
        ex = ax + out * arm_w * 0.3
        if holding and orient != "back":
            hx, hy = cx + (f * hh * 0.6 if side else -out * sh_half * 0.2), y_waist - hh * 0.3
        elif holding:
            hx, hy = ax, y_elbow + hh * 0.5  # bent forearms hidden in front of the body
        else:
            hx, hy = ax + out * arm_w * 0.5 + (f * L.stride * hh * 0.3 if side else 0), y_hand
        d.line([(ax, y_sh + arm_w * 0.4), (ex, y_elbow)], fill=sleeve_col, width=int(arm_w))
        d.line([(ex, y_elbow), (hx, hy)], fill=sleeve_col if long_sleeve else skin, width=int(arm_w * 0.9))
        if not long_sleeve:  # short sleeve ends above the elbow: skin below
            mid = (ax * 0.45 + ex * 0.55, y_sh + (y_elbow - y_sh) * 0.55)
            d.line([mid, (ex, y_elbow)], fill=skin, width=int(arm_w * 0.85))
        d.ellipse([hx - arm_w * 0.5, hy - arm_w * 0.5, hx + arm_w * 0.5, hy + arm_w * 0.5], fill=skin)
        if i == (0 if L.hand_side < 0 or side else 1) and v["handbag"] == "yes" and not (holding and orient != "back"):
            d.arc([hx - hh * 0.3, hy - hh * 0.1, hx + hh * 0.3, hy + hh * 0.5], 180, 360, fill=L.handbag, width=2)
            d.rounded_rectangle([hx - hh * 0.45, hy + hh * 0.2, hx + hh * 0.45, hy + hh * 0.85], radius=3, fill=L.handbag)
    if v["handbag"] == "yes" and holding and orient != "back":  # handbag on the forearm
        d.rounded_rectangle([cx - hh * 0.5 - f * hh * 0.6, y_waist - hh * 0.1, cx + hh * 0.5 - f * hh * 0.6, y_waist + hh * 0.55], radius=3, fill=L.handbag)
    if holding and orient != "back":
        ox = cx + (f * hh * 0.7 if side else 0)
        if L.held_kind == 0:  # box / book
            d.rectangle([ox - hh * 0.55, y_waist - hh * 0.75, ox + hh * 0.55, y_waist + hh * 0.05], fill=L.held)
        elif L.held_kind == 1:  # bag of shopping
            d.ellipse([ox - hh * 0.6, y_waist - hh * 0.8, ox + hh * 0.6, y_waist + hh * 0.2], fill=L.held)
        else:  # phone / bottle
            d.rectangle([ox - hh * 0.22, y_waist - hh * 0.9, ox + hh * 0.22, y_waist], fill=L.held)

    # neck and head
    d.rectangle([hcx - hw * 0.2, y_head + hh * 0.8, hcx + hw * 0.2, y_sh + 2], fill=skin)
    _head(d, v, L, hcx, y_head, hw, hh)


def _pattern(d: ImageDraw.ImageDraw, upper: str, L: _Look, poly: list, orient: str, hh: float) -> None:
    xs = [p[0] for p in poly]
    ys = [p[1] for p in poly]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if upper == "stripe":
        for y in range(int(y0) + 2, int(y1), L.stripe_w * 2):
            d.rectangle([x0 + 1, y, x1 - 1, y + L.stripe_w - 1], fill=L.shirt2)
        d.polygon(poly, outline=L.shirt)
    elif upper == "plaid":
        for y in range(int(y0) + 3, int(y1), L.plaid_w):
            d.line([(x0 + 2, y), (x1 - 2, y)], fill=L.shirt2, width=2)
        for x in range(int(x0) + 3, int(x1), L.plaid_w):
            d.line([(x, y0 + 2), (x, y1 - 2)], fill=L.shirt2, width=2)
    elif upper == "splice":
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        if L.splice_kind == 0:
            d.rectangle([x0 + 2, y0, x1 - 2, my], fill=L.shirt2)
        elif L.splice_kind == 1:
            d.polygon([(x0 + 2, y0), (mx, y0), (mx, y1), (x0 + 4, y1)], fill=L.shirt2)
        else:
            d.polygon([(x0 + 2, y0), (x1 - 2, y0), (x0 + 4, y1)], fill=L.shirt2)
    elif upper == "logo":
        r = hh * (0.42 if orient != "side" else 0.3)
        lx, ly = (x0 + x1) / 2, y0 + (y1 - y0) * 0.35
        c = tuple(255 - v for v in L.shirt)
        if L.logo_kind == 0:
            d.ellipse([lx - r, ly - r, lx + r, ly + r], fill=c)
        elif L.logo_kind == 1:
            d.polygon([(lx, ly - r), (lx + r, ly + r * 0.8), (lx - r, ly + r * 0.8)], fill=c)
        else:
            d.rectangle([lx - r * 1.2, ly - r * 0.5, lx + r * 1.2, ly + r * 0.5], fill=c)


def _head(d: ImageDraw.ImageDraw, v: Mapping[str, str], L: _Look, cx: float, y: float, hw: float, hh: float) -> None:
    orient, female = v["orientation"], v["gender"] == "female"
    long_hair = v["hair"] == "long" if "hair" in v else (L.hair_len_u < 0.82) if female else (L.hair_len_u < 0.05)
    bald = v.get("hair") == "bald"
    grey = v["age"] == "over60" and L.grey_u < 0.85 or v["age"] == "18-60" and L.grey_u < 0.03
    hair = L.grey if grey else L.hair
    f = L.facing
    if long_hair:  # hair falls behind the shoulders
        d.rounded_rectangle([cx - hw * 0.62, y + hh * 0.3, cx + hw * 0.62, y + hh * 1.9], radius=hw * 0.3, fill=hair)
    d.ellipse([cx - hw / 2, y, cx + hw / 2, y + hh], fill=L.skin)
    if bald:  # no hair on the crown; from the back a fringe low on the head
        if orient == "back":
            d.chord([cx - hw / 2 - 1, y + hh * 0.35, cx + hw / 2 + 1, y + hh * 0.9], 0, 180, fill=hair)
    elif orient == "back":
        d.ellipse([cx - hw / 2 - 1, y - 1, cx + hw / 2 + 1, y + hh * 0.92], fill=hair)
    elif orient == "side":
        d.chord([cx - hw / 2 - 1, y - 1, cx + hw / 2 + 1, y + hh * 0.85], 90 if f > 0 else -90, 270 if f > 0 else 90, fill=hair)
        d.pieslice([cx - hw / 2 - 1, y - 1, cx + hw / 2 + 1, y + hh * 0.6], 180, 360, fill=hair)
    else:
        d.pieslice([cx - hw / 2 - 1, y - 1, cx + hw / 2 + 1, y + hh * 0.7], 180, 360, fill=hair)
    if orient == "side":
        nx = cx + f * hw / 2
        d.polygon([(nx, y + hh * 0.45), (nx + f * hw * 0.16, y + hh * 0.6), (nx, y + hh * 0.65)], fill=L.skin)
        d.ellipse([cx + f * hw * 0.25 - 1.5, y + hh * 0.42, cx + f * hw * 0.25 + 1.5, y + hh * 0.5], fill=(30, 20, 20))
    elif orient == "front":
        for sx in (-1, 1):
            d.ellipse([cx + sx * hw * 0.2 - 1.8, y + hh * 0.42, cx + sx * hw * 0.2 + 1.8, y + hh * 0.5], fill=(30, 20, 20))
        d.line([(cx - hw * 0.13, y + hh * 0.75), (cx + hw * 0.13, y + hh * 0.75)], fill=(150, 60, 60), width=2)
    if v["glasses"] == "yes" and orient != "back":
        gc, gy = (15, 15, 15), y + hh * 0.46
        if orient == "front":
            for sx in (-1, 1):
                d.rectangle([cx + sx * hw * 0.2 - hw * 0.14, gy - hh * 0.07, cx + sx * hw * 0.2 + hw * 0.14, gy + hh * 0.07], outline=gc, width=2)
            d.line([(cx - hw * 0.06, gy), (cx + hw * 0.06, gy)], fill=gc, width=1)
        else:
            ex = cx + f * hw * 0.27
            d.rectangle([ex - hw * 0.12, gy - hh * 0.07, ex + hw * 0.12, gy + hh * 0.07], outline=gc, width=2)
            d.line([(ex - f * hw * 0.12, gy), (cx - f * hw * 0.2, gy)], fill=gc, width=2)
    if v["hat"] == "yes":
        top = [cx - hw * 0.58, y - hh * 0.12, cx + hw * 0.58, y + hh * 0.55]
        if L.hat_kind == 2:  # beanie
            d.pieslice([top[0], top[1], top[2], y + hh * 0.75], 180, 360, fill=L.hat)
        else:
            d.pieslice(top, 180, 360, fill=L.hat)
            by = y + hh * 0.2
            if orient == "front":
                d.ellipse([cx - hw * (0.7 if L.hat_kind else 0.5), by - 2, cx + hw * (0.7 if L.hat_kind else 0.5), by + hh * 0.12], fill=L.hat)
            elif orient == "side":
                bx0, bx1 = sorted([cx, cx + f * hw * (0.9 if L.hat_kind == 0 else 0.75)])
                d.rectangle([bx0, by - 1, bx1, by + hh * 0.07], fill=L.hat)
            else:
                d.rectangle([cx - hw * 0.58, by - 1, cx + hw * 0.58, by + hh * 0.06], fill=L.hat)


def render_pedestrian(
    values: Mapping[str, str],
    rng: np.random.Generator,
    size: tuple[int, int] | None = None,
    *,
    degrade_image: bool = True,
    occlusion: float = 0.2,
) -> Image.Image:
    """Render one pedestrian crop for complete pedestrian ``values``.

    ``size`` is the output (width, height); by default a PA-100K-like size is drawn
    (width 50-120 px, aspect 2.2-3.0). ``degrade_image=False`` gives the clean drawing (no
    occluder, lighting, blur, noise or JPEG) at the output size.
    """
    out_w = int(rng.integers(50, 121))
    out_h = int(out_w * rng.uniform(2.2, 3.0))
    look = _dressed(values, _sample_look(rng))
    im = background(PED_CANVAS, rng)
    occ_rng = np.random.default_rng(rng.integers(2**63))
    deg_rng = np.random.default_rng(rng.integers(2**63))
    params = sample_degrade(deg_rng)
    _draw_figure(ImageDraw.Draw(im), values, look, PED_CANVAS)
    if degrade_image:
        im = occlude(im, occ_rng, occlusion)
    im = im.resize(size or (out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    if degrade_image:
        im = degrade(im, params, deg_rng)
    return im
