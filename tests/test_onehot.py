"""The one-hot cell pass (calibopt.solvers.onehot) against the entry-wise pass and R.

The cell pass must give the entry-wise pass's weights, estimates, conjugate sum and Newton
matrix to rounding, for every built-in distance, with uniform and per-unit bounds, rows left
out of the Newton matrix, relaxed curvature, partial margins and scaled one-hot rows; its
detection must refuse what is not one-hot and recover when its sample misleads it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.solvers import onehot
from calibopt.solvers.distances import get_distance
from calibopt.solvers.evaluate import Evaluator
from calibopt.solvers.kernels import compiled

pytestmark = pytest.mark.skipif(
    os.environ.get("CALIBOPT_KERNELS") == "numpy", reason="the cell pass is compiled only"
)


@pytest.fixture(autouse=True)
def _numba(monkeypatch):
    monkeypatch.setenv("CALIBOPT_KERNELS", "numba")
    from calibopt.solvers import _kernel_cache

    monkeypatch.setitem(_kernel_cache._state, "ready", True)
    assert compiled() is not None


def margins_matrix(n, levels=(5, 10, 50, 4), ncont=2, partial=False, scale=True, seed=0):
    """Targets x units CSC: one-hot margins (optionally scaled, optionally with units outside
    a margin) and ``ncont`` continuous rows (30% zeros)."""
    rng = np.random.default_rng(seed)
    rows, cols, vals, r0 = [], [], [], 0
    for L in levels:
        level = rng.integers(0, L, n)
        keep = rng.random(n) > 0.1 if partial else np.ones(n, bool)
        rows.append(r0 + level[keep])
        cols.append(np.flatnonzero(keep))
        vals.append(np.full(keep.sum(), rng.uniform(0.5, 3.0) if scale else 1.0))
        r0 += L
    for _ in range(ncont):
        keep = rng.random(n) > 0.3
        rows.append(np.full(keep.sum(), r0))
        cols.append(np.flatnonzero(keep))
        vals.append(rng.lognormal(0.0, 1.0, keep.sum()))
        r0 += 1
    X = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r0, n)
    )
    X.sort_indices()
    return X.tocsc()


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def same_pieces(plain, cells, lam, gram=True, relax=False):
    a = plain(lam, 0, gram=gram, relax=relax)
    b = cells(lam, 1, gram=gram, relax=relax)
    assert rel(b.g, a.g) < 1e-13
    assert rel(b.xw, a.xw) < 1e-13
    assert abs(b.conj - a.conj) <= 1e-13 * abs(a.conj) + 1e-300
    if gram:
        assert np.allclose(b.J, b.J.T, rtol=0, atol=0)
        assert rel(b.J, a.J) < 1e-13
    return a, b


CASES = [
    # distance, g-bounds, partial margins, continuous rows
    ("raking", None, False, 0),
    ("raking", (0.3, 3.0), True, 2),
    ("linear", None, False, 2),
    ("truncated", (0.0, 4.0), True, 2),
    ("logit", (0.3, 3.0), True, 1),
]


@pytest.mark.parametrize("n", [3_000, 60_000], ids=["serial", "threads"])
@pytest.mark.parametrize(("kind", "bounds", "partial", "ncont"), CASES)
@pytest.mark.parametrize("varied", [False, True], ids=["uniform", "per-unit"])
def test_cell_pass_equals_entrywise_pass(monkeypatch, n, kind, bounds, partial, ncont, varied):
    monkeypatch.setattr(onehot, "MIN_UNITS", 0)
    Xc = margins_matrix(n, partial=partial, ncont=ncont)
    rng = np.random.default_rng(3)
    d = rng.uniform(1.0, 5.0, n)
    dist = get_distance(kind)
    lo = hi = None
    if bounds is not None:
        lo, hi = np.full(n, bounds[0]), np.full(n, bounds[1])
        if varied:
            lo[::7] = 0.5 * bounds[0] + 0.05
            hi[::5] = 0.8 * bounds[1]
    plain = Evaluator(Xc, d, lo, hi, dist)
    ev = onehot.make_evaluator(Xc, d, lo, hi, dist)
    assert isinstance(ev, onehot.CellEvaluator)
    assert ev.pure == (not varied or bounds is None)
    assert len(ev.cells.blocks) >= 2
    # multipliers large enough that units sit on their bounds
    lam = rng.normal(size=Xc.shape[0]) * 0.4
    a, _ = same_pieces(plain, ev, lam)
    if lo is not None and kind != "logit":  # (logit's bounds are never reached)
        assert np.any(a.g == lo) or np.any(a.g == hi)
    same_pieces(plain, ev, lam, gram=False)
    same_pieces(plain, ev, lam, relax=True)
    # rows out of play (a category of each margin, a continuous row), then all back
    rows = np.setdiff1d(np.arange(Xc.shape[0]), [0, 6, Xc.shape[0] - 1])
    for r in (rows, np.arange(Xc.shape[0])):
        plain.set_rows(r)
        ev.set_rows(r)
        same_pieces(plain, ev, lam)
    v = np.where(rng.random(n) > 0.2, d, 0.0)
    assert rel(ev.weighted_gram(v), plain.weighted_gram(v)) < 1e-13
    xv, xv_plain = np.empty(Xc.shape[0]), np.empty(Xc.shape[0])
    assert rel(ev.weighted_gram(v, sums=xv), plain.weighted_gram(v, sums=xv_plain)) < 1e-13
    assert rel(xv, Xc @ v) < 1e-13 and rel(xv_plain, Xc @ v) < 1e-13


def test_detection_finds_the_margins_of_problem_from_margins():
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 40_000
    df = pd.DataFrame({"a": rng.integers(0, 3, n), "b": rng.integers(0, 7, n),
                       "x": rng.lognormal(size=n)})  # fmt: skip
    margins = {
        "a": {k: float((df.a == k).sum()) for k in range(3)},
        "b": {k: float((df.b == k).sum()) for k in range(7)},
        "x": float(df.x.sum()),
    }
    p = co.problem_from_margins(df, margins)
    Xc = p.X.tocsc()
    cells = onehot.find_cells(Xc, np.ones(n), True)
    assert cells is not None
    names = np.asarray(p.target_names)
    found = sorted(sorted(names[b]) for b in cells.blocks)
    assert found == sorted([sorted(n for n in names if n.startswith("a")),
                            sorted(n for n in names if n.startswith("b"))])  # fmt: skip
    assert list(names[cells.rest_rows]) == ["x"]
    assert cells.ncells == 21
    # each unit's cell holds its own rows
    i = np.arange(0, n, 997)
    rows = cells.cell_rows[cells.code[i]]
    dense = Xc[:, i].toarray()
    for j in range(i.size):
        assert set(rows[j][rows[j] >= 0]) == set(np.flatnonzero(dense[:-1, j]))


def test_detection_refuses_matrices_without_one_hot_structure(monkeypatch):
    monkeypatch.setattr(onehot, "MIN_UNITS", 0)
    n = 30_000
    rng = np.random.default_rng(1)
    dense_rows = sp.random(20, n, density=0.3, random_state=2, format="csc")
    assert onehot.find_cells(dense_rows, np.ones(n), True) is None
    # one-hot, but too few units per possible cell: one margin fits, holding 1/4 of X
    codes = rng.integers(0, 200, (4, n))
    X = sp.csr_matrix(
        (np.ones(4 * n), (np.concatenate([codes[k] + 200 * k for k in range(4)]),
                          np.tile(np.arange(n), 4))), shape=(800, n))  # fmt: skip
    assert onehot.find_cells(X.tocsc(), np.ones(n), True) is None
    # three margins of 40 levels: two fit (41^2 possible cells < n / 4, 41^3 not), 2/3 of X
    codes = rng.integers(0, 40, (3, n))
    X = sp.csr_matrix(
        (np.ones(3 * n), (np.concatenate([codes[k] + 40 * k for k in range(3)]),
                          np.tile(np.arange(n), 3))), shape=(120, n))  # fmt: skip
    cells = onehot.find_cells(X.tocsc(), np.ones(n), True)
    assert cells is not None and len(cells.blocks) == 2 and cells.rest_rows.size == 40
    assert cells.ncells == 1600
    # below MIN_UNITS the plain evaluator runs
    monkeypatch.setattr(onehot, "MIN_UNITS", 10**9)
    Xc = margins_matrix(30_000)
    ev = onehot.make_evaluator(Xc, np.ones(30_000), None, None, get_distance("raking"))
    assert type(ev) is Evaluator


@pytest.mark.parametrize("flaw", ["value", "overlap"])
def test_detection_recovers_when_its_sample_misleads_it(monkeypatch, flaw):
    """A row constant on the sampled units but not elsewhere, or two rows of a margin on one
    unit outside the sample: the coding pass notices and the blocks are proposed again from
    every unit, so the pass stays exact."""
    monkeypatch.setattr(onehot, "MIN_UNITS", 0)
    n = 50_000
    Xc = margins_matrix(n, ncont=1, scale=False).tolil()
    sampled = set()
    nruns = max(1, onehot.SAMPLE // onehot.RUN)
    for s in np.linspace(0, n - onehot.RUN, nruns).astype(int):
        sampled.update(range(s, s + onehot.RUN))
    unit = next(i for i in range(n // 2, n) if i not in sampled)
    if flaw == "value":
        row = int(Xc[:5, unit].nonzero()[0][0])
        Xc[row, unit] = 2.0  # row of margin 1 no longer constant
    else:
        rows = Xc[:5, unit].nonzero()[0]
        Xc[(int(rows[0]) + 1) % 5, unit] = 1.0  # a second level of margin 1
    Xc = Xc.tocsc()
    Xc.sort_indices()
    calls = []
    real = onehot._coded
    monkeypatch.setattr(onehot, "_coded", lambda *a, **k: calls.append(k) or real(*a, **k))
    d = np.random.default_rng(4).uniform(1.0, 3.0, n)
    ev = onehot.make_evaluator(Xc, d, None, None, get_distance("raking"))
    assert [c["sample"] for c in calls] == [True, False]
    assert isinstance(ev, onehot.CellEvaluator)
    assert not any(set(range(5)) <= set(b) for b in ev.cells.blocks)  # margin 1 left out
    lam = np.random.default_rng(5).normal(size=Xc.shape[0]) * 0.1
    same_pieces(Evaluator(Xc, d, None, None, get_distance("raking")), ev, lam)


@pytest.mark.parametrize(
    ("kind", "ratio", "tolerance"),
    [
        ("raking", None, None),
        ("linear", None, None),
        ("logit", (0.5, 2.0), None),
        ("truncated", (0.8, 1.5), None),  # bounds bind: the active-set steps
        ("raking", (0.8, 1.5), 0.01),  # tolerance bands: the interior point + exact finish
    ],
)
def test_calibrate_with_cells_equals_calibrate_without(monkeypatch, kind, ratio, tolerance):
    n = 60_000
    Xc = margins_matrix(n, levels=(4, 6, 9), ncont=2, partial=True)
    rng = np.random.default_rng(7)
    d = rng.uniform(5.0, 15.0, n)
    # g rising with the first continuous row: the fitted g spreads out, so bounds bind
    x = Xc[-2].toarray().ravel()
    w_true = d * np.clip(0.9 + 0.2 * x / x.mean(), 0.8, 1.6) * rng.uniform(0.95, 1.05, n)
    problem = co.CalibrationProblem(
        Xc.tocsr(), Xc @ w_true, initial_weights=d, ratio_bounds=ratio, tolerance=tolerance
    )
    used = []
    real = onehot.make_evaluator
    monkeypatch.setattr(
        "calibopt.solvers.newton.make_evaluator",
        lambda *a: used.append(type(r := real(*a)).__name__) or r,
    )
    with_cells = co.calibrate(problem, method=kind)
    monkeypatch.setattr(onehot, "MIN_UNITS", 10**9)
    without = co.calibrate(problem, method=kind)
    assert used[0] == "CellEvaluator" and used[-1] == "Evaluator"
    assert with_cells.status == without.status == "optimal"
    assert rel(with_cells.weights, without.weights) < 1e-10
    assert with_cells.iterations == without.iterations
    if ratio is not None and kind != "logit":
        g = with_cells.weights / d
        assert np.isclose(g.max(), ratio[1])


def test_r_reproductions_through_the_cell_pass(monkeypatch, r_oracle_dir):
    """R's api fixtures (intercept, school type, enrolment) run through the cell pass: the
    intercept and the school types are one-hot blocks, enrolment the other row."""
    from test_r_oracle import SURVEY_CASES, load, max_rel_diff

    monkeypatch.setattr(onehot, "MIN_UNITS", 0)
    made = []
    real = onehot.make_evaluator
    monkeypatch.setattr(
        "calibopt.solvers.newton.make_evaluator", lambda *a: made.append(r := real(*a)) or r
    )
    for case in sorted(SURVEY_CASES):
        problem, weights, meta, _ = load(r_oracle_dir, case)
        result = co.calibrate(problem, method=SURVEY_CASES[case][0], epsilon=1e-12)
        assert isinstance(made[-1], onehot.CellEvaluator), case
        assert result.status == "optimal"
        assert max_rel_diff(result.weights, weights["w"]) < 1e-10, case
        assert max_rel_diff(result.g, weights["g"]) < 1e-10, case
        assert result.iterations == max(1, meta["iterations"])


def _spy_modes(monkeypatch):
    modes = []
    real = Evaluator._relative

    def spy(self, gram, relax):
        modes.append(real(self, gram, relax))
        return modes[-1]

    monkeypatch.setattr(Evaluator, "_relative", spy)
    return modes


@pytest.mark.parametrize("kind", ["linear", "truncated"])
@pytest.mark.parametrize("cells", [False, True], ids=["entry-wise", "cells"])
def test_linear_newton_matrix_from_the_base(monkeypatch, kind, cells):
    """For the linear distances a pass works relative to the base (every unit free: estimates
    X d + X D X' lambda, Newton matrix X D X') and adds the units on a bound, while those hold
    at most half the initial weight; beyond that it sums every free unit directly."""
    from calibopt.solvers.evaluate import BASE_SHARE

    monkeypatch.setattr(onehot, "MIN_UNITS", 0)
    modes = _spy_modes(monkeypatch)
    n = 60_000
    Xc = margins_matrix(n, partial=True, ncont=2)
    rng = np.random.default_rng(5)
    d = rng.uniform(1.0, 5.0, n)
    lo, hi = np.full(n, 0.6), np.full(n, 1.3)
    dist = get_distance(kind)
    make = onehot.make_evaluator if cells else Evaluator
    ev = make(Xc, d, lo, hi, dist)
    assert isinstance(ev, onehot.CellEvaluator) == cells
    reference = Evaluator(Xc, d, lo, hi, dist)
    reference.composed = True  # NumPy: u stored, X diag(d F') X' from scipy
    rows = np.setdiff1d(np.arange(Xc.shape[0]), [1, 7, Xc.shape[0] - 1])
    ev.set_rows(rows)
    reference.set_rows(rows)
    K = Evaluator(Xc, d, None, None, dist).weighted_gram(d)
    for size, share_expected in ((0.02, "few"), (0.6, "most")):
        lam = rng.normal(size=Xc.shape[0]) * size
        ref = reference(lam, 0, gram=True)
        Jref = reference.gram(ref.u, ref.g)
        on_bound = (ref.g <= lo) | (ref.g >= hi)
        share = d[on_bound].sum() / d.sum()
        assert (share < 0.2) if share_expected == "few" else (share > 0.8)
        for gram in (True, False, True):  # the later passes know the first's share
            before = ev.bound_share
            a = ev(lam, 1, gram=gram)
            assert modes[-1] == (before <= BASE_SHARE)
            assert rel(a.g, ref.g) < 1e-14
            assert rel(a.xw, ref.xw) < 1e-13
            assert abs(a.conj - ref.conj) <= 1e-12 * abs(ref.conj)
            assert not gram or rel(a.J, Jref) < 1e-12
            assert ev.bound_share == pytest.approx(share, rel=1e-12)
        assert modes[-1] == (share <= BASE_SHARE)
        # relaxed curvature (F' = 1 on a bound too): the base itself, whatever the share
        b = ev(lam, 0, gram=True, relax=True)
        assert modes[-1] is True
        assert rel(b.xw, ref.xw) < 1e-13
        assert rel(b.J, K[np.ix_(rows, rows)]) < 1e-13
        assert ev.bound_share == pytest.approx(share, rel=1e-12)  # (not reset by relax)
    # the base is what the caller gives (newton_exact passes its Gram): a wrong one shows
    ev.set_base(2.0 * K, Xc @ d)
    ev.bound_share = 0.0
    lam = rng.normal(size=Xc.shape[0]) * 0.02
    wrong = ev(lam, 0, gram=True).J
    right = reference.gram(*(lambda e: (e.u, e.g))(reference(lam, 0)))
    assert rel(wrong - K[np.ix_(rows, rows)], right) < 1e-12


def test_newton_exact_hands_its_gram_to_the_linear_passes(monkeypatch):
    """newton_exact's redundancy Gram (every unit free) is the linear passes' base: no
    second Gram, and the fit equals a solve whose passes form the matrix directly."""
    from calibopt.solvers import evaluate

    n = 50_000
    rng = np.random.default_rng(2)
    Xc = margins_matrix(n, ncont=2)
    d = rng.uniform(1.0, 3.0, n)
    X = Xc.tocsr()
    T = X @ d
    T[-2:] *= [1.8, 0.6]  # far from X d: the linear fit reaches w = 0
    p = co.CalibrationProblem(X, T, initial_weights=d, bounds=(0.0, None))
    grams = []
    for cls in (Evaluator, onehot.CellEvaluator):

        def counted(self, v, sums=None, real=cls.weighted_gram):
            grams.append(1)
            return real(self, v, sums)

        monkeypatch.setattr(cls, "weighted_gram", counted)
    modes = _spy_modes(monkeypatch)
    r = co.calibrate(p, method="linear")
    assert r.status == "optimal" and r.iterations >= 2  # units reach w = 0
    assert np.any(r.weights == 0)
    assert len(grams) == 1 and True in modes
    for name, value in (("BASE_SHARE", -1.0), ("BASE_MEMORY", 0)):  # every pass direct
        with monkeypatch.context() as m:
            m.setattr(evaluate, name, value)
            modes.clear()
            r2 = co.calibrate(p, method="linear")
        assert True not in modes
        assert r2.iterations == r.iterations
        np.testing.assert_allclose(r.weights, r2.weights, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cells", [False, True], ids=["entry-wise", "cells"])
def test_linear_evaluation_at_zero_is_the_base(monkeypatch, cells):
    """At lambda = 0 with every unit free (g = 1 within its bounds) the linear evaluation is
    the base (X d, conjugate 0, X D X') without a pass; a unit whose bounds exclude 1 makes
    it a pass again."""
    monkeypatch.setattr(onehot, "MIN_UNITS", 0)
    n = 40_000
    Xc = margins_matrix(n, partial=True, ncont=2, seed=4)
    d = np.random.default_rng(4).uniform(1.0, 5.0, n)
    rows = np.setdiff1d(np.arange(Xc.shape[0]), [2, Xc.shape[0] - 2])
    zero = np.zeros(Xc.shape[0])
    for lo0, passes in ((0.5, 0), (1.0, 1)):
        lo, hi = np.full(n, 0.5), np.full(n, 2.0)
        lo[123] = lo0
        make = onehot.make_evaluator if cells else Evaluator
        ev = make(Xc, d, lo, hi, get_distance("truncated"))
        ev.set_rows(rows)
        reference = Evaluator(Xc, d, lo, hi, get_distance("truncated"))
        reference.composed = True
        reference.set_rows(rows)
        xd = np.empty(Xc.shape[0])
        ev.set_base(ev.weighted_gram(d, sums=xd), xd)
        before = ev.fused_passes
        a, b = ev(zero, 0, gram=True), reference(zero, 1, gram=True)
        assert ev.fused_passes - before == passes
        assert rel(a.g, b.g) == 0.0 and rel(a.xw, b.xw) < 1e-13
        assert abs(a.conj) == 0.0 if passes == 0 else abs(a.conj - b.conj) < 1e-9
        assert rel(a.J, reference.gram(b.u, b.g)) < 1e-13
