"""Fixtures of the classifier tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_classifier_data import make_folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")
