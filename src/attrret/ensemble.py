"""Ensemble members, the index's column layout, and the :class:`Predictor` that runs them.

A :class:`Predictor` is what ``attrret predict`` (:func:`attrret.retrieval.indexer.build_index`,
sharded or not), ``attrret attributes`` and find-similar by image talk to: an
:class:`attrret.classifiers.engine.Ensemble` of checkpoints run by PyTorch, or an exported graph
run by onnxruntime (:class:`attrret.export.onnx_runtime.OnnxGraph`). They answer the same
questions (what the header records, the probabilities of some images), so nothing downstream
branches on which one it has.

Torch-free, so commands that only read an index (``search``, ``rank``) can name members and
columns without importing a model (torch is imported when an ensemble predicts).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol


from attrret.geometry import HW
from attrret.io import file_sha256
from attrret.schema import Schema

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DOMAIN_GATE_FILE", "Member", "member_gate", "Predictor", "check_columns", "predictor_columns", "task_columns", "model_entries", "TTA_MODES", "TTA_DEFAULT"]

#: Test-time augmentation by default (``attrret predict`` / ``export onnx`` ``--tta``): ``none``.
#: Averaging with the mirrored image doubles predict's cost for little: on the held splits
#: (bench/accuracy.py --quick) sound mAP@10 +0.021 on pa100k-mini pedestrians and -0.006 on
#: vehicles-mini, official +0.005 and +0.010. ``--tta flip`` still buys it.
TTA_DEFAULT = "none"
#: The ``--tta`` values: ``flip`` averages each image with its mirror; ``none`` reads it alone.
TTA_MODES = ("flip", "none")


#: Beside a member's ``models/``: its domain gate (:mod:`attrret.classifiers.domain`), which
#: weighs the member per image by how much the image looks like its training dataset's.
DOMAIN_GATE_FILE = "domain_gate.json"


@dataclass(frozen=True)
class Member:
    """One ensemble member: task model dirs (schema order), its weight, the input sizes its
    tasks were trained at (several when each subject trained at its own recipe's size), and its
    domain gate (None: the weight is the same for every image)."""

    label: str
    task_dirs: tuple[Path, ...]
    weight: float = 1.0
    img_sizes: tuple[HW, ...] = ()
    domain_gate: Path | None = None


def member_gate(models_root: str | Path) -> Path | None:
    """The domain gate of the member whose task models are under ``models_root``: the
    :data:`DOMAIN_GATE_FILE` beside that folder, when there is one."""
    path = Path(models_root).parent / DOMAIN_GATE_FILE
    return path if path.is_file() else None


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
    workdir copied or moved with its index finds its own models. A gated member's entries also
    name its domain gate (``domain_gate``: path, relpath, sha256)."""
    from attrret.classifiers.checkpoint import load_checkpoint  # torch: only when models are read

    rows = []
    for i, m in enumerate(members):
        gate = None
        if m.domain_gate is not None:
            g = Path(m.domain_gate).resolve()
            gate = {"path": str(g), "relpath": os.path.relpath(g, out.resolve()), "sha256": file_sha256(g)}
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
                **({"domain_gate": dict(gate)} if gate else {}),  # each entry its own: an export edits them
            })
    return rows


class Predictor(Protocol):
    """What runs the models of a predict: images in, the index's probability rows out.

    ``tta``, ``precision`` and ``weights`` are what an index header records about how its rows
    were computed (``precision`` resolved: ``fp32``, ``bf16`` or ``fp16``); ``gates`` says whether
    it can run the router first and each image through its own subject's models only.
    """

    @property
    def tta(self) -> str: ...

    @property
    def precision(self) -> str: ...

    @property
    def weights(self) -> tuple[float, ...]: ...

    @property
    def gates(self) -> bool: ...

    def entries(self, out: Path, schema: Schema) -> list[dict]:
        """The index header's ``models``: one entry per checkpoint, with what ``check_fresh`` checks."""
        ...

    def probs(self, paths: Sequence[Path], schema: Schema, *, columns: Mapping[str, tuple[int, int]], gate: bool = False,
              batch_size: int = 64, progress: bool = True) -> np.ndarray:
        """Float32 ``(len(paths), width)`` probabilities in ``columns`` order (an index header's
        layout: :func:`task_columns` of the entries' tasks). ``gate``: router first (needs ``gates``)."""
        ...


def check_columns(predicted: Mapping[str, tuple[int, int]], index: Mapping[str, tuple[int, int]], what: str = "the models") -> None:
    """Refuse to write ``what``'s probabilities (their layout ``predicted``) into an index whose
    header has another layout: the one check every :class:`Predictor` makes."""
    from attrret.errors import CheckpointError

    if dict(predicted) != dict(index):
        raise CheckpointError(f"{what}: predicted columns {dict(predicted)}, the index has {dict(index)}; re-run attrret predict")


def predictor_columns(predictor: Predictor, schema: Schema) -> dict[str, tuple[int, int]]:
    """The column layout ``predictor`` writes: :func:`task_columns` of its models' tasks."""
    return task_columns([e["task"] for e in predictor.entries(Path.cwd(), schema)], schema)
