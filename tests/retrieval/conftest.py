"""Helpers: small real indexes written with write_index."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from attrret.retrieval.index import IndexHeader, write_index
from attrret.schema import load_schema

if TYPE_CHECKING:
    from attrret.classifiers.domain import DomainGate


def make_index(path: Path, rows: dict[str, dict[str, list[float]]], tasks=None):
    """Write an index whose row ``name`` has probabilities ``rows[name][task]`` (missing = uniform)."""
    schema = load_schema()
    tasks = tasks or [g.task for g in schema.tasks]
    columns, at = {}, 0
    for t in tasks:
        columns[t] = (at, at + schema.task(t).size)
        at += schema.task(t).size
    probs = np.zeros((len(rows), at), np.float32)
    for i, vals in enumerate(rows.values()):
        for t in tasks:
            a, b = columns[t]
            probs[i, a:b] = vals.get(t, [1.0 / (b - a)] * (b - a))
    header = IndexHeader(schema=schema.fingerprint, count=len(rows), columns=columns, models=(), img_sizes=(32,),
                         tta="flip", weights=(1.0,))
    files = [{"path": n, "size": 0, "mtime_ns": 0} for n in rows]
    return write_index(path, probs, list(rows), files, header)


def pooled_fronts(checkpoint: Path, images, flip: bool = False) -> list[np.ndarray]:
    """Brute force: the pooled float32 front output of ``checkpoint``'s model for each image and
    (``flip``) its mirror."""
    import torch

    from attrret.classifiers.checkpoint import build_classifier, load_checkpoint
    from attrret.classifiers.preprocess import load_batch

    ck = load_checkpoint(checkpoint)
    model = build_classifier(ck).eval()
    x = load_batch(images, ck.preprocess, ck.info.crop)
    with torch.no_grad():
        return [model.front(v).double().mean((2, 3)).numpy() for v in ((x, torch.flip(x, dims=[3])) if flip else (x,))]


def write_domain_gate(checkpoint: Path, out: Path, seed: int, images) -> tuple[Path, DomainGate]:
    """A domain gate on the front of ``checkpoint`` with random weights, scaled to the images'
    features so that they get clearly different probabilities, written to ``out``."""
    from attrret.classifiers.checkpoint import load_checkpoint
    from attrret.classifiers.domain import DomainGate

    ck = load_checkpoint(checkpoint)
    feats = pooled_fronts(checkpoint, images)[0]
    weight = np.random.default_rng(seed).normal(0.0, 3.0 / np.sqrt(feats.shape[1]), feats.shape[1]) / (feats.std(0) + 1e-6)
    gate = DomainGate(arch=ck.info.backbone.arch, front_hash=ck.info.front_hash, preprocess=ck.preprocess, cut=ck.info.cut,
                      crop=ck.info.crop, weight=tuple(weight), bias=float(-weight @ feats.mean(0)), datasets=("a", "b"))
    gate.save(out)
    return out, gate


@pytest.fixture
def index_factory(tmp_path):
    return lambda rows, tasks=None, name="index": make_index(tmp_path / name, rows, tasks)


def cli(*args: str, check: bool = True, input: str | None = None):
    """Run ``python -m attrret ARGS`` (a real process: exit codes and stderr as a user sees them);
    ``input`` is its stdin."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "attrret", *args], capture_output=True, text=True, env=env, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"attrret {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny synthetic Track-2 set and every task trained on it through the CLI (1 epoch, 32 px)."""
    root = tmp_path_factory.mktemp("e2e")
    data, work = root / "syn", root / "w"
    cli("data", "synth", "--out", str(data), "--pedestrians", "40", "--vehicles", "30", "--test-fraction", "0.4")
    cli("train", "--task", "all", "--data", str(data), "--workdir", str(work), "--backbone", "timm:test_efficientnet",
        "--random-init", "--img-size", "32", "--epochs", "1", "--batch-size", "16", "--quiet")
    return data, work
