"""Shared parser fixtures: one parser per session (building the matcher costs about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrret.parser import CaptionParser

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def parser() -> CaptionParser:
    return CaptionParser()


def _shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture(scope="session")
def val_sample() -> Path:
    """2,000 real Track-2 validation lines (700 vehicles, 1,300 pedestrians)."""
    return _shared("track2/val_sample.txt")


@pytest.fixture(scope="session")
def pa100k_labels() -> Path:
    """1,500 pedestrian label lines (151 real Track-2 captions, the rest by the same grammar)."""
    return _shared("pa100k-mini/labels.txt")
