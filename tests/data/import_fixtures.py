"""Helpers shared by the import tests: tiny real image files and the CLI run in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attrret.cli import main

PETA_MINI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "peta-mini"  # real PETA crops, by path


def tiny_image(path: Path, seed: int, size: tuple[int, int] = (16, 32)) -> Path:
    """A small real image file (format from the suffix), its pixels drawn from ``seed``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def run(*args: str, capsys) -> tuple[int, str, str]:
    """``attrret ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(map(str, args)))
    cap = capsys.readouterr()
    return done.value.code, cap.out, cap.err


def error_line(code: int, err: str) -> str:
    """The one-line error of a failed command (exit 1, no traceback)."""
    assert code == 1 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("attrret: error:"), err
    return lines[0]
