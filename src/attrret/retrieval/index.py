"""The probability index: what the classifiers said about every gallery image, on disk.

Layout of an index directory::

    header.json            format, schema fingerprint, column layout per task, models (with
                           checkpoint hashes), image sizes, TTA, weights, count, data file names
    probs-<token>.npy      (N, C) float32, task columns concatenated in schema task order
    names-<token>.json     image names (sorted) + the source path, size and mtime of each
    meta-<token>.parquet   optional: each row's camera, time and free columns (attrret.retrieval.meta)

Rows are sorted by image name, so the row index IS the name order and the ranker's
tie-break by row is a tie-break by name. ``probs`` opens with ``np.load(mmap_mode="r")``.

Atomicity: data files get a token (a hash of their content: equal indexes are equal byte for
byte, whoever wrote them) and are fully written before ``header.json`` is
atomically replaced to point at them; only then are files no header references removed. A
reader always sees the old complete index or the new complete one, never a mix, and an
interrupted run leaves the previous index intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attrret.errors import CheckpointError
from attrret.geometry import HW, parse_hw
from attrret.io import atomic_path, atomic_write_bytes, atomic_write_text
from attrret.locks import LOCK_PREFIX, file_lock
from attrret.retrieval.index_names import FORMAT, data_file, plain_data_file
from attrret.retrieval.meta import ImageMeta
from attrret.schema import Schema, load_schema

if TYPE_CHECKING:
    from attrret.retrieval.index_files import HeaderFile

__all__ = ["IndexHeader", "Index", "write_index", "open_index", "is_index"]

READ_LOCK = LOCK_PREFIX + "read.lock"  # header swap vs header read (attrret.locks)
WRITE_LOCK = LOCK_PREFIX + "write.lock"  # one predict at a time per index


@dataclass(frozen=True)
class IndexHeader:
    """Self-description of an index; anything that changes the probabilities is in here."""

    schema: str
    count: int
    columns: dict[str, tuple[int, int]]  # task -> [start, stop) in probs
    models: tuple[dict, ...]  # {"task", "path", "relpath", "sha256", "img_size": [H, W], "backbone", "member", "weight", ...}
    img_sizes: tuple[HW, ...]  # every model input H x W, sorted (an int N, as older headers have it: N x N)
    tta: str  # "flip" | "none"
    weights: tuple[float, ...]
    source: str = ""
    probs_file: str = ""
    names_file: str = ""
    format: str = FORMAT
    # The schema directory (or "packaged") beside its fingerprint: which --schema to open it
    # with. Empty in headers from before custom schemas.
    schema_source: str = ""
    # The precision the probabilities were computed in (fp32, bf16 or fp16; runtime.Precision).
    # Rows of two precisions differ within rounding, so they are not reused across them. Empty in
    # headers from before it was recorded.
    precision: str = ""
    # The image metadata file (empty: none) and the --meta table it came from, by path and
    # content hash (check_fresh refuses metadata whose table changed since). Not part of
    # settings(): metadata never changes a probability.
    meta_file: str = ""
    meta_source: str = ""
    meta_sha256: str = ""
    # How images were routed to models (attrret.retrieval.indexer.GATES; empty: written before
    # gating, every model on every image, as "none"). Part of settings(): the other subject's
    # columns differ between gates.
    gate: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "img_sizes", tuple(parse_hw(s) for s in self.img_sizes))

    @property
    def width(self) -> int:
        return max((stop for _, stop in self.columns.values()), default=0)

    def settings(self) -> dict:
        """What must be equal for rows of two runs to be interchangeable: models by content
        hash, not by where they are (a copied workdir reuses its index's rows)."""
        where = ("path", "relpath", "train_data")
        return {"schema": self.schema, "columns": {k: list(v) for k, v in self.columns.items()},
                "models": [{k: v for k, v in m.items() if k not in where} for m in self.models],
                "tta": self.tta, "weights": list(self.weights), "precision": self.precision,
                "gate": self.gate or "none"}

    def to_json(self) -> dict:
        return {
            "format": self.format, "schema": self.schema, "schema_source": self.schema_source, "count": self.count,
            "columns": {k: list(v) for k, v in self.columns.items()}, "models": [dict(m) for m in self.models],
            "img_sizes": [list(s) for s in self.img_sizes], "tta": self.tta, "weights": list(self.weights),
            "source": self.source, "probs_file": self.probs_file, "names_file": self.names_file,
            "precision": self.precision, "meta_file": self.meta_file, "meta_source": self.meta_source,
            "meta_sha256": self.meta_sha256, "gate": self.gate,
        }

    @classmethod
    def from_json(cls, d: object, where: str, model: type[HeaderFile] | None = None) -> IndexHeader:
        """Read a header (:class:`HeaderFile`: every field's kind and range, no coercion: a float
        count, a string width or a null weight is a damaged header, not something to guess about).
        ``model``: :class:`PlannedHeader` for the header a shard carries."""
        from attrret.retrieval.index_files import HeaderFile  # pydantic: only when an index is read
        from attrret.validation import load

        h = load(model or HeaderFile, d, f"{where}: damaged index header", "re-run attrret predict")
        return cls(
            schema=h.schema_fingerprint, count=h.count, columns={k: (v[0], v[1]) for k, v in h.columns.items()},
            models=tuple(dict(m) for m in d["models"]),  # as written (checked above): its keys in their order
            img_sizes=tuple(h.img_sizes), tta=h.tta, weights=tuple(h.weights), source=h.source,
            probs_file=h.probs_file, names_file=h.names_file, format=h.format, schema_source=h.schema_source,
            precision=h.precision, meta_file=h.meta_file, meta_source=h.meta_source, meta_sha256=h.meta_sha256,
            gate=h.gate,
        )


@dataclass(frozen=True)
class Index:
    """An opened index: header, memory-mapped probabilities, names in row order."""

    path: Path
    header: IndexHeader
    probs: np.ndarray  # (N, C) float32, memory-mapped read-only
    names: tuple[str, ...]
    files: tuple[dict, ...] = field(repr=False, default=())  # per row: {"path", "size", "mtime_ns"}
    # The schema it was opened (and checked) with: what reads its columns uses this one.
    schema: Schema | None = field(repr=False, default=None, compare=False)
    meta: ImageMeta | None = field(repr=False, default=None, compare=False)  # camera, time, free columns per row

    def __len__(self) -> int:
        return len(self.names)

    def has(self, task: str) -> bool:
        return task in self.header.columns

    def cols(self, task: str) -> slice:
        start, stop = self.header.columns[task]
        return slice(start, stop)

    def task_probs(self, task: str) -> np.ndarray:
        return self.probs[:, self.cols(task)]

    def router_kinds(self, schema: Schema | None = None) -> np.ndarray | None:
        """Per row, the router's class index (0 pedestrian, 1 vehicle), or None without a router."""
        schema = schema or self.schema or load_schema()
        task = schema.router.task
        if not self.has(task):
            return None
        return np.asarray(self.task_probs(task)).argmax(axis=1)


def is_index(path: str | Path) -> bool:
    """Whether ``path`` holds an attrret index: a ``header.json`` that says so (its ``format``).
    A user's own ``header.json`` does not make a folder one, so nothing in it is ever replaced."""
    hp = Path(path) / "header.json"
    try:
        if not hp.is_file() or hp.stat().st_size > _MAX_HEADER_BYTES:
            return False
        raw = json.loads(hp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("format") == FORMAT


_MAX_HEADER_BYTES = 256 * 2**20  # a header lists its models, not its rows: far below this


def check_writable(path: Path) -> None:
    """Refuse to write an index into anything but a missing folder, an index, or a folder holding
    only what attrret leaves there (a failed first write's orphans, locks, temp files)."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path}: exists and is not an index directory")
    if path.is_dir() and not is_index(path) and any(not _own_file(p.name) for p in path.iterdir()):
        raise CheckpointError(f"{path}: directory exists and is not an attrret index; refusing to write into it")


def discard_new_folder(path: Path) -> None:
    """After a failed first write into ``path`` (a folder that did not exist before): remove it if
    it holds nothing but attrret's lock files. Never raises: the clean-up must not hide the
    error that made it necessary (``predict -o`` into a read-only folder said "No such file or
    directory" instead of "Permission denied")."""
    with contextlib.suppress(OSError):
        if not path.is_dir() or is_index(path):
            return
        for p in path.iterdir():
            if p.name.startswith(LOCK_PREFIX):
                p.unlink(missing_ok=True)
        path.rmdir()  # only if empty: anything else in it stays


def write_index(
    path: str | Path,
    probs: np.ndarray,
    names: Sequence[str],
    files: Sequence[Mapping],
    header: IndexHeader,
    schema: Schema | None = None,
    meta: ImageMeta | None = None,
) -> Index:
    """Write an index atomically (see module doc); rows are re-ordered by name here. Returns it
    opened with ``schema`` (None: the packaged one), the schema of ``header``. ``meta``: the
    rows' metadata, in the order of ``names``."""
    path = Path(path)
    check_writable(path)
    path.mkdir(parents=True, exist_ok=True)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if list(names).count(n) > 1})[:5]
        raise CheckpointError(f"duplicate image names in the gallery: {', '.join(dup)}")
    order = sorted(range(len(names)), key=lambda i: names[i])
    probs = np.ascontiguousarray(np.asarray(probs, dtype=np.float32)[order]) if len(order) else np.zeros((0, header.width), np.float32)
    names = [names[i] for i in order]
    files = [dict(files[i]) for i in order]
    names_text = json.dumps({"names": names, "files": files}, ensure_ascii=False)
    meta_bytes = meta.take(order).to_parquet(names) if meta is not None else b""
    token = _content_token(probs, names_text + hashlib.sha256(meta_bytes).hexdigest() * bool(meta_bytes))
    probs_file, names_file = f"probs-{token}.npy", f"names-{token}.json"
    meta_file = f"meta-{token}.parquet" if meta is not None else ""
    ours = {probs_file, names_file} | ({meta_file} if meta_file else set())
    previous = _referenced_files(path)  # what the index there names: the only files attrret may remove
    _clear_pending(path, keep=previous | ours)
    made = [n for n in sorted(ours) if not (path / n).exists()]
    atomic_write_text(path / PENDING, json.dumps({"files": made}))  # proof of ownership should this run die
    try:
        with atomic_path(path / probs_file) as tmp:  # atomic_path fsyncs before the rename
            with open(tmp, "wb") as f:
                np.save(f, probs)
        atomic_write_text(path / names_file, names_text)
        if meta_file:
            atomic_write_bytes(path / meta_file, meta_bytes)
        final = IndexHeader(**{**header.__dict__, "count": len(names), "probs_file": probs_file, "names_file": names_file,
                               "meta_file": meta_file})
        with file_lock(path / READ_LOCK):  # no reader is between reading the header and opening its files
            atomic_write_text(path / "header.json", json.dumps(final.to_json(), indent=1, ensure_ascii=False) + "\n")
    except BaseException:
        # the old index stays whole and alone: no new data file of this failed run is left beside it (ENOSPC)
        for name in [*made, PENDING]:
            with contextlib.suppress(OSError):
                (path / name).unlink(missing_ok=True)
        raise
    for name in previous - ours:  # the replaced index's own data files, nothing else
        with contextlib.suppress(OSError):
            (path / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (path / PENDING).unlink(missing_ok=True)
    return open_index(path, schema)


def _clear_pending(path: Path, keep: set[str]) -> None:
    """Remove what an earlier write that died left behind: the data files its pending list names
    (attrret wrote that list before them), except those an index there still uses."""
    try:
        raw = json.loads((path / PENDING).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return
    listed = raw.get("files") if isinstance(raw, dict) else None
    for name in listed if isinstance(listed, list) else ():
        if plain_data_file(name) and name not in keep:
            with contextlib.suppress(OSError):
                (path / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (path / PENDING).unlink(missing_ok=True)


def _referenced_files(path: Path) -> set[str]:
    """The data files the index header at ``path`` names (empty when there is none or it is
    unreadable): what attrret can prove it wrote there. A user's ``probs-mine.npy`` is not one."""
    try:
        raw = json.loads((path / "header.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return set()
    if not isinstance(raw, dict):
        return set()
    return {n for n in (raw.get("probs_file"), raw.get("names_file"), raw.get("meta_file")) if plain_data_file(n)}


#: Written before an index's new data files, removed after its header: the files a write that
#: died had made, which the next write may remove (attrret can prove it made them).
PENDING = ".attrret-pending.json"


def _content_token(probs: np.ndarray, names_text: str) -> str:
    """The data files' name token: a hash of what they hold, so equal content gives equal bytes
    everywhere (two runs, a sharded run and a single one, attrret.retrieval.shards). A name that
    is already there holds the same content, so replacing it is invisible to a reader."""
    h = hashlib.sha256(f"{probs.dtype.str}{probs.shape}".encode())
    h.update(probs.tobytes())
    h.update(names_text.encode("utf-8"))
    return h.hexdigest()[:12]


def _own_file(name: str) -> bool:
    """What may be in a folder an index is written into: data-file names (orphans of a failed
    first write, or a user's files of such names, which are written beside and never removed:
    only files an index header or attrret's pending list names are), locks, temporary files."""
    return (data_file(name) or name.startswith(LOCK_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))
            or name == PENDING)


def open_index(path: str | Path, schema: Schema | None = None) -> Index:
    """Open an index, refusing foreign (other format or schema) and damaged ones."""
    path = Path(path)
    hp = path / "header.json"
    if not hp.is_file():
        raise CheckpointError(f"{path}: not an attrret index (no header.json); build one with attrret predict")
    if os.access(path, os.W_OK):
        with file_lock(path / READ_LOCK, shared=True):  # see attrret.locks: the old index or the new one
            return _open_index(path, hp, schema)
    return _open_index(path, hp, schema)  # a read-only index has no writer to wait for


def _check_layout(header: IndexHeader, schema: Schema, hp: Path) -> None:
    """The header's column layout must be the schema's: every task known, as wide as its class
    list, the spans disjoint (the header's own kinds and ranges are :class:`HeaderFile`'s)."""
    known = {g.task: g.size for g in schema.tasks}
    spans = sorted(header.columns.items(), key=lambda kv: kv[1])
    at = 0
    for task, (start, stop) in spans:
        if task not in known:
            raise CheckpointError(f"{hp}: damaged index header: unknown task {task!r} in its columns; re-run attrret predict")
        if stop - start != known[task] or start < at:
            raise CheckpointError(f"{hp}: damaged index header: columns {start}:{stop} for {task}, which has "
                                  f"{known[task]} classes (or overlap another task); re-run attrret predict")
        at = stop


#: Probabilities may stray this far outside [0, 1] (float32 rounding of a softmax average).
_PROB_SLACK = 1e-4
_CHECK_ROWS = 65_536  # rows checked per step: bounded memory on a million-image index


def check_probs(probs: np.ndarray, names: Sequence[str], what: str, fix: str) -> None:
    """Refuse probabilities a ranking cannot use (one :class:`CheckpointError` starting with
    ``what``, ending with ``fix``): not finite, or outside [0, 1]. A NaN ranks one image first
    for every query. A block at a time: bounded memory on a million-image index. (The names and
    file records beside them are checked by :class:`NamesFile`'s types.)"""
    for start in range(0, len(probs), _CHECK_ROWS):
        block = np.asarray(probs[start : start + _CHECK_ROWS])
        if not np.isfinite(block).all():
            row = start + int(np.argwhere(~np.isfinite(block))[0][0])
            raise CheckpointError(f"{what}: probabilities of {names[row]!r} are not finite (NaN or infinite); {fix}")
        if block.size and (block.min() < -_PROB_SLACK or block.max() > 1 + _PROB_SLACK):
            row = start + int(np.argwhere((block < -_PROB_SLACK) | (block > 1 + _PROB_SLACK))[0][0])
            raise CheckpointError(f"{what}: probabilities of {names[row]!r} are outside [0, 1]; {fix}")


def _open_index(path: Path, hp: Path, schema: Schema | None) -> Index:
    try:
        raw = json.loads(hp.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{hp}: not a JSON index header ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{hp}: not an {FORMAT} index (format {raw.get('format') if isinstance(raw, dict) else None!r})")
    header = IndexHeader.from_json(raw, str(hp))
    schema = schema or load_schema()
    schema.check_made_with(header.schema, header.schema_source, f"{path}: index",
                           "open it with the schema it was built with, or re-run attrret predict")
    _check_layout(header, schema, hp)
    try:
        probs = np.load(path / header.probs_file, mmap_mode="r")
        meta = json.loads((path / header.names_file).read_text(encoding="utf-8"))
    except (OSError, ValueError, EOFError) as exc:  # EOFError: a zero-byte .npy (click would print "Aborted.")
        raise CheckpointError(f"{path}: damaged index ({type(exc).__name__}: {exc})") from None
    from attrret.retrieval.index_files import NamesFile
    from attrret.validation import load

    rows = load(NamesFile, meta, f"{path / header.names_file}: damaged index names file", "re-run attrret predict")
    names = tuple(rows.names)
    if probs.ndim != 2 or probs.shape != (header.count, header.width) or len(names) != header.count:
        raise CheckpointError(
            f"{path}: damaged index (probs {probs.shape}, {len(names)} names, header says {header.count} x {header.width})"
        )
    check_probs(probs, names, f"{path}: damaged index", "re-run attrret predict")
    meta = None
    if header.meta_file:
        try:
            meta = ImageMeta.from_parquet(path / header.meta_file, names)
        except (OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors (ArrowInvalid) or OSErrors
            raise CheckpointError(f"{path / header.meta_file}: damaged index metadata ({str(exc)[:200]}); "
                                  "re-run attrret predict") from None
    return Index(path, header, probs, names, tuple(rows.files), schema, meta)
