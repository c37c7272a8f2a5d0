"""Model input geometry as plain values: the ``H x W`` input size, the vertical crop bands and
:class:`Preprocess` (size and normalisation: what a model's input is).

A pedestrian crop is tall and a vehicle crop wide, so a model input is a rectangle, written
``HxW`` (height first, as tensors are): ``256x128``. A single number ``N`` is the square
``N x N``. This module is light on purpose (no torch, no PIL): the task recipes check their ``input``
and ``crop`` settings with it (recipes.toml), and the CLI parses ``--img-size`` / ``--img-sizes`` with it before
anything heavy is imported. Every place that reads a size from a user, a TOML file, a config
or an old checkpoint goes through :func:`parse_hw`, so they all accept and refuse the same.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HW", "CROPS", "Preprocess", "parse_hw", "parse_hw_list", "hw_label", "scale_hw"]

#: An input size: ``(height, width)`` in pixels.
HW = tuple[int, int]

#: Vertical crop regions (top, bottom) as fractions of the image height. Each crop is a different
#: model input, so the trunk cache and predict key their features by it.
CROPS: dict[str, tuple[float, float]] = {"full": (0.0, 1.0), "top": (0.0, 0.5), "upper": (0.0, 0.6), "bottom": (0.4, 1.0)}

_FORM = "HxW (height x width, e.g. 256x128) or N (an N x N square)"


def parse_hw(value: str | int | Sequence[int]) -> HW:
    """``"224x112"`` -> ``(224, 112)``; ``"224"`` or ``224`` -> ``(224, 224)``; a ``[H, W]`` pair
    (as JSON configs store it) -> ``(H, W)``. Anything else is a :class:`ValueError` that says
    what is accepted (callers add the flag or file it came from)."""
    if isinstance(value, bool):
        raise ValueError(f"expected {_FORM}, got {value!r}")
    if isinstance(value, int):
        parts: Sequence[object] = (value, value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", value, re.ASCII)
        if m is None:
            raise ValueError(f"expected {_FORM}, got {value!r}")
        parts = (int(m.group(1)), int(m.group(2) or m.group(1)))
    elif isinstance(value, Sequence) and len(value) == 2:
        parts = value
    else:
        raise ValueError(f"expected {_FORM}, got {value!r}")
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        raise ValueError(f"expected {_FORM}, got {value!r}")
    h, w = int(parts[0]), int(parts[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"an input size must be positive pixels, got {value!r}")
    return (h, w)


def parse_hw_list(text: str) -> tuple[HW, ...]:
    """Comma-separated sizes, ``"256x128,320x160"`` or ``"224,320"``, each read by :func:`parse_hw`."""
    return tuple(parse_hw(part) for part in text.split(",") if part.strip())


def scale_hw(hw: HW, scale: float, multiple: int = 8) -> HW:
    """``hw`` times ``scale``, each side rounded to a multiple of ``multiple`` pixels (at least one
    multiple): ``(256, 128) x 1.25 -> (320, 160)``. Strided trunks want sides divisible by 8 or 32."""
    return (max(multiple, round(hw[0] * scale / multiple) * multiple), max(multiple, round(hw[1] * scale / multiple) * multiple))


def hw_label(hw: HW) -> str:
    """``(256, 128)`` -> ``"256x128"``: how sizes are written everywhere a person reads them."""
    return f"{hw[0]}x{hw[1]}"


@dataclass(frozen=True)
class Preprocess:
    """Model input: ``height`` x ``width`` RGB, normalised with ``mean``/``std`` (0-1 scale).

    A rectangle, not a square: pedestrian crops are tall and vehicle crops wide, and the
    aspect-preserving resize-pad (:func:`attrret.data.images.resize_pad`) fills it.
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def hw(self) -> HW:
        """``(height, width)``: the order of a tensor's last two dimensions."""
        return (self.height, self.width)

    def as_dict(self) -> dict:
        """The checkpoint / cache-manifest form (plain JSON types)."""
        return {"height": self.height, "width": self.width, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        """Read :meth:`as_dict`'s form; checkpoints from before rectangles, ``{"size": N, ...}``,
        are N x N inputs."""
        h, w = parse_hw([d["height"], d["width"]] if "height" in d else d["size"])
        return cls(h, w, tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))
