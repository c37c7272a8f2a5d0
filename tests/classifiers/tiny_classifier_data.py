"""Tiny labelled image folders for the classifier tests (generated, a few KB), and a schema whose
default input sizes are small enough for them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

VEHICLE_ATTRS = ["red Audi.", "white Audi.", "black BMW.", "red BMW.", "white Audi.", "black Audi.", "SUV.", "Sedan."]


def make_folder(root: Path, n_ped: int = 24, n_veh: int = 8, seed: int = 0) -> Path:
    """``labels.txt + images/``: pedestrians whose gender is visible as colour (female red,
    male blue), so even a tiny model learns it; a few vehicles for the router."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_ped):
        female = i % 2 == 0
        bits = [0] * 21
        bits[0] = int(female)
        bits[1 + i % 3] = 1  # age
        bits[4 + (i // 3) % 3] = 1  # orientation
        bits[7] = int(i % 4 == 0)  # hat
        bits[13 + i % 2] = 1  # sleeve
        arr = rng.integers(0, 60, (48, 24, 3)).astype(np.uint8)
        arr[..., 0 if female else 2] += 180
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(arr).save(root / "images" / name, quality=90)
        lines.append(f"{name}${','.join(map(str, bits))}$A pedestrian.")
    for j in range(n_veh):
        name = "".join(chr(97 + (j + k) % 26) for k in range(10)) + ".jpg"
        arr = rng.integers(0, 60, (24, 48, 3)).astype(np.uint8)
        arr[..., 1] += 180
        Image.fromarray(arr).save(root / "images" / name, quality=90)
        attr = VEHICLE_ATTRS[j % len(VEHICLE_ATTRS)]
        lines.append(f"{name}${attr}$This is a {attr}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return root


def small_input_schema(directory: Path, gender_crop: str | None = None):
    """The packaged schema with a recipes.toml of small inputs (pedestrian 48x24, router 32x32)
    and, if given, a crop for gender: defaults a tiny test can train at."""
    from attrret.schema import load_schema

    directory.mkdir(parents=True, exist_ok=True)
    for name in ("pedestrian.toml", "vehicle.toml", "router.toml"):
        text = resources.files("attrret.schema").joinpath(name).read_text(encoding="utf-8")
        (directory / name).write_text(text, encoding="utf-8")
    recipes = '[subject.pedestrian]\ninput = "48x24"\n[subject.router]\ninput = "32x32"\n'
    if gender_crop:
        recipes += f'[task."pedestrian.gender"]\ncrop = "{gender_crop}"\n'
    (directory / "recipes.toml").write_text(recipes, encoding="utf-8")
    return load_schema(directory)


def interrupt_second_evaluation(patch) -> None:
    """Make training's per-epoch evaluation raise KeyboardInterrupt on its second call: a run
    stopped after epoch 1, with that epoch's last.pt on disk. ``patch``: a pytest
    ``monkeypatch`` (or its ``context()``), which puts the real one back."""
    from attrret.classifiers import train as train_mod

    real, calls = train_mod._evaluate, []

    def interrupting(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    patch.setattr(train_mod, "_evaluate", interrupting)
