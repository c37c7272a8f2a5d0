"""A CSV table -> source images: the simplest way to bring any labelled crops to attrret.

Columns: ``image`` (a path relative to the CSV's folder, or to ``--images``), one column per
group named as in the schema (``gender``, ``age``, ... ; ``color``, ``type``, ``brand``) holding
a class name or nothing (unknown), and optionally ``kind`` (``pedestrian`` / ``vehicle``; else
``--kind``), ``split`` (``train`` / ``val`` / ``test``; empty = split by identity) and
``identity`` (a person or vehicle id, so its images share a split; default: the image).
Output names are the image paths with ``/`` replaced by ``_``.
"""

from __future__ import annotations

import csv
from pathlib import Path, PurePosixPath

from attrret.data.importers.source import ImportOptions, Source, SourceImage
from attrret.errors import InputError
from attrret.schema import Schema, load_schema

__all__ = ["read"]

_META = ("image", "kind", "split", "identity")


def read(src: Path, options: ImportOptions, schema: Schema | None = None) -> Source:
    schema = schema or load_schema()
    subjects = {s.name: s for s in (schema.pedestrian, schema.vehicle)}
    if not src.is_file():
        raise InputError("no such CSV file", src)
    base = options.images or src.parent
    try:
        text = src.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", src) from None
    rows = csv.DictReader(text.splitlines())
    try:
        columns = [c.strip() for c in rows.fieldnames or []]
    except csv.Error as exc:
        raise InputError(f"not a readable CSV header ({exc})", src, 1) from None
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InputError(f"column {repeated[0]!r} appears twice in the header; keep one", src, 1)
    if "image" not in columns:
        raise InputError(f"no 'image' column (columns: {', '.join(columns) or 'none'})", src)
    if options.kind is not None and options.kind not in subjects:
        raise InputError(f"unknown kind {options.kind!r}; use pedestrian or vehicle")
    kinds = [options.kind] if options.kind and "kind" not in columns else list(subjects)
    if "kind" not in columns and options.kind is None:
        raise InputError("no 'kind' column: give --kind pedestrian or --kind vehicle", src)
    valid = list(_META) + [g for k in kinds for g in subjects[k].group_names]
    bad = [c for c in columns if c not in valid]
    if bad:
        raise InputError(f"unknown column {bad[0]!r}; valid columns: {', '.join(valid)}", src)
    source = Source([])
    try:
        return _rows(src, rows, options, schema, base, source)
    except csv.Error as exc:  # a cell over csv's field limit (128 KiB), a NUL byte, an unterminated quote
        raise InputError(f"not readable as CSV ({exc})", src, rows.line_num or None) from None


def _rows(src: Path, rows: csv.DictReader, options: ImportOptions, schema: Schema, base: Path, source: Source) -> Source:
    """Every data row of ``rows`` into ``source``, each checked as a :class:`SourceRecord`
    (kind, groups and classes of the schema, split) where the row is read."""
    for no, raw in enumerate(rows, 2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        values = {col: cls for col, cls in row.items() if col not in _META and cls}
        image = row.get("image", "")
        if not image:
            raise InputError("empty image path", src, no)
        rel = PurePosixPath(image.replace("\\", "/"))
        path = Path(image) if rel.is_absolute() else base / rel
        name = path.name if rel.is_absolute() else "_".join(p for p in rel.parts if p not in (".", ""))
        item = SourceImage(path, name, row.get("kind") or options.kind or "", values, row.get("split") or None,
                           row.get("identity") or name, f"{src}:{no}")
        source.items.append(item.checked(schema))
    if not source.items:
        raise InputError("no rows", src)
    return source
