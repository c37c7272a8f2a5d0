"""The shared frozen-trunk cache: front output per (image, view) computed once, reused everywhere.

With partial freezing the front of the network is the same pretrained function for every
task and every epoch, so its output for an image at a resolution and flip never changes. We
compute it once and keep it as a float16 ``.npy`` memory map under ``W/cache/<key>/``, where
the key hashes everything the output depends on: rebuildable architecture, the front's weight
tensors (so a changed or random init can never match), resolution, cut point, crop and
normalisation (the input's H x W among them). Each image set gets its own file beside a manifest listing every image with
its size and mtime; a manifest that does not match the files on disk is rebuilt, so the
cache is never stale. An image set contained in one already cached under the same key (the
anchor member's one dataset inside the several-dataset run's images) reads that file, its
images' sizes and mtimes checked the same way, instead of computing the front again. Files
are written to a temporary name and renamed, manifest last.

Views: 0 = the image, 1 = its horizontal flip (the augmentation the cache keeps; random
crops and colour jitter would need a fresh forward each epoch, which is the cost the cache
removes -- the on-the-fly path keeps them when the cache is off or over budget).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from attrret.geometry import Preprocess
from attrret.classifiers.preprocess import front_views, load_batch
from attrret.classifiers.model import Classifier
from attrret.classifiers.runtime import Precision, resolve_precision
from attrret.io import atomic_path, atomic_write_text

__all__ = ["CACHE_VERSION", "FrontCache", "cache_key", "front_shape", "open_or_build"]

CACHE_VERSION = 1
VIEWS = 2


@dataclass(frozen=True)
class FrontCache:
    """Cached front output: ``features[row, view]`` for the image at ``rows[path]``."""

    directory: Path
    features: np.ndarray  # (N, VIEWS, *shape) float16, memory-mapped
    rows: dict[str, int]
    reused: bool

    def batch(self, paths: Sequence[str], views: Sequence[int]) -> torch.Tensor:
        idx = np.fromiter((self.rows[p] for p in paths), dtype=np.int64, count=len(paths))
        return torch.from_numpy(np.ascontiguousarray(self.features[idx, np.asarray(views)])).float()


def cache_key(arch: str, front_hash: str, pre: Preprocess, cut: int, crop: str, precision: str = "fp32") -> str:
    """The cache folder's name: everything the front output depends on, the precision that
    computes it among them (a bf16 front is not an fp32 one; neither run reuses the other's)."""
    blob = json.dumps(
        {"v": CACHE_VERSION, "arch": arch, "front": front_hash, "pre": pre.as_dict(), "cut": cut, "crop": crop, "precision": precision},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def front_shape(model: Classifier, pre: Preprocess) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(model.front(torch.zeros(1, 3, *pre.hw)).shape[1:])


def _superset(directory: Path, key: str, shape: tuple[int, ...], stats: list[list]) -> FrontCache | None:
    """A valid cache under ``directory`` holding every image of ``stats`` (unchanged since it
    was cached), else None."""
    if not directory.is_dir():
        return None
    for manifest_path in sorted(directory.glob("*.json")):
        try:
            manifest = json.loads(manifest_path.read_text())
            if manifest.get("key") != key or manifest.get("shape") != list(shape):
                continue
            have = {row[0]: (i, row) for i, row in enumerate(manifest["images"])}
            if not all(s[0] in have and have[s[0]][1] == s for s in stats):
                continue
            feats = np.load(manifest_path.with_suffix(".npy"), mmap_mode="r")
        except (OSError, ValueError, EOFError, KeyError, TypeError, IndexError):
            continue  # damaged or another format: not this one
        if feats.shape == (len(have), VIEWS, *shape):
            return FrontCache(directory, feats, {p: i for p, (i, _) in have.items()}, reused=True)
    return None


def _stat(path: str) -> list:
    st = os.stat(path)
    return [path, st.st_size, st.st_mtime_ns]


def estimate_bytes(n_images: int, shape: tuple[int, ...]) -> int:
    return n_images * VIEWS * int(np.prod(shape)) * 2


def open_or_build(
    model: Classifier,
    *,
    arch: str,
    pre: Preprocess,
    crop: str,
    images: Sequence[str],
    workdir: Path,
    device: torch.device,
    precision: Precision | str | None = None,
    batch_size: int = 64,
    budget_bytes: int,
    log: Callable[[str], None] = lambda s: None,
    progress: Callable[[int], None] | None = None,
    build: bool = True,
) -> FrontCache | None:
    """The cache for ``images`` (resolved path strings), reused when valid, else built.

    Returns ``None`` (with a message through ``log``) when it would exceed ``budget_bytes``: the
    caller then computes the front on the fly. With ``build=False`` only an existing valid
    cache is opened (used by DDP ranks other than 0 after rank 0 built it).
    """
    paths = sorted(set(images))
    prec = resolve_precision(precision, device)
    shape = front_shape(model, pre)
    need = estimate_bytes(len(paths), shape)
    if need > budget_bytes:
        log(
            f"trunk cache bypassed: {len(paths)} images x {VIEWS} views x {shape} float16 = {need / 2**30:.2f} GiB "
            f"exceeds the budget of {budget_bytes / 2**30:.2f} GiB (raise --cache-budget-gb); computing the front on the fly"
        )
        return None
    key = cache_key(arch, model.front_hash(), pre, model.cut, crop, prec.name)
    directory = Path(workdir) / "cache" / key
    set_id = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    manifest_path, data_path = directory / f"{set_id}.json", directory / f"{set_id}.npy"
    stats = [_stat(p) for p in paths]
    if manifest_path.is_file() and data_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            manifest = {}
        if manifest.get("images") == stats and manifest.get("shape") == list(shape) and manifest.get("key") == key:
            try:  # attrret wrote it; a truncated or zero-byte file is rebuilt, never a blocker
                feats = np.load(data_path, mmap_mode="r")
                if feats.shape != (len(paths), VIEWS, *shape):
                    raise ValueError(f"shape {feats.shape}")
            except (OSError, ValueError, EOFError) as exc:
                log(f"warning: trunk cache damaged ({type(exc).__name__}: {exc}), rebuilding: {directory}")
            else:
                log(f"trunk cache reused: {directory} ({len(paths)} images)")
                return FrontCache(directory, feats, {p: i for i, p in enumerate(paths)}, reused=True)
        else:
            log(f"trunk cache stale (images changed), rebuilding: {directory}")
    superset = _superset(directory, key, shape, stats)
    if superset is not None:
        log(f"trunk cache reused: {directory} ({len(paths)} of its {len(superset.rows)} images)")
        return dataclasses.replace(superset, rows={p: superset.rows[p] for p in paths})
    if not build:
        raise RuntimeError(f"trunk cache {manifest_path} missing or stale")
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(data_path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(paths), VIEWS, *shape))
        model.eval()
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            for view, f in enumerate(front_views(model.front, load_batch(chunk, pre, crop), device, prec)):
                out[start : start + len(chunk), view] = f.cpu().numpy().astype(np.float16)
            if progress:
                progress(len(chunk))
        out.flush()
        del out
    manifest = {"key": key, "arch": arch, "preprocess": pre.as_dict(), "cut": model.cut, "crop": crop, "precision": prec.name,
                "shape": list(shape), "views": ["image", "hflip"], "images": stats}
    atomic_write_text(manifest_path, json.dumps(manifest))
    log(f"trunk cache built: {directory} ({len(paths)} images, {need / 2**20:.1f} MiB)")
    feats = np.load(data_path, mmap_mode="r")
    return FrontCache(directory, feats, {p: i for i, p in enumerate(paths)}, reused=False)
