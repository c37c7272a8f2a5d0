"""Batch inference for the index: per-task probabilities for a gallery, sharing the frozen front.

Models whose checkpoints agree on (architecture, front weight hash, preprocessing, cut, crop)
compute the same front output, so it is computed once per image batch and fed to every such
task's tail: 16 tasks on one backbone cost one front pass plus 16 small tails, not 16 full
forwards. Probabilities are softmax outputs averaged over the image and its horizontal flip.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from attrret.classifiers.backbones import Backbone, Preprocess, rebuild_backbone
from attrret.classifiers.checkpoint import Checkpoint, list_model_dirs, load_checkpoint
from attrret.classifiers.inputs import load_input, to_tensor
from attrret.classifiers.model import Classifier
from attrret.classifiers.runtime import autocast, resolve_device, tune_malloc
from attrret.errors import CheckpointError

__all__ = ["predict_probs", "load_checkpoint", "list_model_dirs", "build_model"]


def _preprocess(meta: dict) -> Preprocess:
    p = meta["preprocess"]
    return Preprocess(int(p["size"]), tuple(p["mean"]), tuple(p["std"]))


def build_model(ck: Checkpoint, backbone: Backbone | None = None) -> Classifier:
    """Rebuild a checkpoint's classifier (architecture from its meta, weights from its state).

    ``backbone``: an already built architecture of the same ``arch`` and preprocessing, copied
    instead of built again. Building one (timm's factory plus a dummy forward to size the
    head) costs far more than copying it: predicting 16 tasks on one image spent most of its
    time building 16 trunks.
    """
    meta = ck.meta
    bb = backbone or rebuild_backbone(meta["backbone"]["arch"], _preprocess(meta))
    trunk = copy.deepcopy(bb.trunk) if backbone is not None else bb.trunk
    model = Classifier(trunk, bb.feature_dim, len(meta["classes"]), int(meta["trainable_blocks"]),
                       frozen_tail_norms=meta.get("tail_norm") == "frozen")
    try:
        model.load_state_dict(ck.state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{ck.path}: weights do not fit {meta['backbone']['arch']}: {str(exc)[:300]}") from None
    return model.eval()


def _group_key(meta: dict) -> tuple:
    p = meta["preprocess"]
    return (meta["backbone"]["arch"], meta["front_hash"], p["size"], tuple(p["mean"]), tuple(p["std"]), meta["cut"], meta.get("crop", "full"))


def predict_probs(
    model_dirs: Sequence[Path],
    images: Sequence[Path],
    *,
    tta_flip: bool = True,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Per task name, float32 ``(len(images), n_classes)`` probabilities in ``images`` order.

    Each entry of ``model_dirs`` is ``W/models/<task>/`` (or a ``model.pt``). Raises
    :class:`CheckpointError` for a foreign schema or a non-checkpoint, and
    :class:`attrret.errors.InputError` (naming the file) for an unreadable image.
    """
    tune_malloc()
    dev = resolve_device(device)
    cks = [load_checkpoint(Path(d)) for d in model_dirs]
    tasks = [ck.task for ck in cks]
    if len(set(tasks)) != len(tasks):
        dup = sorted({t for t in tasks if tasks.count(t) > 1})
        raise CheckpointError(f"several models for the same task: {', '.join(dup)}")
    groups: dict[tuple, list[Checkpoint]] = {}
    for ck in cks:
        groups.setdefault(_group_key(ck.meta), []).append(ck)
    out = {ck.task: np.zeros((len(images), len(ck.classes)), np.float32) for ck in cks}
    paths = [Path(p) for p in images]

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, quiet=not progress)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, disable=not progress) as prog:
        for gi, members in enumerate(groups.values()):
            arch = rebuild_backbone(members[0].meta["backbone"]["arch"], _preprocess(members[0].meta))
            models = [build_model(ck, arch).to(dev) for ck in members]  # one architecture build per group
            if dev.type == "cpu":
                models = [m.to(memory_format=torch.channels_last) for m in models]
            front, pre, crop = models[0], _preprocess(members[0].meta), members[0].meta.get("crop", "full")
            bar = prog.add_task(f"predict {len(members)} task(s), group {gi + 1}/{len(groups)}", total=len(paths))
            with torch.no_grad():
                for s in range(0, len(paths), batch_size):
                    chunk = paths[s : s + batch_size]
                    x = torch.stack([to_tensor(load_input(p, pre, crop), pre) for p in chunk]).to(dev)
                    views = [x, torch.flip(x, dims=[3])] if tta_flip else [x]
                    acc = [0.0] * len(models)
                    for xv in views:
                        if dev.type == "cpu":
                            xv = xv.contiguous(memory_format=torch.channels_last)
                        with autocast(dev):
                            a = front.front(xv)
                            for k, m in enumerate(models):
                                acc[k] = acc[k] + m(a, from_front=True).float().softmax(-1)
                    for ck, probs in zip(members, acc):
                        out[ck.task][s : s + len(chunk)] = (probs / len(views)).cpu().numpy()
                    prog.update(bar, advance=len(chunk))
    return out
