"""Per-task probabilities for a list of images: the predict engine on one set of task models.

``predict_probs`` is :class:`attrret.classifiers.engine.Engine` (the one definition of the
mapping; its module doc says what it computes and in which precision) run ungated on the
models of ``model_dirs``, its columns split per task. The index is built by the same engine
through :func:`attrret.retrieval.predict.ensemble_probs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attrret.classifiers.engine import Engine, Member
from attrret.classifiers.runtime import Precision
from attrret.schema import Schema

__all__ = ["predict_probs"]


def predict_probs(
    model_dirs: Sequence[Path],
    images: Sequence[Path],
    *,
    tta_flip: bool = True,
    batch_size: int = 64,
    device: str = "cpu",
    precision: Precision | str | None = None,
    progress: bool = True,
    schema: Schema | None = None,
) -> dict[str, np.ndarray]:
    """Per task name, float32 ``(len(images), n_classes)`` probabilities in ``images`` order.

    Each entry of ``model_dirs`` is ``W/models/<task>/`` (or a ``model.pt``). ``precision``:
    ``auto``, ``fp32``, ``bf16`` or ``fp16`` (None: ``$ATTRRET_PRECISION``, else auto). Raises
    :class:`attrret.errors.CheckpointError` for two models of one task, a checkpoint of another
    schema than ``schema`` (None: the packaged one) or a non-checkpoint, and
    :class:`attrret.errors.InputError` (naming the file) for an unreadable image.
    """
    engine = Engine.build([Member("models", tuple(Path(d) for d in model_dirs))], schema, flip=tta_flip)
    probs = engine.predict([Path(p) for p in images], gate=False, batch_size=batch_size, device=device,
                           precision=precision, progress=progress)
    return {task: probs[:, a:b] for task, (a, b) in engine.columns.items()}
