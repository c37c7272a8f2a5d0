"""``attrret rank`` as a library: caption file -> parse -> rank -> submission (+ explanations)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attrret.errors import InputError
from attrret.io import atomic_write_text
from attrret.parser.query import Query
from attrret.retrieval.index import Index
from attrret.retrieval.priors import HiddenPriors
from attrret.retrieval.ranker import QueryPlan, Ranking, RankOptions, explain, rank
from attrret.schema import Schema, load_schema

__all__ = ["read_queries", "priors_from_data", "priors_for_index", "RankRun", "rank_captions", "write_explain", "query_warnings"]


def read_queries(path: str | Path, schema: Schema | None = None) -> list[str]:
    """Captions of ``test_text.txt`` (one per line, byte-exact) or of a label file (its caption
    field; its labels are checked against ``schema``, None: the packaged one)."""
    from attrret.data.track2 import is_label_file, read_label_file, read_test_text

    if is_label_file(path):
        return [ll.caption for ll in read_label_file(path, schema)]
    return read_test_text(path)


def priors_from_data(data: str | Path, holdout: int = 0, schema: Schema | None = None) -> HiddenPriors:
    """Pedestrian hidden priors from the labels under ``data`` (minus the fixed holdout, if any)."""
    from attrret.data.records import load_records
    from attrret.data.splits import holdout_split

    schema = schema or load_schema()
    recs = [r for r in load_records(data, "train", schema=schema, check_images=False) if r.kind == "pedestrian"]
    if holdout:
        recs, _ = holdout_split(recs, holdout)
    if not recs:
        raise InputError("no pedestrian labels to learn hidden priors from", data)
    return HiddenPriors.from_values([r.values for r in recs], schema.pedestrian)


def priors_for_index(index: Index, schema: Schema | None = None) -> HiddenPriors:
    """Hidden priors from the training labels recorded in the index's pedestrian checkpoints."""
    schema = schema or index.schema
    for m in index.header.models:
        if m["task"].startswith("pedestrian.") and m.get("train_data"):
            data = Path(m["train_data"])
            if not data.is_absolute():  # never against the current directory: results would depend on it
                raise InputError(f"the index records the training data as a relative path ({data}); "
                                 "re-run attrret predict, or give --priors-from DATA", index.path)
            return priors_from_data(data, int(m.get("holdout") or 0), schema)
    raise InputError("the index records no pedestrian training data; give --priors-from DATA", index.path)


@dataclass(frozen=True)
class RankRun:
    texts: list[str]
    results: list[tuple[str, list[str]]]
    ranking: Ranking
    queries: list[Query]  # the parsed captions, for warnings about what each one ignored


def rank_captions(index: Index, texts: Sequence[str], options: RankOptions, priors: HiddenPriors | None = None,
                  schema: Schema | None = None) -> RankRun:
    """Parse ``texts`` with ``schema``'s lexicon and rank them (None: the schema the index was
    opened with, else the packaged one)."""
    from attrret.parser import CaptionParser

    schema = schema or index.schema or load_schema()
    queries = CaptionParser(schema).parse_many(list(texts))
    ranking = rank(index, queries, options, priors, schema)
    results = [(t, [index.names[r] for r in rows]) for t, rows in zip(texts, ranking.rows)]
    return RankRun(list(texts), results, ranking, queries)


def write_explain(path: str | Path, index: Index, run: RankRun) -> None:
    rows = explain(index, run.ranking, run.texts)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def query_warnings(plan: QueryPlan, query: Query, *, missing: bool = True) -> list[str]:
    """What one query could not use, in words (``rank``'s per-line warnings, ``search``'s per
    result): a query that ranks on less than it says must never look as if it used everything.

    Why it gets no results, when it gets none; the groups it states that the index has no
    column for (``missing=False`` leaves these to a summary line); the words it ignored
    ("ignored 'red jacket' (no attribute for it)").
    """
    out = []
    if plan.kind is None:  # every word ignored: no need to list them
        out.append("no pedestrian or vehicle words recognised; unknown: kind and every attribute group")
    elif not plan.scored:
        why = f"nothing the index can score for this {plan.kind}; unknown: {', '.join(plan.unknown) or 'none'}"
        out.append(why + (f"; no index column for: {', '.join(plan.missing)}" if plan.missing else ""))
    elif missing and plan.missing:
        out.append(f"no index column for: {', '.join(plan.missing)} (not scored)")
    if query.kind is not None and query.ignored():
        out.append("ignored " + ", ".join(f"{w!r} ({why})" for w, why in query.ignored()))
    return out
