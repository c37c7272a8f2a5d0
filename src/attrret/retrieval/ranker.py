"""The ranker: parsed queries + index -> exact top-K image rows per query, with reasons.

Scoring (per query, over the index columns of the query's subject):

- ``euclidean`` (default, the published keyword-only distance): ``Σ_g Σ_k (c_gk − p_gk)²``
  over the groups the caption STATES (an explicit negation such as "no hat" is stated);
- ``linear`` (the reference code's variant): ``Σ_g Σ_k (c_gk − p_gk)·c_gk``;
- ``loglik``: the negative log-likelihood of the stated values, ``−Σ_g log p_g(c_g)``
  (a soft prior target t: the cross-entropy ``−Σ_k t_k log p_k``). Why: the Euclidean distance
  saturates (a wrong class costs at most 2 per group), so one confident mistake weighs no more
  than a few timid ones; the log-likelihood makes the image's probability of the whole
  caption, ``Π_g p_g(c_g)``, the score, as a Bayes classifier would.

Set constraints. A query may also constrain a group to a set of classes: ``either`` ("black
or white": S = the classes named) or ``negated`` ("not black": S = the group's other classes;
a binary group's negation is a stated value instead). With ``p(S) = Σ_{k∈S} p_k`` the mass
the image puts on the allowed classes and ``N`` the excluded ones, the group's term is

    euclidean:  d_S(p) = (1 − p(S)) + Σ_{k∈N} p_k²        (|S| ≥ 2)
    linear:     d_S(p) =  1 − p(S)

and for ``S = {c}`` the one-class terms above, ``(1 − p_c)² + Σ_{k≠c} p_k²`` and ``1 − p_c``.
Why this form. Merging the allowed classes into one and taking the one-class distance gives
``(1 − p(S))² + Σ_{k∈N} p_k²``, but ``p(S)²`` holds products of two columns, which the index's
product form ``const + U·p + V·p²`` cannot express. It is replaced by its upper bound
``1 − p(S)`` (``0 ≤ 1 − p(S) ≤ 1``), which is exact for an image sure to be in S (0) or sure to
be out (``1 + Σ_N p²``, the same as for a single class) and over by at most 1/4 in between; it
treats every allowed class alike (a sure black and a sure white car both score 0 for "black or
white"), and "not black" ranks by ``p_black`` alone (``p_b + p_b²``). For one class ``p(S)²``
is the column ``p_c²``, so the one-class distance is kept exactly: the set distance is its
generalisation, not a second scoring. In the product form, with ``c`` the 0/1 indicator of S
and ``z = c`` on set groups of two or more classes (0 elsewhere), ``m`` the group mask:

    U = −2 m∘c + z,   V = m − z,   const = Σ m c² − Σ z + (number of set groups)   (euclidean)
    U = −m∘c,         V = 0,       const = the same                              (linear)

so every backend of :func:`attrret.retrieval.topk.exact_topk` ranks sets with the same exact
search (tests/retrieval check them against a numpy brute force, each backend).

Multi-label groups (:mod:`attrret.schema`: a garment's colours are independent yes/no
groups, ``upper_color_black``, ...). "a black top" states ``upper_color_black = yes``: its term
is the yes/no group's ordinary term, so a black-and-white top (black yes, white yes) matches
"black top" and "white top" alike, and "black-and-white top" is both terms, the product
``p_black · p_white`` under ``loglik``. "not a red top" states ``red = no``. Alternatives
across such groups (``Query.any_of``: "black or grey trousers", "dressed in red" = top or
bottom red) ask that at least one of the groups A is yes. With ``q_k`` the yes-probability of
group k, that is ``P(any) = 1 − Π_k (1 − q_k)`` for independent groups, which is no product
form; the term used is its union bound ``Σ_k q_k ≥ P(any)``:

    euclidean, linear:  d_A(p) = 1 − Σ_{k∈A} q_k          (U = −1 on the yes columns, const + 1)
    loglik:             d_A(p) = Σ_{k∈A} log(1 − q_k) = log P(none of A)   (U = −1 on −log(1 − q))

Exact when at most one of the alternatives can hold (one colour per garment, the common case),
and never a penalty for holding several (a black-and-grey pair of trousers scores at least as
well as a black one). Under ``loglik`` the term ranks by the probability that none holds, the
exact order for a query of that term alone; it is ``≤ 0`` (a reward), where the other terms are
costs ``≥ 0``. Every backend ranks these with the same exact search (tests/retrieval compare a
brute force on each).

``loglik`` ranks over a transformed gallery, :class:`NegLogGallery`: the columns ``−log p`` and
then ``−log(1 − p)`` (probabilities clipped to ``[ε, 1 − ε]``, ``ε = 1e-6``, so a sure mistake
costs about 13.8, not infinity). A stated class weighs its ``−log p`` column. A set group
weighs the ``−log(1 − p_k)`` columns of its excluded classes N, ``Σ_{k∈N} −log(1 − p_k)``:
exact for one excluded class (``not black`` is ``−log(1 − p_black)``), and otherwise a lower
bound of ``−log p(S) = −log(1 − Σ_N p_k)`` that is exact when the excluded mass sits on one
class. The product form is then linear (``V = 0``, no constant), with the same exact search.
A soft kind gate adds ``penalty · −log P(router says the query's kind)``.

Options studied on real images (bench/retrieval_pa100k.py, README): ``use_implied`` also
enforces the grammar's implied values; ``priors`` adds a soft target for groups the caption
leaves unknown (see :mod:`attrret.retrieval.priors`).

Find similar (:mod:`attrret.retrieval.similar`) is one more soft target: for an example with
distributions ``e_g``, ``d(e, p) = Σ_g Σ_k (e_gk − p_gk)²`` over the groups compared, which is
the Euclidean form with ``c = e`` (``U = −2e``, ``V = 1``, ``const = Σ e²``), so it runs the same
exact scan. A text combined with an example replaces ``e_g`` by the text's targets on the groups
it states.

Filters (:mod:`attrret.retrieval.filters`): ``allowed`` restricts the rows a query may return.
It is applied inside the exact scan (an infinite penalty on the other rows, or the passing rows'
own prepared list), never by over-fetching and cutting: the top-k is exact among them.

Kinds: a query ranks only images the router calls its kind (``gate="hard"``), or every image
with ``penalty · P(router says the other kind)`` added (``gate="soft"``). An index without a
router column cannot gate: every query ranks every image (a warning says so). A query with
no kind or no usable group gets an empty list and a warning: any order would be arbitrary.
"""

from __future__ import annotations

import math
import threading

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from attrret.gcpause import gc_paused
from attrret.parser.query import Query
from attrret.retrieval.index import Index
from attrret.retrieval.priors import HiddenPriors
from attrret.retrieval.topk import BACKENDS, GalleryCache, RowMask, Scoring, exact_topk
from attrret.schema import SUBJECTS, Group, Schema, load_schema

__all__ = ["SCORING_RULES", "SCORINGS", "ScoringRule", "Targets", "NegLogGallery", "RankOptions", "QueryPlan", "Ranking", "RankCache", "rank",
           "plan_queries", "rank_plans", "explain"]

class Targets(NamedTuple):
    """What the queries ask of each selected column (queries x columns; module doc): targets
    ``C``, group masks ``M``, set masks ``Z`` (1 on the allowed classes of a set of two or more),
    ``W`` (1 on every column of such a set's group), each query's number of set groups, and
    ``A`` (1 on the "yes" columns of each alternative across yes/no groups) with their number."""

    C: np.ndarray
    M: np.ndarray
    Z: np.ndarray
    W: np.ndarray
    n_sets: np.ndarray
    A: np.ndarray
    n_any: np.ndarray


def _shared_const(t: Targets) -> np.ndarray:
    return (t.M * t.C * t.C).sum(axis=1) - t.Z.sum(axis=1) + t.n_sets + t.n_any


def _euclidean(t: Targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c − p)²`` per class, the set distance on set groups, ``1 − Σ p_yes`` per alternative
    across yes/no groups (module doc)."""
    return -2.0 * t.M * t.C + t.Z - t.A, t.M - t.Z, _shared_const(t)


def _linear(t: Targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c − p)·c``: the reference code's variant (``1 − p(S)`` on set groups)."""
    return -t.M * t.C - t.A, np.zeros_like(t.M), _shared_const(t)


def _loglik(t: Targets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights over the :class:`NegLogGallery` columns ``[−log p, −log(1 − p)]`` (module doc)."""
    U = np.concatenate([t.M * t.C * (1.0 - t.W), t.W * (1.0 - t.C) - t.A], axis=1)
    return U, np.zeros_like(U), np.zeros(len(U))


class NegLogGallery:
    """A read-only view of a gallery matrix ``P`` (N x C) as ``[−log p, −log(1 − p)]`` (N x 2C),
    computed per block read, so a memory-mapped index is never copied whole (module doc)."""

    EPS = 1e-6

    def __init__(self, P) -> None:
        self.P = P
        self.shape = (P.shape[0], 2 * P.shape[1])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        p = np.clip(np.asarray(self.P[rows], dtype=np.float64), self.EPS, 1.0 - self.EPS)
        return np.concatenate([-np.log(p), -np.log1p(-p)], axis=-1).astype(np.float32)


class ScoringRule(NamedTuple):
    """How a scoring reads the gallery: ``weights`` gives the product form ``(U, V, const)`` of
    the queries' :class:`Targets`; ``neglog``: over :class:`NegLogGallery` columns (twice the
    selected columns) instead of the probabilities."""

    weights: Callable[[Targets], tuple[np.ndarray, np.ndarray, np.ndarray]]
    neglog: bool = False


#: Scoring rules by name (module doc). A new rule is one row here.
SCORING_RULES: dict[str, ScoringRule] = {
    "euclidean": ScoringRule(_euclidean),
    "linear": ScoringRule(_linear),
    "loglik": ScoringRule(_loglik, neglog=True),
}
SCORINGS = tuple(SCORING_RULES)
GATES = ("hard", "soft")
_NOTHING: Mapping = MappingProxyType({})  # one shared, read-only empty mapping
#: A filter keeping at most this share of the kind's rows is ranked over an id list of those
#: rows (gathering them costs about as much per row as scanning five hundred); a wider one as a
#: mask inside the scan of the whole gallery (bench/filters.py measures both). With a RankCache
#: (a searcher, a server), a filter keeping up to ``_CACHED_ID_LIST_SHARE`` has its rows
#: prepared once and kept (``RankCache.filtered``), so its queries scan only those.
_ID_LIST_SHARE = 0.002
_CACHED_ID_LIST_SHARE = 0.2
#: The memory a RankCache may hold for filters' prepared rows. Once spent, further filters are
#: applied as masks in the scan of the gallery (about an unfiltered query's cost) rather than
#: pushing out rows prepared for others (a server under many filters would prepare on every query).
FILTERED_CACHE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class RankOptions:
    k: int = 10
    scoring: str = "euclidean"
    use_implied: bool = False
    gate: str = "hard"
    penalty: float = 1.0
    backend: str = "numba"

    def __post_init__(self) -> None:
        if self.scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {self.scoring!r}; use one of {', '.join(SCORINGS)}")
        if self.gate not in GATES:
            raise ValueError(f"unknown kind gate {self.gate!r}; use one of {', '.join(GATES)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; use one of {', '.join(BACKENDS)}")
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if not (math.isfinite(self.penalty) and self.penalty >= 0):
            raise ValueError(f"kind penalty must be a finite number >= 0, got {self.penalty}")


class QueryPlan(NamedTuple):
    """What one query enforces: hard targets, soft prior targets, and what it leaves out.

    A named tuple, not a dataclass: the ranker makes one per query (17,611 on the Track-2
    test set) and a tuple is built in a third of the time.
    """

    kind: str | None
    enforced: Mapping[str, str]
    priors: Mapping[str, tuple[float, ...]]
    unknown: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # groups the query knows but the index has no column for
    allowed: Mapping[str, tuple[str, ...]] = _NOTHING  # set constraints: group -> allowed classes
    any_of: tuple[tuple[str, ...], ...] = ()  # alternatives across yes/no groups: at least one is yes

    @property
    def scored(self) -> bool:
        """Whether the plan scores anything (else the query gets no results)."""
        return bool(self.enforced or self.priors or self.allowed or self.any_of)


@dataclass(frozen=True)
class Ranking:
    """Per query: gallery rows (best first), their distances, and the plan that produced them."""

    rows: list[np.ndarray]
    dist: list[np.ndarray]
    plans: list[QueryPlan]
    warnings: tuple[str, ...]
    fallbacks: int = 0


class RankCache:
    """What repeated :func:`rank` calls over one opened index share: the router's kind per row,
    the rows of each kind, and the prepared gallery chunks (:class:`GalleryCache`).

    Why: a search server ranks a few queries at a time; recomputing these per call would cost
    more than the ranking itself on a large index. Results are the same with or without it.
    Valid for one opened :class:`Index` (reopened index, new cache). Thread-safe.
    """

    def __init__(self, index: Index, schema: Schema) -> None:
        self.index = index
        self.kinds = index.router_kinds(schema)
        self._rows = [] if self.kinds is None else [np.flatnonzero(self.kinds == ki) for ki in range(len(SUBJECTS))]
        self.gallery = GalleryCache()
        # the prepared rows of the last filters (at most 20% of a kind each), apart from
        # ``gallery`` so that filters never push the whole gallery out; bounded in bytes
        self.filtered = GalleryCache(max_entries=256, max_bytes=FILTERED_CACHE_BYTES, keep_raw=False)
        self._restricted: dict[tuple[int, int], tuple[np.ndarray, tuple]] = {}  # restrict(): filter masks per kind
        self._lock = threading.Lock()
        self.neglog = NegLogGallery(index.probs)  # loglik's view of the gallery (its prepared chunks go in ``gallery``)

    def rows(self, ki: int) -> np.ndarray:
        """Rows the router calls kind ``ki`` (the same array object every call: the cache's key)."""
        return self._rows[ki]

    def restrict(self, allowed: np.ndarray, ki: int, rows: np.ndarray | None) -> tuple[np.ndarray | None, RowMask | None]:
        """:func:`_restrict` of a filter's mask (``allowed``, the same array object for the same
        filter) to kind ``ki``'s rows, remembered for the last few filters."""
        key = (id(allowed), ki)
        with self._lock:
            hit = self._restricted.get(key)
            if hit is not None and hit[0] is allowed:
                return hit[1]
        out = _restrict(allowed, rows, _CACHED_ID_LIST_SHARE)
        with self._lock:
            self._restricted[key] = (allowed, out)
            while len(self._restricted) > 64:
                self._restricted.pop(next(iter(self._restricted)))
        return out


def _restrict(allowed: np.ndarray, rows: np.ndarray | None, share: float) -> tuple[np.ndarray | None, RowMask | None]:
    """How a scan over ``rows`` (None: every row) applies the bool row filter ``allowed``: a
    :class:`RowMask` inside the scan of the prepared gallery, and, when the rows that pass are at
    most ``share`` of them, also their id list (a scan may then read only those); (None, None)
    when every row passes."""
    sub = allowed if rows is None else allowed[rows]
    kept = int(np.count_nonzero(sub))
    if kept == len(sub):
        return None, None
    ids = (np.flatnonzero(sub) if rows is None else rows[sub]) if kept <= share * len(sub) else None
    return ids, RowMask.of(sub)


def _allowed(q: Query, classes: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """group -> allowed classes of the query's set constraints (``either``, or the complement
    of ``negated``), in schema order."""
    out = {g: tuple(c) for g, c in q.either.items()}
    for g, excluded in q.negated.items():
        out[g] = tuple(c for c in classes[g] if c not in excluded)
    return out


def _plan(q: Query, scorable: dict[str, frozenset[str]], opts: RankOptions, priors: HiddenPriors | None,
          classes: Mapping[str, Mapping[str, tuple[str, ...]]]) -> QueryPlan:
    """``scorable[kind]``: the groups of that kind the index has columns for.

    Runs once per query (17,611 on the Track-2 test set), so the common case (every known
    group scorable, no priors, no sets) takes no per-group Python step and allocates nothing
    but the tuple: the query's own stated values are shared, not copied (fewer objects for the
    garbage collector, whose full passes cost ~0.1 s each with torch and spaCy loaded).
    """
    if q.kind not in SUBJECTS:
        return QueryPlan(None, _NOTHING, _NOTHING)
    has = scorable[q.kind]
    known = q.known(True) if opts.use_implied else q.stated
    if has.issuperset(known):
        enforced, missing = known, ()
    else:
        enforced = {g: v for g, v in known.items() if g in has}
        missing = tuple(g for g in known if g not in enforced)
    allowed: Mapping[str, tuple[str, ...]] = _NOTHING
    if q.negated or q.either:
        sets = _allowed(q, classes[q.kind])
        allowed = {g: c for g, c in sets.items() if c and g in has and g not in enforced}  # nothing allowed: no constraint
        missing += tuple(g for g in sets if g not in has)
    soft: Mapping[str, tuple[float, ...]] = _NOTHING
    if priors is not None and priors.subject.name == q.kind:
        taught = priors.known
        soft = {g: tuple(float(x) for x in priors.target(g, q.stated)[0]) for g in q.unknown
                if g not in known and g in has and g in taught}
    any_of: tuple[tuple[str, ...], ...] = ()
    if q.any_of:  # an alternative with a group the index cannot score cannot be judged: left out, named
        any_of = tuple(a for a in q.any_of if has.issuperset(a))
        missing += tuple(g for a in q.any_of if not has.issuperset(a) for g in a if g not in has)
    return QueryPlan(q.kind, enforced, soft, tuple(q.unknown), missing, allowed, any_of)


def _targets(plans: Sequence[QueryPlan], groups: Sequence[Group], local: dict[str, slice], width: int) -> Targets:
    """The :class:`Targets` (queries x ``width``) of ``plans`` over ``groups``' columns (module doc).

    Hard values are gathered in one pass of C-level iteration (no per-value Python step):
    each (group, value) pair maps to its column, a mask row covers the whole group of every
    enforced value. Set constraints and soft prior targets, rarer, are written per query.
    """
    value_col = {(g.name, v): local[g.name].start + i for g in groups for i, v in enumerate(g.classes)}
    group_of_col = np.empty(width, np.int64)
    for gi, g in enumerate(groups):
        group_of_col[local[g.name]] = gi
    group_of_col[sum(g.size for g in groups):] = len(groups)  # extra columns (soft gate): never masked
    counts = np.fromiter([len(p.enforced) for p in plans], np.int64, len(plans))
    pairs = chain.from_iterable(p.enforced.items() for p in plans)
    hot = np.fromiter(map(value_col.__getitem__, pairs), np.int64, int(counts.sum()))
    at = np.repeat(np.arange(len(plans)), counts)
    C = np.zeros((len(plans), width))
    C[at, hot] = 1.0
    in_group = np.zeros((len(plans), len(groups) + 1), bool)
    in_group[at, group_of_col[hot]] = True
    M = in_group[:, group_of_col].astype(np.float64)
    Z = np.zeros((len(plans), width))
    W = np.zeros((len(plans), width))
    n_sets = np.zeros(len(plans))
    for r, p in enumerate(plans):
        for g, t in p.priors.items():
            C[r, local[g]] = t
            M[r, local[g]] = 1.0
        for g, allowed in p.allowed.items():
            cols = [value_col[g, c] for c in allowed]
            M[r, local[g]] = 1.0
            C[r, cols] = 1.0
            if len(cols) > 1:
                Z[r, cols] = 1.0
                W[r, local[g]] = 1.0
                n_sets[r] += 1
    A = np.zeros((len(plans), width))
    n_any = np.zeros(len(plans))
    for r, p in enumerate(plans):
        for alternative in p.any_of:
            A[r, [value_col[g, "yes"] for g in alternative]] = 1.0
            n_any[r] += 1
    return Targets(C, M, Z, W, n_sets, A, n_any)


def rank(
    index: Index,
    queries: Sequence[Query],
    options: RankOptions = RankOptions(),
    priors: HiddenPriors | None = None,
    schema: Schema | None = None,
    cache: RankCache | None = None,
    allowed: np.ndarray | None = None,
) -> Ranking:
    """Exact top-``k`` rows of ``index`` for every query (see module doc); the cycle collector
    is paused meanwhile (a plan and two arrays per query, no cycles: :mod:`attrret.gcpause`).
    ``cache``: kept across calls over the same index (a long-lived searcher). ``allowed``: a
    bool per index row, the rows results may come from (a metadata filter,
    :mod:`attrret.retrieval.filters`; None: every row): the top-k is exact among them."""
    schema = schema or index.schema or load_schema()
    with gc_paused():
        return rank_plans(index, plan_queries(index, queries, options, priors, schema), options, schema, cache, allowed)


def plan_queries(index: Index, queries: Sequence[Query], options: RankOptions, priors: HiddenPriors | None,
                 schema: Schema) -> list[QueryPlan]:
    """Each query's :class:`QueryPlan` over what ``index`` can score."""
    scorable = {kind: frozenset(g.name for g in schema.subject(kind).groups if index.has(g.task)) for kind in SUBJECTS}
    classes = {kind: {g.name: g.classes for g in schema.subject(kind).groups} for kind in SUBJECTS}
    return [_plan(q, scorable, options, priors, classes) for q in queries]


def rank_plans(index: Index, plans: Sequence[QueryPlan], options: RankOptions, schema: Schema,
               cache: RankCache | None = None, allowed: np.ndarray | None = None) -> Ranking:
    """:func:`rank` for plans made already (:func:`plan_queries`, or find-similar's targets)."""
    rows: list[np.ndarray | None] = [None] * len(plans)  # None: no results (filled in at the end)
    dist: list[np.ndarray | None] = [None] * len(plans)
    warnings: list[str] = []
    n_nokind = sum(p.kind is None for p in plans)
    if n_nokind:
        warnings.append(f"{n_nokind} quer{'y has' if n_nokind == 1 else 'ies have'} no recognised kind: no results for them")
    missing = sorted({g for p in plans for g in p.missing})
    if missing:
        warnings.append(f"the index has no columns for {', '.join(missing)}: those groups are not scored")
    kinds = cache.kinds if cache is not None else index.router_kinds(schema)
    if kinds is None and any(p.kind for p in plans):
        warnings.append("the index has no router column: every query ranks every image")
    fallbacks = 0
    for ki, kind in enumerate(SUBJECTS):
        subject = schema.subject(kind)
        members = [j for j, p in enumerate(plans) if p.kind == kind and p.scored]
        empty = [j for j, p in enumerate(plans) if p.kind == kind and not p.scored]
        if empty:
            warnings.append(f"{len(empty)} {kind} quer{'y states' if len(empty) == 1 else 'ies state'} nothing the index can score: no results for them")
        if not members:
            continue
        groups = [g for g in subject.groups if index.has(g.task)]
        cols = np.concatenate([np.arange(index.cols(g.task).start, index.cols(g.task).stop) for g in groups])
        local, at = {}, 0
        for g in groups:
            local[g.name] = slice(at, at + g.size)
            at += g.size
        gallery_rows = None
        if kinds is not None and options.gate == "hard":
            gallery_rows = cache.rows(ki) if cache is not None else np.flatnonzero(kinds == ki)
        if kinds is not None and options.gate != "hard":
            other = index.cols(schema.router.task).start + (1 - ki)
            cols = np.append(cols, other)
        rule = SCORING_RULES[options.scoring]
        U, V, const = rule.weights(_targets([plans[j] for j in members], groups, local, len(cols)))
        gallery, square_groups = index.probs, list(local.values())
        if rule.neglog:
            gallery = cache.neglog if cache is not None else NegLogGallery(index.probs)
            cols, square_groups = np.concatenate([cols, cols + index.probs.shape[1]]), []
        if kinds is not None and options.gate == "soft":
            U[:, -1] += options.penalty  # the other kind's column (neglog: -log P(this kind))
        prepared, mask = None if cache is None else cache.gallery, None
        if allowed is not None:
            if cache is not None:
                ids, mask = cache.restrict(allowed, ki, gallery_rows)
                if ids is not None and not cache.filtered.full:  # the rows that pass, prepared once per filter
                    gallery_rows, prepared, mask = ids, cache.filtered, None
            else:
                ids, mask = _restrict(allowed, gallery_rows, _ID_LIST_SHARE)
                if ids is not None:  # very selective: the scan reads only the rows that pass
                    gallery_rows, mask = ids, None
        # No list is longer than the gallery: clamping k keeps a huge -k from allocating Q x k.
        k = min(options.k, len(index) if gallery_rows is None else len(gallery_rows))
        # With a cache the whole gallery is prepared anyway: one chunk per kind, so each call
        # hands the scan threads one piece of work instead of one per 32,768 rows.
        chunk = {} if cache is None else {"chunk_rows": max(len(index), 1)}
        top = exact_topk(gallery, Scoring(U, V, const), k, cols=cols, rows=gallery_rows, backend=options.backend,
                         groups=square_groups, cache=prepared, mask=mask, **chunk)
        fallbacks += top.fallbacks
        short = set(np.flatnonzero((top.rows < 0).any(axis=1)).tolist())  # fewer than k images of this kind
        for r, (j, got, d) in enumerate(zip(members, top.rows, top.dist)):
            ok = got >= 0 if r in short else slice(None)
            rows[j], dist[j] = got[ok], d[ok]
    return Ranking(
        [np.empty(0, np.int64) if r is None else r for r in rows],
        [np.empty(0) if d is None else d for d in dist],
        plans, tuple(warnings), fallbacks,
    )


def explain(index: Index, ranking: Ranking, texts: Sequence[str], schema: Schema | None = None) -> list[dict]:
    """Per query, per result: which enforced groups the image's argmax matches, which conflict,
    which the query left unknown, and which were scored by a prior. A set-constrained group
    (``allowed``: "not black", "black or white") matches when the argmax is an allowed class;
    an alternative across yes/no groups ("a or b") when one of their argmaxes is yes."""
    schema = schema or index.schema or load_schema()
    out = []
    for j, (plan, rows, dist) in enumerate(zip(ranking.plans, ranking.rows, ranking.dist)):
        results = []
        targets = [(g, (v,)) for g, v in plan.enforced.items()] + list(plan.allowed.items())
        preds: list[tuple[str, tuple[str, ...], list[str]]] = []  # per target: group, allowed, argmax class per result
        if plan.kind and len(rows):
            subject = schema.subject(plan.kind)
            p = np.asarray(index.probs[np.asarray(rows)])  # the results' rows, read once
            for g, ok in targets:
                grp = subject.group(g)
                preds.append((g, ok, [grp.classes[i] for i in p[:, index.cols(grp.task)].argmax(axis=1).tolist()]))
            for alternative in plan.any_of:  # met when one of its groups' argmax is yes
                yes = np.zeros(len(rows), bool)
                for g in alternative:
                    grp = subject.group(g)
                    yes |= p[:, index.cols(grp.task)].argmax(axis=1) == grp.index("yes")
                preds.append((" or ".join(alternative), ("yes",), ["yes" if y else "no" for y in yes.tolist()]))
        for rank_no, (row, d) in enumerate(zip(rows, dist), start=1):
            matched, conflicted = [], []
            predicted = {}
            for g, ok, classes in preds:
                pred = classes[rank_no - 1]
                predicted[g] = pred
                (matched if pred in ok else conflicted).append(g)
            results.append({
                "rank": rank_no, "image": index.names[row], "distance": float(d),
                "matched": matched, "conflicted": conflicted, "unknown": list(plan.unknown),
                "prior": sorted(plan.priors), "predicted": predicted,
            })
        out.append({"query": j, "text": texts[j], "kind": plan.kind, "enforced": dict(plan.enforced),
                    "allowed": {g: list(c) for g, c in plan.allowed.items()},
                    "any_of": [list(a) for a in plan.any_of],
                    "unscored": list(plan.missing), "results": results})
    return out
