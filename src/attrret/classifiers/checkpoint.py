"""Self-describing classifier checkpoints: ``W/models/<task>/model.pt``.

A checkpoint is ``{"meta": {...}, "state_dict": {...}}`` of plain types and tensors, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled code runs). ``meta`` carries everything
needed to rebuild and feed the model and to refuse it when it no longer fits: task, classes,
backbone (spec, rebuildable arch, weight provenance), preprocessing, trainable blocks, the
front's weight hash, the schema fingerprint, metrics and the full training config.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

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
    ck = Checkpoint(path, blob["meta"], blob["state_dict"])
    if check_schema:
        current = load_schema().fingerprint
        if ck.schema_fingerprint != current:
            raise CheckpointError(
                f"{path}: trained under schema {ck.schema_fingerprint}, but the current schema is {current}; "
                "retrain this task (attrret train) with the current vocabulary"
            )
    return ck


def list_model_dirs(workdir: str | Path) -> list[Path]:
    """``W/models/<task>/`` directories holding a ``model.pt``, in schema task order."""
    root = Path(workdir) / "models"
    if not root.is_dir():
        return []
    order = {g.task: i for i, g in enumerate(load_schema().tasks)}
    dirs = [d for d in root.iterdir() if (d / "model.pt").is_file()]
    return sorted(dirs, key=lambda d: (order.get(d.name, len(order)), d.name))
