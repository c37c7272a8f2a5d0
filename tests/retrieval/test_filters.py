"""Filtered search and find-similar against brute force, on every top-K backend.

A real index (written by write_index, metadata included) of 400 rows with random probabilities,
a fifth of them exact copies of another row (ties), and metadata drawn at random. For each
backend, each filter (selective, not selective, a time range, a free column, one keeping fewer
than k rows) and each query, the ranker's top-k must be the brute-force top-k over the rows
that pass: every row's distance computed in float64 from its definition, sorted by distance and
then by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attrret.errors import OptionError
from attrret.parser import CaptionParser
from attrret.retrieval.filters import Filters, parse_filters
from attrret.retrieval.index import IndexHeader, open_index, write_index
from attrret.retrieval.meta import NO_TIME, ImageMeta, parse_time
from attrret.retrieval.indexer import task_columns
from attrret.retrieval.ranker import RankOptions, plan_queries, rank
from attrret.retrieval.similar import example_target
from attrret.retrieval.topk import BACKENDS
from attrret.schema import SUBJECTS, load_schema
from attrret.search import Searcher

N = 400
T0 = parse_time("2026-12-01T08:00:00")
MINUTE = 60 * 10**9


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    schema = load_schema()
    rng = np.random.default_rng(7)
    columns = task_columns(None, schema)
    width = max(stop for _, stop in columns.values())
    probs = np.zeros((N, width), np.float32)
    for task, (a, b) in columns.items():
        probs[:, a:b] = rng.dirichlet(np.ones(b - a) * 0.7, N)
    copies = rng.choice(N, N // 5, replace=False)
    probs[copies] = probs[rng.choice(N, N // 5)]  # ties: identical rows under other names
    names = [f"img{i:04d}.jpg" for i in range(N)]
    rows = [{"camera": str(rng.integers(1, 6)), "track": str(rng.integers(0, 40)),
             **({"time": int(T0 + rng.integers(0, 180) * MINUTE)} if rng.random() > 0.05 else {})} for _ in range(N)]
    header = IndexHeader(schema=schema.fingerprint, count=N, columns=columns, models=(), img_sizes=(32,), tta="flip",
                         weights=(1.0,))
    path = tmp_path_factory.mktemp("filters") / "index"
    write_index(path, probs, names, [{} for _ in names], header, meta=ImageMeta.from_rows(rows))
    return path


FILTERS = {
    "none": Filters(),
    "one camera (selective)": parse_filters("3"),
    "every camera (not selective)": parse_filters("1,2,3,4,5"),
    "a time range": parse_filters(after="2026-12-01T08:30", before="2026-12-01T09:15"),
    "a zoned time range": parse_filters(after="2026-12-01T09:30+01:00", before="2026-12-01T10:15+01:00"),
    "a track": parse_filters(where=["track=5,6"]),
    "camera and time and track": parse_filters("1,2", "2026-12-01T08:00", "2026-12-01T10:00", ["track=1,2,3,4,5,6,7,8"]),
    "fewer rows than k": parse_filters("4", where=["track=11"]),
    "nothing passes": parse_filters(where=["track=999"]),
}
QUERIES = ["a man with a hat and a backpack", "a young woman in a skirt, not wearing glasses",
           "a white or black sedan", "a red car"]


def passes(index, filters: Filters) -> np.ndarray:
    """Brute force: the rows whose metadata passes, read value by value."""
    keep = []
    for row in range(len(index)):
        rec = index.meta.record(row)
        t = index.meta.time[row]
        ok = (not filters.camera or rec["camera"] in filters.camera)
        ok &= filters.after is None or (t != NO_TIME and t >= filters.after)
        ok &= filters.before is None or (t != NO_TIME and t <= filters.before)
        ok &= all(rec.get(c) in v for c, v in filters.where)
        keep.append(ok)
    return np.flatnonzero(keep)


def brute(index, plan, rows: np.ndarray, k: int, schema) -> list[tuple[str, float]]:
    """The top-k of ``rows`` by the Euclidean distance of the plan's targets, in float64."""
    subject = schema.subject(plan.kind)
    kind_rows = index.router_kinds(schema) == SUBJECTS.index(plan.kind)
    out = []
    for row in rows[kind_rows[rows]]:
        p = np.asarray(index.probs[row], np.float64)
        d = 0.0
        for g in subject.groups:
            q = p[index.cols(g.task)]
            if g.name in plan.enforced:
                d += ((np.asarray([c == plan.enforced[g.name] for c in g.classes], float) - q) ** 2).sum()
            elif g.name in plan.priors:
                d += ((np.asarray(plan.priors[g.name]) - q) ** 2).sum()
            elif g.name in plan.allowed:
                allowed = np.asarray([c in plan.allowed[g.name] for c in g.classes])
                d += (1 - q[allowed].sum()) + (q[~allowed] ** 2).sum() if allowed.sum() > 1 else \
                    ((allowed.astype(float) - q) ** 2).sum()
        out.append((index.names[row], d))
    out.sort(key=lambda t: (round(t[1], 9), t[0]))
    return out[:k]


@pytest.fixture(scope="module")
def queries():
    parser = CaptionParser(schema=load_schema())
    return [parser.parse(t) for t in QUERIES]


@pytest.mark.parametrize("path", ["id list", "mask in the scan"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(FILTERS))
def test_filtered_top_k_is_the_brute_force_top_k(gallery: Path, queries, backend: str, case: str, path: str,
                                                 monkeypatch) -> None:
    """Both ways the ranker applies a filter: over an id list of the rows that pass (selective
    filters), and as a mask inside the scan of the whole prepared gallery (the others)."""
    import attrret.retrieval.ranker as ranker

    monkeypatch.setattr(ranker, "_ID_LIST_SHARE", 1.0 if path == "id list" else 0.0)
    monkeypatch.setattr(ranker, "_CACHED_ID_LIST_SHARE", 1.0 if path == "id list" else 0.0)
    schema = load_schema()
    index = open_index(gallery)
    filters, k = FILTERS[case], 10
    rows = filters.rows(index.meta, len(index))
    allowed = filters.mask(index.meta, len(index))
    expect_rows = np.arange(N) if rows is None else passes(index, filters)
    assert rows is None or np.array_equal(rows, expect_rows)
    options = RankOptions(k=k, backend=backend)
    cache = ranker.RankCache(index, schema)  # the prepared gallery and filtered rows, as a server has them
    ranking = rank(index, queries, options, schema=schema, allowed=allowed, cache=cache)
    plans = plan_queries(index, queries, options, None, schema)
    for j, plan in enumerate(plans):
        want = brute(index, plan, expect_rows, k, schema)
        got = [(index.names[r], float(d)) for r, d in zip(ranking.rows[j], ranking.dist[j])]
        assert [n for n, _ in got] == [n for n, _ in want], (case, QUERIES[j])
        assert [d for _, d in got] == pytest.approx([d for _, d in want], abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_find_similar_is_exact_and_the_example_comes_first(gallery: Path, backend: str) -> None:
    schema = load_schema()
    searcher = Searcher.open(gallery, options=RankOptions(backend=backend), schema=schema)
    index = searcher.index
    kinds = index.router_kinds(schema)
    for example in ("img0007.jpg", "img0123.jpg"):
        row = index.names.index(example)
        kind = SUBJECTS[kinds[row]]
        result = searcher.like(example, k=8)
        assert result.hits[0].name == example and result.hits[0].score == 0.0
        e = np.asarray(index.probs[row], np.float64)
        priors = {g.name: example_target(e, index, g.task) for g in schema.subject(kind).groups}
        from attrret.retrieval.ranker import QueryPlan

        want = [n for n, _ in brute(index, QueryPlan(kind, {}, priors), np.arange(N), 9, schema) if n != example][:7]
        assert [h.name for h in result.hits[1:]] == want
        # with filters: the same, among the rows that pass
        f = parse_filters("1,2,3")
        result = searcher.like(example, k=5, filters=f)
        passing = passes(index, f)
        expect = [n for n, _ in brute(index, QueryPlan(kind, {}, priors), passing, 6, schema) if n != example]
        names = [h.name for h in result.hits]
        if row in passing:
            assert names[0] == example and names[1:] == expect[:4]
        else:
            assert example not in names and names == expect[:5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_text_overrides_the_groups_it_states(gallery: Path, backend: str) -> None:
    schema = load_schema()
    searcher = Searcher.open(gallery, options=RankOptions(backend=backend), schema=schema)
    index = searcher.index
    kinds = index.router_kinds(schema)
    example = next(n for n, ki in zip(index.names, kinds) if SUBJECTS[ki] == "pedestrian")
    row = index.names.index(example)
    result = searcher.like(example, k=6, text="a person with a hat")
    assert result.query["groups"] and "hat" not in result.query["groups"]  # the text's group is the text's
    e = np.asarray(index.probs[row], np.float64)
    from attrret.retrieval.ranker import QueryPlan

    priors = {g.name: example_target(e, index, g.task) for g in schema.pedestrian.groups if g.name != "hat"}
    want = [n for n, _ in brute(index, QueryPlan("pedestrian", {"hat": "yes"}, priors), np.arange(N), 6, schema)]
    assert [h.name for h in result.hits] == want
    assert all(h.predicted["hat"] == "yes" for h in result.hits if "hat" in h.matched)


def test_group_by_keeps_the_best_row_per_track(gallery: Path) -> None:
    searcher = Searcher.open(gallery)
    full = searcher.search("a man with a hat", k=200)
    grouped = searcher.search("a man with a hat", k=5, group_by="track")
    tracks, want = set(), []
    for h in full.hits:
        if h.meta["track"] not in tracks:
            tracks.add(h.meta["track"])
            want.append(h.name)
    assert [h.name for h in grouped.hits] == want[:5]


@pytest.mark.parametrize("args, says", [
    ({"after": "yesterday"}, "is not an ISO 8601 time"),
    ({"after": "2026-12-02", "before": "2026-12-01"}, "is earlier than after"),
    ({"where": ["track"]}, "expected COLUMN=VALUE"),
    ({"where": ["camera=3"]}, "filter camera with --camera"),
])
def test_bad_filter_values_are_one_clear_error(args: dict, says: str) -> None:
    with pytest.raises(OptionError, match=says):
        parse_filters(**args)


def test_a_filter_on_a_column_the_index_lacks_names_the_columns_it_has(gallery: Path) -> None:
    index = open_index(gallery)
    with pytest.raises(OptionError, match="no metadata column 'colour' to filter on; the index has camera, track, time"):
        parse_filters(where=["colour=red"]).rows(index.meta, len(index))
