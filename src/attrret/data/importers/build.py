"""Write an imported dataset as a Track-2 folder (the layout of :mod:`attrret.data.records`).

::

    DIR/train/train_images/  DIR/train/train_label.txt  [DIR/train/train_unknown.jsonl]
    DIR/val/...              DIR/test/... + DIR/test/test_text.txt (the test captions, in order)
    DIR/sources.jsonl        {"split", "image", "source"} per image: where each came from
    DIR/import.json          format, source, options, counts, schema fingerprint: the completion marker

Vehicles come first in every label file, then pedestrians, each sorted by name. Captions are
written from the values by :mod:`attrret.data.captions` (one seeded generator, so the same
source and seed give the same bytes). Groups a source leaves unknown are listed in
``<split>_unknown.jsonl`` (see :mod:`attrret.data.layout`). Images are copied (or hard-linked
with ``link``; a copy where the file system cannot link); the source is only ever read.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from attrret.data.captions import known_pedestrian_caption, vehicle_caption
from attrret.data.importers.source import ImportOptions, Source, SourceImage
from attrret.data.layout import check_replaceable, discard, job_progress, label_line, partial_folder, publish, seal, unknown_line
from attrret.data.records import SPLITS
from attrret.data.splits import identity_split
from attrret.data.track2 import unknown_file
from attrret.errors import InputError
from attrret.io import atomic_write_text
from attrret.locks import LOCK_PREFIX, file_lock
from attrret.schema import Schema, load_schema

__all__ = ["MARKER", "ImportSummary", "import_dataset"]

MARKER = "import.json"
SOURCES = "sources.jsonl"
_LAYOUT = frozenset({*SPLITS, SOURCES})


@dataclass(frozen=True)
class ImportSummary:
    """What was written: images per split and kind, known labels per split and group, what was skipped."""

    out: Path
    counts: dict[str, dict[str, int]]
    known: dict[str, dict[str, int]]
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _check_paths(src: Path, out: Path) -> None:
    """Never write into the source, and never replace a folder that holds it."""
    if src.is_dir() and out.is_relative_to(src):
        raise InputError("the output folder is inside the source; name a folder outside it", out)
    if src.is_relative_to(out):
        raise InputError("the source is inside the output folder; name another output folder", out)


def _assign_splits(items: list[SourceImage], options: ImportOptions) -> list[tuple[str, SourceImage]]:
    """Each image's split: its source's, else its identity's (when another image of it has one),
    else :func:`identity_split` of the identities left."""
    given: dict[str, str] = {}
    for it in items:
        if it.split is not None:
            given.setdefault(it.identity, it.split)
    free = [it.identity for it in items if it.split is None and it.identity not in given]
    try:
        by_id = identity_split(free, options.val_fraction, options.test_fraction, options.seed) if free else {}
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return [(it.split or given.get(it.identity) or by_id[it.identity], it) for it in items]


def _check_images(items: list[SourceImage], source: Source, options: ImportOptions, schema: Schema) -> list[SourceImage]:
    """Every item checked (:meth:`SourceImage.checked`: one check for every format), its image
    present (or skipped with ``--skip-missing``), and no two with one output name."""
    kept, names = [], {}
    for it in items:
        it.checked(schema)
        if not it.path.is_file():
            if not options.skip_missing:
                raise InputError(f"image {it.path.name!r} listed but missing: {it.path} "
                                 "(--skip-missing leaves such images out)", it.where)
            source.skip("image listed but missing")
            continue
        if it.name in names:
            raise InputError(f"two images would be named {it.name!r} in the output: {names[it.name]} and {it.path}",
                             it.where)
        names[it.name] = it.path
        kept.append(it)
    return kept


def _place(src: Path, dst: Path, link: bool) -> None:
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or links not allowed: copy instead
            pass
    try:
        shutil.copyfile(src, dst)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):  # the output's fault, not the source's
            raise OSError(exc.errno, exc.strerror, str(dst)) from None
        raise


def _copy_images(jobs: list[tuple[Path, Path]], link: bool, progress: bool,
                 on_progress: Callable[[int, int], None] | None) -> None:
    with job_progress("linking images" if link else "copying images", len(jobs), progress, on_progress) as done:
        for i, (src, dst) in enumerate(jobs, 1):
            _place(src, dst, link)
            done(i)


def import_dataset(fmt: str, src: str | Path, out: str | Path, options: ImportOptions = ImportOptions(), *,
                   link: bool = False, force: bool = False, progress: bool = False,
                   on_progress: Callable[[int, int], None] | None = None, schema: Schema | None = None) -> ImportSummary:
    """Import ``src`` in format ``fmt`` (a key of :data:`attrret.data.importers.FORMATS`) into ``out``,
    labelled under ``schema`` (None: the packaged one)."""
    from attrret.data.importers import FORMATS

    start = time.perf_counter()
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    src, out = Path(os.path.abspath(src)), Path(os.path.abspath(out))
    if not src.exists():
        raise InputError("no such file or directory", src)
    _check_paths(src, out)
    with file_lock(out.parent / f"{LOCK_PREFIX}import-{out.name}.lock",
                   waiting=f"waiting for another import into {out}"):
        return _import_locked(fmt, src, out, options, link=link, force=force, progress=progress,
                              on_progress=on_progress, start=start, schema=schema or load_schema())


def _import_locked(fmt: str, src: Path, out: Path, options: ImportOptions, *, link: bool, force: bool, progress: bool,
                   on_progress: Callable[[int, int], None] | None, start: float, schema: Schema) -> ImportSummary:
    """The import itself, under the output's lock (two imports into one folder take turns)."""
    from attrret.data.importers import FORMATS

    check_replaceable(out, force, marker=MARKER, layout=_LAYOUT, what="imported set", empty_ok=True)
    source = FORMATS[fmt].read(src, options, schema)
    items = _check_images(source.items, source, options, schema)
    if not items:
        raise InputError("nothing to import (every image was skipped)", src)
    placed = _assign_splits(items, options)
    tmp = partial_folder(out)
    try:
        return _build(tmp, out, fmt, src, options, link, progress, on_progress, start, schema, source, placed)
    except BaseException:
        discard(tmp)  # no hidden partial folder is left behind, a full disk included
        raise


def _build(tmp: Path, out: Path, fmt: str, src: Path, options: ImportOptions, link: bool, progress: bool,
           on_progress: Callable[[int, int], None] | None, start: float, schema: Schema, source, placed) -> ImportSummary:
    """Write the imported set into ``tmp`` and publish it at ``out``."""
    rng = np.random.default_rng(np.random.SeedSequence([options.seed, 11]))
    counts: dict[str, dict[str, int]] = {}
    known: dict[str, dict[str, int]] = {}
    jobs: list[tuple[Path, Path]] = []
    sources: list[str] = []
    for split in SPLITS:
        rows = sorted((it for s, it in placed if s == split), key=lambda it: (it.kind != "vehicle", it.name))
        if not rows:
            continue
        folder = tmp / split / f"{split}_images"
        folder.mkdir(parents=True)
        lines, unknown, captions = [], [], []
        for it in rows:
            caption = (vehicle_caption(it.values, rng, schema) if it.kind == "vehicle"
                       else known_pedestrian_caption(it.values, rng))
            lines.append(label_line(it.name, it.kind, it.values, caption, schema))
            side = unknown_line(it.name, it.kind, it.values, schema)
            if side:
                unknown.append(side)
            captions.append(caption + "\n")
            jobs.append((it.path, folder / it.name))
            sources.append(json.dumps({"split": split, "image": it.name, "source": str(it.path)}) + "\n")
            for g in it.values:
                key = f"{it.kind}.{g}"
                known.setdefault(split, {})[key] = known.get(split, {}).get(key, 0) + 1
        counts[split] = {k: sum(it.kind == k for it in rows) for k in ("vehicle", "pedestrian")}
        label_file = tmp / split / f"{split}_label.txt"
        atomic_write_text(label_file, "".join(lines))
        if unknown:
            atomic_write_text(unknown_file(label_file), "".join(unknown))
        if split == "test":
            atomic_write_text(tmp / split / "test_text.txt", "".join(captions))
    _copy_images(jobs, link, progress, on_progress)
    atomic_write_text(tmp / SOURCES, "".join(sources))
    seconds = time.perf_counter() - start
    marker = {"format": fmt, "source": str(src), "options": {**asdict(options), "link": link}, "counts": counts,
              "known": known, "skipped": source.skipped, "schema": schema.fingerprint, "seconds": round(seconds, 2)}
    seal(tmp, MARKER, marker)
    publish(tmp, out, marker=MARKER, layout=_LAYOUT, what="imported set")
    return ImportSummary(out, counts, known, dict(source.skipped), seconds)
