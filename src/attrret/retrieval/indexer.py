"""``attrret predict`` as a library: gallery listing, model ensembles, flip TTA, incremental index.

Ensemble members. A *member* is one set of task models (``<root>/<task>/model.pt``), e.g.
one workdir's ``models/`` trained at one resolution. Per task, the index stores the weighted
mean of the probabilities of the members that have that task.

- ``models=[DIR, ...]``: each DIR is a member root (``DIR/<task>/model.pt``) or one task dir
  (``DIR/model.pt``, a member of its own), in the given order;
- otherwise from ``workdir`` W: with no ``img_sizes``, ``W/models`` and every member a training
  recipe added (``W/members/<name>/models``, :mod:`attrret.classifiers.recipes`), so
  ``attrret train --recipe accurate`` then ``attrret predict`` ensembles without flags; with
  ``img_sizes=((256, 128), (320, 160))``, one member per size, found among ``W/models`` and
  ``W/*/models`` (e.g. ``W/r320/models`` from ``attrret train --workdir W/r320 --img-size
  320x160``) by the input sizes (H x W) recorded in their checkpoints; an int N is N x N.

``weights`` align with the members in that order (default: equal). A member whose models
folder has a ``domain_gate.json`` beside it (``W/members/anchor/``, from ``attrret train`` on
several datasets) is weighed per image by that gate (:mod:`attrret.classifiers.domain`); the
index header records the gate's hash with the member's models, so a changed gate makes the
index stale like a changed model.

Incremental runs: a row of the existing index is reused when the image's path, size and
mtime are unchanged and every model (by checkpoint hash), the TTA and the weights are the
same; only new or changed images are predicted, removed ones are dropped. If anything that
changes probabilities differs, everything is recomputed.

Router gating (``gate="router"``, ``attrret predict --gate router``, the default): the router's
ensemble runs on every image first, and each image then runs only its subject's models (a
pedestrian never pays for the vehicle models). The index stores every row's router
probabilities as before; the other subject's columns of a row hold the uniform distribution
(1 / classes). Hard-gated ranking (the default ``rank`` / ``search``) reads a query's columns
only over rows the router calls its kind, so its results are identical to ``--gate none``
(tests/retrieval/test_gate.py); the soft gate (``--kind-gate soft``) also scores rows of the
other kind, and there it sees "no information" instead of the other subject's models' guesses,
so its order among those rows can differ. The header records the gate: rows are not reused
across gates.

Sharded runs (``torchrun``, ``--shard i/N``): attrret.retrieval.shards splits the images to
predict (``BuildPlan.todo``) among processes and merges their rows into the same index.
What runs the models is a :class:`attrret.ensemble.Predictor`: an :class:`Ensemble` of
checkpoints (PyTorch) or an exported graph (onnxruntime, :mod:`attrret.export.onnx_runtime`),
run the same way. An index built from a graph records the graph file's hash and the
checkpoint hashes it was exported from: its rows are reused only under that same graph.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attrret.classifiers.recipes import MEMBERS_DIR
from attrret.ensemble import TTA_DEFAULT, Member, Predictor, member_gate, task_columns
from attrret.errors import CheckpointError, InputError
from attrret.faults import fault_point
from attrret.geometry import HW, hw_label, parse_hw
from attrret.io import file_sha256
from attrret.locks import file_lock
from attrret.retrieval.meta import NO_TIME, ImageMeta, MetaSource, gather_meta
from attrret.retrieval.index import WRITE_LOCK, Index, IndexHeader, check_writable, discard_new_folder, is_index, open_index, write_index
from attrret.schema import Schema, load_schema


__all__ = [
    "IMAGE_SUFFIXES",
    "Member",
    "BuildSummary",
    "BuildPlan",
    "plan_build",
    "list_gallery",
    "find_members",
    "build_index",
    "check_fresh",
    "Predictor",
    "file_sha256",
    "task_columns",
    "GATES",
    "TTA_DEFAULT",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: How predict routes images to models (``--gate``): ``router``, each image through its own
#: subject's models only (the router first); ``none``, every model on every image.
GATES = ("router", "none")


@dataclass(frozen=True)
class BuildSummary:
    path: Path
    total: int
    predicted: int
    reused: int
    removed: int
    tasks: tuple[str, ...]
    precision: str = ""  # what the predicted rows were computed in (the header's)


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _image_files(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if fn.lower().endswith(IMAGE_SUFFIXES) and not fn.startswith("."):
                p = Path(dirpath) / fn
                if not p.is_file():  # a FIFO or device named *.jpg would block the reader forever
                    print(f"attrret: warning: skipped {p!s}: not a regular file", file=sys.stderr)
                    continue
                name = p.relative_to(folder).as_posix()
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:  # the index and submissions are UTF-8 text
                    print(f"attrret: warning: skipped {name.encode('utf-8', 'backslashreplace').decode()}: "
                          "file name is not valid UTF-8 (rename it to include it)", file=sys.stderr)
                    continue
                out.append((name, p))
    return out


def list_gallery(src: str | Path, split: str = "test", schema: Schema | None = None) -> list[tuple[str, Path]]:
    """``[(name, path)]`` of a gallery: an image folder, a Track-2 folder, a label file or a list file.

    - Track-2 folder: the images of ``<split>/<split>_images/`` (all of them, labelled or not);
    - ``labels.txt`` + ``images/``: the images the labels list;
    - a label file (``image$attribute$caption``): its images (beside it in ``images/`` or next to it);
    - another text file: one image path per line (relative to the file's folder), named by file name;
    - any other folder: every image under it, named by its relative path.
    """
    from attrret.data.track2 import check_image_name, is_label_file, iter_lines

    src = Path(src)
    if src.is_dir():
        t2 = src / split / f"{split}_images"
        if t2.is_dir():
            return _image_files(t2)
        if (src / "labels.txt").is_file():
            return list_gallery(src / "labels.txt", schema=schema)
        found = _image_files(src)
        if not found:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder", src)
        return found
    if not src.is_file():
        raise InputError("no such file or directory", src)
    if src.suffix.lower() in IMAGE_SUFFIXES:  # one image: a gallery of one
        return [(src.name, src)]
    if is_label_file(src):  # its images where attrret.data.records.find_label_files says
        from attrret.data.records import load_records

        return [(r.image, r.path) for r in load_records(src, schema=schema, check_images=True)]
    out, seen = [], {}
    for no, text in iter_lines(src):
        line = text.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line)
        p = p if p.is_absolute() else src.parent / p
        if not p.is_file():
            raise InputError(f"image {line!r} not found", src, no)
        name = p.name
        try:
            check_image_name(name)
        except ValueError as exc:
            raise InputError(str(exc), src, no) from None
        if name in seen:
            raise InputError(f"image name {name!r} already listed on line {seen[name]}", src, no)
        seen[name] = no
        out.append((name, p))
    if not out:
        raise InputError("no image paths listed", src)
    return out


def _img_sizes(task_dirs: Sequence[Path], schema: Schema | None = None) -> tuple[HW, ...]:
    """The distinct input sizes ``task_dirs``' checkpoints were trained at, in task order."""
    from attrret.classifiers.checkpoint import load_checkpoint

    sizes = (load_checkpoint(d, schema=schema, mmap=True).preprocess.hw for d in task_dirs)  # mmap: only the meta is read
    return tuple(dict.fromkeys(sizes))


def member_sizes(member: Member) -> str:
    """``256x128 128x192``: how a member's input sizes are shown."""
    return " ".join(map(hw_label, member.img_sizes))


def find_members(
    workdir: str | Path | None,
    models: Sequence[str | Path] = (),
    img_sizes: Sequence[HW | int] = (),
    weights: Sequence[float] = (),
    schema: Schema | None = None,
) -> list[Member]:
    """Resolve the ensemble members (see module doc); errors say what was looked for.

    ``img_sizes`` are ``(H, W)`` (an int N: N x N); a member matches a size its checkpoints
    were trained at, and one member matching several is taken once.
    """
    from attrret.classifiers.checkpoint import task_model_dirs  # torch: only when models are used

    schema = schema or load_schema()
    wanted = tuple(parse_hw(s) for s in img_sizes)
    members: list[Member] = []
    if models:
        for m in models:
            dirs = tuple(task_model_dirs(m, schema))
            if not dirs:
                raise CheckpointError(f"{m}: no model.pt here nor in <task>/ subfolders")
            members.append(Member(str(m), dirs, img_sizes=_img_sizes(dirs, schema), domain_gate=member_gate(m)))
        if wanted:
            members = [m for m in members if set(m.img_sizes) & set(wanted)]
    elif workdir is not None:
        w = Path(workdir)
        if not wanted:
            dirs = tuple(task_model_dirs(w / "models", schema))
            if not dirs:
                raise CheckpointError(f"{w}/models: no trained models (run attrret train --workdir {w}, or give --models)")
            members.append(Member(str(w / "models"), dirs, img_sizes=_img_sizes(dirs, schema)))
            extra = sorted((w / MEMBERS_DIR).glob("*/models")) if (w / MEMBERS_DIR).is_dir() else []
            members += [Member(str(r), dirs, img_sizes=_img_sizes(dirs, schema), domain_gate=member_gate(r))
                        for r in extra if (dirs := tuple(task_model_dirs(r, schema)))]
        else:
            roots = [w / "models"] + sorted(p / "models" for p in w.iterdir() if p.is_dir() and p.name != "models") if w.is_dir() else []
            found = [Member(str(r), dirs, img_sizes=_img_sizes(dirs, schema), domain_gate=member_gate(r))
                     for r in roots if (dirs := tuple(task_model_dirs(r, schema)))]
            for hw in wanted:
                hits = [m for m in found if hw in m.img_sizes]
                if not hits:
                    have = "; ".join(f"{m.label}: {member_sizes(m)}" for m in found) or "none"
                    raise CheckpointError(f"no model set trained at {hw_label(hw)} under {w} (found {have})")
                if len(hits) > 1:
                    raise CheckpointError(f"several model sets trained at {hw_label(hw)} under {w}: {[m.label for m in hits]}; use --models")
                if hits[0] not in members:
                    members.append(hits[0])
    else:
        raise CheckpointError("no models: give --workdir or --models")
    if not members:
        raise CheckpointError(f"no model set matches --img-sizes {','.join(map(hw_label, wanted))}")
    if weights:
        if len(weights) != len(members):
            raise CheckpointError(f"{len(weights)} weights for {len(members)} ensemble members ({', '.join(m.label for m in members)})")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise CheckpointError("ensemble weights must be >= 0 with a positive sum")
        members = [dataclasses.replace(m, weight=float(wt)) for m, wt in zip(members, weights)]
    return members


def check_fresh(index: Index) -> None:
    """Refuse an index whose models changed since it was built, judged by content hash.

    The checkpoint beside the index (its recorded relative path) is the one checked first, so
    a copied workdir whose models were retrained is caught even though the checkpoints at the
    original absolute paths are unchanged. Models that are gone cannot be checked. The same
    holds for the ``--meta`` table the metadata came from (a filter must not answer from
    cameras and times the analyst has since corrected).
    """
    for m in index.header.models:
        for what, rec in ((f"{m['task']} model", m), (f"{m['task']} domain gate", m.get("domain_gate"))):
            if not isinstance(rec, dict):
                continue
            here = [index.path / rec["relpath"]] if isinstance(rec.get("relpath"), str) else []
            p = next((c for c in [*here, *([Path(rec["path"])] if isinstance(rec.get("path"), str) else [])] if c.is_file()), None)
            if p is not None and file_sha256(p) != rec["sha256"]:
                raise CheckpointError(
                    f"{index.path}: stale index: {what} {p.resolve()} changed since the index was built; re-run attrret predict"
                )
    table = Path(index.header.meta_source) if index.header.meta_source else None
    if table is not None and table.is_file() and file_sha256(table) != index.header.meta_sha256:
        raise CheckpointError(f"{index.path}: stale metadata: {table} changed since the index was built; re-run attrret "
                              f"predict --meta {table} (no image is predicted again)")


def build_index(
    src: str | Path,
    out: str | Path,
    predictor: Predictor,
    *,
    split: str = "test",
    batch_size: int = 64,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    schema: Schema | None = None,
    meta: MetaSource = MetaSource(),
    gate: str = "router",
) -> BuildSummary:
    """Predict every gallery image of ``src`` with ``predictor`` into the index at ``out``,
    under ``schema`` (None: the packaged one; the predictor's models must be of it).

    ``predictor``: an :class:`attrret.ensemble.Ensemble` of checkpoints (PyTorch, e.g.
    ``Ensemble.open(find_members(W), device="cpu")``) or an exported graph
    (:func:`attrret.export.onnx_runtime.open_graph`, onnxruntime); the header records its
    models, TTA, weights and precision, and rows computed otherwise are not reused.
    One run at a time per index: a second ``predict`` into ``out`` waits for the first
    (``attrret.locks``), then reuses what it predicted. ``meta``: where the images' metadata
    comes from (:func:`plan_build`). ``gate``: ``router`` (each image through its own subject's
    models only, where the predictor can gate) or ``none`` (module doc, "Router gating").
    """
    out = Path(out)
    check_writable(out)
    gallery = list_gallery(src, split, schema)
    created = not out.exists()
    try:
        with file_lock(out / WRITE_LOCK, waiting=f"waiting for another attrret predict into {out} to finish", log=log):
            return _build_locked(src, out, predictor, gallery, batch_size=batch_size, progress=progress, log=log,
                                 schema=schema or load_schema(), meta=meta, gate=gate)
    except BaseException:
        if created:  # a failed first build leaves no folder behind
            discard_new_folder(out)
        raise


def _build_locked(src: str | Path, out: Path, predictor: Predictor, gallery: list[tuple[str, Path]], *, batch_size: int,
                  progress: bool, log: Callable[[str], None], schema: Schema, meta: MetaSource = MetaSource(),
                  gate: str = "router") -> BuildSummary:
    plan, probs = plan_build(src, out, predictor, gallery, log=log, schema=schema, meta=meta, gate=gate)
    todo = list(plan.todo)
    if todo:
        probs[todo] = predictor.probs([plan.paths[i] for i in todo], schema, columns=plan.header.columns,
                                      gate=plan.header.gate == "router", batch_size=batch_size, progress=progress)
    # Test-only (attrret.faults): signalled mid-run at a well-defined point, every image
    # predicted and the index not yet written.
    fault_point("ATTRRET_TEST_KILL_BEFORE_WRITE")
    write_index(out, probs, plan.names, plan.files, plan.header, schema, meta=plan.meta)
    return plan.summary(out)


@dataclass(frozen=True)
class BuildPlan:
    """What a predict run into an index does before any model runs: the header it will write,
    the gallery in listing order, and which of its rows to predict (``todo``, in that order:
    the engine batches them so); the others are reused from the existing index.
    attrret.retrieval.shards splits ``todo`` among processes."""

    header: IndexHeader
    names: tuple[str, ...]
    paths: tuple[Path, ...]
    files: tuple[dict, ...]  # per row: {"path", "size", "mtime_ns"}
    todo: tuple[int, ...]
    removed: int  # rows of the existing index whose image is gone
    meta: ImageMeta | None = None  # the rows' metadata (attrret.retrieval.meta), in gallery order

    def summary(self, out: Path) -> BuildSummary:
        n = len(self.names)
        return BuildSummary(Path(out), n, len(self.todo), n - len(self.todo), self.removed, tuple(self.header.columns),
                            self.header.precision)


def plan_build(src: str | Path, out: Path, predictor: Predictor, gallery: Sequence[tuple[str, Path]], *,
               log: Callable[[str], None], schema: Schema | None = None,
               meta: MetaSource = MetaSource(), gate: str = "router") -> tuple[BuildPlan, np.ndarray]:
    """The plan of a run of ``predictor`` into ``out`` (see BuildPlan) and a float32
    ``(len(gallery), width)`` array holding the reused rows (zero where a row is to be
    predicted). ``meta``: where the rows' metadata comes from; empty, an existing index's
    metadata is kept for the images it still holds (attrret.retrieval.meta). Metadata never
    decides which rows are predicted."""
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; use one of {', '.join(GATES)}")
    schema = schema or load_schema()
    names = [n for n, _ in gallery]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise InputError(f"duplicate image names in the gallery: {', '.join(dup)}", src)
    entries = predictor.entries(out, schema)
    columns = task_columns([e["task"] for e in entries], schema)
    at = max((stop for _, stop in columns.values()), default=0)
    stats = [_stat(p) for _, p in gallery]
    old: Index | None = None
    if is_index(out):
        try:
            old = open_index(out, schema)
        except CheckpointError as exc:
            log(f"existing index not reusable ({exc}); rebuilding")
    image_meta, meta_where = _plan_meta(meta, gallery, old, log)
    header = IndexHeader(
        schema=schema.fingerprint, schema_source=schema.source, count=len(gallery), columns=columns, models=tuple(entries),
        img_sizes=tuple(sorted({tuple(e["img_size"]) for e in entries})), tta=predictor.tta,
        weights=predictor.weights, source=str(Path(src).resolve()), precision=predictor.precision, **meta_where,
        # an exported graph runs every model (its ensemble is fixed); without a router or with
        # the router alone there is nothing to gate
        gate=gate if predictor.gates and schema.router.task in columns and len(columns) > 1 else "none",
    )
    if old is not None and old.header.settings() != header.settings():
        log("existing index was built with other models/settings; recomputing every image")
        old = None
    probs = np.zeros((len(gallery), at), dtype=np.float32)
    todo = list(range(len(gallery)))
    removed = 0
    if old is not None:
        prev = {n: (i, f) for i, (n, f) in enumerate(zip(old.names, old.files))}
        todo = []
        for i, (name, st) in enumerate(zip(names, stats)):
            hit = prev.get(name)
            if hit is not None and hit[1] == st:
                probs[i] = old.probs[hit[0]]
            else:
                todo.append(i)
        removed = len(set(old.names) - set(names))
    plan = BuildPlan(header, tuple(names), tuple(p for _, p in gallery), tuple(stats), tuple(todo), removed, image_meta)
    return plan, probs


def _plan_meta(source: MetaSource, gallery: Sequence[tuple[str, Path]], old: Index | None,
               log: Callable[[str], None]) -> tuple[ImageMeta | None, dict[str, str]]:
    """The rows' metadata and the header fields naming its table (see :func:`plan_build`)."""
    if source:
        where = {}
        if source.file is not None:
            where = {"meta_source": str(Path(source.file).resolve()), "meta_sha256": file_sha256(source.file)}
        return gather_meta(source, gallery, log), where
    if old is None or old.meta is None:
        return None, {}
    at = {n: i for i, n in enumerate(old.names)}
    rows = [at.get(n, -1) for n, _ in gallery]
    kept = old.meta.take([max(r, 0) for r in rows])
    if any(r < 0 for r in rows):  # new images: no metadata yet
        blank = np.asarray([r < 0 for r in rows])
        cols = {c: dataclasses.replace(col, codes=np.where(blank, -1, col.codes).astype(np.int32)) for c, col in kept.columns.items()}
        kept = ImageMeta(kept.count, None if kept.time is None else np.where(blank, NO_TIME, kept.time), cols)
    return kept, {"meta_source": old.header.meta_source, "meta_sha256": old.header.meta_sha256}
