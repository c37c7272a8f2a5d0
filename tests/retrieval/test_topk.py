"""Exact top-K: equal to a brute-force float64 sort, identical across backends, ties by row."""

import numpy as np
import pytest

from attrret.retrieval.topk import BACKENDS, Scoring, exact_topk


def _euclid(c, m):
    return Scoring(-2 * m * c, m.copy(), (m * c * c).sum(1))


def _brute(P, c, m, k, rows=None):
    rows = np.arange(len(P)) if rows is None else rows
    d = (((P[rows].astype(np.float64)[None] - c[:, None]) ** 2) * m[:, None]).sum(2)
    return np.array([rows[np.lexsort((np.arange(len(rows)), dq))[:k]] for dq in d])


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    P = rng.random((3000, 12)).astype(np.float32)
    P[[10, 500, 2999]] = P[7]  # exact duplicates: ties that must break by row
    c = (rng.random((80, 12)) > 0.5).astype(np.float64)
    m = (rng.random((80, 12)) > 0.3).astype(np.float64)
    c[0], m[0] = P[7], 1.0  # a query sitting exactly on the duplicated row
    return P, c, m


@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_brute_force_with_small_chunks(case, backend):
    P, c, m = case
    top = exact_topk(P, _euclid(c, m), 10, backend=backend, chunk_rows=257, query_block=16)
    assert (top.rows == _brute(P, c, m, 10)).all()
    assert list(top.rows[0][:4]) == [7, 10, 500, 2999]  # distance 0 four times: name (row) order
    ref_d = (((P[top.rows[5]].astype(np.float64) - c[5]) ** 2) * m[5]).sum(1)
    assert np.allclose(top.dist[5], ref_d, atol=1e-12)


def test_backends_identical_on_heavy_ties():
    rng = np.random.default_rng(1)
    P = rng.integers(0, 2, size=(2000, 6)).astype(np.float32)  # only 64 distinct rows: ties everywhere
    c = rng.integers(0, 2, size=(30, 6)).astype(np.float64)
    m = np.ones_like(c)
    brute = _brute(P, c, m, 10)
    for backend in BACKENDS:
        top = exact_topk(P, _euclid(c, m), 10, backend=backend, chunk_rows=300)
        assert (top.rows == brute).all(), backend
        assert top.fallbacks > 0  # ties beyond the candidate margin force the exact scan


def test_row_subset_cols_and_memmap(case, tmp_path):
    P, c, m = case
    np.save(tmp_path / "p.npy", np.concatenate([np.zeros((len(P), 3), np.float32), P], axis=1))
    mm = np.load(tmp_path / "p.npy", mmap_mode="r")
    rows = np.arange(1, len(P), 3)
    top = exact_topk(mm, _euclid(c, m), 7, cols=np.arange(3, 15), rows=rows, chunk_rows=100)
    assert (top.rows == _brute(P, c, m, 7, rows)).all()


def test_small_gallery_pads():
    P = np.eye(3, dtype=np.float32)
    top = exact_topk(P, _euclid(np.eye(3)[:1].astype(float), np.ones((1, 3))), 5)
    assert list(top.rows[0]) == [0, 1, 2, -1, -1]
    assert np.isinf(top.dist[0, 3:]).all()


def test_linear_scoring_form():
    # linear: d = sum m (c - p) c  ->  U = -m c, V = 0
    P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    c, m = np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]])
    top = exact_topk(P, Scoring(-m * c, np.zeros_like(m), (m * c * c).sum(1)), 3)
    assert list(top.rows[0]) == [0, 2, 1]
    assert np.allclose(top.dist[0], [1 - 0.9, 1 - 0.6, 1 - 0.2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_sums_of_squares_give_the_same_exact_result(backend):
    """Collapsing equally weighted squares into one column per group changes nothing but speed."""
    rng = np.random.default_rng(3)
    sizes = [2, 3, 3, 5, 1]
    groups, at = [], 0
    for s in sizes:
        groups.append(slice(at, at + s))
        at += s
    raw = rng.gamma(1.0, size=(2500, at))
    P = np.concatenate([raw[:, g] / raw[:, g].sum(1, keepdims=True) for g in groups], axis=1).astype(np.float32)
    c = np.zeros((60, at))
    m = np.zeros((60, at))
    for q in range(60):
        for g in groups:
            if rng.random() < 0.6:
                c[q, g.start + rng.integers(g.stop - g.start)] = 1.0
                m[q, g] = 1.0
    m[5, 3] = 0.5  # one query weights a group unequally: that group keeps its square columns
    plain = exact_topk(P, _euclid(c, m), 10, backend=backend, chunk_rows=700, query_block=8)
    grouped = exact_topk(P, _euclid(c, m), 10, backend=backend, chunk_rows=700, query_block=8, groups=groups)
    assert (grouped.rows == plain.rows).all() and (grouped.rows == _brute(P, c, m, 10)).all()
    assert np.array_equal(grouped.dist, plain.dist)


@pytest.mark.parametrize("levels", [None, 3])  # continuous values, and heavy ties
@pytest.mark.parametrize("n", [100, 64 * 40, 64 * 40 + 17])  # too narrow to prune, exact segments, ragged tail
def test_smallest_k_returns_the_k_smallest_values_with_their_columns(n, levels):
    import torch

    from attrret.retrieval.topk import smallest_k

    g = torch.Generator().manual_seed(n)
    s = torch.rand(7, n, generator=g)
    if levels:
        s = torch.floor(s * levels) / levels
    k = 18
    v, cols = smallest_k(s, k)
    want = torch.topk(s, k, dim=1, largest=False).values
    assert torch.equal(torch.sort(v, dim=1).values, want)
    assert torch.equal(torch.gather(s, 1, cols), v)
    assert all(len(set(row.tolist())) == k for row in cols)  # k distinct columns


@pytest.mark.parametrize("backend", BACKENDS)
def test_whole_gallery_chunks_take_the_pruned_path_and_stay_exact(case, backend):
    """3,000 rows in one chunk: wide enough for smallest_k's segment pruning (>= 2 k' segments)."""
    P, c, m = case
    top = exact_topk(P, _euclid(c, m), 10, backend=backend)
    assert (top.rows == _brute(P, c, m, 10)).all()
    rng = np.random.default_rng(2)
    T = rng.integers(0, 2, size=(5000, 6)).astype(np.float32)  # ties everywhere
    ct = rng.integers(0, 2, size=(30, 6)).astype(np.float64)
    mt = np.ones_like(ct)
    assert (exact_topk(T, _euclid(ct, mt), 10, backend=backend).rows == _brute(T, ct, mt, 10)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_folded_groups_with_soft_and_unnormalised_targets_stay_exact(backend):
    """Folding a group's squares into ``s_g - 2p`` needs targets summing to one over the group
    (one-hot values, prior distributions); other targets keep the sum-of-squares column."""
    from attrret.retrieval.topk import _layout

    rng = np.random.default_rng(4)
    groups = [slice(0, 2), slice(2, 5), slice(5, 9)]
    raw = rng.gamma(1.0, size=(3000, 9))
    P = np.concatenate([raw[:, g] / raw[:, g].sum(1, keepdims=True) for g in groups], axis=1).astype(np.float32)
    c, m = np.zeros((40, 9)), np.zeros((40, 9))
    for q in range(40):
        for g in groups:
            t = rng.gamma(1.0, size=g.stop - g.start)
            c[q, g], m[q, g] = t / t.sum(), 1.0  # a prior-like soft target: sums to one
    c[::2, 0:2] = [1.0, 0.0]  # some one-hot values
    c[3, 5:9] *= 0.5  # one query's target for the last group does not sum to one
    layout = _layout(-2 * m * c, m, groups)
    assert layout.folded == groups[:2] and layout.summed == groups[2:]
    top = exact_topk(P, _euclid(c, m), 10, backend=backend, groups=groups)
    assert (top.rows == _brute(P, c, m, 10)).all()
    ref_d = (((P[top.rows[3]].astype(np.float64) - c[3]) ** 2) * m[3]).sum(1)
    assert np.allclose(top.dist[3], ref_d, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 3])
def test_numba_scan_any_thread_count(case, threads):
    """The fused scan splits queries over threads (here uneven ranges): same exact result."""
    P, c, m = case
    top = exact_topk(P, _euclid(c, m), 10, backend="numba", threads=threads, chunk_rows=1001)
    assert (top.rows == _brute(P, c, m, 10)).all()


def test_numba_scan_keeps_k_smallest_under_ties():
    """The kernel alone: k smallest of each query's weighted column sums, unsorted, values matching
    their rows; under heavy ties no value left out is below the largest kept (the invariant the
    exact re-ranking relies on)."""
    from attrret.retrieval.scan import scan_into

    rng = np.random.default_rng(3)
    Bt = rng.integers(0, 4, size=(5, 3000)).astype(np.float32)  # few distinct sums: many ties
    cols = np.array([0, 2, 1, 3, 4, 0], np.int64)
    weights = np.array([1.0, 0.5, 2.0, -1.0, 1.0, 3.0], np.float32)
    offsets = np.array([0, 2, 5, 6], np.int64)  # queries of 2, 3 and 1 non-zeros
    best_v = np.full((3, 7), np.inf, np.float32)
    best_i = np.full((3, 7), -1, np.int64)
    scan_into(Bt, cols, weights, offsets, 0, 3, 100, best_v, best_i, np.empty(0, np.float32))
    for q in range(3):
        sl = slice(offsets[q], offsets[q + 1])
        s = (weights[sl, None] * Bt[cols[sl]]).sum(0)
        kth = np.sort(s)[6]
        assert sorted(best_v[q]) == sorted(s[best_i[q] - 100])  # values belong to their rows
        assert np.max(best_v[q]) == kth and (s < kth).sum() <= 7
        assert (s[best_i[q] - 100] <= kth).all()


def test_compiled_loops_fall_back_to_no_disk_cache(monkeypatch):
    """Where numba can write no cache (read-only install, no writable home) it refuses
    ``cache=True`` at import time; the kernels then compile per process instead of failing."""
    import numba

    from attrret.retrieval import scan

    real = numba.njit

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real(**options)

    monkeypatch.setattr(numba, "njit", njit)

    @scan._jit()
    def twice(x):
        return 2 * x

    assert twice(21) == 42


def test_gallery_cache_gives_the_same_results_and_is_reused():
    """A GalleryCache serves later calls (its prepared chunks are kept) with results equal to
    uncached calls, on ties (the float32 threshold rescan) and on a row subset."""
    from attrret.retrieval.topk import GalleryCache

    rng = np.random.default_rng(2)
    P = rng.integers(0, 2, size=(2000, 6)).astype(np.float32)  # 64 distinct rows: ties everywhere
    rows = np.arange(0, 2000, 2)
    cache = GalleryCache(max_entries=len(BACKENDS) + 1)
    for seed in range(3):  # three different batches, one layout: one cache entry
        q = np.random.default_rng(10 + seed)
        c = q.integers(0, 2, size=(25, 6)).astype(np.float64)
        m = np.ones_like(c)
        for backend in BACKENDS:
            plain = exact_topk(P, _euclid(c, m), 10, rows=rows, backend=backend, chunk_rows=300)
            cached = exact_topk(P, _euclid(c, m), 10, rows=rows, backend=backend, chunk_rows=300, cache=cache)
            assert (cached.rows == plain.rows).all() and (cached.dist == plain.dist).all(), backend
            assert (plain.rows == _brute(P, c, m, 10, rows)).all()
            assert cached.fallbacks > 0  # heavy ties: the threshold rescan ran, and agreed
    assert len(cache._entries) == len(BACKENDS)  # one per backend, reused across the batches
    # a new rows array (even with equal values) is another entry: identity is the key
    exact_topk(P, _euclid(c, m), 10, rows=rows.copy(), chunk_rows=300, cache=cache)
    assert len(cache._entries) == len(BACKENDS) + 1
    exact_topk(P, _euclid(c, m), 10, rows=rows[:10], chunk_rows=300, cache=cache)  # one more: the oldest goes
    assert len(cache._entries) == len(BACKENDS) + 1 and next(iter(cache._entries))[0] != BACKENDS[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("keep", [0.5, 0.05, 0.004, 0.0])
def test_a_mask_equals_brute_force_over_the_rows_it_keeps(case, backend, keep):
    """A mask applied inside the scan: small chunks, so most hold fewer kept rows than the
    candidates they hand on; heavy ties (the duplicated rows); a mask keeping fewer rows than k."""
    P, c, m = case
    rng = np.random.default_rng(int(keep * 1000))
    mask = rng.random(len(P)) < keep
    mask[[7, 500]] = keep > 0  # two of the tied rows kept, two dropped
    top = exact_topk(P, _euclid(c, m), 10, backend=backend, chunk_rows=257, query_block=16, mask=mask)
    kept = np.flatnonzero(mask)
    want = _brute(P, c, m, min(10, len(kept)), kept) if len(kept) else np.empty((len(c), 0), np.int64)
    k = want.shape[1]
    assert (top.rows[:, :k] == want).all() and (top.rows[:, k:] == -1).all()
    # with a row subset too: the mask is over the subset's rows
    rows = np.arange(0, len(P), 2)
    top = exact_topk(P, _euclid(c, m), 10, backend=backend, chunk_rows=300, rows=rows, mask=mask[rows])
    kept = rows[mask[rows]]
    want = _brute(P, c, m, min(10, len(kept)), kept) if len(kept) else np.empty((len(c), 0), np.int64)
    assert (top.rows[:, : want.shape[1]] == want).all()
