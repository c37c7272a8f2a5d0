"""Exact top-K smallest distances as a maximum-inner-product search (the ranking maths of docs/design.md).

Every score the ranker uses has the form

    d(q, i) = const_q + U_q · p_i + V_q · p_i²

(Euclidean: ``U = -2 m∘c``, ``V = m``, ``const = Σ m c²``; linear: ``U = -m∘c``, ``V = 0``;
a soft kind penalty adds its weight to ``U`` at the router column). With ``a_q = [U_q, V_q]``
and ``b_i = [p_i, p_i²]`` that is ``const_q + a_q · b_i``: one matrix product per block.

Compact squares. When every query weights the squares of a column group equally (the
Euclidean mask is constant over an attribute group), ``V_q · p_i²`` over that group is
``v_qg · Σ_j p_ij²``: one column (the group's sum of squares, computed in float64 and rounded
once) replaces the group's square columns, and all-zero square columns (linear scoring) are
dropped.

Folded groups. When, besides, each query's weights on a group's probabilities sum to
``-2 v_qg`` (the Euclidean distance to a target that sums to one over the group: a one-hot
value or a prior distribution), ``U_q·p + v_qg Σ p² = Σ_c (-U_qc / 2)(s_g - 2 p_c)`` with
``s_g = Σ p²``: the group's probability columns are replaced by ``s_g - 2 p`` (float64, rounded
once) and it needs no square column at all. The 30 pedestrian columns then give 30 product
columns (42 with sums of squares alone, 60 with neither): fewer columns, a cheaper product.

Backends. The product is memory-bound (K is tiny): moving scores, not the FLOPs, sets the
speed (bench/rank.py). ``numba`` (default, :mod:`attrret.retrieval.scan`) never writes a score
tile: each query's scores over 1,024 gallery rows are summed from its non-zero columns only
(a folded query has one per stated group) in an L1 buffer and filtered there against its
running k'-th best. ``torch`` takes queries in blocks of 32 whose score tile (sparse rows
summed by ``embedding_bag``, dense ones by ``torch.mm``) is cut to its top-k' by
:func:`smallest_k`; the gallery is padded to whole 64-column segments so the pruning works on
a view. ``numpy`` (BLAS tiles and ``argpartition``) needs neither numba nor torch. (A FAISS
``IndexFlatIP`` backend was measured 3-5x slower than ``numba`` on every bench/rank.py row,
with nothing a user gains in exchange -- the ranking is exact, so FAISS's approximate indexes
do not apply: it was removed.)

Exactness. The float32 product only proposes candidates: for each query we keep the
``k' = k + 8`` smallest float32 scores over the whole gallery (merged chunk by chunk, so
memory is bounded by the chunk size, not the gallery), re-score those candidates in float64
and sort them by ``(distance, row)``. Rows are in image-name order, so ties break by name.
The result is provably the exact top-K when the k'-th float32 score, minus a rigorous
float32 error bound, is still larger than the exact k-th score: no row outside the
candidates can then beat or tie it. Otherwise (heavy ties) that query is re-scanned exactly
in float64. Every backend feeds the same exact re-ranking, so their results are identical.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["RowMask", "Scoring", "TopK", "GalleryCache", "exact_topk", "smallest_k", "BACKENDS"]

_U32 = 2.0**-24
_RERANK_BLOCK = 1024  # queries re-ranked together (bounds the Q x k' sort and gather temporaries)
_MARGIN = 8  # extra float32 candidates per query beyond k: room for float32 error before a float64 rescan


@dataclass(frozen=True)
class Scoring:
    """Per-query linear form over the selected gallery columns: ``d = const + U·p + V·p²``."""

    U: np.ndarray  # (Q, C) float64
    V: np.ndarray  # (Q, C) float64
    const: np.ndarray  # (Q,) float64

    def __post_init__(self) -> None:
        if self.U.shape != self.V.shape or self.U.ndim != 2 or self.const.shape != (self.U.shape[0],):
            raise ValueError(f"bad scoring shapes U{self.U.shape} V{self.V.shape} const{self.const.shape}")

    @property
    def n_queries(self) -> int:
        return self.U.shape[0]

    def distances(self, q: int, p: np.ndarray) -> np.ndarray:
        """Exact float64 distances of rows ``p`` (selected columns) to query ``q``."""
        return _exact_query(np.atleast_2d(p), self, q) + self.const[q]


@dataclass(frozen=True)
class TopK:
    """``rows[q, j]``: gallery row of rank j (-1 = fewer than k rows); ``dist`` float64 (inf for -1)."""

    rows: np.ndarray
    dist: np.ndarray
    fallbacks: int = 0


def _gallery_chunk(P, cols: np.ndarray | slice, rows: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    if rows is None:
        block = np.asarray(P[start:stop])
    else:
        block = np.asarray(P[rows[start:stop]])
    return np.ascontiguousarray(block[:, cols], dtype=np.float32)


def _indicator(width: int, groups: Sequence[slice]) -> np.ndarray:
    """0/1 matrix (columns x groups): ``x @ G`` sums each group's columns in one product."""
    G = np.zeros((width, len(groups)))
    for j, g in enumerate(groups):
        G[g, j] = 1.0
    return G


@dataclass(frozen=True)
class _Layout:
    """How the product columns are laid out (module doc, "Compact squares" and "Folded groups").

    ``single``: square columns kept one by one; ``summed``: groups whose squares collapse to
    one sum-of-squares column; ``folded``: groups whose probability columns become
    ``s_g - 2 p`` columns (the group's squares folded in, no extra column at all). Group
    sums go through 0/1 indicator matrices (columns x groups): one product each instead of a
    Python step per group.
    """

    single: list[int]
    summed: list[slice]
    folded: list[slice]
    width: int

    @property
    def key(self) -> tuple:
        """Equal keys give equal product rows ``b_i`` (what :class:`GalleryCache` keeps)."""
        def spans(gs: list[slice]) -> tuple:
            return tuple((g.start, g.stop) for g in gs)
        return (tuple(self.single), spans(self.summed), spans(self.folded), self.width)

    @cached_property
    def _folded_indicator(self) -> np.ndarray:
        """Columns x folded groups, built once (``rows`` runs once per gallery chunk)."""
        return _indicator(self.width, self.folded)

    def weights(self, scoring: Scoring) -> tuple[np.ndarray, np.ndarray]:
        """``a_q`` (float32 product rows) and, per query, how far the folding is from exact."""
        U = scoring.U
        residual = np.zeros(scoring.n_queries)
        if self.folded:
            G = self._folded_indicator
            U = U * np.where(G.any(axis=1), -0.5, 1.0)
            starts = [g.start for g in self.folded]
            residual = np.abs(scoring.U @ G + 2.0 * scoring.V[:, starts]).sum(axis=1)
        parts = [U, scoring.V[:, self.single]]
        if self.summed:
            parts.append(scoring.V[:, [g.start for g in self.summed]])
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32), residual

    def rows(self, p: np.ndarray) -> np.ndarray:
        """``b_i``: probabilities (folded groups as ``s_g - 2 p``), kept squares, groups' sums of squares."""
        parts = [p, p[:, self.single] ** 2]
        if self.folded or self.summed:
            p64 = p.astype(np.float64)
            sq = p64 * p64
            if self.folded:
                G = self._folded_indicator
                in_folded = G.any(axis=1)
                folded = (sq @ G)[:, G.argmax(axis=1)] - 2.0 * p64  # float64, rounded once
                parts[0] = np.where(in_folded, folded, p64).astype(np.float32)
            if self.summed:
                parts.append((sq @ _indicator(self.width, self.summed)).astype(np.float32))
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def _layout(U: np.ndarray, V: np.ndarray, groups: Sequence[slice]) -> _Layout:
    """Which groups fold, which collapse to one sum-of-squares column, which squares stay single.

    A group's squares collapse when each query weights them equally (``v_qg``); it folds when,
    besides, each query's weights on its probabilities sum to ``-2 v_qg`` (Euclidean distance
    to a target that sums to one over the group: a one-hot value or a prior), since then
    ``U_q·p + v_qg Σ p² = Σ_c (-U_qc / 2)(s_g - 2 p_c)``. A column whose square weight is zero
    for every query keeps no square column. A group no query weights at all folds too (its
    weights stay zero): then every batch of one-class and prior targets has the same layout,
    whichever groups it states, and a :class:`GalleryCache` serves them all from one entry.
    """
    width = V.shape[1]
    groups = [g for g in groups if len(range(width)[g])]
    covered = np.zeros(width, dtype=bool)
    forced = np.zeros(width, dtype=bool)
    summed: list[slice] = []
    folded: list[slice] = []
    if groups:
        G = _indicator(width, groups)
        first = V[:, [g.start for g in groups]]
        uneven = (V != first[:, G.argmax(axis=1)]) & G.any(axis=1)  # a square weight unlike its group's first
        equal = ~(uneven.astype(np.float64) @ G).any(axis=0)
        used = first.any(axis=0)
        sums_ok = (np.abs(U @ G + 2.0 * first) <= 1e-9).all(axis=0)
        # Set constraints make a group's square weights uneven. A batch with any of them keeps
        # every square column of each uneven group and of every group of 3+ classes, whether
        # or not this batch needs it: one layout for all such batches, not one per set.
        keep = ~equal
        if keep.any():
            keep |= np.array([g.stop - g.start > 2 for g in groups])
        for j, g in enumerate(groups):
            if keep[j]:
                forced[g] = True
            elif sums_ok[j]:  # unused groups (all weights 0) fold too: one layout for most batches
                covered[g] = True
                folded.append(g)
            elif used[j]:
                covered[g] = True
                summed.append(g)
            else:
                covered[g] = True
    single = [c for c in range(width) if forced[c] or (not covered[c] and V[:, c].any())]
    return _Layout(single, summed, folded, width)


@dataclass(frozen=True)
class _Bags:
    """The rows of ``A`` as bags of product columns: ``a_q · b`` = a weighted sum of a few gallery rows.

    A folded Euclidean query weights only the one column of each stated group (its value), so
    its row of ``A`` has ~7 non-zeros of 30: summing those rows of the transposed gallery beats
    multiplying by every column (the numba scan always, torch's ``embedding_bag`` when rows
    are sparse enough; bench/rank.py).
    """

    cols: np.ndarray  # int64 (nnz,): product column of each non-zero, query by query
    weights: np.ndarray  # float32 (nnz,)
    offsets: np.ndarray  # int64 (Q + 1,): where each query's non-zeros start
    width: int  # columns of A

    @staticmethod
    def of(A: np.ndarray) -> _Bags:
        nz = A != 0
        r, c = np.nonzero(nz)
        offsets = np.zeros(len(A) + 1, np.int64)
        np.cumsum(nz.sum(axis=1), out=offsets[1:])
        return _Bags(c.astype(np.int64), np.ascontiguousarray(A[r, c], dtype=np.float32), offsets, A.shape[1])

    @property
    def sparse(self) -> bool:
        """Mean non-zeros per row at most a third of the columns: where torch's embedding_bag beats ``torch.mm``."""
        return 3 * len(self.cols) <= (len(self.offsets) - 1) * self.width


# Each backend is a pair: ``prepare(B)`` turns a chunk's product rows into what its scan reads
# (query-independent, so a GalleryCache can keep it), and ``scorer(A, kk, threads)`` returns
# ``chunk(prepared, penalty) -> score(q0, q1)`` for one batch of queries. ``penalty`` is empty,
# or per chunk row 0 or +inf added to every score: a row mask (a metadata filter) applied
# inside the scan, so the cached chunks serve filtered queries too.

_NO_PENALTY = np.empty(0, np.float32)

def _numba_prepare(B: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(B.T)


def _numba_scorer(A: np.ndarray, kk: int, threads: int | None) -> Callable[[np.ndarray], Callable[[int, int], tuple[np.ndarray, np.ndarray]]]:
    import numba

    from attrret.retrieval.scan import scan_into

    bags = _Bags.of(A)
    threads = threads or numba.config.NUMBA_NUM_THREADS  # the CPUs this process may use, or $NUMBA_NUM_THREADS
    pool: ThreadPoolExecutor | None = None  # started once per call, not per chunk (~1 ms a thread)

    def chunk(Bt: np.ndarray, penalty: np.ndarray = _NO_PENALTY) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
        k = min(kk, Bt.shape[1])

        def score(q0: int, q1: int) -> tuple[np.ndarray, np.ndarray]:
            v = np.full((q1 - q0, k), np.inf, np.float32)
            i = np.full((q1 - q0, k), -1, np.int64)
            cuts = np.linspace(q0, q1, min(threads, q1 - q0) + 1).astype(int)
            offs = bags.offsets[q0:] if q0 else bags.offsets  # queries renumbered from q0 (v, i local)

            def run(a: int, b: int) -> None:
                scan_into(Bt, bags.cols, bags.weights, offs, a - q0, b - q0, 0, v, i, penalty)

            if len(cuts) <= 2:
                run(q0, q1)
            else:  # the kernel releases the GIL: one thread per query range
                nonlocal pool
                if pool is None:
                    pool = ThreadPoolExecutor(threads)
                    weakref.finalize(chunk, pool.shutdown, wait=False)  # when the call's scorer goes
                list(pool.map(run, cuts[:-1], cuts[1:]))
            return v, i

        return score

    return chunk


def _torch_prepare(B: np.ndarray):
    """The chunk transposed and padded to whole segments (pad scores are set to +inf), so
    smallest_k reshapes the tile without a copy."""
    import torch

    n = B.shape[0]
    width = -(-n // _SEGMENT) * _SEGMENT
    Bt = torch.zeros(B.shape[1], width)
    Bt[:, :n] = torch.from_numpy(B.T)
    return Bt, n


def _torch_scorer(A: np.ndarray, kk: int, threads: int | None) -> Callable[[tuple], Callable[[int, int], tuple[np.ndarray, np.ndarray]]]:
    import torch
    import torch.nn.functional as F

    At = torch.from_numpy(A)
    bags = _Bags.of(A)
    if bags.sparse:
        cols, weights = torch.from_numpy(bags.cols), torch.from_numpy(bags.weights)
        unit = bool((bags.weights == 1).all())

    def chunk(prepared: tuple, penalty: np.ndarray = _NO_PENALTY) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
        Bt, n = prepared  # one tile buffer reused for every query block of the chunk
        width = Bt.shape[1]
        k = min(kk, n)
        tile = torch.empty(0, width)
        pen = torch.from_numpy(penalty) if len(penalty) else None

        @torch.inference_mode()  # no autograd bookkeeping on the ~10 small ops per block (6-8% measured)
        def score(q0: int, q1: int) -> tuple[np.ndarray, np.ndarray]:
            nonlocal tile
            if bags.sparse:
                o0, o1 = int(bags.offsets[q0]), int(bags.offsets[q1])
                offs = torch.from_numpy(bags.offsets[q0:q1] - o0)
                s = F.embedding_bag(cols[o0:o1], Bt, offs, mode="sum", per_sample_weights=None if unit else weights[o0:o1])
            else:
                if len(tile) < q1 - q0:
                    tile = torch.empty(q1 - q0, width)
                s = tile[: q1 - q0]
                torch.mm(At[q0:q1], Bt, out=s)
            if pen is not None:
                s[:, :n] += pen
            s[:, n:] = float("inf")  # k <= n: a pad column is never among the k smallest
            v, i = smallest_k(s, k)
            return v.numpy(), i.numpy()

        return score

    return chunk


_SEGMENT = 64  # columns per segment in smallest_k (32-64 measured best on 17,611 columns)


def smallest_k(s, k: int, width: int = _SEGMENT):
    """Row-wise ``k`` smallest values of a float tensor ``s`` and their columns (unsorted).

    Segment pruning, about 3x faster than ``torch.topk`` over whole rows of a wide tile: each
    row is cut into segments of ``width`` columns; the k segments with the smallest minima hold
    k values <= tau (the k-th smallest minimum), so every value of the row's k smallest is <=
    tau, and its segment's minimum is too: the k smallest lie in those k segments (plus the
    ragged tail, always kept). A tie at tau may swap one tied value for another, which never
    leaves a value outside the result smaller than the k-th returned one: the invariant the
    exact re-ranking of :func:`exact_topk` relies on.
    """
    import torch

    b, n = s.shape
    nseg = n // width
    if nseg < 2 * k:  # narrow tiles: nothing to prune
        return torch.topk(s, k, dim=1, largest=False, sorted=False)
    m = nseg * width
    mins = s[:, :m].reshape(b, nseg, width).amin(dim=2)
    seg = torch.topk(mins, k, dim=1, largest=False, sorted=False).indices
    cols = (seg.unsqueeze(2) * width + torch.arange(width)).reshape(b, k * width)
    if m < n:
        cols = torch.cat([cols, torch.arange(m, n).expand(b, n - m)], dim=1)
    v, j = torch.topk(torch.gather(s, 1, cols), k, dim=1, largest=False, sorted=False)
    return v, torch.gather(cols, 1, j)


def _numpy_prepare(B: np.ndarray) -> np.ndarray:
    return B


def _numpy_scorer(A: np.ndarray, kk: int, threads: int | None) -> Callable[[np.ndarray], Callable[[int, int], tuple[np.ndarray, np.ndarray]]]:
    def chunk(B: np.ndarray, penalty: np.ndarray = _NO_PENALTY) -> Callable[[int, int], tuple[np.ndarray, np.ndarray]]:
        k = min(kk, B.shape[0])

        def score(q0: int, q1: int) -> tuple[np.ndarray, np.ndarray]:
            s = A[q0:q1] @ B.T  # float32 product tile (BLAS)
            if len(penalty):
                s += penalty
            i = np.argpartition(s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.broadcast_to(np.arange(s.shape[1]), s.shape)
            return np.take_along_axis(s, i, axis=1), np.ascontiguousarray(i, dtype=np.int64)

        return score

    return chunk


#: The top-K backends, each ``(prepare, scorer)``: the one list of them (``RankOptions`` and the
#: CLI check names against it). A new backend is one row.
_BACKENDS: dict[str, tuple[Callable, Callable]] = {
    "numba": (_numba_prepare, _numba_scorer),
    "torch": (_torch_prepare, _torch_scorer),
    "numpy": (_numpy_prepare, _numpy_scorer),
}
BACKENDS = tuple(_BACKENDS)


@dataclass(frozen=True)
class RowMask:
    """A row mask made ready for :func:`exact_topk`: which rows are kept, the per-row penalty
    the scans add (0 or +inf, float32) and how many are kept. Make it once per filter and
    reuse it: on a million rows it costs about what a scan does."""

    keep: np.ndarray  # bool
    penalty: np.ndarray  # float32
    kept: int

    @classmethod
    def of(cls, keep: np.ndarray) -> RowMask:
        keep = np.asarray(keep, dtype=bool)
        return cls(keep, np.where(keep, np.float32(0.0), np.float32(np.inf)).astype(np.float32), int(np.count_nonzero(keep)))


@dataclass(frozen=True)
class _Chunk:
    """One gallery chunk as a scan reads it: the backend's prepared product rows, ``max |b|``
    (for the float32 error bound) and, for a gallery of one chunk, its raw columns (for the
    exact re-rank)."""

    start: int
    stop: int
    prepared: object
    b_max: float
    raw: np.ndarray | None


class GalleryCache:
    """Prepared gallery chunks kept across :func:`exact_topk` calls, for a long-lived searcher.

    Why: for a few queries over a large gallery, reading each chunk, building its product
    rows (float64 squares, folding) and transposing them costs far more than the scan itself
    (a million rows: ~1 s of preparation against ~10 ms of scanning per query). A search
    server ranks a handful of queries at a time, with a few layouts (module doc: with the
    canonical folding, every batch of one-class targets has one), so it keeps them.

    An entry is keyed by backend, layout, columns and rows; the ``rows`` array itself is held
    and compared by identity (pass the same array object for the same subset). At most
    ``max_entries`` are kept, and (``max_bytes``) at most that many bytes of prepared chunks,
    least recently used first out. The cache is only valid for one unchanged ``P``: make a new
    one when the index is reopened. Thread-safe.
    """

    def __init__(self, max_entries: int = 4, max_bytes: int | None = None, keep_raw: bool = True) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.keep_raw = keep_raw  # False: an entry holds no raw columns (the re-rank reads its few rows from P)
        self._entries: dict[tuple, tuple[np.ndarray | None, list[_Chunk]]] = {}
        self._bytes: dict[tuple, int] = {}
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        """Whether half the byte budget is spent: a caller then chooses a way that needs no new
        entry. Admitting entries only below half means one (smaller than the other half) never
        pushes another out: no thrashing when more subsets recur than fit."""
        with self._lock:
            return self.max_bytes is not None and 2 * sum(self._bytes.values()) >= self.max_bytes

    def get(self, key: tuple, rows: np.ndarray | None, make: Callable[[], list[_Chunk]]) -> list[_Chunk]:
        full = key + (None if rows is None else id(rows),)
        with self._lock:
            hit = self._entries.pop(full, None)
            if hit is not None and hit[0] is rows:
                self._entries[full] = hit  # most recently used last
                return hit[1]
        chunks = make()  # outside the lock: other layouts stay servable meanwhile
        with self._lock:
            self._entries[full] = (rows, chunks)
            self._bytes[full] = sum(_nbytes(c.prepared) + (0 if c.raw is None else c.raw.nbytes) for c in chunks)
            while len(self._entries) > 1 and (len(self._entries) > self.max_entries or (
                    self.max_bytes is not None and sum(self._bytes.values()) > self.max_bytes)):
                oldest = next(iter(self._entries))
                self._entries.pop(oldest)
                self._bytes.pop(oldest, None)
        return chunks


def _nbytes(prepared: object) -> int:
    """The memory a backend's prepared chunk holds (numpy array, torch (tensor, n))."""
    if isinstance(prepared, np.ndarray):
        return prepared.nbytes
    t = prepared[0]  # torch: (Bt, n)
    return int(t.element_size() * t.nelement())


def exact_topk(
    P,
    scoring: Scoring,
    k: int,
    *,
    cols: np.ndarray | slice = slice(None),
    rows: np.ndarray | None = None,
    backend: str = "numba",
    groups: Sequence[slice] = (),
    chunk_rows: int = 32768,
    query_block: int = 32,
    threads: int | None = None,
    cache: GalleryCache | None = None,
    mask: np.ndarray | RowMask | None = None,
) -> TopK:
    """Exact ``k`` smallest ``d(q, i)`` for every query over gallery ``P`` (N x C_all, may be a memmap).

    ``cols`` selects the columns the scoring refers to; ``rows`` (ascending) restricts the
    gallery to a subset; returned rows are indices into that subset's order mapped back to
    ``P``'s rows. ``groups`` (slices of the selected columns, e.g. attribute groups) lets
    equally weighted squares collapse to one column each or fold into the probability columns
    (module doc); results do not depend on it. ``query_block``: queries per torch call
    (the numba scan takes them all and splits them over ``threads``, default: the CPUs this
    process may use). Memory: a chunk of the gallery (and, for torch, one ``query_block x
    chunk_rows`` float32 score tile) and ``Q x k'`` candidates, whatever the gallery size (a
    gallery of one chunk is kept for the re-rank instead of being read again). ``cache`` keeps
    the prepared chunks for later calls over the same ``P`` (:class:`GalleryCache`); results
    are the same with or without it. ``mask`` (bool, one per row of the gallery or of ``rows``):
    only rows where it is true may be returned; it is applied inside the scan (an infinite
    penalty on the others), so the prepared chunks, cached or not, serve any mask, and the
    top-k is exact among the rows it keeps (fewer than k only when fewer rows are kept).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    Q = scoring.n_queries
    n = len(P) if rows is None else len(rows)
    kept = n
    penalty = None
    if mask is not None:
        rm = mask if isinstance(mask, RowMask) else RowMask.of(mask)
        if rm.keep.shape != (n,):
            raise ValueError(f"mask of {rm.keep.shape} for a gallery of {n} rows")
        kept, mask = rm.kept, rm.keep
        if kept == n:
            mask = None  # every row passes: the plain scan
        else:
            penalty = rm.penalty
    k_out = min(k, kept)
    out_rows = np.full((Q, k), -1, dtype=np.int64)
    out_dist = np.full((Q, k), np.inf)
    if Q == 0 or kept == 0 or k <= 0:
        return TopK(out_rows, out_dist)
    # kk <= the rows kept: the chunks' finite candidates are at least kk, so the kk best merged
    # are all kept rows (a masked row scores +inf and is never among them)
    kk = min(kept, k + _MARGIN)
    layout = _layout(scoring.U, scoring.V, groups)
    A, residual = layout.weights(scoring)
    prepare, make = _BACKENDS[backend]
    scorer = make(A, kk, threads)
    if backend == "numba":
        query_block = Q  # one call per chunk: the fused scan splits the queries over threads itself

    keep_raw = cache is None or cache.keep_raw

    def chunks() -> Iterator[_Chunk]:  # lazily: without a cache, one chunk in memory at a time
        for start in range(0, n, chunk_rows):
            stop = min(n, start + chunk_rows)
            raw = _gallery_chunk(P, cols, rows, start, stop)
            B = layout.rows(raw)
            yield _Chunk(start, stop, prepare(B), float(np.abs(B).max(initial=0.0)), raw if stop - start == n and keep_raw else None)

    prepared: Iterable[_Chunk] = chunks()
    if cache is not None:
        cols_key = (cols.start, cols.stop, cols.step) if isinstance(cols, slice) else np.asarray(cols).tobytes()
        prepared = cache.get((backend, layout.key, cols_key, chunk_rows, n), rows, lambda: list(chunks()))

    best_v = np.full((Q, kk), np.inf, dtype=np.float32)
    best_i = np.full((Q, kk), -1, dtype=np.int64)
    b_max = 1.0
    whole = None  # the gallery's selected columns (float32), kept when it is one chunk
    for ch in prepared:
        start, stop = ch.start, ch.stop
        if ch.raw is not None:
            whole = ch.raw
        b_max = max(b_max, ch.b_max)
        score = scorer(ch.prepared) if penalty is None else scorer(ch.prepared, penalty[start:stop])
        width = min(kk, stop - start)
        chunk_v = np.empty((Q, width), dtype=np.float32)
        chunk_i = np.empty((Q, width), dtype=np.int64)
        for q0 in range(0, Q, query_block):
            q1 = min(Q, q0 + query_block)
            chunk_v[q0:q1], chunk_i[q0:q1] = score(q0, q1)
        chunk_i += start
        if start == 0 and width == kk:  # the first chunk fills the candidates as they are
            best_v, best_i = chunk_v, chunk_i
            continue
        v = np.concatenate([best_v, chunk_v], axis=1)
        i = np.concatenate([best_i, chunk_i], axis=1)
        sel = np.argpartition(v, kk - 1, axis=1)[:, :kk]
        best_v, best_i = np.take_along_axis(v, sel, axis=1), np.take_along_axis(i, sel, axis=1)
    # float32 error of a·b with |b| <= b_max: products and sums (dim terms), rounding of a and b,
    # plus what folding leaves out when a target's weights do not sum exactly (module doc).
    eps = (A.shape[1] + 4) * 2 * _U32 * b_max * np.abs(A).astype(np.float64).sum(axis=1) + residual + 1e-12

    # exact float64 re-rank of the candidates, tie-break by row (= image name order)
    fallbacks = 0
    for q0 in range(0, Q, _RERANK_BLOCK):
        q1 = min(Q, q0 + _RERANK_BLOCK)
        order = np.sort(best_i[q0:q1], axis=1)
        if whole is not None:
            exact = _exact(whole, order, scoring.U[q0:q1], scoring.V[q0:q1])
        else:  # read each candidate row once, whatever the gallery's size
            uniq, inv = np.unique(order.ravel(), return_inverse=True)
            pc = _gallery_chunk(P, cols, uniq if rows is None else rows[uniq], 0, len(uniq))
            exact = _exact(pc, inv.reshape(q1 - q0, kk), scoring.U[q0:q1], scoring.V[q0:q1])
        o = np.lexsort((order, exact), axis=1)[:, :k_out]
        ids, ex = np.take_along_axis(order, o, axis=1), np.take_along_axis(exact, o, axis=1)
        safe = best_v[q0:q1].max(axis=1).astype(np.float64) - eps[q0:q1] > ex[:, -1]
        for j in np.flatnonzero(~safe) if kk < kept else ():
            if backend == "numba" and isinstance(prepared, list):  # chunks at hand: rescan in float32 first
                ids[j], ex[j] = _threshold_scan(prepared, A, P, cols, rows, scoring, q0 + j, k_out, ex[j, -1] + eps[q0 + j],
                                                mask)
            else:
                ids[j], ex[j] = _exact_scan(P, cols, rows, scoring, q0 + j, k_out, chunk_rows, mask)
            fallbacks += 1
        out_rows[q0:q1, :k_out] = ids if rows is None else rows[ids]
        out_dist[q0:q1, :k_out] = ex + scoring.const[q0:q1, None]
    return TopK(out_rows, out_dist, fallbacks)


def _exact(p: np.ndarray, idx: np.ndarray, U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """float64 ``U[q]·x + V[q]·x²`` for ``x = p[idx[q, j]]`` (Q x m): ONE formula for candidates and
    scans, so equal rows score equal. Summed column by column in one fixed order (the linear
    and square sums apart, then added), in NumPy: no compiled kernel to load, so a process
    that ranks a few queries with the ``numpy`` backend never imports numba."""
    x = p[idx]  # (Q, m, C) float32: the candidates' rows, gathered once
    lin = np.zeros(idx.shape)
    sq = np.zeros(idx.shape)
    for c in range(p.shape[1]):
        xc = x[..., c].astype(np.float64)
        lin += U[:, c, None] * xc
        sq += V[:, c, None] * (xc * xc)
    return lin + sq


def _exact_query(p: np.ndarray, scoring: Scoring, q: int) -> np.ndarray:
    """:func:`_exact` of every row of ``p`` for query ``q`` alone (no constant term)."""
    return _exact(p, np.arange(len(p))[None], scoring.U[q : q + 1], scoring.V[q : q + 1])[0]


def _threshold_scan(chunks: list[_Chunk], A: np.ndarray, P, cols, rows, scoring: Scoring, q: int, k: int,
                    thr: float, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact k of query ``q`` from the rows whose float32 score is ``<= thr`` (the k-th exact
    score plus the float32 error bound: every row that can beat or tie it), re-scored in float64.

    The fallback for heavy ties when the prepared chunks are at hand (a :class:`GalleryCache`):
    one sparse float32 pass over the query's few columns instead of a float64 pass over every
    column of the gallery read again (about 15x less work on a million rows).
    """
    from attrret.retrieval.scan import collect_below

    bags = _Bags.of(A[q : q + 1])
    found = []
    for ch in chunks:
        out = np.empty(256, np.int64)
        count = collect_below(ch.prepared, bags.cols, bags.weights, 0, len(bags.cols), thr, out)
        if count > len(out):
            out = np.empty(count, np.int64)
            collect_below(ch.prepared, bags.cols, bags.weights, 0, len(bags.cols), thr, out)
        found.append(out[:count] + ch.start)
    cand = np.concatenate(found)
    if mask is not None:
        cand = cand[mask[cand]]
    pc = _gallery_chunk(P, cols, cand if rows is None else rows[cand], 0, len(cand))
    d = _exact_query(pc, scoring, q)
    o = np.lexsort((cand, d))[:k]
    return cand[o], d[o]


def _exact_scan(P, cols, rows, scoring: Scoring, q: int, k: int, chunk_rows: int,
                mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float64 scan of the whole gallery (the rows ``mask`` keeps) for one query: the exact k by (distance, row)."""
    if mask is not None:
        sel = np.flatnonzero(mask)
        ids, d = _exact_scan(P, cols, sel if rows is None else rows[sel], scoring, q, k, chunk_rows)
        return sel[ids], d
    keep_i = np.empty(0, dtype=np.int64)
    keep_d = np.empty(0, dtype=np.float64)
    n = len(P) if rows is None else len(rows)
    for start in range(0, n, chunk_rows):
        stop = min(n, start + chunk_rows)
        p = _gallery_chunk(P, cols, rows, start, stop)
        d = _exact_query(p, scoring, q)
        keep_i = np.concatenate([keep_i, np.arange(start, stop, dtype=np.int64)])
        keep_d = np.concatenate([keep_d, d])
        if len(keep_d) > k:
            t = np.partition(keep_d, k - 1)[k - 1]
            m = keep_d <= t
            keep_i, keep_d = keep_i[m], keep_d[m]
    o = np.lexsort((keep_i, keep_d))[:k]
    return keep_i[o], keep_d[o]
