"""Per-image attributes: what the models say about each image, as records a user can read.

One record per image (``attrret attributes``, ``Searcher.attributes``, ``GET
/api/images/{name}/attributes``)::

    {"name": "090001.jpg", "path": "/data/test/090001.jpg", "kind": "pedestrian", "kind_prob": 0.98,
     "groups": {"pedestrian.gender": {"class": "female", "prob": 0.91, "probs": {"female": 0.91, "male": 0.09}},
                ...}}

``groups`` holds the tasks of the image's kind (as the router decides; every task the
probabilities have when there is no router), keyed by task name, each with its predicted
class (the argmax), that class's probability and the whole distribution. ``multilabel``
reads the multi-label groups back as one list each: the classes whose yes/no group says yes
(``{"pedestrian.upper_color": ["black", "white"]}``; absent when the kind has none). Records come from
an index's rows, or from running the models on image files directly (:func:`predict_records`);
both go through :func:`attribute_record`, so they have one shape.

Output formats (by the output's suffix): ``.jsonl`` (the records as above), ``.csv`` and
``.parquet`` (one flat row per image: ``name, path, kind, kind_prob``, then per task
``<task>``, ``<task>.prob`` and ``<task>.p.<class>``, and per multi-label group ``<subject>.<group>``
with its yes classes joined by ``;``; cells of another kind's tasks are empty).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attrret.ensemble import Predictor, predictor_columns
from attrret.errors import InputError
from attrret.io import atomic_path, atomic_write_text
from attrret.schema import SUBJECTS, Schema

if TYPE_CHECKING:
    from attrret.retrieval.index import Index

__all__ = ["FORMATS", "attribute_record", "image_record", "index_records", "predict_records", "flat_row", "write_records"]

#: Output formats by file suffix.
FORMATS = (".jsonl", ".csv", ".parquet")


def attribute_record(name: str, path: str, probs: np.ndarray, columns: Mapping[str, tuple[int, int]],
                     schema: Schema) -> dict[str, Any]:
    """The record of one image from its probability row over ``columns`` (task -> [start, stop))."""
    probs = np.asarray(probs, np.float64)
    kind, kind_prob = None, None
    router = schema.router.task
    if router in columns:
        r = probs[slice(*columns[router])]
        ki = int(r.argmax())
        kind, kind_prob = SUBJECTS[ki], float(r[ki])
    groups: dict[str, Any] = {}
    for g in schema.tasks:
        if g.task == router or g.task not in columns or (kind is not None and not g.task.startswith(kind + ".")):
            continue
        p = probs[slice(*columns[g.task])]
        best = int(p.argmax())
        groups[g.task] = {"class": g.classes[best], "prob": float(p[best]),
                          "probs": {c: float(x) for c, x in zip(g.classes, p)}}
    record = {"name": name, "path": path, "kind": kind, "kind_prob": kind_prob, "groups": groups}
    multilabel = {f"{s.name}.{f}": [g.label for g in gs if groups.get(g.task, {}).get("class") == "yes"]
                  for s in (schema.pedestrian, schema.vehicle) for f, gs in s.families.items()
                  if any(g.task in groups for g in gs)}
    if multilabel:
        record["multilabel"] = multilabel
    return record


def image_record(index: Index, row: int, schema: Schema) -> dict[str, Any]:
    """The record of ``index``'s row ``row`` (its source path as the index recorded it)."""
    files = index.files
    path = files[row].get("path", "") if row < len(files) else ""
    return attribute_record(index.names[row], str(path), index.probs[row], index.header.columns, schema)


def index_records(index: Index, schema: Schema) -> Iterable[dict[str, Any]]:
    """Every image of ``index``, in row (name) order."""
    return (image_record(index, row, schema) for row in range(len(index)))


def predict_records(images: Sequence[tuple[str, Path]], predictor: Predictor, schema: Schema, *, batch_size: int = 64,
                    progress: bool = True) -> list[dict[str, Any]]:
    """Run ``predictor`` (e.g. ``Ensemble.open(find_members(W))``, :mod:`attrret.ensemble`) on image
    files ``[(name, path)]`` and return their records, without writing an index."""
    columns = predictor_columns(predictor, schema)
    probs = predictor.probs([p for _, p in images], schema, columns=columns, batch_size=batch_size, progress=progress)
    return [attribute_record(name, str(Path(path).resolve()), probs[i], columns, schema)
            for i, (name, path) in enumerate(images)]


def flat_row(record: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """One CSV / Parquet row of a record (module doc); every task of the schema has its columns."""
    row: dict[str, Any] = {k: record[k] for k in ("name", "path", "kind", "kind_prob")}
    for g in schema.tasks:
        if g.task == schema.router.task:
            continue
        got = record["groups"].get(g.task)
        row[g.task] = got["class"] if got else None
        row[f"{g.task}.prob"] = got["prob"] if got else None
        for c in g.classes:
            row[f"{g.task}.p.{c}"] = got["probs"][c] if got else None
    for s in (schema.pedestrian, schema.vehicle):
        for f in s.families:
            said = record.get("multilabel", {}).get(f"{s.name}.{f}")
            row[f"{s.name}.{f}"] = ";".join(said) if said is not None else None
    return row


def write_records(out: str | Path, records: Iterable[Mapping[str, Any]], schema: Schema) -> int:
    """Write ``records`` to ``out`` in the format of its suffix, atomically; returns the count."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"unknown output format {out.suffix or '(no suffix)'!r}; use {', '.join(FORMATS)}", out)
    if suffix == ".jsonl":
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
        atomic_write_text(out, "".join(lines))
        return len(lines)
    import pandas as pd

    frame = pd.DataFrame([flat_row(r, schema) for r in records])
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return len(frame)
