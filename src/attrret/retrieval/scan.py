"""Compiled loops of :func:`attrret.retrieval.topk.exact_topk`: the ``numba`` backend's fused sparse
product + top-k scan (:func:`scan_into`), and its float32 rescan below a threshold for heavy
ties (:func:`collect_below`). The exact float64 re-scoring is NumPy (``topk._exact``).

Why a kernel of its own: with the torch backend each query block's score tile (32 x 17,611
floats, larger than a core's L2) is written by one op and read back by three more (segment
minima, two ``torch.topk``), and that memory traffic, not the arithmetic, sets the speed. Here
each query's scores over a block of 1,024 gallery rows live in a 4 KiB buffer (L1) from the
moment they are summed until they are discarded; only the few values below the query's
current k-th best ever leave it.

Per query the score is a sparse product ``Σ_j w_j · Bt[c_j, i]`` over the query's non-zero
product columns (a folded Euclidean query has one per stated group: ~7 of 30), summed two
rows at a time. A segment of 64 scores is scanned element by element only when a vectorised
count finds a value below the running threshold (most segments have none). The result per
query is its ``k`` smallest float32 scores, unsorted, with the invariant ``exact_topk``'s
float64 re-ranking needs: no score left out is smaller than the largest one kept.

The functions release the GIL (``nogil``): ``exact_topk`` runs one per thread over disjoint
query ranges. Compiled on first use (~2.5 s here) and cached on disk (``cache=True``): later
processes load it in ~0.5 s, plus ~0.4 s to import numba; ``attrret rank`` on the Track-2 test
size still ends sooner than with the torch backend, which has to import torch (~3 s).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["scan_into", "collect_below"]

_BLOCK = 1024  # gallery rows per buffer: 4 KiB of float32 scores, in L1 (512-4,096 measured alike)
_SEGMENT = 64  # scores counted at once before a scalar scan
# FMA contraction only: no reassociation (the float32 error bound of exact_topk holds for any
# fixed order) and nothing that assumes finite values (thresholds start at +inf).
_FASTMATH = {"contract"}


def _jit(**options):
    """``numba.njit`` (GIL released, no bounds checks) with numba's on-disk cache where one can be
    written: next to this file, else numba's user cache directory. With neither (a read-only
    install and no writable home) numba refuses ``cache=True`` at import time; then each
    process compiles for itself (~2.5 s) instead of failing."""

    def wrap(fn):
        try:
            return numba.njit(nogil=True, boundscheck=False, cache=True, **options)(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(nogil=True, boundscheck=False, **options)(fn)

    return wrap


@_jit(fastmath=_FASTMATH)
def _bag_sum(Bt: np.ndarray, cols: np.ndarray, weights: np.ndarray, o0: int, o1: int, i0: int, m: int, buf: np.ndarray) -> None:
    """``buf[:m] = Σ_{j in [o0, o1)} weights[j] · Bt[cols[j], i0:i0+m]``, two rows per pass (half the buffer traffic)."""
    j = o0
    if o1 == o0:
        buf[:m] = 0.0
        return
    if (o1 - o0) % 2:
        r, w = Bt[cols[j], i0 : i0 + m], weights[j]
        for t in range(m):
            buf[t] = w * r[t]
        j += 1
    else:
        r, w, r2, w2 = Bt[cols[j], i0 : i0 + m], weights[j], Bt[cols[j + 1], i0 : i0 + m], weights[j + 1]
        for t in range(m):
            buf[t] = w * r[t] + w2 * r2[t]
        j += 2
    while j < o1:
        r, w, r2, w2 = Bt[cols[j], i0 : i0 + m], weights[j], Bt[cols[j + 1], i0 : i0 + m], weights[j + 1]
        for t in range(m):
            buf[t] += w * r[t] + w2 * r2[t]
        j += 2


@_jit()
def _argmax(v: np.ndarray) -> int:
    a = 0
    for j in range(1, len(v)):
        if v[j] > v[a]:
            a = j
    return a


@_jit()
def _select(buf: np.ndarray, m: int, base: int, best_v: np.ndarray, best_i: np.ndarray) -> None:
    """Merge ``buf[:m]`` (rows ``base + t``) into one query's unsorted k best.

    Only values strictly below the current k-th best are taken, so a kept row is never
    swapped for a tied one.
    """
    arg = _argmax(best_v)
    thr = best_v[arg]
    for s0 in range(0, m, _SEGMENT):
        s1 = min(m, s0 + _SEGMENT)
        below = 0
        for t in range(s0, s1):  # vectorised: a count, not a min (numba leaves float min reductions scalar)
            below += buf[t] < thr
        if below:
            for t in range(s0, s1):
                x = buf[t]
                if x < thr:
                    best_v[arg] = x
                    best_i[arg] = base + t
                    arg = _argmax(best_v)
                    thr = best_v[arg]


@_jit()
def scan_into(
    Bt: np.ndarray, cols: np.ndarray, weights: np.ndarray, offsets: np.ndarray,
    q0: int, q1: int, row0: int, best_v: np.ndarray, best_i: np.ndarray, penalty: np.ndarray,
) -> None:
    """Merge each query's k smallest scores over this gallery chunk into ``best_v``/``best_i``.

    ``Bt``: float32 (product columns x chunk rows), C-contiguous. Query ``q``'s non-zero
    weights are ``weights[offsets[q]:offsets[q+1]]`` on columns ``cols[...]``. ``best_v``
    (float32, +inf = empty) and ``best_i`` (int64, gallery rows = ``row0`` + chunk row) are
    updated in place for ``q0 <= q < q1``. ``penalty``: empty, or per chunk row 0 or +inf
    added to every query's score (a filter's row mask: +inf is never taken).
    """
    n = Bt.shape[1]
    buf = np.empty(_BLOCK, np.float32)
    masked = len(penalty) > 0
    for i0 in range(0, n, _BLOCK):  # gallery block outer: its rows stay in cache for every query
        m = min(_BLOCK, n - i0)
        for q in range(q0, q1):
            _bag_sum(Bt, cols, weights, offsets[q], offsets[q + 1], i0, m, buf)
            if masked:
                for t in range(m):
                    buf[t] += penalty[i0 + t]
            _select(buf, m, row0 + i0, best_v[q], best_i[q])


@_jit()
def collect_below(Bt: np.ndarray, cols: np.ndarray, weights: np.ndarray, o0: int, o1: int, thr: float, out: np.ndarray) -> int:
    """Rows ``i`` of this chunk whose float32 score (the sum :func:`scan_into` makes) is ``<= thr``,
    written to ``out`` in row order; returns how many there are (only the first ``len(out)``
    are written: call again with a larger ``out`` when the count exceeds it).

    The exact re-ranking's fallback for heavy ties: with ``thr`` the k-th exact score plus the
    float32 error bound, these rows hold every row that can beat or tie it.
    """
    n = Bt.shape[1]
    buf = np.empty(_BLOCK, np.float32)
    count = 0
    for i0 in range(0, n, _BLOCK):
        m = min(_BLOCK, n - i0)
        _bag_sum(Bt, cols, weights, o0, o1, i0, m, buf)
        for t in range(m):
            if buf[t] <= thr:
                if count < len(out):
                    out[count] = i0 + t
                count += 1
    return count
