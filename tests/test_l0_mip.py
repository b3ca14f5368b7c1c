"""l0-mip: the MIP optimum equals brute force; model variants agree; honest reports; bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

import calibopt as co
from calibopt.fit import check_weights
from calibopt.formulations.l0_classes import cover_counts
from calibopt.formulations.l0_model import build_l0_model
from calibopt.solvers.domain import sparse_domain


def random_problem(n, m, seed, tol=0.03, ratio=(0.3, 6.0), negative_row=False, dup=0):
    """Count rows and lognormal amount rows; targets from a dense weight vector."""
    rng = np.random.default_rng(seed)
    X = np.zeros((m, n))
    X[0] = 1.0
    for j in range(1, m):
        mask = rng.random(n) < 0.6
        X[j] = np.where(mask, 1.0 if j % 2 else rng.lognormal(1, 1, n), 0.0)
    if negative_row:
        X[-1] = rng.normal(0, 2, n)
    if dup:
        X[:, n - dup :] = X[:, :dup]
    d = rng.uniform(1, 3, n)
    if dup:
        d[n - dup :] = d[:dup]
    b = X @ (d * rng.uniform(0.5, 1.5, n))
    return co.CalibrationProblem(X, b, initial_weights=d, ratio_bounds=ratio, tolerance=tol)


def brute_force_min_support(p):
    """Smallest k such that some k records within their kept bounds meet every band (LPs)."""
    X = p.X.toarray()
    lo, hi = p.target_bands()
    l, u = p.weight_bounds()
    l = np.where(np.isneginf(l), 0.0, l)
    n = X.shape[1]
    if np.all(lo <= 0) and np.all(hi >= 0):
        return 0
    for k in range(1, n + 1):
        for S in itertools.combinations(range(n), k):
            S = list(S)
            A = X[:, S]
            res = linprog(
                np.zeros(k),
                A_ub=np.vstack([A, -A]),
                b_ub=np.r_[hi, -lo],
                bounds=list(zip(l[S], u[S])),
                method="highs",
            )
            if res.status == 0:
                return k
    return None


CASES = [(8, 3, 0), (10, 4, 1), (12, 4, 2), (12, 5, 3), (16, 3, 4), (20, 3, 5)]


@pytest.mark.parametrize("n, m, seed", CASES)
def test_optimum_equals_brute_force(n, m, seed):
    p = random_problem(n, m, seed, negative_row=seed == 3)
    r = co.calibrate(p, method="l0-mip", time_limit=30)
    assert r.status == "optimal"
    assert r.info["proven_optimal"]
    assert r.nnz == brute_force_min_support(p)
    # tolerance checked from the weights, not the solver; dropped records exactly 0
    assert check_weights(p, r.weights, sparse=True).ok
    lo, hi = p.weight_bounds()
    kept = r.weights != 0
    assert np.all(r.weights[kept] >= lo[kept] * (1 - 1e-9))
    assert np.all(r.weights[kept] <= hi[kept] * (1 + 1e-9))


@pytest.mark.parametrize(
    "options",
    [
        {"big_m": "uniform", "aggregate": False, "cuts": False, "warm_start": False},
        {"cuts": False},
        {"warm_start": False},
        {"refit": None},
        {"solver": "cvxpy:HIGHS"},
    ],
)
def test_model_variants_reach_the_same_optimum(options):
    p = random_problem(14, 4, 11)
    best = co.calibrate(p, method="l0-mip").nnz
    r = co.calibrate(p, method="l0-mip", **options)
    assert r.nnz == best
    assert r.success


def test_identical_records_are_aggregated_exactly():
    p = random_problem(12, 4, 7, dup=5)
    r = co.calibrate(p, method="l0-mip")
    assert r.info["model"]["aggregated_records"] == 5
    assert r.info["model"]["classes"] == 7
    assert r.nnz == brute_force_min_support(p)
    assert r.success


def test_semicontinuous_lower_bound_is_honoured():
    """Kept records need g >= 2: the optimum changes and no kept weight is below 2 d."""
    p = random_problem(10, 3, 21, ratio=(2.0, 8.0), tol=0.05)
    r = co.calibrate(p, method="l0-mip")
    assert r.nnz == brute_force_min_support(p)
    kept = r.weights != 0
    assert np.all(r.g[kept] >= 2.0 - 1e-9)


def test_never_more_nonzeros_than_reweighted_l1():
    for seed in range(4):
        p = random_problem(40, 6, 100 + seed, tol=0.01, ratio=(0, 20))
        r0 = co.calibrate(p, method="l0-mip", time_limit=20)
        r1 = co.calibrate(p, method="reweighted-l1")
        assert r0.nnz <= r1.nnz
        assert r0.success and r1.success


def test_time_limit_reports_the_gap():
    rng = np.random.default_rng(5)
    n, m = 400, 30
    X = sp.random(m, n, density=0.5, random_state=6, data_rvs=lambda k: rng.lognormal(0, 1, k))
    X = sp.vstack([sp.csr_matrix(np.ones((1, n))), X]).tocsr()
    d = rng.uniform(50, 150, n)
    p = co.CalibrationProblem(
        X,
        X @ (d * rng.uniform(0.7, 1.3, n)),
        initial_weights=d,
        ratio_bounds=(0, 20),
        tolerance=0.01,
    )
    r = co.calibrate(p, method="l0-mip", time_limit=1.0)
    assert not r.info["proven_optimal"]
    assert r.status == "within_tolerance"
    assert 0 < r.info["mip_gap"] <= 1
    assert r.info["mip_bound"] <= r.nnz
    assert r.nnz <= r.info["warm_start_nnz"]
    assert "gap" in r.message


def test_error_plus_count_matches_brute_force():
    p = random_problem(8, 3, 31, tol=0.0)
    lam = 0.05
    r = co.calibrate(p, method="l0-mip", objective="error+count", lam=lam)
    X = p.X.toarray()
    b = p.targets
    omega = 1.0 / (np.abs(b) + 1.0)
    l, u = p.weight_bounds()
    best = float(np.sum(omega * np.abs(b)))  # the empty support
    n, m = X.shape[1], X.shape[0]
    for k in range(1, n + 1):
        for S in itertools.combinations(range(n), k):
            S = list(S)
            # min sum omega (s+ + s-)  s.t.  X_S w - s+ + s- = b,  l <= w <= u
            c = np.r_[np.zeros(k), omega, omega]
            A = np.hstack([X[:, S], -np.eye(m), np.eye(m)])
            res = linprog(
                c,
                A_eq=A,
                b_eq=b,
                bounds=list(zip(l[S], u[S])) + [(0, None)] * (2 * m),
                method="highs",
            )
            if res.status == 0:
                best = min(best, res.fun + lam * k)
    assert r.info["soft_objective"] == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert r.info["proven_optimal"]


def test_tight_big_m_and_covers():
    """Big-M per record is the tightest implied bound; the cover counts are valid and tight."""
    X = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 1.0, 0.0]])
    b = np.array([100.0, 60.0])
    p = co.CalibrationProblem(X, b, bounds=(0, 40.0), tolerance=0.0)
    dom = sparse_domain(p)
    # row 2: 2 w0 + w2 = 60 -> w0 <= 30; w2 <= 40 (bound); w1, w3 <= 40
    np.testing.assert_allclose(dom.hull_upper, [30.0, 40.0, 40.0, 40.0])
    model = build_l0_model(p)
    need = cover_counts(p.X, dom.hull_upper, dom.hull_lower, np.ones(4, int), b, b)
    assert need.tolist() == [3, 1]  # 100 needs three records of at most 40; 60 needs one
    assert model.stats["cover_bound"] == 3
    r = co.calibrate(p, method="l0-mip")
    assert r.nnz == 3
    assert r.info["proven_optimal"]


def test_infeasible_bands_raise_naming_the_target():
    X = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 3.0]])
    p = co.CalibrationProblem(
        X, [10.0, 100.0], bounds=(0, 5), tolerance=0.01, target_names=["count", "amount"]
    )
    with pytest.raises(co.InfeasibleError) as err:
        co.calibrate(p, method="l0-mip")
    assert "amount" in err.value.targets
    # feasible LP relaxation but no support: kept records need w >= 6 while the count is 10
    p2 = co.CalibrationProblem(np.ones((1, 3)), [10.0], bounds=(6, 8), tolerance=0.0)
    with pytest.raises(co.InfeasibleError):
        co.calibrate(p2, method="l0-mip")


def test_unbounded_records_need_an_upper_bound():
    # w0 - w1 = 5 with w >= 0: both weights can grow without limit
    p = co.CalibrationProblem(np.array([[1.0, -1.0]]), [5.0])
    with pytest.raises(co.InvalidProblemError, match="no finite bound"):
        co.calibrate(p, method="l0-mip", big_m="tight")


@pytest.mark.parametrize(
    "options, match",
    [
        ({"time_limit": -1}, "time_limit"),
        ({"mip_gap": -0.1}, "mip_gap"),
        ({"objective": "sparsest"}, "objective"),
        ({"big_m": "huge"}, "big_m"),
        ({"objective": "error+count", "lam": -1.0}, "lam"),
        ({"warm_start_iter": 0}, "warm_start_iter"),
        ({"warm_start": np.ones(3)}, "warm_start"),
        ({"executor": "process"}, "blocks"),
        ({"timelimit": 3}, "unknown option"),
    ],
)
def test_bad_options(options, match):
    p = random_problem(8, 3, 0)
    with pytest.raises(co.InvalidProblemError, match=match):
        co.calibrate(p, method="l0-mip", **options)


def test_unknown_cvxpy_solver_is_a_solver_error():
    p = random_problem(8, 3, 0)
    with pytest.raises(co.SolverError):
        co.calibrate(p, method="l0-mip", solver="NO_SUCH_SOLVER")


def test_build_returns_the_cvxpy_model():
    import cvxpy as cp

    p = random_problem(10, 3, 2)
    model = co.formulations.get_method("l0-mip").build(p)
    assert isinstance(model, cp.Problem)
    model.solve(solver="HIGHS")
    assert round(model.value) == co.calibrate(p, method="l0-mip").nnz
