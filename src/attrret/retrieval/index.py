"""The probability index: what the classifiers said about every gallery image, on disk.

Layout of an index directory::

    header.json            format, schema fingerprint, column layout per task, models (with
                           checkpoint hashes), image sizes, TTA, weights, count, data file names
    probs-<token>.npy      (N, C) float32, task columns concatenated in schema task order
    names-<token>.json     image names (sorted) + the source path, size and mtime of each

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
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attrret.errors import CheckpointError
from attrret.geometry import HW, parse_hw
from attrret.io import atomic_path, atomic_write_text
from attrret.locks import LOCK_PREFIX, file_lock
from attrret.precisions import PRECISION_NAMES
from attrret.schema import Schema, load_schema

__all__ = ["FORMAT", "IndexHeader", "Index", "write_index", "open_index", "is_index"]

FORMAT = "attrret-index/1"
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
                "tta": self.tta, "weights": list(self.weights), "precision": self.precision}

    def to_json(self) -> dict:
        return {
            "format": self.format, "schema": self.schema, "schema_source": self.schema_source, "count": self.count,
            "columns": {k: list(v) for k, v in self.columns.items()}, "models": [dict(m) for m in self.models],
            "img_sizes": [list(s) for s in self.img_sizes], "tta": self.tta, "weights": list(self.weights),
            "source": self.source, "probs_file": self.probs_file, "names_file": self.names_file,
            "precision": self.precision,
        }

    @classmethod
    def from_json(cls, d: Mapping, where: str) -> IndexHeader:
        """Read a header, checking every field's kind: no coercion (a float count, a string
        width or a null weight is a damaged header, not something to guess about)."""

        def bad(key: str, what: str) -> CheckpointError:
            return CheckpointError(f"{where}: damaged index header: {key!r} must be {what}; re-run attrret predict")

        if not isinstance(d, Mapping):
            raise CheckpointError(f"{where}: damaged index header: it must be a JSON object, not {type(d).__name__}; "
                                  "re-run attrret predict")

        def get(key: str, kind: type, what: str, default: object = None) -> Any:
            value = d.get(key, default)
            if not isinstance(value, kind):
                raise bad(key, what)
            return value

        def count(x: object) -> bool:
            return isinstance(x, int) and not isinstance(x, bool) and x >= 0

        n = get("count", int, "a whole number")
        columns = get("columns", dict, "an object of task -> [start, stop]")
        models = get("models", list, "a list of model objects")
        sizes = get("img_sizes", list, "a list of image sizes")
        weights = get("weights", list, "a list of numbers")
        tta = get("tta", str, '"flip" or "none"')
        if not count(n):
            raise bad("count", "a whole number >= 0")
        if not all(isinstance(v, list) and len(v) == 2 and all(map(count, v)) and v[0] < v[1] for v in columns.values()):
            raise bad("columns", "an object of task -> [start, stop] with whole numbers start < stop")
        if not all(isinstance(m, dict) for m in models):
            raise bad("models", "a list of model objects")
        for m in models:  # what check_fresh and the explanations read of each
            for key in ("task", "path", "sha256"):
                if not isinstance(m.get(key), str) or not m[key]:
                    raise bad("models", f"a list of model objects, each with a {key!r} string")
            if "relpath" in m and not isinstance(m["relpath"], str):
                raise bad("models", "a list of model objects whose 'relpath' is a string")
        def size(x: object) -> bool:  # [H, W]; or N (N x N) in headers from before rectangles
            return (count(x) and x > 0) or (isinstance(x, list) and len(x) == 2 and all(count(v) and v > 0 for v in x))

        if not all(map(size, sizes)):
            raise bad("img_sizes", "a list of positive sizes [H, W]")
        if not all(isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) for w in weights):
            raise bad("weights", "a list of finite numbers")
        if tta not in ("flip", "none"):
            raise bad("tta", '"flip" or "none"')
        precision = get("precision", str, '"fp32", "bf16" or "fp16"', "")
        if precision not in ("", *PRECISION_NAMES):
            raise bad("precision", '"fp32", "bf16" or "fp16"')
        return cls(
            schema=get("schema", str, "a schema fingerprint"), count=n,
            columns={k: (v[0], v[1]) for k, v in columns.items()}, models=tuple(dict(m) for m in models),
            img_sizes=tuple(sizes), tta=tta,
            weights=tuple(float(w) for w in weights), source=get("source", str, "a path", ""),
            probs_file=get("probs_file", str, "a file name"), names_file=get("names_file", str, "a file name"),
            format=get("format", str, "a format name"), schema_source=get("schema_source", str, "a schema directory", ""),
            precision=precision,
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
) -> Index:
    """Write an index atomically (see module doc); rows are re-ordered by name here. Returns it
    opened with ``schema`` (None: the packaged one), the schema of ``header``."""
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
    token = _content_token(probs, names_text)
    probs_file, names_file = f"probs-{token}.npy", f"names-{token}.json"
    previous = _referenced_files(path)  # what the index there names: the only files attrret may remove
    _clear_pending(path, keep=previous | {probs_file, names_file})
    made = [n for n in (probs_file, names_file) if not (path / n).exists()]
    atomic_write_text(path / PENDING, json.dumps({"files": made}))  # proof of ownership should this run die
    try:
        with atomic_path(path / probs_file) as tmp:  # atomic_path fsyncs before the rename
            with open(tmp, "wb") as f:
                np.save(f, probs)
        atomic_write_text(path / names_file, names_text)
        final = IndexHeader(**{**header.__dict__, "count": len(names), "probs_file": probs_file, "names_file": names_file})
        with file_lock(path / READ_LOCK):  # no reader is between reading the header and opening its files
            atomic_write_text(path / "header.json", json.dumps(final.to_json(), indent=1, ensure_ascii=False) + "\n")
    except BaseException:
        # the old index stays whole and alone: no new data file of this failed run is left beside it (ENOSPC)
        for name in [*made, PENDING]:
            with contextlib.suppress(OSError):
                (path / name).unlink(missing_ok=True)
        raise
    for name in previous - {probs_file, names_file}:  # the replaced index's own data files, nothing else
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
        if _plain_data_file(name) and name not in keep:
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
    return {n for n in (raw.get("probs_file"), raw.get("names_file")) if _plain_data_file(n)}


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


def _data_file(name: str) -> bool:
    return (name.startswith("probs-") and name.endswith(".npy")) or (name.startswith("names-") and name.endswith(".json"))


def _plain_data_file(name: object) -> bool:
    """An index data file name that stays inside its folder (no path separator): what a header
    or a pending list may name, and so what attrret may open or remove there."""
    return isinstance(name, str) and _data_file(name) and "/" not in name and "\\" not in name


def _own_file(name: str) -> bool:
    """What may be in a folder an index is written into: data-file names (orphans of a failed
    first write, or a user's files of such names, which are written beside and never removed:
    only files an index header or attrret's pending list names are), locks, temporary files."""
    return (_data_file(name) or name.startswith(LOCK_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))
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
    list, the spans disjoint; data files are plain names inside the index folder."""
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
    for name in (header.probs_file, header.names_file):
        if not _plain_data_file(name):
            raise CheckpointError(f"{hp}: damaged index header: data file {name!r} is not an index data file name")


#: Probabilities may stray this far outside [0, 1] (float32 rounding of a softmax average).
_PROB_SLACK = 1e-4
_CHECK_ROWS = 65_536  # rows checked per step: bounded memory on a million-image index


def check_rows(probs: np.ndarray, names: Sequence[object], files: Sequence[object], what: str, fix: str) -> None:
    """Refuse rows a ranking cannot use (one :class:`CheckpointError` starting with ``what``,
    ending with ``fix``): probabilities that are not finite or outside [0, 1], names that are not
    unique non-empty strings, file records that are not objects. A NaN ranks one image first for
    every query, and a repeated name lists one image twice."""
    bad_names = [n for n in names if not isinstance(n, str) or not n]
    if bad_names:
        raise CheckpointError(f"{what}: image names must be non-empty strings, found {bad_names[0]!r}; {fix}")
    if len(set(names)) != len(names):
        seen: set[object] = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        raise CheckpointError(f"{what}: image name {dup!r} appears twice; {fix}")
    if not all(isinstance(f, dict) for f in files):
        raise CheckpointError(f"{what}: file records must be objects; {fix}")
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
    if not isinstance(meta, dict) or not isinstance(meta.get("names"), list):
        raise CheckpointError(f"{path}: damaged index (names file without its names)")
    names = tuple(meta["names"])
    if probs.ndim != 2 or probs.shape != (header.count, header.width) or len(names) != header.count:
        raise CheckpointError(
            f"{path}: damaged index (probs {probs.shape}, {len(names)} names, header says {header.count} x {header.width})"
        )
    files = meta.get("files", [])
    if not isinstance(files, list) or len(files) not in (0, len(names)):
        raise CheckpointError(f"{path}: damaged index (names file: 'files' must list one record per image); re-run attrret predict")
    check_rows(probs, names, files, f"{path}: damaged index", "re-run attrret predict")
    return Index(path, header, probs, names, tuple(files), schema)
