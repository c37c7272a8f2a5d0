"""A tiny synthetic Track-2 set shared by the data tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attrret.data.synth import SynthConfig, generate

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data"
VAL_SAMPLE = REAL / "track2" / "val_sample.txt"
PA100K_MINI = REAL / "pa100k-mini"


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(out, SynthConfig(pedestrians=60, vehicles=60, seed=5, workers=1, preview=True))
    return out


@pytest.fixture(scope="session")
def val_sample() -> Path:
    if not VAL_SAMPLE.exists():
        pytest.skip(f"{VAL_SAMPLE} not available")
    return VAL_SAMPLE


@pytest.fixture(scope="session")
def pa100k_mini() -> Path:
    if not PA100K_MINI.exists():
        pytest.skip(f"{PA100K_MINI} not available")
    return PA100K_MINI
