"""Self-describing classifier checkpoints: ``W/models/<task>/model.pt``.

A checkpoint is ``{"meta": {...}, "state_dict": {...}}`` of plain types and tensors, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled code runs). ``meta`` carries everything
needed to rebuild and feed the model and to refuse it when it no longer fits: task, classes,
backbone (spec, rebuildable arch, weight provenance), preprocessing, trainable blocks, the
front's weight hash, the schema fingerprint, metrics and the full training config.
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from attrret.classifiers.inputs import CROPS
from attrret.errors import CheckpointError
from attrret.io import atomic_write_bytes
from attrret.schema import load_schema

__all__ = ["FORMAT", "Checkpoint", "save_checkpoint", "load_checkpoint", "list_model_dirs"]

FORMAT = "attrret-classifier/1"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    meta: dict
    state_dict: dict[str, torch.Tensor]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.meta["classes"])

    @property
    def schema_fingerprint(self) -> str:
        return self.meta["schema_fingerprint"]


def save_checkpoint(path: str | Path, meta: dict, state_dict: dict[str, torch.Tensor]) -> None:
    """Write atomically; tensors are detached CPU copies so the file never aliases live weights."""
    sd = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "meta": meta, "state_dict": sd}, buf)
    atomic_write_bytes(path, buf.getvalue())


MAX_CHECKPOINT_BYTES = 4 * 2**30  # uncompressed; an EVA-L task checkpoint is ~1.2 GB


def _check_archive_size(path: Path, limit: int = MAX_CHECKPOINT_BYTES) -> None:
    """Refuse a checkpoint whose archive directory declares more than ``limit`` bytes.

    ``torch.save`` writes a zip of *stored* (uncompressed) entries, so a real checkpoint expands
    to about its own size. A deflate bomb (1 MB expanding to GBs) is caught from the central
    directory before a byte is inflated: more than twice the file size (+16 MiB of slack), or
    more than ``limit``, is refused. Non-zip files fall through to ``torch.load``, which refuses them.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return
    if total > min(limit, 2 * path.stat().st_size + 16 * 2**20):
        raise CheckpointError(f"{path}: checkpoint would expand to {total / 2**20:,.0f} MiB from a "
                              f"{path.stat().st_size / 2**20:,.1f} MiB file (not what torch.save writes); refusing to load it")


def load_checkpoint(path: str | Path, *, check_schema: bool = True) -> Checkpoint:
    """Load ``path`` (a ``model.pt`` or its directory) with ``weights_only=True``.

    Raises :class:`CheckpointError` for a missing file, a file that is not a weights-only
    attrret checkpoint, or one trained under another schema (the message names both
    fingerprints).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    _check_archive_size(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a weights-only attrret checkpoint ({first[:200]})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or "meta" not in blob or "state_dict" not in blob:
        raise CheckpointError(f"{path}: not an attrret classifier checkpoint (expected format {FORMAT})")
    _check_meta(path, blob["meta"], blob["state_dict"])
    ck = Checkpoint(path, blob["meta"], blob["state_dict"])
    if check_schema:
        schema = load_schema()
        if ck.schema_fingerprint != schema.fingerprint:
            raise CheckpointError(
                f"{path}: trained under schema {ck.schema_fingerprint}, but the current schema is {schema.fingerprint}; "
                "retrain this task (attrret train) with the current vocabulary"
            )
        try:
            known = schema.task(ck.task).classes
        except KeyError:
            raise CheckpointError(f"{path}: checkpoint for task {ck.task!r}, which the schema does not have") from None
        if ck.classes != known:
            raise CheckpointError(f"{path}: classes {list(ck.classes)} of {ck.task} contradict the schema's {list(known)}")
    return ck


def _check_meta(path: Path, meta: object, state_dict: object) -> None:
    """Refuse metadata that contradicts itself before anything is built from it: every field
    predict reads, of the right kind, and a head as wide as the class list."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: damaged checkpoint metadata: {what}; retrain this task (attrret train)")

    def number(x: object) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)

    if not isinstance(meta, dict) or not isinstance(state_dict, dict):
        raise bad("meta and state_dict must be objects")
    for key, kind in (("task", str), ("classes", list), ("backbone", dict), ("preprocess", dict),
                      ("trainable_blocks", int), ("cut", int), ("front_hash", str), ("schema_fingerprint", str)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise bad(f"{key!r} is missing or not a {kind.__name__}")
    classes, pre = meta["classes"], meta["preprocess"]
    if len(classes) < 2 or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        raise bad("'classes' must be two or more distinct names")
    if not isinstance(meta["backbone"].get("arch"), str):
        raise bad("'backbone.arch' is missing")
    size = pre.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise bad(f"'preprocess.size' must be a positive number of pixels, got {size!r}")
    for key in ("mean", "std"):
        v = pre.get(key)
        if not (isinstance(v, list | tuple) and len(v) == 3 and all(map(number, v))) or key == "std" and min(v) <= 0:
            raise bad(f"'preprocess.{key}' must be three finite numbers" + (" > 0" if key == "std" else ""))
    if meta["trainable_blocks"] < 0:
        raise bad("'trainable_blocks' must be >= 0")
    if meta.get("crop", "full") not in CROPS:
        raise bad(f"'crop' must be one of {', '.join(CROPS)}, got {meta.get('crop')!r}")
    head = state_dict.get("head.weight")
    if not isinstance(head, torch.Tensor) or head.ndim != 2 or head.shape[0] != len(classes):
        got = tuple(head.shape) if isinstance(head, torch.Tensor) else None
        raise bad(f"the head has shape {got} for {len(classes)} classes")


def list_model_dirs(workdir: str | Path) -> list[Path]:
    """``W/models/<task>/`` directories holding a ``model.pt``, in schema task order."""
    root = Path(workdir) / "models"
    if not root.is_dir():
        return []
    order = {g.task: i for i, g in enumerate(load_schema().tasks)}
    dirs = [d for d in root.iterdir() if (d / "model.pt").is_file()]
    return sorted(dirs, key=lambda d: (order.get(d.name, len(order)), d.name))
