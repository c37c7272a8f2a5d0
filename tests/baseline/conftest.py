"""A tiny procedurally drawn vehicle set in Track-2 layout (train/ + test/), made per session.

Colour and type are drawn (a coloured box, wide for a Sedan, tall for a Bus, on a noisy
background) so a model can learn them; the brand is constant, so a caption's attributes are
exactly what the picture shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

COLOURS = {"red": (200, 30, 30), "blue": (30, 40, 200), "green": (30, 170, 40), "yellow": (230, 210, 30)}
TYPES = ("Sedan", "Bus")


def _draw(rng: np.random.Generator, colour: tuple[int, int, int], kind: str, size: int = 48) -> Image.Image:
    img = rng.integers(60, 190, (size, size, 3)).astype(np.float32)
    w, h = (rng.integers(30, 40), rng.integers(12, 18)) if kind == "Sedan" else (rng.integers(12, 18), rng.integers(30, 40))
    x, y = rng.integers(0, size - w), rng.integers(0, size - h)
    img[y : y + h, x : x + w] = np.array(colour) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def _write_split(root: Path, split: str, n_per_class: int, rng: np.random.Generator) -> None:
    images = root / split / f"{split}_images"
    images.mkdir(parents=True)
    lines = []
    for colour, rgb in COLOURS.items():
        for kind in TYPES:
            for _ in range(n_per_class):
                name = "".join(chr(97 + c) for c in rng.integers(0, 26, 10)) + ".jpg"
                _draw(rng, rgb, kind).save(images / name, quality=95)
                lines.append(f"{name}${colour} Audi {kind}.$This is a {colour} Audi {kind}.")
    order = rng.permutation(len(lines))
    (root / split / f"{split}_label.txt").write_text("".join(lines[i] + "\n" for i in order))


@pytest.fixture(scope="session")
def tiny_vehicles(tmp_path_factory) -> Path:
    """``train``: 8 classes x 24 images; ``test``: 8 classes x 6 images (chance R@1 = 1/8)."""
    root = tmp_path_factory.mktemp("tiny_vehicles")
    rng = np.random.default_rng(0)
    _write_split(root, "train", 24, rng)
    _write_split(root, "test", 6, rng)
    return root
