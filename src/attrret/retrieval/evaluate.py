"""``attrret evaluate`` as a library: a submission against the organisers' gt or full labels.

Queries are matched to relevance by POSITION (submission order = test_text.txt order = gt
order = label-file order) and the caption texts must agree, so a shuffled or truncated
submission is an error naming the first mismatch rather than a silently wrong score.
"""

from __future__ import annotations

from pathlib import Path

from attrret.data.track2 import read_gt, read_label_file, read_submission
from attrret.errors import InputError
from attrret.retrieval.metrics import LabelRelevance, Scores, SetRelevance, evaluate_lists, label_keys
from attrret.schema import Schema, load_schema

__all__ = ["load_relevance", "evaluate_submission"]


def load_relevance(*, gt: str | Path | None = None, labels: str | Path | None = None, schema: Schema | None = None):
    """``(relevance, kinds)`` from ``test_gt.txt`` or from a complete label file, read with
    ``schema`` (None: the packaged one): its label codes and its caption lexicon."""
    schema = schema or load_schema()
    if (gt is None) == (labels is None):
        raise InputError("give exactly one of --gt or --labels")
    if labels is not None:
        lines = read_label_file(labels, schema)
        incomplete = [ll for ll in lines if ll.kind == "vehicle" and len(ll.values) < 3]
        if incomplete:
            raise InputError(
                "vehicle attribute is incomplete (relevance needs colour, brand and type)", labels, incomplete[0].line
            )
        coded = [g.name for g in schema.pedestrian.groups if g.bits]  # the Track-2 rule compares codes
        unknown = [ll for ll in lines if ll.kind == "pedestrian" and not all(g in ll.values for g in coded)]
        if unknown:
            missing = [g for g in coded if g not in unknown[0].values]
            raise InputError(f"pedestrian labels leave groups unknown ({', '.join(missing)}; see the "
                             "_unknown.jsonl beside it): relevance needs every group", labels, unknown[0].line)
        keys = label_keys([ll.values for ll in lines], [ll.kind for ll in lines], schema)
        rel = LabelRelevance([ll.image for ll in lines], [ll.kind for ll in lines], [ll.caption for ll in lines], keys)
        return rel, [ll.kind for ll in lines]
    rows = read_gt(gt)
    from attrret.parser import CaptionParser

    kinds = [q.kind for q in CaptionParser(schema).parse_many([t for t, _ in rows])]
    return SetRelevance.from_rows(rows), kinds


def evaluate_submission(
    submission: str | Path, *, gt: str | Path | None = None, labels: str | Path | None = None, k: int = 10,
    schema: Schema | None = None,
) -> dict[str, Scores]:
    results = read_submission(submission)
    rel, kinds = load_relevance(gt=gt, labels=labels, schema=schema)
    source = gt if gt is not None else labels
    if len(results) != len(rel):
        raise InputError(f"{len(results)} results but {source} has {len(rel)} queries", submission)
    for j, (text, _) in enumerate(results):
        if text != rel.text(j):
            raise InputError(
                f"results[{j}].text {text[:60]!r} differs from query {j + 1} of {source} {rel.text(j)[:60]!r} "
                "(results must keep the query order)", submission,
            )
    return evaluate_lists([names for _, names in results], rel, kinds, k)
