"""Batch inference for the index: per-task probabilities for a gallery, sharing the frozen front.

Models whose checkpoints agree on (architecture, front weight hash, preprocessing -- the input's
H x W among it --, cut, crop, tail norms) compute the same front output, so it is computed once per image batch and fed to
every such task's tail: 16 tasks on one backbone cost one front pass plus 16 small tails, not
16 full forwards. The group is ONE model: each task's tail weights are loaded into it in turn
(a copy of a few hundred thousand numbers) and its own head applied, so the trunk is built
once per group, not once per task (building one, with timm's factory and a dummy forward, was
most of what one image through 16 tasks cost). Lean checkpoints (checkpoint.py) hold only that
tail and head; the group's front comes from its pretrained weights, built once per process and
checked against each checkpoint's front hash. Probabilities are softmax outputs, at the task's
fitted temperature (calibration.py), averaged over the image and its horizontal flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from attrret.classifiers.checkpoint import Checkpoint, build_classifier, list_model_dirs, load_checkpoint
from attrret.classifiers.inputs import front_views, load_batch
from attrret.classifiers.model import Classifier
from attrret.classifiers.runtime import autocast, resolve_device, tune_malloc
from attrret.errors import CheckpointError
from attrret.schema import Schema

__all__ = ["predict_probs", "load_checkpoint", "list_model_dirs", "build_model"]


def build_model(ck: Checkpoint) -> Classifier:
    """Rebuild a checkpoint's classifier (architecture from its meta; the front from the file, or
    for a lean checkpoint from its pretrained weights, hash-checked; the tail and head from the file)."""
    return build_classifier(ck)


class _TaskTail(NamedTuple):
    """What one task adds to its group's shared model: its tail weights (none when only the
    head trains) and its head."""

    state: dict[str, torch.Tensor]
    weight: torch.Tensor
    bias: torch.Tensor
    temperature: float  # the softmax temperature fitted at training (calibration.py); 1.0 in older checkpoints


def _task_tail(ck: Checkpoint, model: Classifier) -> _TaskTail:
    """The tail and head of ``ck``, checked against the group's model (``model``)."""
    keys = model.tail_keys() - {"head.weight", "head.bias"}
    sd = ck.stored  # lean or whole, it holds every tail key
    missing = sorted(k for k in [*keys, "head.weight", "head.bias"] if k not in sd)
    if missing:
        raise CheckpointError(f"{ck.path}: weights do not fit {ck.meta['backbone']['arch']}: missing {missing[:3]}")
    return _TaskTail({k: sd[k] for k in keys}, sd["head.weight"].float(), sd["head.bias"].float(),
                     float(ck.meta.get("temperature", 1.0)))


def _group_key(ck: Checkpoint) -> tuple:
    """Checkpoints with equal keys compute the same front output for an image (module doc)."""
    meta = ck.meta
    return (meta["backbone"]["arch"], meta["front_hash"], ck.preprocess, meta["cut"], meta.get("crop", "full"), meta.get("tail_norm"))


def _load_tail(model: Classifier, tail: _TaskTail, ck: Checkpoint) -> None:
    if not tail.state:
        return
    try:
        model.load_state_dict(tail.state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{ck.path}: weights do not fit {ck.meta['backbone']['arch']}: {str(exc)[:300]}") from None


def predict_probs(
    model_dirs: Sequence[Path],
    images: Sequence[Path],
    *,
    tta_flip: bool = True,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
    schema: Schema | None = None,
) -> dict[str, np.ndarray]:
    """Per task name, float32 ``(len(images), n_classes)`` probabilities in ``images`` order.

    Each entry of ``model_dirs`` is ``W/models/<task>/`` (or a ``model.pt``). Raises
    :class:`CheckpointError` for a checkpoint of another schema than ``schema`` (None: the
    packaged one) or a non-checkpoint, and
    :class:`attrret.errors.InputError` (naming the file) for an unreadable image.
    """
    tune_malloc()
    dev = resolve_device(device)
    cks = [load_checkpoint(Path(d), schema=schema) for d in model_dirs]
    tasks = [ck.task for ck in cks]
    if len(set(tasks)) != len(tasks):
        dup = sorted({t for t in tasks if tasks.count(t) > 1})
        raise CheckpointError(f"several models for the same task: {', '.join(dup)}")
    groups: dict[tuple, list[Checkpoint]] = {}
    for ck in cks:
        groups.setdefault(_group_key(ck), []).append(ck)
    out = {ck.task: np.zeros((len(images), len(ck.classes)), np.float32) for ck in cks}
    paths = [Path(p) for p in images]

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, quiet=not progress)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not progress) as prog:
        for gi, members in enumerate(groups.values()):
            # One model per group: its front runs once per batch, then each task's tail
            # weights are loaded into it in turn and its own head applied (module doc).
            model = build_model(members[0]).to(dev)
            if dev.type == "cpu":
                model = model.to(memory_format=torch.channels_last)
            tails = [_task_tail(ck, model) for ck in members]
            pre, crop = members[0].preprocess, members[0].meta.get("crop", "full")
            bar = prog.add_task(f"predict {len(members)} task(s), group {gi + 1}/{len(groups)}", total=len(paths))
            with torch.no_grad():
                for s in range(0, len(paths), batch_size):
                    chunk = paths[s : s + batch_size]
                    views = front_views(model.front, load_batch(chunk, pre, crop), dev, flips=tta_flip)
                    acc = [0.0] * len(members)
                    for a in views:
                        with autocast(dev):
                            f = None
                            for k, tail in enumerate(tails):
                                if tail.state or f is None:  # a head-only task reuses the features
                                    _load_tail(model, tail, members[k])
                                    f = model.features(a, from_front=True).float()
                                logits = F.linear(f, tail.weight.to(dev), tail.bias.to(dev))
                                acc[k] = acc[k] + (logits / tail.temperature).softmax(-1)
                    for ck, probs in zip(members, acc):
                        out[ck.task][s : s + len(chunk)] = (probs / len(views)).cpu().numpy()
                    prog.update(bar, advance=len(chunk))
    return out
