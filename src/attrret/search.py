"""Search an index directly: ``Searcher.open(index).search("red geely suv")``.

The library behind ``attrret search`` and ``attrret serve``: parse a query, rank the
gallery exactly (:func:`attrret.retrieval.ranker.rank`), and say per result which stated
groups the image's prediction matches or conflicts with. It needs only the index, no models.

Why a long-lived object: opening the index, building the parser (~0.5 s) and preparing the
gallery for the top-K scan (:class:`attrret.retrieval.ranker.RankCache`; about a second per
million images) are paid once, so each search then costs the scan alone.

Concurrency. :meth:`Searcher.search` may be called from many threads at once. Concurrent
calls are gathered into one ranking (micro-batching): the first caller to find the ranker
idle ranks every query waiting at that moment, then hands the ranker to the next waiting
caller, if any. The exact top-K kernel is fastest on many queries at once, so throughput grows
with load instead of each query waiting for the others one by one.

Filters and find-similar. ``search(text, filters=...)`` ranks only the rows whose metadata
passes (:mod:`attrret.retrieval.filters`: exact top-K among them); ``like(example)`` ranks by
distance to an example image's predictions (:mod:`attrret.retrieval.similar`); ``group_by``
keeps the best row per value of a metadata column (one per track).

Index updates. Before each batch the searcher looks at the index's ``header.json``; when
``attrret predict`` has replaced it (an atomic rename, after the new data files are
complete), the index is reopened and later batches use it. Readers of the old one finish on
it: a half-written index is never seen.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attrret.attributes import image_record
from attrret.errors import AttrretError, OptionError
from attrret.parser.export import query_record
from attrret.parser.query import Query
from attrret.retrieval.filters import Filters
from attrret.retrieval.index import Index, open_index
from attrret.retrieval.submission import query_warnings
from attrret.retrieval.ranker import QueryPlan, RankCache, RankOptions, Ranking, explain, plan_queries, rank, rank_plans
from attrret.schema import SUBJECTS, Schema, load_schema

__all__ = ["Searcher", "SearchResult", "Hit", "UnknownImage", "MAX_QUERY_CHARS", "MAX_K"]

#: Bounds of one search: longer queries or larger k are refused (a server must not be made to
#: parse megabytes or sort a million results for one request).
MAX_QUERY_CHARS = 2000
MAX_K = 1000
_MASKS_KEPT = 32  # filter masks remembered per opened index: a million rows is 1 MB each


class UnknownImage(KeyError, AttrretError):
    """An image name the index does not hold."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "unknown image"


@dataclass(frozen=True)
class Hit:
    """One result: ``score`` is the ranker's distance (lower is closer; 0 is a perfect match of
    every stated group); ``matched`` / ``conflicted``: stated groups whose predicted class
    (``predicted``) agrees / disagrees with the query."""

    rank: int
    name: str
    path: str
    score: float
    matched: tuple[str, ...]
    conflicted: tuple[str, ...]
    predicted: dict[str, str]
    meta: dict[str, str | None] = field(default_factory=dict)  # camera, time, track, ... (attrret.retrieval.meta)

    def to_json(self) -> dict[str, Any]:
        """The API's result object. No ``path``: a server must not tell clients where its files are."""
        return {"rank": self.rank, "image": self.name, "score": self.score,
                "matched": list(self.matched), "conflicted": list(self.conflicted), "predicted": dict(self.predicted),
                "meta": dict(self.meta)}


@dataclass(frozen=True)
class SearchResult:
    """A query's parse, its hits (best first) and what it could not use. Iterates over the hits."""

    query: dict[str, Any]
    hits: tuple[Hit, ...]
    warnings: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[Hit]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, i: int) -> Hit:
        return self.hits[i]

    def to_json(self) -> dict[str, Any]:
        """``{"query": <parse JSON>, "results": [...], "warnings": [...]}`` (the server's answer)."""
        return {"query": self.query, "results": [h.to_json() for h in self.hits], "warnings": list(self.warnings)}


@dataclass(frozen=True)
class _Request:
    text: str
    k: int
    kind: str | None
    filters: Filters = Filters()
    group_by: str | None = None


@dataclass
class _Waiter:
    request: _Request
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to rank the next batch, not with a result
    result: SearchResult | None = None
    error: BaseException | None = None


class _Combiner:
    """Runs ``work(batch)`` for requests from many threads, one batch at a time (module doc)."""

    def __init__(self, work: Callable[[list[_Request]], list[SearchResult]]) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._waiting: list[_Waiter] = []
        self._busy = False

    def submit(self, request: _Request) -> SearchResult:
        me = _Waiter(request)
        with self._lock:
            self._waiting.append(me)
            lead = not self._busy
            self._busy = True
        if not lead:
            me.done.wait()
            if not me.lead:
                return _outcome(me)
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            results = self._work([w.request for w in batch])
            for w, r in zip(batch, results):
                w.result = r
        except BaseException as exc:  # every caller of the batch gets the error, none hangs
            for w in batch:
                w.error = exc
        with self._lock:
            nxt = self._waiting[0] if self._waiting else None
            if nxt is None:
                self._busy = False
            else:
                nxt.lead = True
        for w in batch:
            if w is not me:
                w.lead = False
                w.done.set()
        if nxt is not None:
            nxt.done.set()
        return _outcome(me)


def _outcome(w: _Waiter) -> SearchResult:
    if w.error is not None:
        raise w.error
    assert w.result is not None
    return w.result


@dataclass(frozen=True)
class _State:
    """One opened index and what is prepared for it; replaced whole when the index changes."""

    index: Index
    cache: RankCache
    stamp: tuple[int, int, int]
    rows: dict[str, int]  # image name -> row
    masks: dict[Filters, np.ndarray] = field(default_factory=dict)  # the last filters' row masks (Searcher._mask)


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path / "header.json")
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Searcher:
    """Parse, rank and explain over one index (module doc). Open with :meth:`open`."""

    def __init__(self, path: Path, options: RankOptions, schema: Schema,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> None:
        from attrret.parser import CaptionParser

        self.path = path
        self.options = options
        self.schema = schema
        self._log = log
        # No grammar table: a searcher parses queries as they come, and reading the Track-2
        # grammar's ~3,200 clauses up front would be most of its start-up (CaptionParser doc).
        self._parser = CaptionParser(schema=schema, grammar_table=False)
        self._state_lock = threading.Lock()
        self._state = self._load()
        self._combiner = _Combiner(self._run)

    @classmethod
    def open(cls, index: str | Path, *, options: RankOptions | None = None, schema: Schema | None = None,
             log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> Searcher:
        """Open the index at ``index`` (an ``attrret predict`` output folder) for searching.

        Raises :class:`attrret.errors.CheckpointError` for a missing, foreign or damaged index.
        """
        return cls(Path(index), options or RankOptions(), schema or load_schema(), log)

    # -- the index ------------------------------------------------------------------------
    def _load(self) -> _State:
        stamp = _stamp(self.path) if (self.path / "header.json").is_file() else (0, 0, 0)
        index = open_index(self.path, self.schema)
        return _State(index, RankCache(index, self.schema), stamp, {n: i for i, n in enumerate(index.names)})

    def refresh(self) -> bool:
        """Reopen the index if ``attrret predict`` replaced it; True when it did. A damaged new
        index is reported once and the current one kept."""
        state = self._state
        try:
            if _stamp(self.path) == state.stamp:
                return False
        except OSError:
            return False  # a header mid-rename or gone: keep serving what we have
        with self._state_lock:
            if self._state is not state:  # another thread reopened it meanwhile
                return True
            try:
                self._state = self._load()
            except AttrretError as exc:
                self._log(f"attrret: warning: {self.path}: keeping the index already open: {exc}")
                return False
        self._log(f"attrret: {self.path}: index changed, reopened ({len(self._state.index)} images)")
        return True

    def _current(self) -> _State:
        """The state to answer from, after reopening a replaced index (a ``stat`` when not)."""
        self.refresh()
        return self._state

    @property
    def index(self) -> Index:
        return self._current().index

    @property
    def names(self) -> tuple[str, ...]:
        return self._current().index.names

    def __len__(self) -> int:
        return len(self._current().index)

    def _row(self, name: str, state: _State) -> int:
        row = state.rows.get(name)
        if row is None:
            raise UnknownImage(f"{name!r} is not an image of the index {self.path}")
        return row

    def image_path(self, name: str) -> Path:
        """The source file the index recorded for ``name`` (never a path built from the name)."""
        return Path(self.image_file(name)["path"])

    def image_file(self, name: str) -> dict[str, Any]:
        """What the index recorded of ``name``'s source file at indexing time: ``path`` (resolved
        then), and ``size`` and ``mtime_ns`` where the index has them (a server checks that the
        file it opens is still that one)."""
        state = self._current()
        row = self._row(name, state)
        files = state.index.files
        if row >= len(files) or not isinstance(files[row].get("path"), str):
            raise UnknownImage(f"the index records no source file for {name!r}")
        return dict(files[row])

    def attributes(self, name: str) -> dict[str, Any]:
        """The predicted attributes of one image: :func:`attrret.attributes.image_record`."""
        state = self._current()
        row = self._row(name, state)
        record = image_record(state.index, row, self.schema)
        if state.index.meta is not None:
            record["meta"] = state.index.meta.record(row)
        return record

    # -- queries --------------------------------------------------------------------------
    def parse(self, text: str) -> dict[str, Any]:
        """The query JSON of ``text`` (as ``attrret parse`` writes it)."""
        _check_text(text)
        return query_record(self._parser.parse(text), self.schema)

    def search(self, text: str, k: int = 10, kind: str | None = None, filters: Filters | None = None,
               group_by: str | None = None) -> SearchResult:
        """The ``k`` images closest to ``text``. ``kind`` (``pedestrian`` / ``vehicle``) keeps
        only a query of that kind; a query of the other kind gets no results and a warning.
        ``filters``: only images whose metadata passes (exact top-k among them); ``group_by``: a
        metadata column (``track``), keeping the best image per value."""
        return self._combiner.submit(_request(text, k, kind, filters, group_by))

    def search_many(self, texts: Sequence[str], k: int = 10, kind: str | None = None,
                    filters: Filters | None = None, group_by: str | None = None) -> list[SearchResult]:
        """:meth:`search` for several queries in one ranking."""
        return self._run([_request(t, k, kind, filters, group_by) for t in texts])

    def like(self, example: str | Path, k: int = 10, *, groups: Sequence[str] | None = None,
             filters: Filters | None = None, text: str | None = None, group_by: str | None = None,
             workdir: str | Path | None = None) -> SearchResult:
        """The ``k`` images whose predictions are closest to ``example``'s (:mod:`attrret.retrieval.similar`).

        ``example``: an image name of the index (a ``str``: never opened as a file, so a server
        may pass a client's text), or a ``Path`` to an image file, which the models of
        ``workdir`` describe first (they must be the models the index was built with).
        ``groups``: the attribute groups compared (default: every group of the example's kind);
        ``text``: a query whose stated groups override the example's. The example, when it is in
        the index and passes the filters, comes first (without ``text``)."""
        _check_k(k)
        filters = filters or Filters()
        state = self._current()
        index = state.index
        if isinstance(example, Path):
            row, probs = None, self._describe(example, workdir)
        else:
            row = self._row(example, state)
            probs = np.asarray(index.probs[row])
        label = str(example)
        from attrret.retrieval.similar import example_kind, similar_plan

        text_plan = None
        if text:
            _check_text(text)
            text_plan = plan_queries(index, [self._parser.parse(text)], self.options, None, self.schema)[0]
        kind = example_kind(index, probs, self.schema) or (text_plan.kind if text_plan is not None else None)
        if kind is None:
            raise ValueError("the index has no router column and no text says the kind: give a text query with the kind")
        if text_plan is not None and text_plan.kind not in (None, kind):
            raise ValueError(f"the example is a {kind}, the text reads as {text_plan.kind}")
        plan = similar_plan(index, probs, kind, self.schema, groups, text_plan if text_plan is not None and text_plan.kind else None)
        first = row if row is not None and not text else None
        allowed = self._mask(state, filters)
        if first is not None and allowed is not None and not allowed[first]:
            first = None  # filtered out: it is not listed
        options = RankOptions(**{**self.options.__dict__, "k": k + (first is not None), "scoring": "euclidean"})
        ranking = self._rank_plans(state, [plan], options, allowed, group_by, k)
        rows, dist = ranking.rows[0], ranking.dist[0]
        if first is not None:
            keep = rows != first
            rows, dist = np.concatenate([[first], rows[keep]])[:k], np.concatenate([[0.0], dist[keep]])[:k]
        hits = self._hits(state, plan, rows, dist, probs, kind)
        record = {"like": label, "kind": kind, "groups": sorted(plan.priors), "text": text or "",
                  "filters": filters.to_json()}
        warnings = tuple(ranking.warnings) + tuple(self._filter_warnings(filters, allowed, k))
        return SearchResult(record, hits, warnings)

    def _describe(self, path: Path, workdir: str | Path | None) -> np.ndarray:
        """An image file's probability row in the index's columns, from ``workdir``'s models,
        which must be the index's (by checkpoint hash)."""
        if not path.is_file():
            raise UnknownImage(f"{str(path)!r} is neither an image of the index {self.path} nor an image file")
        if workdir is None:
            raise ValueError(f"{path} is not in the index: give the workdir whose models built it to describe it")
        from attrret.classifiers.engine import Ensemble
        from attrret.retrieval.indexer import file_sha256, find_members

        index = self._state.index
        members = find_members(workdir, schema=self.schema)
        used = {m["sha256"] for m in index.header.models}
        have = {file_sha256(Path(d) / "model.pt" if Path(d).is_dir() else d) for m in members for d in m.task_dirs}
        if used != have:
            raise AttrretError(f"the models of {workdir} are not the ones the index {self.path} was built with; "
                               "describe the example with those, or re-run attrret predict")
        ensemble = Ensemble.open(members, tta=index.header.tta, precision=index.header.precision or None)
        return ensemble.probs([path], self.schema, columns=index.header.columns, progress=False)[0]

    def warm(self) -> None:
        """Prepare the gallery for each kind now rather than on the first queries (a server's start)."""
        state = self._state
        for kind in SUBJECTS:  # the two layouts of a kind (attrret.retrieval.topk): one-class values, then sets
            groups = self.schema.subject(kind).groups
            g = groups[0]
            rank(state.index, [Query(caption="", kind=kind, stated={g.name: g.classes[0]})], self.options,
                 schema=self.schema, cache=state.cache)
            multi = next((m for m in groups if m.size > 2), None)
            if multi is not None:
                rank(state.index, [Query(caption="", kind=kind, either={multi.name: multi.classes[:2]})], self.options,
                     schema=self.schema, cache=state.cache)

    def _rank_plans(self, state: _State, plans: list[QueryPlan], options: RankOptions, allowed: np.ndarray | None,
                    group_by: str | None, k: int) -> Ranking:
        """Rank ``plans``; with ``group_by``, the best row per value of that metadata column, k of
        them (more candidates are fetched until k values are found or the rows run out)."""
        if group_by is None:
            return rank_plans(state.index, plans, options, self.schema, state.cache, allowed)
        meta = state.index.meta
        if meta is None or group_by not in meta.columns:
            have = ", ".join(meta.names) if meta is not None else "none"
            raise OptionError(f"no metadata column {group_by!r} to group by (the index has {have})")
        codes = meta.columns[group_by].codes
        fetch = max(options.k, 4 * k)
        while True:
            ranking = rank_plans(state.index, plans, RankOptions(**{**options.__dict__, "k": fetch}), self.schema,
                                 state.cache, allowed)
            done = True
            rows, dist = [], []
            for r, d in zip(ranking.rows, ranking.dist):
                seen: set[int] = set()
                keep = []
                for j, row in enumerate(r.tolist()):
                    code = int(codes[row])
                    if code in seen:
                        continue
                    if code >= 0:  # a row without a value is a group of its own
                        seen.add(code)
                    keep.append(j)
                    if len(keep) == k:
                        break
                if len(keep) < k and len(r) == fetch:
                    done = False
                rows.append(r[keep])
                dist.append(d[keep])
            if done or fetch >= len(state.index):
                return Ranking(rows, dist, ranking.plans, ranking.warnings, ranking.fallbacks)
            fetch = min(len(state.index), fetch * 4)

    def _hits(self, state: _State, plan: QueryPlan, rows: np.ndarray, dist: np.ndarray, example: np.ndarray,
              kind: str) -> tuple[Hit, ...]:
        """Hits of a find-similar ranking: per compared group, matched when the image's argmax
        is the example's (or, for a group the text states, an allowed class)."""
        index, subject = state.index, self.schema.subject(kind)
        out = []
        for rank_no, (row, d) in enumerate(zip(rows.tolist(), dist.tolist()), start=1):
            p = np.asarray(index.probs[row])
            matched, conflicted, predicted = [], [], {}
            for g in subject.groups:
                if g.name not in plan.priors and g.name not in plan.enforced and g.name not in plan.allowed:
                    continue
                cols = index.cols(g.task)
                pred = g.classes[int(p[cols].argmax())]
                want = ((plan.enforced[g.name],) if g.name in plan.enforced else plan.allowed.get(g.name)
                        or (g.classes[int(example[cols].argmax())],))
                predicted[g.name] = pred
                (matched if pred in want else conflicted).append(g.name)
            out.append(Hit(rank_no, index.names[row], _path(index, row), float(d), tuple(matched), tuple(conflicted),
                           predicted, _meta(index, row)))
        return tuple(out)

    @staticmethod
    def _mask(state: _State, filters: Filters) -> np.ndarray | None:
        """The rows ``filters`` keeps (:meth:`Filters.mask`), remembered for the last few filters:
        an analyst runs many queries under one filter, a server many clients under a few."""
        if not filters:
            return None
        mask = state.masks.get(filters)
        if mask is None:
            mask = filters.mask(state.index.meta, len(state.index))
            state.masks[filters] = mask
            while len(state.masks) > _MASKS_KEPT:
                state.masks.pop(next(iter(state.masks)), None)
        return mask

    @staticmethod
    def _filter_warnings(filters: Filters, allowed: np.ndarray | None, k: int) -> list[str]:
        kept = 0 if allowed is None else int(np.count_nonzero(allowed))
        if allowed is not None and kept < k:
            return [f"{kept} image(s) pass the filters ({filters.describe()})"]
        return []

    def _run(self, requests: list[_Request]) -> list[SearchResult]:
        self.refresh()
        state = self._state
        queries = [self._parser.parse(r.text) for r in requests]
        out: list[SearchResult | None] = [None] * len(requests)
        batches: dict[tuple, list[int]] = {}
        for j, (q, r) in enumerate(zip(queries, requests)):
            if r.kind is not None and q.kind != r.kind:
                read = q.kind or "no kind"
                out[j] = SearchResult(query_record(q, self.schema), (), (f"the query reads as {read}, not {r.kind}: no results",))
            else:
                batches.setdefault((r.filters, r.group_by), []).append(j)
        for (filters, group_by), use in batches.items():  # one ranking per distinct filter (usually one)
            allowed = self._mask(state, filters)
            k = max(requests[j].k for j in use)
            options = RankOptions(**{**self.options.__dict__, "k": k})
            plans = plan_queries(state.index, [queries[j] for j in use], options, None, self.schema)
            ranking = self._rank_plans(state, plans, options, allowed, group_by, k)
            explained = explain(state.index, ranking, [requests[j].text for j in use], self.schema)
            index_wide = [w for w in ranking.warnings if "router column" in w] + self._filter_warnings(filters, allowed, k)
            for i, j in enumerate(use):
                q, r = queries[j], requests[j]
                hits = tuple(
                    Hit(res["rank"], res["image"], _path(state.index, row), res["distance"], tuple(res["matched"]),
                        tuple(res["conflicted"]), res["predicted"], _meta(state.index, row))
                    for res, row in zip(explained[i]["results"][: r.k], ranking.rows[i][: r.k].tolist())
                )
                warnings = tuple(index_wide) + tuple(query_warnings(ranking.plans[i], q))
                out[j] = SearchResult(query_record(q, self.schema), hits, warnings)
        return out  # type: ignore[return-value]


def _path(index: Index, row: int) -> str:
    """The source path the index recorded for ``row`` ("" when it records none)."""
    return str(index.files[row].get("path", "")) if row < len(index.files) else ""


def _meta(index: Index, row: int) -> dict[str, str | None]:
    """``row``'s metadata (camera, time, ...; empty for an index without any)."""
    return index.meta.record(row) if index.meta is not None else {}


def _check_text(text: str) -> None:
    if not isinstance(text, str):
        raise ValueError("a query is a string")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"query of {len(text):,} characters; at most {MAX_QUERY_CHARS:,}")


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K:,}, got {k!r}")


def _request(text: str, k: int, kind: str | None, filters: Filters | None = None, group_by: str | None = None) -> _Request:
    _check_text(text)
    _check_k(k)
    if kind is not None and kind not in SUBJECTS:
        raise ValueError(f"unknown kind {kind!r}; use {' or '.join(SUBJECTS)}")
    return _Request(text, int(k), kind, filters or Filters(), group_by)
