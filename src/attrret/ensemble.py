"""Ensemble members and the index's column layout: what the predict engine is built from.

Torch-free, so commands that only read an index (``search``, ``rank``) can name members and
columns without importing a model (attrret.classifiers.engine builds the models).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attrret.geometry import HW
from attrret.io import file_sha256
from attrret.schema import Schema

__all__ = ["Member", "task_columns", "model_entries", "TTA_MODES", "TTA_DEFAULT"]

#: Test-time augmentation by default (``attrret predict`` / ``export onnx`` ``--tta``): ``none``.
#: Averaging with the mirrored image doubles predict's cost for little: on the held splits
#: (bench/accuracy.py --quick) sound mAP@10 +0.021 on pa100k-mini pedestrians and -0.006 on
#: vehicles-mini, official +0.005 and +0.010. ``--tta flip`` still buys it.
TTA_DEFAULT = "none"
#: The ``--tta`` values: ``flip`` averages each image with its mirror; ``none`` reads it alone.
TTA_MODES = ("flip", "none")


@dataclass(frozen=True)
class Member:
    """One ensemble member: task model dirs (schema order), its weight, and the input sizes its
    tasks were trained at (several when each subject trained at its own recipe's size)."""

    label: str
    task_dirs: tuple[Path, ...]
    weight: float = 1.0
    img_sizes: tuple[HW, ...] = ()


def task_columns(tasks: Sequence[str] | None, schema: Schema) -> dict[str, tuple[int, int]]:
    """Index column layout: ``task -> [start, stop)``, the given tasks (None: every task of the
    schema) in schema order. ``IndexHeader.width`` is the last stop."""
    have = {g.task for g in schema.tasks} if tasks is None else set(tasks)
    columns, at = {}, 0
    for g in schema.tasks:
        if g.task in have:
            columns[g.task] = (at, at + g.size)
            at += g.size
    return columns


def model_entries(members: Sequence[Member], out: Path, schema: Schema) -> list[dict]:
    """One entry per checkpoint of ``members`` (the index header's ``models``, an export's
    metadata). Paths are recorded resolved, and also relative to ``out`` (``relpath``): a
    workdir copied or moved with its index finds its own models."""
    from attrret.classifiers.checkpoint import load_checkpoint  # torch: only when models are read

    rows = []
    for i, m in enumerate(members):
        for d in m.task_dirs:
            ck = load_checkpoint(d, schema=schema, mmap=True)  # mmap: only the meta is read
            cfg = ck.info.config
            data = cfg.get("data")
            path = ck.path.resolve()
            rows.append({
                "member": i, "task": ck.task, "path": str(path), "relpath": os.path.relpath(path, out.resolve()),
                "sha256": file_sha256(ck.path), "img_size": list(ck.preprocess.hw),
                "backbone": ck.info.backbone.arch, "weight": m.weight,
                # older checkpoints recorded the data path as typed; resolve it once, here
                "train_data": str(Path(data).resolve()) if isinstance(data, str) and data else None,
                "holdout": cfg.get("holdout", 0),
            })
    return rows
