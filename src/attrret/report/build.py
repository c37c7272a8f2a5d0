"""``build_report``: a submission (plus labels or ground truth, images, an index) to one HTML file.

Size: each distinct returned image is stored once (a JPEG at most 72 x 96 px, 1-2 KB as
base64) and each query costs about 1.2 KB of JSON (caption, parsed attributes, 10 results
with agreement and the attributes they contradict). Measured at full Track-2 scale (17,612
synthetic test images and captions, labels, a random same-kind top-10 holding the query's
own image, so 17,612 distinct thumbnails): 40.1 MB, built in 32 s on a shared 2-core CPU;
headless Chromium loaded it and rendered the first 50 queries in 1.3 s, a page turn took
0.25 s. pa100k-mini (1,500 real crops and captions): 3.6 MB in 2.5 s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attrret.data.track2 import LabelLine, read_label_file, read_submission
from attrret.errors import InputError
from attrret.io import atomic_write_text
from attrret.parser.query import Query
from attrret.report.accuracy import TaskAccuracy, attribute_accuracy
from attrret.report.content import ImageFacts, query_row
from attrret.report.page import render_page
from attrret.report.thumbs import ThumbnailTable
from attrret.schema import Schema, load_schema

__all__ = ["ReportSummary", "build_report", "default_image_folder"]


@dataclass(frozen=True)
class ReportSummary:
    """What was written; ``metrics`` is ``{kind: Scores.to_json()}`` exactly as ``attrret evaluate`` computes it."""

    out: Path
    queries: int
    images: int
    missing_images: tuple[str, ...]
    bytes: int
    metrics: dict[str, dict[str, float]] | None
    tasks: int

    def to_json(self) -> dict:
        return {
            "out": str(self.out),
            "queries": self.queries,
            "images": self.images,
            "missing_images": len(self.missing_images),
            "bytes": self.bytes,
            "metrics": self.metrics,
            "accuracy_tasks": self.tasks,
        }


def default_image_folder(relevance_file: Path) -> Path | None:
    """Where a label or ground-truth file's images live by Track-2 convention, if that folder exists.

    ``test/test_label.txt`` and ``test/test_gt.txt`` -> ``test/test_images/``; ``labels.txt`` -> ``images/``.
    """
    stem = relevance_file.stem
    for suffix in ("_label", "_gt", "_text"):
        if stem.endswith(suffix):
            candidate = relevance_file.parent / f"{stem.removesuffix(suffix)}_images"
            break
    else:
        candidate = relevance_file.parent / "images"
    return candidate if candidate.is_dir() else None


def build_report(
    submission: Path,
    out: Path,
    *,
    labels: Path | None = None,
    gt: Path | None = None,
    images: Path | None = None,
    index: Path | None = None,
    k: int = 10,
    page_size: int = 50,
    parse: Callable[[str], Query] | None = None,
    progress: Callable[[str], None] | None = None,
    schema: Schema | None = None,
) -> ReportSummary:
    """Write a self-contained HTML retrieval report of ``submission`` to ``out`` (atomically).

    ``labels`` (a Track-2 label file of the gallery, captions in submission order) or ``gt``
    (the organisers' ``text$img...`` file) give relevance, hence metrics and right/wrong
    marks; labels also give the gallery's attribute values for the agreement badges and the
    accuracy section. ``images`` overrides the thumbnail folder (default: the label or gt
    file's ``*_images`` sibling). ``index`` (a directory written by ``attrret predict``)
    gives predicted attributes: agreement for unlabelled images and, with labels,
    per-attribute accuracy and confusion. ``parse`` replaces the default
    ``CaptionParser().parse`` (e.g. a parser built with other options). Bad inputs raise
    :class:`InputError` (with ``attrret evaluate``'s messages for a submission that does not
    match the labels or gt), an unusable index :class:`CheckpointError`. ``schema`` (None: the
    packaged one) reads the labels, parses the captions and opens the index.
    """
    from attrret.retrieval import metrics as M
    from attrret.retrieval.evaluate import evaluate_submission, load_relevance

    if labels is not None and gt is not None:
        raise InputError("give --labels or --gt, not both")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    if page_size < 1:
        raise InputError(f"page size must be at least 1, got {page_size}")
    schema = schema or load_schema()
    if parse is None:
        from attrret.parser import CaptionParser

        parse = CaptionParser(schema).parse
    say = progress or (lambda _msg: None)
    submission, out = Path(submission), Path(out)
    folder = _image_folder(images, labels or gt)
    rows = read_submission(submission)
    if not rows:
        raise InputError("the submission has no results", submission)
    label_lines = read_label_file(labels, schema) if labels is not None else None

    say(f"parsing {len(rows)} captions")
    parsed: dict[str, Query] = {}
    for text, _ in rows:
        if text not in parsed:
            parsed[text] = parse(text)
    queries = [parsed[text] for text, _ in rows]

    # Metrics from the very function `attrret evaluate` calls; relevance (for the marks) from its loader.
    relevance, metrics = None, None
    if labels is not None or gt is not None:
        metrics = {kind: s.to_json() for kind, s in evaluate_submission(submission, gt=gt, labels=labels, k=k, schema=schema).items()}
        relevance, _ = load_relevance(gt=gt, labels=labels, schema=schema)
    lists = [names[:k] for _, names in rows]

    predicted = _load_predictions(index, schema) if index is not None else None
    facts = _facts_lookup(label_lines, predicted, schema)
    thumbs = ThumbnailTable(folder)
    families = {g.name: g.family for g in schema.pedestrian.groups + schema.vehicle.groups if g.family}
    say(f"building {len(rows)} query rows and thumbnails from {folder or '(no image folder)'}")
    page_rows = []
    for j, (query, names) in enumerate(zip(queries, lists)):
        scores = rel = None
        if relevance is not None:
            rel = lambda n, j=j: relevance.is_relevant(j, n)  # noqa: E731
            n_rel = relevance.n_relevant(j)
            scores = {"ap": M.official_ap(names, rel, k), "sap": M.sound_ap(names, rel, n_rel, k), "nrel": n_rel}
        page_rows.append(query_row(query, names, thumbs=thumbs, facts=facts, is_relevant=rel, scores=scores, families=families))

    accuracy: list[TaskAccuracy] | None = None
    if predicted is not None and label_lines is not None:
        accuracy = attribute_accuracy(label_lines, predicted, schema)
    if index is None:
        accuracy_note = "No index given (--index): per-attribute accuracy needs the probabilities written by `attrret predict`."
    elif label_lines is None:
        accuracy_note = "No labels given (--labels): per-attribute accuracy needs the gallery's labels."
    else:
        accuracy_note = "The index predicts none of the labelled images."
    metrics_note = "No relevance given (--labels or --gt): metrics and right/wrong marks need one of them."
    meta = [f"submission {submission}", f"{len(rows)} queries, top {k}"]
    if labels is not None:
        meta.append(f"labels {labels}")
    if gt is not None:
        meta.append(f"ground truth {gt}")
    if index is not None:
        meta.append(f"index {index}")
    if thumbs.missing:
        meta.append(f"{len(thumbs.missing)} of {len(thumbs.names)} images have no thumbnail")
    page = render_page(
        title=f"attrret retrieval report: {submission.name}",
        meta=meta,
        metrics=metrics,
        metrics_note=metrics_note,
        accuracy=accuracy,
        accuracy_note=accuracy_note,
        queries=page_rows,
        names=thumbs.names,
        images=thumbs.uris,
        page_size=page_size,
    )
    atomic_write_text(out, page)
    return ReportSummary(
        out=out,
        queries=len(rows),
        images=len(thumbs.names),
        missing_images=tuple(thumbs.missing),
        bytes=out.stat().st_size,
        metrics=metrics,
        tasks=len(accuracy or ()),
    )


def _image_folder(images: Path | None, relevance_file: Path | None) -> Path | None:
    """The thumbnail folder: ``images`` (which must exist), else the Track-2 sibling of the labels or gt."""
    if images is not None:
        if not Path(images).is_dir():
            raise InputError("image folder not found", images)
        return Path(images)
    return default_image_folder(Path(relevance_file)) if relevance_file is not None else None


def _facts_lookup(
    label_lines: Sequence[LabelLine] | None, predicted: Mapping[str, Mapping[str, str]] | None, schema: Schema
) -> Callable[[str], ImageFacts | None]:
    """Image name -> its facts: the label when there is one, else the index's prediction."""
    labelled = {line.image: ImageFacts(line.kind, line.values, "label") for line in label_lines or ()}

    def facts(name: str) -> ImageFacts | None:
        found = labelled.get(name)
        if found is not None or predicted is None:
            return found
        pred = predicted.get(name)
        if pred is None:
            return None
        kind = pred.get(schema.router.task)
        if kind not in schema.subjects:
            return None  # without the router's word, which subject's predictions apply is unknown
        groups = schema.subject(kind).groups
        return ImageFacts(kind, {g.name: pred[g.task] for g in groups if g.task in pred}, "predicted")

    return facts


def _load_predictions(index: Path, schema: Schema) -> dict[str, dict[str, str]]:
    """``{image: {task: argmax class}}`` for every task an ``attrret predict`` index holds.

    ``open_index`` refuses an index of another schema (CheckpointError, a domain error).
    """
    from attrret.retrieval.index import open_index

    idx = open_index(index, schema)
    tasks = [g for g in schema.tasks if idx.has(g.task)]
    best = {g.task: np.asarray(idx.task_probs(g.task)).argmax(axis=1) for g in tasks}
    return {name: {g.task: g.classes[best[g.task][i]] for g in tasks} for i, name in enumerate(idx.names)}
