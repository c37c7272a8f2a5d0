"""Sharded ``attrret predict``: several processes predict slices of one gallery, one merge writes
the index a single process would have written, byte for byte.

Two ways to run it, one code path (plan, :func:`predict_shard`, :func:`merge_shards`):

- under ``torchrun`` (``WORLD_SIZE`` > 1), :func:`build_index_distributed`: rank 0 locks the
  index and plans the run, every rank predicts its shard, rank 0 gathers the shards (through
  the process group: no shared folder needed) and writes the index;
- without it (a SLURM job array), ``attrret predict --shard i/N`` (:func:`build_shard`) writes
  shard i to a folder (``OUT.shard-<i>-of-<N>/`` by default) and ``attrret index merge``
  (:func:`merge_shard_dirs`) writes the index from all N.

Why the bytes are equal. A run predicts the images of ``BuildPlan.todo`` (listing order) in
batches of ``--batch-size``; a probability can differ in its last bit with the batch it was
computed in (the kernels a batch shape selects), so shards are cut at whole batches: every
image is computed in the very batch a single run puts it in. The header is the plan's (model
paths relative to the index recomputed where the merge writes it), rows are sorted by name
and the data files are named by a hash of their content (attrret.retrieval.index). What stays
the user's part, as for any two runs: the same machine kind, library versions and, on CPUs,
thread count (``OMP_NUM_THREADS``; torchrun sets 1 per process): a reduction split over more
threads adds in another order. A merge warns when its shards ran with different thread counts.

Incremental runs work as in a single run: the plan reuses the unchanged rows of the index
already at OUT (shard 0 carries them) and only the other images are split among the shards.

A shard folder (format ``attrret-index-shard/1``)::

    shard.json          shard i of N, batch size, plan digest, the whole index's header, and
                        the names + source files of its rows
    probs-<token>.npy   its rows' probabilities, float32

Every shard records a digest of its plan (header, gallery listing with sizes and mtimes, the
images to predict, batch size): a merge refuses shards that planned different runs, e.g. when
images changed between two array jobs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import AfterValidator, Field, model_validator

from attrret.errors import AttrretError, CheckpointError, OptionError
from attrret.io import atomic_path, atomic_write_text
from attrret.locks import LOCK_PREFIX, file_lock
from attrret.retrieval.index import READ_LOCK, WRITE_LOCK, IndexHeader, _own_file, check_probs, check_writable, discard_new_folder, is_index, write_index
from attrret.ensemble import Predictor
from attrret.retrieval.indexer import BuildPlan, BuildSummary, list_gallery, plan_build
from attrret.schema import Schema, load_schema
from attrret.retrieval.index_files import FileRecord, PlannedHeader
from attrret.retrieval.meta import MAX_META_COLUMNS, MAX_VALUE_CHARS, ImageMeta, MetaSource
from attrret.validation import Count, Name, Positive, Record, UniqueNames, load

if TYPE_CHECKING:
    from attrret.classifiers.engine import Ensemble

__all__ = [
    "SHARD_FORMAT",
    "ShardSpec",
    "Shard",
    "parse_shard",
    "shard_path",
    "find_shards",
    "batch_slice",
    "plan_digest",
    "predict_shard",
    "write_shard",
    "read_shard",
    "merge_shards",
    "build_shard",
    "merge_shard_dirs",
    "torchrun_world",
    "build_index_distributed",
]

SHARD_FORMAT = "attrret-index-shard/1"
SHARD_FILE = "shard.json"
_SHARD_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)$")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: What a shard's probabilities file is called (its content token): shard.json may name nothing else.
_PROBS_FILE = re.compile(r"probs-[0-9a-f]+\.npy")
#: The most shards one run may have: more is a typo, and a merge sizes its checks by the count.
MAX_SHARDS = 10_000


def parse_shard(text: str) -> ShardSpec:
    """``"i/N"`` with ``0 <= i < N``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise OptionError(f"--shard {text!r}: expected I/N, e.g. 0/4 (shard I of N, counted from 0)")
    if len(m.group(1)) > 9 or len(m.group(2)) > 9:
        raise OptionError(f"--shard {text[:40]!r}: at most {MAX_SHARDS:,} shards")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n:
        raise OptionError(f"--shard {text}: need 0 <= I < N (shards of {n} are numbered 0..{n - 1})")
    if n > MAX_SHARDS:
        raise OptionError(f"--shard {text}: at most {MAX_SHARDS:,} shards (a merge holds one entry per shard)")
    return ShardSpec(i, n)


def shard_path(out: str | Path, spec: ShardSpec) -> Path:
    """Where ``predict --shard`` writes shard ``spec`` of the index ``out`` by default."""
    out = Path(out)
    return out.with_name(f"{out.name}.shard-{spec.index}-of-{spec.count}")


def find_shards(out: str | Path) -> list[Path]:
    """The shard folders beside ``out`` (``OUT.shard-<i>-of-<N>``), by N then i."""
    out = Path(out)
    found = []
    parent = out.parent if str(out.parent) else Path(".")
    if parent.is_dir():
        for p in parent.iterdir():
            m = _SHARD_NAME.search(p.name)
            if m and p.name[: m.start()] == out.name and p.is_dir():
                found.append((int(m.group(2)), int(m.group(1)), p))
    return [p for _, _, p in sorted(found)]


def batch_slice(n: int, batch_size: int, spec: ShardSpec) -> range:
    """Positions ``[start, stop)`` of shard ``spec`` among ``n`` images to predict: whole batches of
    ``batch_size`` (module doc), as even as whole batches allow, in order."""
    batches = -(-n // batch_size)
    lo, hi = spec.index * batches // spec.count, (spec.index + 1) * batches // spec.count
    return range(min(lo * batch_size, n), min(hi * batch_size, n))


def _header_where_free(header: IndexHeader) -> dict:
    """The header without what depends on where the index is written (model relpaths)."""
    d = header.to_json()
    d["models"] = [{k: v for k, v in m.items() if k != "relpath"} for m in d["models"]]
    return d


def plan_digest(plan: BuildPlan, batch_size: int) -> str:
    """What every shard of one run must agree on (module doc), hashed."""
    payload = {"header": _header_where_free(plan.header), "names": list(plan.names), "files": list(plan.files),
               "todo": list(plan.todo), "batch_size": batch_size}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Shard:
    """The rows one shard computed (and, for shard 0, the rows reused from the existing index)."""

    spec: ShardSpec
    batch_size: int
    plan: str  # plan_digest
    header: IndexHeader  # the whole index's, as planned
    names: tuple[str, ...]
    files: tuple[dict, ...]
    probs: np.ndarray  # (len(names), header.width) float32
    predicted: int  # rows computed here; the rest were reused
    removed: int  # the plan's: rows of the old index whose image is gone
    threads: int = 0  # torch's intra-op threads when predicting (0: unknown); module doc
    where: str = ""  # the folder it was read from, for messages
    meta: ImageMeta | None = None  # its rows' metadata (attrret.retrieval.meta)

    @property
    def label(self) -> str:
        return self.where or f"shard {self.spec}"


def predict_shard(plan: BuildPlan, reused: np.ndarray | None, spec: ShardSpec, predictor: Predictor, *,
                  batch_size: int = 64, progress: bool = True, schema: Schema | None = None) -> Shard:
    """Predict shard ``spec`` of ``plan`` with ``predictor`` (the one ``plan`` was made for): its
    whole batches of ``plan.todo`` (:func:`batch_slice`). Shard 0 also takes the reused rows,
    from ``reused`` (:func:`attrret.retrieval.indexer.plan_build`)."""
    import torch

    rows = [plan.todo[k] for k in batch_slice(len(plan.todo), batch_size, spec)]
    probs = np.zeros((len(rows), plan.header.width), np.float32)
    if rows:
        probs = predictor.probs([plan.paths[i] for i in rows], schema or load_schema(), columns=plan.header.columns,
                                gate=plan.header.gate == "router", batch_size=batch_size, progress=progress)
    predicted = len(rows)
    if spec.index == 0:
        todo = set(plan.todo)
        kept = [i for i in range(len(plan.names)) if i not in todo]
        if kept:
            if reused is None:
                raise ValueError("shard 0 of an incremental run needs the reused rows")
            rows += kept
            probs = np.concatenate([probs, reused[kept]])
    return Shard(spec, batch_size, plan_digest(plan, batch_size), plan.header, tuple(plan.names[i] for i in rows),
                 tuple(plan.files[i] for i in rows), np.ascontiguousarray(probs, np.float32), predicted, plan.removed,
                 torch.get_num_threads(), meta=None if plan.meta is None else plan.meta.take(rows))


# --------------------------------------------------------------------------- shard folders
def _check_shard_writable(path: Path) -> None:
    """Write a shard only into a missing folder, a shard, or a folder of only attrret's own files."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path}: exists and is not an index shard directory")
    if path.is_dir() and not (path / SHARD_FILE).is_file() and any(not _own_file(p.name) for p in path.iterdir()):
        raise CheckpointError(f"{path}: directory exists and is not an attrret index shard; refusing to write into it")


def write_shard(path: str | Path, shard: Shard) -> Path:
    """Write ``shard`` to the folder ``path`` atomically: the probabilities first, then
    ``shard.json`` naming them; a reader sees the old shard or the new one."""
    path = Path(path)
    _check_shard_writable(path)
    probs = np.ascontiguousarray(shard.probs, np.float32)
    token = hashlib.sha256(probs.tobytes() + json.dumps(shard.names).encode()).hexdigest()[:12]
    probs_file = f"probs-{token}.npy"
    meta = {"format": SHARD_FORMAT, "shard": shard.spec.index, "of": shard.spec.count, "batch_size": shard.batch_size,
            "plan": shard.plan, "predicted": shard.predicted, "removed": shard.removed, "threads": shard.threads,
            "probs_file": probs_file,
            "header": shard.header.to_json(), "names": list(shard.names), "files": list(shard.files)}
    if shard.meta is not None:
        meta["meta"] = shard.meta.rows_json()
    path.mkdir(parents=True, exist_ok=True)
    with file_lock(path / WRITE_LOCK, waiting=f"waiting for another writer of {path} to finish"):
        previous = _shard_probs_file(path)  # the only data file attrret may remove here: the one its shard.json names
        made = not (path / probs_file).exists()
        try:
            with atomic_path(path / probs_file) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, probs)
            with file_lock(path / READ_LOCK):
                atomic_write_text(path / SHARD_FILE, json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
        except BaseException:
            if made:
                with contextlib.suppress(OSError):
                    (path / probs_file).unlink(missing_ok=True)
            raise
        if previous and previous != probs_file:
            with contextlib.suppress(OSError):
                (path / previous).unlink(missing_ok=True)
    return path


def _shard_probs_file(path: Path) -> str | None:
    """The probabilities file the shard.json at ``path`` names, or None."""
    try:
        meta = json.loads((path / SHARD_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    pf = meta.get("probs_file") if isinstance(meta, dict) else None
    return pf if isinstance(pf, str) and _PROBS_FILE.fullmatch(pf) else None


def read_shard(path: str | Path) -> Shard:
    """Open a shard folder, refusing anything else and damaged shards (one clear error)."""
    path = Path(path)
    sp = path / SHARD_FILE
    if not sp.is_file():
        what = "an index, not a shard" if is_index(path) else "no shard.json" if path.is_dir() else "no such directory"
        raise CheckpointError(f"{path}: not an attrret index shard ({what}); shards come from attrret predict --shard I/N")
    lock = file_lock(path / READ_LOCK, shared=True) if os.access(path, os.W_OK) else contextlib.nullcontext()
    fix = "re-run its attrret predict --shard"
    with lock:
        try:
            raw = json.loads(sp.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{sp}: damaged shard ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != SHARD_FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else None
            raise CheckpointError(f"{sp}: not an {SHARD_FORMAT} shard (format {got!r})")
        meta = load(ShardFile, raw, f"{sp}: damaged shard", fix)
        header = IndexHeader.from_json(raw["header"], f"{sp}: header", PlannedHeader)
        try:
            probs = np.load(path / meta.probs_file)
        except (ValueError, OSError, EOFError) as exc:
            raise CheckpointError(f"{path}: damaged shard ({type(exc).__name__}: {exc}); {fix}") from None
    rows_meta = None if meta.meta is None else ImageMeta.from_rows_json(meta.meta, len(meta.names))
    shard = Shard(ShardSpec(meta.shard, meta.of), meta.batch_size, meta.plan, header, tuple(meta.names),
                  tuple(meta.files), probs, meta.predicted, meta.removed, meta.threads, str(path), rows_meta)
    if probs.ndim != 2 or probs.dtype != np.float32 or probs.shape != (len(shard.names), header.width):
        raise CheckpointError(f"{path}: damaged shard (probs {probs.shape} {probs.dtype}, {len(shard.names)} names, "
                              f"{header.width} columns); {fix}")
    check_probs(probs, shard.names, f"{path}: damaged shard", fix)
    return shard


def _probs_file_name(name: str) -> str:
    if not _PROBS_FILE.fullmatch(name):
        raise ValueError(f"{name[:60]!r} is not a shard probabilities file name (probs-<hex>.npy)")
    return name


class ShardFile(Record):
    """``shard.json`` as :func:`write_shard` writes it: which shard of how many, the plan it
    belongs to, its rows' names and file records, and the whole index's header."""

    format: Literal[SHARD_FORMAT]
    shard: Count
    of: Annotated[int, Field(ge=1, le=MAX_SHARDS)]
    batch_size: Positive
    plan: Name
    predicted: Count
    removed: Count
    threads: Count = 0
    probs_file: Annotated[str, AfterValidator(_probs_file_name)]
    header: PlannedHeader
    names: UniqueNames
    files: list[FileRecord]
    # its rows' metadata, column -> one value per row (time: ns UTC; others: text; null: none)
    meta: Annotated[dict[Name, list[Annotated[str, Field(max_length=MAX_VALUE_CHARS)] | int | None]],
                    Field(max_length=MAX_META_COLUMNS)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ShardFile:
        for column, cells in (self.meta or {}).items():
            if len(cells) != len(self.names):
                raise ValueError(f"meta.{column} lists {len(cells)} values for {len(self.names)} names")
            kind = int if column == "time" else str
            if any(c is not None and (type(c) is not kind) for c in cells):
                raise ValueError(f"meta.{column} holds a value that is not {'a time in ns' if kind is int else 'text'}")
        if self.shard >= self.of:
            raise ValueError(f"shard {self.shard} of {self.of}: shards are numbered 0..{self.of - 1}")
        if len(self.files) != len(self.names):
            raise ValueError(f"files lists {len(self.files)} records for {len(self.names)} names")
        if self.predicted > len(self.names):
            raise ValueError(f"predicted {self.predicted} rows of {len(self.names)}")
        return self


# --------------------------------------------------------------------------- merge
def _check_shards(shards: Sequence[Shard]) -> None:
    """All N shards of one run, once each (module doc); one clear error otherwise."""
    if not shards:
        raise CheckpointError("no shards to merge")
    first = shards[0]
    n = first.spec.count
    for s in shards:
        if s.spec.count != n:
            raise CheckpointError(f"{s.label} is shard {s.spec} but {first.label} is shard {first.spec}: "
                                  "shards of different runs")
    seen: dict[int, Shard] = {}
    for s in shards:
        if s.spec.index in seen:
            raise CheckpointError(f"shard {s.spec} given twice: {seen[s.spec.index].label} and {s.label}")
        seen[s.spec.index] = s
    missing = [i for i in range(n) if i not in seen]
    if missing:
        raise CheckpointError(f"missing shard(s) {', '.join(map(str, missing))} of {n}; "
                              f"run attrret predict --shard I/{n} for each")
    for s in shards:
        if s.batch_size != first.batch_size:
            raise CheckpointError(f"{s.label} was predicted with --batch-size {s.batch_size}, {first.label} with "
                                  f"{first.batch_size}; re-run it with {first.batch_size}")
        if s.header.settings() != first.header.settings():
            raise CheckpointError(f"{s.label} was predicted with other models or settings than {first.label}; re-run it")
        if s.plan != first.plan:
            raise CheckpointError(f"{s.label} planned another run than {first.label} (the gallery or the index at the "
                                  "output changed between them); re-run every shard")
    owner: dict[str, Shard] = {}
    for s in shards:
        for name in s.names:
            if name in owner:
                raise CheckpointError(f"image {name!r} is in both {owner[name].label} and {s.label}")
            owner[name] = s
    if len(owner) != first.header.count:
        raise CheckpointError(f"the shards hold {len(owner)} images, their gallery {first.header.count}; "
                              "a shard is damaged, re-run it")


@contextlib.contextmanager
def _locked_output(out: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold ``out``'s write lock (one writer per index, attrret.locks); a failed first write
    leaves no folder behind, like attrret.retrieval.indexer.build_index."""
    check_writable(out)
    created = not out.exists()
    try:
        with file_lock(out / WRITE_LOCK, waiting=f"waiting for another attrret writer of {out} to finish", log=log):
            yield
    except BaseException:
        if created:
            discard_new_folder(out)
        raise


def _merge_locked(shards: Sequence[Shard], out: Path, schema: Schema | None) -> BuildSummary:
    _check_shards(shards)
    head = shards[0].header
    where = out.resolve()
    models = tuple({**m, "relpath": os.path.relpath(m["path"], where)} if "relpath" in m else dict(m) for m in head.models)
    header = IndexHeader(**{**head.__dict__, "models": models})
    names = [n for s in shards for n in s.names]
    files = [f for s in shards for f in s.files]
    probs = np.concatenate([s.probs for s in shards]) if names else np.zeros((0, head.width), np.float32)
    write_index(out, probs, names, files, header, schema, meta=_merged_meta(shards))
    predicted = sum(s.predicted for s in shards)
    return BuildSummary(out, len(names), predicted, len(names) - predicted, shards[0].removed, tuple(head.columns), head.precision)


def _merged_meta(shards: Sequence[Shard]) -> ImageMeta | None:
    """The shards' metadata rows in shard order (None when no shard has any)."""
    if all(s.meta is None for s in shards):
        return None
    columns = list(dict.fromkeys(c for s in shards if s.meta is not None for c in s.meta.rows_json()))
    merged: dict[str, list] = {c: [] for c in columns}
    for s in shards:
        data = s.meta.rows_json() if s.meta is not None else {}
        for c in columns:
            merged[c] += data.get(c, [None] * len(s.names))
    return ImageMeta.from_rows_json(merged, sum(len(s.names) for s in shards))


def merge_shards(shards: Sequence[Shard], out: str | Path, *,
                 log: Callable[[str], None] = _stderr, schema: Schema | None = None) -> BuildSummary:
    """Write the index ``out`` from all N shards of one run, under its write lock."""
    out = Path(out)
    threads = sorted({s.threads for s in shards})
    if len(threads) > 1:
        log(f"attrret: warning: the shards were predicted with {', '.join(map(str, threads))} threads: the index may "
            "differ in the last bits from any single run (set OMP_NUM_THREADS alike for byte-identical results)")
    with _locked_output(out, log):
        return _merge_locked(shards, out, schema)


# --------------------------------------------------------------------------- runs
def build_shard(src: str | Path, out: str | Path, predictor: Predictor, spec: ShardSpec, *,
                shard_out: str | Path | None = None, split: str = "test", batch_size: int = 64,
                progress: bool = True, log: Callable[[str], None] = _stderr, schema: Schema | None = None,
                meta: MetaSource = MetaSource(), gate: str = "router") -> tuple[Path, Shard]:
    """``attrret predict --shard``: plan the run into the index ``out`` (reading, not locking, the
    index there), predict shard ``spec`` and write it to ``shard_out`` (default
    :func:`shard_path`). ``out`` itself is written by :func:`merge_shard_dirs`."""
    out = Path(out)
    check_writable(out)
    target = Path(shard_out) if shard_out is not None else shard_path(out, spec)
    _check_shard_writable(target)
    plan, reused = plan_build(src, out, predictor, list_gallery(src, split, schema), log=log, schema=schema, meta=meta, gate=gate)
    shard = predict_shard(plan, reused, spec, predictor, batch_size=batch_size, progress=progress, schema=schema)
    return write_shard(target, shard), shard


def merge_shard_dirs(paths: Sequence[str | Path], out: str | Path, *, remove: bool = False,
                     log: Callable[[str], None] = _stderr, schema: Schema | None = None) -> BuildSummary:
    """``attrret index merge``: the index ``out`` from shard folders (default: those beside it).
    With ``remove``, the shard folders are deleted once the index is written."""
    out = Path(out)
    paths = [Path(p) for p in paths] or find_shards(out)
    if not paths:
        raise CheckpointError(f"no shards given and none beside {out} ({out.name}.shard-I-of-N)")
    summary = merge_shards([read_shard(p) for p in paths], out, log=log, schema=schema)
    if remove:
        for p in paths:
            _remove_shard(p)
    return summary


def _remove_shard(path: Path) -> None:
    """Delete what attrret can prove it wrote in a shard folder (its shard.json, the probabilities
    file that names, its locks), and the folder if that was all: a user's files stay."""
    mine = {SHARD_FILE, *([pf] if (pf := _shard_probs_file(path)) else [])}
    for p in path.iterdir():
        if p.name in mine or p.name.startswith(LOCK_PREFIX):
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.rmdir()


# --------------------------------------------------------------------------- torchrun
def torchrun_world() -> int:
    """How many processes torchrun launched (1 when it did not)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


class _Failed(AttrretError):
    """Another rank failed; it printed its own error."""


def _rank_device(device: str) -> str:
    """Under torchrun each rank takes its own GPU, ``cuda:LOCAL_RANK`` (unless one is named)."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def build_index_distributed(src: str | Path, out: str | Path, ensemble: Ensemble, *, split: str = "test", batch_size: int = 64,
                            progress: bool = True, log: Callable[[str], None] = _stderr, schema: Schema | None = None,
                            meta: MetaSource = MetaSource(), gate: str = "router") -> BuildSummary | None:
    """``torchrun ... attrret predict``: the index a single ``build_index`` would write, each rank
    predicting a shard (module doc) with ``ensemble`` on its own device (``cuda:LOCAL_RANK`` where
    the ensemble's device is ``auto`` or ``cuda`` and there are GPUs). Rank 0 returns the
    summary, the others None.

    Collectives carry Python objects over gloo (a gloo group beside nccl on GPUs). When a rank
    fails it raises its own error; the others stop too and rank 0 writes nothing.
    """
    import torch
    import torch.distributed as dist

    from attrret.classifiers.runtime import init_dist, resolve_device

    ensemble = ensemble.on(_rank_device(ensemble.device))
    dev = resolve_device(ensemble.device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    d = init_dist(dev)
    try:
        group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        ranks = _Ranks(ShardSpec(d.rank, d.world), group, ensemble, batch_size, progress and d.main, schema or load_schema())
        try:
            summary = _lead(ranks, src, Path(out), split, log, meta, gate) if d.main else _follow(ranks)
        except Exception:
            _settle(group, quiet=True)  # every rank shares an Exception's outcome (_lead, _exchange): they all get here
            raise
        _settle(group, quiet=False)
        return summary
    finally:
        dist.destroy_process_group()


def _settle(group: object, *, quiet: bool) -> None:
    """Wait for every rank before tearing the groups down: gloo sends are asynchronous, and a rank
    that closes its connections while a peer still reads aborts that peer ("terminate called without
    an active exception"). ``quiet``: an error is already on its way up; do not replace it."""
    import torch.distributed as dist

    try:
        dist.barrier(group=group)
    except Exception:
        if not quiet:
            raise


@dataclass(frozen=True)
class _Ranks:
    """What a rank of a torchrun predict needs besides the plan."""

    spec: ShardSpec  # this rank's shard: rank of world
    group: object  # the gloo process group of the object collectives (None: the default group)
    ensemble: Ensemble  # on this rank's device
    batch_size: int
    progress: bool
    schema: Schema


def _lead(ranks: _Ranks, src: str | Path, out: Path, split: str, log: Callable[[str], None],
          meta: MetaSource = MetaSource(), gate: str = "router") -> BuildSummary:
    """Rank 0: lock the index, plan, send the plan, predict shard 0, gather, write."""
    import torch.distributed as dist

    sent = False
    try:
        with _locked_output(out, log):
            plan, reused = plan_build(src, out, ranks.ensemble, list_gallery(src, split, ranks.schema), log=log,
                                      schema=ranks.schema, meta=meta, gate=gate)
            # images by absolute path: ranks on other nodes may run in another directory
            plan = dataclasses.replace(plan, paths=tuple(Path(f["path"]) for f in plan.files))
            dist.broadcast_object_list([plan], src=0, group=ranks.group)
            sent = True
            log(f"{len(plan.todo)} of {len(plan.names)} images to predict on {ranks.spec.count} ranks")
            shards = _exchange(ranks, plan, reused)
            return _merge_locked(shards, out, ranks.schema)
    except BaseException:
        if not sent:  # the other ranks wait for the plan: tell them there is none
            dist.broadcast_object_list([None], src=0, group=ranks.group)
        raise


def _follow(ranks: _Ranks) -> None:
    """Any other rank: receive the plan, predict its shard, send it to rank 0."""
    import torch.distributed as dist

    box: list = [None]
    dist.broadcast_object_list(box, src=0, group=ranks.group)
    if box[0] is None:
        raise _Failed("stopped: rank 0 failed (its error says why)")
    _exchange(ranks, box[0], None)


def _exchange(ranks: _Ranks, plan: BuildPlan, reused: np.ndarray | None) -> list[Shard]:
    """Predict this rank's shard and gather every shard at rank 0 (the list there; empty
    elsewhere). A failing rank still joins the gather, sending None, then raises its error."""
    import torch.distributed as dist

    error: Exception | None = None
    try:
        mine: Shard | None = predict_shard(plan, reused, ranks.spec, ranks.ensemble, batch_size=ranks.batch_size,
                                           progress=ranks.progress, schema=ranks.schema)
    except Exception as exc:
        mine, error = None, exc
    main = ranks.spec.index == 0
    shards: list = [None] * ranks.spec.count if main else []
    dist.gather_object(mine, shards if main else None, dst=0, group=ranks.group)
    if error is not None:
        raise error
    failed = [str(r) for r, s in enumerate(shards) if s is None]
    if failed:
        raise _Failed(f"rank(s) {', '.join(failed)} failed (their errors say why); the index is not written")
    return shards
