"""Batch inference for the index: per-task probabilities for a gallery, sharing the frozen front.

Models whose checkpoints agree on (architecture, front weight hash, preprocessing -- the input's
H x W among it --, cut, crop, tail norms) compute the same front output, so it is computed once per image batch and fed to
every such task's tail: 16 tasks on one backbone cost one front pass plus 16 small tails, not
16 full forwards. The trunk is built once per group; each further task of the group gets its
own tail module that shares the front's tensors (:meth:`Classifier.share_front`), so no
weights are ever swapped in place (under autocast that ran the first task's cached
low-precision tail for every task). Lean checkpoints (checkpoint.py) hold only that tail and
head; the group's front comes from its pretrained weights, built once per process and checked
against each checkpoint's front hash.

Precision (``precision``: :func:`attrret.classifiers.runtime.resolve_precision`): the front and
tails run under autocast in it; each task's head, temperature, softmax and flip average run in
float32 (:func:`attrret.classifiers.calibration.view_probs`), so what reaches NumPy is float32.
Probabilities are softmax outputs, at the task's fitted temperature (calibration.py), averaged
over the image and its horizontal flip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attrret.classifiers.calibration import view_probs
from attrret.classifiers.checkpoint import Checkpoint, build_classifier, list_model_dirs, load_checkpoint
from attrret.classifiers.inputs import front_views, load_batch
from attrret.classifiers.model import Classifier
from attrret.classifiers.runtime import Precision, resolve_device, resolve_precision, tune_malloc
from attrret.errors import CheckpointError
from attrret.schema import Schema

__all__ = ["predict_probs", "load_checkpoint", "list_model_dirs", "build_model", "task_model"]


def build_model(ck: Checkpoint) -> Classifier:
    """Rebuild a checkpoint's classifier (architecture from its meta; the front from the file, or
    for a lean checkpoint from its pretrained weights, hash-checked; the tail and head from the file)."""
    return build_classifier(ck)


def task_model(ck: Checkpoint, base: Classifier, first: bool) -> Classifier:
    """``ck``'s classifier on its group's model ``base`` (``first``: ``base`` was built from ``ck``).

    Every task but the first gets a module of its own that shares ``base``'s front tensors
    (:meth:`Classifier.share_front`) and holds ``ck``'s tail and head, so nothing is swapped in
    place at predict time (module doc). Predict and the ONNX export both build their tasks so.
    """
    keys = base.tail_keys() - {"head.weight", "head.bias"}
    sd = ck.stored  # lean or whole, it holds every tail key
    missing = sorted(k for k in [*keys, "head.weight", "head.bias"] if k not in sd)
    if missing:
        raise CheckpointError(f"{ck.path}: weights do not fit {ck.info.backbone.arch}: missing {missing[:3]}")
    if first:
        return base
    model = base.share_front()
    weight = sd["head.weight"]
    model.head = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(base.head.weight.device)  # its own class count
    try:
        model.load_state_dict({k: sd[k] for k in [*keys, "head.weight", "head.bias"]}, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{ck.path}: weights do not fit {ck.info.backbone.arch}: {str(exc)[:300]}") from None
    return model.requires_grad_(False).eval()


def _group_key(ck: Checkpoint) -> tuple:
    """Checkpoints with equal keys compute the same front output for an image (module doc)."""
    info = ck.info
    return (info.backbone.arch, info.front_hash, ck.preprocess, info.cut, info.crop, info.tail_norm)


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
    :class:`CheckpointError` for a checkpoint of another schema than ``schema`` (None: the
    packaged one) or a non-checkpoint, and
    :class:`attrret.errors.InputError` (naming the file) for an unreadable image.
    """
    tune_malloc()
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
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
            # One trunk per group: its front runs once per batch, then each task's own tail and head (module doc).
            base = build_model(members[0]).to(dev).requires_grad_(False)
            if dev.type == "cpu":
                base = base.to(memory_format=torch.channels_last)
            models = [task_model(ck, base, k == 0) for k, ck in enumerate(members)]
            temperatures = [ck.info.temperature for ck in members]
            heads = [(m.head.weight.float(), m.head.bias.float()) for m in models]  # float32, once per group
            pre, crop = members[0].preprocess, members[0].info.crop
            bar = prog.add_task(f"predict {len(members)} task(s), group {gi + 1}/{len(groups)}, {prec.name}", total=len(paths))
            with torch.no_grad():
                for s in range(0, len(paths), batch_size):
                    chunk = paths[s : s + batch_size]
                    views = front_views(base.front, load_batch(chunk, pre, crop), dev, prec, flips=tta_flip)
                    for ck, model, (weight, bias), t in zip(members, models, heads, temperatures):
                        with prec.autocast():
                            feats = [model.features(a, from_front=True) for a in views]
                        # the head, temperature, softmax and flip average in float32 (module doc)
                        logits = torch.stack([F.linear(f.float(), weight, bias) for f in feats])
                        out[ck.task][s : s + len(chunk)] = view_probs(logits, t).cpu().numpy()
                    prog.update(bar, advance=len(chunk))
    return out
