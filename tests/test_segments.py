"""Gram passes by segments (runs of units with few rows) equal the plain ones.

A local-area matrix lists its units area by area, so a run of units touches only its area's,
state's and nation's rows; the compiled passes sum such a run's pairs in a small local
matrix first, once per class of rows that hold equal values on the run
(:func:`calibopt.solvers.kernels.row_segments`). These tests build such matrices (threaded
kernels), one with random values in every row (423 rows) and one whose state and nation rows
repeat an area's values (270 rows, classes of three rows), and check, against SciPy and the
composed NumPy pass: the segments and classes themselves, the weighted Gram matrix, and the
fused pass for every distance, with every row in play and with rows out of play, relaxed or
not.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp

from calibopt.solvers import _kernel_cache, evaluate, kernels
from calibopt.solvers.distances import Linear, Logit, Raking, Truncated
from calibopt.solvers.evaluate import Evaluator


@pytest.fixture(autouse=True)
def _compiled(monkeypatch):
    monkeypatch.setenv("CALIBOPT_KERNELS", "numba")
    monkeypatch.setitem(_kernel_cache._state, "ready", False)
    yield
    _kernel_cache._state["ready"] = False


@functools.cache
def _local_area(seed=0, areas=40, per_area=2_000, wide=True):
    """Units area by area: each has entries in its area's 10 rows, its state's 5 (4 states)
    and the nation's 3; with ``wide``, one unit has an entry in every row (a segment of its
    own, wider than :data:`~calibopt.solvers.kernels.SEGMENT_ROWS`). Built once per
    argument list (the tests only read it)."""
    rng = np.random.default_rng(seed)
    n, states = areas * per_area, 4
    m = areas * 10 + states * 5 + 3
    rows, cols, vals = [], [], []
    for i in range(n):
        a = i // per_area
        s = a % states
        own = 10 * a + rng.choice(10, rng.integers(3, 9), replace=False)
        state = areas * 10 + 5 * s + rng.choice(5, rng.integers(1, 4), replace=False)
        nation = areas * 10 + states * 5 + rng.choice(3, rng.integers(1, 4), replace=False)
        r = np.concatenate([own, state, nation])
        rows.append(r)
        cols.append(np.full(r.size, i))
        vals.append(rng.uniform(0.2, 3.0, r.size))
    if wide:
        i = n // 3
        keep = np.concatenate(cols) != i
        rows = [np.concatenate(rows)[keep], np.arange(m)]
        vals = [np.concatenate(vals)[keep], rng.uniform(0.2, 3.0, m)]
        cols = [np.concatenate(cols)[keep], np.full(m, i)]
    X = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n)
    )
    X.sort_indices()
    return X


@functools.cache
def _repeated(seed=0, areas=40, per_area=2_000, variables=6, states=4):
    """Units area by area, each with values of some of ``variables`` variables (counts 1-3
    and amounts of the same scale), held alike by its area's, its state's and the nation's
    row of each, as in a local-area matrix: on an area's units the state's and the nation's
    rows repeat the area's."""
    rng = np.random.default_rng(seed)
    n = areas * per_area
    V = variables
    rows, cols, vals = [], [], []
    for i in range(n):
        a = i // per_area
        v = np.sort(rng.choice(V, rng.integers(2, V + 1), replace=False))
        x = np.where(v % 2 == 0, rng.integers(1, 4, v.size), rng.uniform(0.2, 3.0, v.size))
        rows.append(
            np.concatenate([a * V + v, (areas + a % states) * V + v, (areas + states) * V + v])
        )
        cols.append(np.full(3 * v.size, i))
        vals.append(np.tile(x, 3))
    m = (areas + states + 1) * V
    X = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m, n)
    )
    X.sort_indices()
    return X


MATRICES = {"random": lambda seed: _local_area(seed=seed), "repeated": _repeated}


def test_segments_cover_every_unit_with_its_rows():
    X = _local_area()
    assert X.nnz >= kernels.SERIAL_NNZ and X.shape[0] > kernels.SEGMENT_ROWS
    start, ptr, rows, _ = kernels.row_segments(X)
    n = X.shape[1]
    assert start[0] == 0 and start[-1] == n and np.all(np.diff(start) > 0)
    assert ptr.size == start.size and ptr[0] == 0 and ptr[-1] == rows.size
    assert n / (start.size - 1) >= kernels.SEGMENT_UNITS
    wide = n // 3
    for s in range(start.size - 1):
        r = rows[ptr[s] : ptr[s + 1]]
        assert np.all(np.diff(r) > 0)  # sorted, no repeats
        units = X[:, start[s] : start[s + 1]]
        used = np.unique(units.indices)
        assert np.array_equal(np.intersect1d(used, r), used)  # every entry's row is there
        if start[s] <= wide < start[s + 1]:
            assert start[s + 1] - start[s] == 1 and r.size == X.shape[0]
        else:
            assert r.size <= kernels.SEGMENT_ROWS


@pytest.mark.parametrize("kind", ["random", "repeated"])
def test_classes_are_the_rows_equal_on_a_segment(kind):
    X = MATRICES[kind](0)
    start, ptr, rows, cls = kernels.row_segments(X)
    assert start.size > 2 and cls.size == rows.size
    for s in range(start.size - 1):
        block = X[:, start[s] : start[s + 1]].toarray()[rows[ptr[s] : ptr[s + 1]]]
        c = cls[ptr[s] : ptr[s + 1]]
        same_rows = (block[:, None, :] == block[None, :, :]).all(axis=2)
        assert np.array_equal(same_rows, c[:, None] == c[None, :])  # equal rows, one class
        first = np.unique(c, return_index=True)[1]
        assert np.array_equal(c[np.sort(first)], np.arange(first.size))  # in row order


@pytest.mark.parametrize("kind", ["random", "repeated"])
def test_class_entries_rebuild_the_matrix(kind):
    """A unit's class entries, each spread over its class's rows, are its column of X."""
    X = MATRICES[kind](0)
    start, ptr, rows, cls = seg = kernels.row_segments(X)
    eptr, ecls, evals = kernels.class_entries(X, seg)
    assert eptr[0] == 0 and eptr[-1] == ecls.size == evals.size
    assert (ecls.size < 0.5 * X.nnz) == (kind == "repeated")
    r, c, v = [], [], []
    for s in range(start.size - 1):
        srows, scls = rows[ptr[s] : ptr[s + 1]], cls[ptr[s] : ptr[s + 1]]
        for i in range(start[s], start[s + 1]):
            k = ecls[eptr[i] : eptr[i + 1]]
            assert np.all(np.diff(k) > 0)
            for cl, x in zip(k, evals[eptr[i] : eptr[i + 1]], strict=True):
                members = srows[scls == cl]
                r.append(members)
                c.append(np.full(members.size, i))
                v.append(np.full(members.size, x))
    Y = sp.csc_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), X.shape)
    assert (Y != X).nnz == 0


def test_segments_end_where_the_repeats_end():
    """With repeated rows the segments are the areas (the repeats hold on an area's units
    only), each with a class per variable; without, they are cut by width as before (the
    classes judged at the end, or given up after a sixteenth of the units)."""
    X, per_area = _repeated(0), 2_000
    seg = kernels.row_segments(X)
    start = seg[0]
    assert np.all(start[:-1] // per_area == (start[1:] - 1) // per_area)  # within an area
    assert set(range(0, X.shape[1], per_area)) <= set(start.tolist())
    assert np.all(np.maximum.reduceat(seg[3], seg[1][:-1]) + 1 <= 6)
    assert kernels.class_share(seg) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    n = 100_000  # one-hot units, 4 of 69 cells each: runs of ~50 units, no repeats
    cells = np.stack([rng.integers(a, b, n) for a, b in [(0, 20), (20, 40), (40, 60), (60, 69)]])
    one_hot = sp.csc_matrix((np.ones(4 * n), (cells.T.ravel(), np.repeat(np.arange(n), 4))))
    for Y, gives_up in ((_local_area(seed=0), False), (one_hot, True)):
        by_classes, by_width = _cuts(Y)
        assert kernels.class_share(by_classes(2.0)) > kernels.CLASS_SHARE  # (2.0: never gives up)
        # after a sixteenth of the units, when segments closed by then keep too many rows
        assert (by_classes(kernels.CLASS_SHARE)[0].size == 0) == gives_up
        assert by_width[0].size > 2
        for a, b in zip(kernels.row_segments(Y), by_width, strict=True):
            assert np.array_equal(a, b)


def _cuts(Y):
    """The class cut of ``Y`` (a function of its share limit) and its cut by width alone."""
    nb = kernels.compiled()
    p, w, u = Y.shape[0], kernels.SEGMENT_ROWS, kernels.SEGMENT_UNITS

    def by_classes(share):
        return kernels._cut(Y, lambda part: nb.SEGMENTS(part, Y.indices, Y.data, p, w, u, share))

    return by_classes, kernels._cut(Y, lambda part: nb.SEGMENTS_BY_WIDTH(part, Y.indices, p, w, u))


def test_no_segments_where_units_spread_over_the_rows():
    X = sp.random(300, 60_000, density=0.05, random_state=1, format="csc")
    X.sort_indices()
    assert all(a.size == 0 for a in kernels.row_segments(X))


@pytest.mark.parametrize("kind", ["random", "repeated"])
def test_weighted_gram_by_segments_equals_scipy(kind):
    X = MATRICES[kind](1)
    v = np.random.default_rng(1).uniform(0, 2, X.shape[1])
    v[::7] = 0.0
    seg = kernels.row_segments(X)
    assert seg[0].size > 2
    ref = (X @ sp.diags(v) @ X.T).toarray()
    for segments in (seg, None):
        J = kernels.weighted_gram(X, v, segments=segments)
        np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-13 * np.abs(ref).max())
        assert np.array_equal(J, J.T)


def _evaluators(X, dist, seed, every):
    """A compiled and a composed evaluator of ``X`` with random weights and g-bounds, on every
    row or all but 57 random rows; and the random generator, for the test to go on with."""
    m, n = X.shape
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.5, 2.0, n)
    lo, hi = np.full(n, 0.4), rng.uniform(1.5, 3.0, n)
    fused = Evaluator(X, d, lo, hi, dist)
    plain = Evaluator(X, d, lo, hi, dist)
    plain.composed = True
    rows = np.arange(m) if every else np.sort(rng.choice(m, m - 57, replace=False))
    for ev in (fused, plain):
        ev.set_rows(rows)
    return fused, plain, rng


@pytest.mark.parametrize("dist", [Linear(), Raking(), Logit(), Truncated()], ids=repr)
@pytest.mark.parametrize("every", [True, False], ids=["every-row", "rows-out-of-play"])
@pytest.mark.parametrize("kind", ["random", "repeated"])
def test_fused_pass_by_segments_equals_composed(dist, every, kind, monkeypatch):
    # the linear distances' passes relative to the base sum no pairs of free units, so they
    # do not use segments: make them sum directly
    monkeypatch.setattr(evaluate, "BASE_SHARE", -1.0)
    X = MATRICES[kind](2)
    m = X.shape[0]
    fused, plain, rng = _evaluators(X, dist, 3, every)
    assert fused.segments[0].size > 2
    lam = rng.normal(size=m) * (0.15 if isinstance(dist, Logit | Raking) else 0.6)
    for relax in (False, True):
        a = fused(lam, 0, gram=True, relax=relax)
        b = plain(lam, 1, gram=True, relax=relax)
        assert a.u is None  # the compiled pass ran
        np.testing.assert_allclose(a.g, b.g, rtol=1e-14)
        np.testing.assert_allclose(a.xw, b.xw, rtol=1e-12)
        assert a.conj == pytest.approx(b.conj, rel=1e-12)
        J = plain.gram(b.u, b.g, relax=relax)
        np.testing.assert_allclose(a.J, J, rtol=1e-12, atol=1e-12 * np.abs(J).max())


def _upper_places(pattern, m):
    ptr, cols = pattern
    return set(zip(np.repeat(np.arange(m), np.diff(ptr)).tolist(), cols.tolist(), strict=True))


@pytest.mark.parametrize("every", [True, False], ids=["every-row", "rows-out-of-play"])
def test_gram_pattern_holds_every_pair_a_pass_can_reach(every):
    X = _local_area(seed=4, wide=False)
    m = X.shape[0]
    seg = kernels.row_segments(X)
    rows = np.arange(m) if every else np.sort(np.random.default_rng(4).choice(m, 300, False))
    rowpos = np.full(m, -1, dtype=np.int64)
    rowpos[rows] = np.arange(rows.size)
    ptr, cols = kernels.gram_pattern(seg, rowpos[:0] if every else rowpos, rows.size, 10**9)
    assert ptr.size == rows.size + 1 and ptr[-1] == cols.size
    places = _upper_places((ptr, cols), rows.size)
    for r in range(rows.size):  # sorted, upper triangle, diagonal first
        c = cols[ptr[r] : ptr[r + 1]]
        assert c[0] == r and np.all(np.diff(c) > 0)
    B = X.copy()
    B.data[:] = 1.0
    nz = (B @ B.T).toarray()[np.ix_(rows, rows)]
    r, c = np.nonzero(np.triu(nz))
    assert set(zip(r.tolist(), c.tolist(), strict=True)) <= places  # every pair of a unit
    assert len(places) < 0.5 * rows.size * (rows.size + 1) / 2  # and far from every place
    assert kernels.gram_pattern(seg, rowpos[:0], m, len(places) - 1)[0].size == 0  # limit
    assert kernels.gram_pattern(kernels.NO_SEGMENTS, rowpos[:0], m, 10**9)[0].size == 0


@pytest.mark.parametrize("dist", [Linear(), Raking(), Logit(), Truncated()], ids=repr)
@pytest.mark.parametrize("every", [True, False], ids=["every-row", "rows-out-of-play"])
@pytest.mark.parametrize("share", [-1.0, 0.5], ids=["direct", "relative-to-base"])
def test_passes_by_pattern_equal_composed(dist, every, share, monkeypatch):
    """With a pattern, a pass zeroes and completes only its places: the Newton matrix stays
    exact pass after pass in the same buffers, though other work (a weighted Gram of every
    row) fills the threads' accumulators in between, and is zero elsewhere."""
    monkeypatch.setattr(evaluate, "BASE_SHARE", share)
    monkeypatch.setattr(evaluate, "SPARSE_MIN", 100)  # (the test matrix has 423 rows)
    monkeypatch.setattr(evaluate, "SPARSE_DENSITY", 0.6)
    X = _local_area(seed=5, wide=False)  # (a unit in every row would make it dense)
    m, n = X.shape
    fused, plain, rng = _evaluators(X, dist, 6, every)
    rows = fused.rows
    assert fused.pattern[0].size == rows.size + 1
    outside = np.ones((rows.size, rows.size), dtype=bool)
    for r, c in _upper_places(fused.pattern, rows.size):
        outside[r, c] = outside[c, r] = False
    assert outside.sum() > 0.3 * outside.size
    scale = 0.15 if isinstance(dist, Logit | Raking) else 0.6
    for k, lam in enumerate([np.zeros(m)] + [rng.normal(size=m) * scale for _ in range(4)]):
        a = fused(lam, k % 2, gram=True, relax=k == 3)
        b = plain(lam, 1, gram=True, relax=k == 3)
        J = plain.gram(b.u, b.g, relax=k == 3)
        np.testing.assert_allclose(a.xw, b.xw, rtol=1e-12)
        np.testing.assert_allclose(a.J, J, rtol=1e-12, atol=1e-12 * np.abs(J).max())
        assert np.array_equal(a.J, a.J.T) and not a.J[outside].any()
        fused.weighted_gram(rng.uniform(0, 2, n))  # dirties the accumulators everywhere


def test_sparse_factor_gathers_from_the_pattern(monkeypatch):
    """The sparse LU of a Newton matrix gathered at the pattern's places alone solves like
    the one gathered by scanning every place, and like a dense solve."""
    from calibopt.solvers import linalg

    monkeypatch.setattr(linalg, "SPARSE_MIN", 100)
    X = _local_area(seed=6, wide=False)
    m, n = X.shape
    rng = np.random.default_rng(7)
    J = kernels.weighted_gram(X, rng.uniform(0.5, 2.0, n))
    pattern = kernels.gram_pattern(kernels.row_segments(X), np.empty(0, np.int64), m, 10**9)
    rhs = rng.normal(size=m)
    cache: dict = {}
    for _ in range(2):  # (the second gathers from the places kept in the cache)
        solve, how = linalg.factor_symmetric_psd(J, cache=cache, pattern=pattern)
        assert how == "sparse-lu"
        x = solve(rhs)
        y = linalg.factor_symmetric_psd(J)[0](rhs)
        dense = np.linalg.solve(J, rhs)
        for z in (x, y):  # backward stable (the ridge of 1e-11 on the unit diagonal aside)
            assert np.linalg.norm(J @ z - rhs) < 1e-10 * np.linalg.norm(rhs)
        # (the pattern also holds structural zeros: another ordering, other roundings)
        np.testing.assert_allclose(x, dense, rtol=1e-7)
        np.testing.assert_allclose(x, y, rtol=1e-7)


@pytest.fixture(scope="module")
def local_area_problem():
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country("small", n_states=10, n_districts=90, n_households=300, seed=1)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    return m.to_problem()  # 1,231 targets x 27,000 columns, bounds (0, None)


@pytest.mark.parametrize("tolerance", [0.0, 0.01], ids=["exact", "bands"])
def test_fits_by_pattern_equal_dense_fits(local_area_problem, tolerance, monkeypatch):
    """Whole fits on a local-area problem (w >= 0, many weights at 0; raking has no answer
    there): with the Newton matrix by pattern (on every row for the bands' interior point, on
    the rows in play for exact targets) the same weights as with the pattern switched off."""
    import calibopt as co
    from calibopt.solvers import linalg

    p = local_area_problem.with_options(tolerance=tolerance)
    served: list[int] = []
    find = Evaluator._find_pattern

    def spy(self, rowpos, m):
        out = find(self, rowpos, m)
        if out[0].size:
            served.append(m)
        return out

    monkeypatch.setattr(Evaluator, "_find_pattern", spy)
    # (1,231 rows: the pattern holds 7% of the places; the sparse LU then too, as with 5%)
    monkeypatch.setattr(evaluate, "SPARSE_DENSITY", 0.2)
    monkeypatch.setattr(linalg, "SPARSE_DENSITY", 0.2)
    r = co.calibrate(p, method="linear", epsilon=1e-11)
    # bands: every row (the interior point); exact: the rows the dependence search keeps
    assert p.n_targets in served if tolerance else min(served, default=p.n_targets) < p.n_targets
    monkeypatch.setattr(evaluate, "SPARSE_MIN", 10**9)  # (the LU then scans for non-zeros)
    dense = co.calibrate(p, method="linear", epsilon=1e-11)
    assert r.status == dense.status == "optimal"
    if tolerance:  # (a wrong Newton matrix would take more; exact targets here are
        # redundant, their singular systems solved with a ridge: the LU's order, which the
        # pattern's structural zeros change, then steers the multipliers another way)
        assert r.iterations == dense.iterations
    assert r.objective == pytest.approx(dense.objective, rel=1e-10)
    np.testing.assert_allclose(r.weights, dense.weights, rtol=1e-7, atol=1e-9 * r.weights.max())
