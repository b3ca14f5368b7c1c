"""The distances, the dual Newton solver's modes, and closed-form checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.solvers.distances import Linear, Logit, Raking, get_distance
from calibopt.solvers.kernels import matvec, rmatvec, row_ranges, weighted_gram, weighted_row_sq


@pytest.mark.parametrize(
    "dist, lo, hi",
    [(Linear(), -np.inf, np.inf), (Raking(), -np.inf, np.inf), (Logit(), 0.4, 2.5)],
)
def test_distance_link_and_conjugate(dist, lo, hi):
    u = np.linspace(-1.5, 1.5, 31)
    lo_a, hi_a = np.full_like(u, lo), np.full_like(u, hi)
    g = dist.F(u, lo_a, hi_a)
    # F(0) = 1 and F'(0) = 1: g = 1 at lambda = 0, J(0) = X D X'
    assert dist.F(np.zeros(1), lo_a[:1], hi_a[:1])[0] == pytest.approx(1.0, abs=1e-15)
    assert dist.dF(np.zeros(1), np.ones(1), lo_a[:1], hi_a[:1])[0] == pytest.approx(1.0, rel=1e-14)
    # dF is the derivative of F (central differences)
    h = 1e-6
    fd = (dist.F(u + h, lo_a, hi_a) - dist.F(u - h, lo_a, hi_a)) / (2 * h)
    np.testing.assert_allclose(dist.dF(u, g, lo_a, hi_a), fd, rtol=1e-6)
    # F inverts G': G'(F(u)) = u (numerical derivative of G)
    gp = (dist.G(g + h, lo_a, hi_a) - dist.G(g - h, lo_a, hi_a)) / (2 * h)
    np.testing.assert_allclose(gp, u, atol=1e-6)
    # G*(u) = sup_g u g - G(g): our value beats a fine grid and is attained at F(u)
    start = lo if np.isfinite(lo) else (-4.0 if dist.domain_lower < 0 else 0.0)
    grid = np.linspace(start, min(hi, 6.0), 40001)[1:-1]
    for k in (0, 10, 30):
        best = np.max(u[k] * grid - dist.G(grid, lo, hi))
        conj = dist.conjugate(u[k : k + 1], g[k : k + 1], lo_a[:1], hi_a[:1])[0]
        assert conj >= best - 1e-9 and conj == pytest.approx(best, abs=1e-5)
        assert dist.conjugate_sum(np.ones(1), u[k : k + 1], g[k : k + 1], lo_a[:1], hi_a[:1]) == (
            pytest.approx(conj, rel=1e-12, abs=1e-14)
        )


def test_logit_equals_r_cal_logit_formula():
    # R survey: h <- (bounds[2]-bounds[1])/((1-bounds[1])*(bounds[2]-1));
    # g <- (bounds[1]*(bounds[2]-1) + bounds[2]*(1-bounds[1])*exp(h*u)) /
    #      ((bounds[2]-1) + (1-bounds[1])*exp(h*u))
    L, U = 0.5, 2.0
    u = np.linspace(-3, 3, 13)
    h = (U - L) / ((1 - L) * (U - 1))
    r = (L * (U - 1) + U * (1 - L) * np.exp(h * u)) / ((U - 1) + (1 - L) * np.exp(h * u))
    np.testing.assert_allclose(Logit().F(u, np.full(13, L), np.full(13, U)), r, rtol=1e-14)
    # saturates without overflow
    g = Logit().F(np.array([-1e4, 1e4]), np.full(2, L), np.full(2, U))
    np.testing.assert_allclose(g, [L, U])


def test_clipped_linear_and_raking():
    u = np.array([-2.0, 0.0, 0.2, 3.0])
    lo, hi = np.full(4, 0.5), np.full(4, 1.5)
    np.testing.assert_allclose(Linear().F(u, lo, hi), [0.5, 1.0, 1.2, 1.5])
    np.testing.assert_allclose(Linear().dF(u, Linear().F(u, lo, hi), lo, hi), [0, 1, 1, 0])
    g = Raking().F(u, lo, hi)
    np.testing.assert_allclose(g, [0.5, 1.0, np.exp(0.2), 1.5])
    np.testing.assert_allclose(Raking().dF(u, g, lo, hi), [0, 1, np.exp(0.2), 0])


def test_kernels_match_scipy():
    rng = np.random.default_rng(0)
    X = sp.random(17, 500, density=0.2, random_state=1, format="csc")
    X.sort_indices()
    v = rng.uniform(0, 2, 500)
    lam = rng.normal(size=17)
    G = weighted_gram(X, v)
    np.testing.assert_allclose(G, (X @ sp.diags(v) @ X.T).toarray(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rmatvec(X, lam), X.T @ lam, rtol=1e-12)
    np.testing.assert_allclose(matvec(X, v), X @ v, rtol=1e-12)
    np.testing.assert_allclose(weighted_row_sq(X, v), np.diag(G), rtol=1e-12)
    lo, hi = rng.uniform(0, 1, 500), rng.uniform(1, 3, 500)
    Xs = X.copy()
    Xs.data = Xs.data - 0.5  # both signs
    mins, maxs = row_ranges(Xs, lo, hi)
    dense = Xs.toarray()
    np.testing.assert_allclose(mins, np.sum(np.where(dense > 0, dense * lo, dense * hi), axis=1))
    np.testing.assert_allclose(maxs, np.sum(np.where(dense > 0, dense * hi, dense * lo), axis=1))
    hi[3] = np.inf
    mins, maxs = row_ranges(Xs, lo, hi)
    touches = Xs[:, 3].toarray().ravel()
    assert np.all(np.isinf(maxs[touches > 0])) and np.all(np.isinf(mins[touches < 0]))


def test_linear_closed_form_greg():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4, 50)) + 2
    d = rng.uniform(1, 2, 50)
    b = X @ (d * rng.uniform(0.8, 1.2, 50))
    p = co.CalibrationProblem(X, b, initial_weights=d)
    r = co.calibrate(p, method="linear", epsilon=1e-13)
    lam = np.linalg.solve(X @ np.diag(d) @ X.T, b - X @ d)
    np.testing.assert_allclose(r.weights, d * (1 + X.T @ lam), rtol=1e-12)
    np.testing.assert_allclose(r.multipliers, lam, rtol=1e-9)
    assert r.iterations == 1


@pytest.mark.parametrize("solver", ["newton", "CLARABEL", "OSQP"])
def test_penalty_mode_linear_closed_form(solver):
    rng = np.random.default_rng(4)
    n, m = 40, 3
    X = rng.uniform(0, 2, (m, n))
    d = rng.uniform(1, 2, n)
    b = X @ d * np.array([1.1, 0.9, 1.05])  # conflicting moves
    mu = 50.0
    p = co.CalibrationProblem(X, b, initial_weights=d)
    r = co.calibrate(p, method="linear", solver=solver, penalty=mu)
    # minimise sum d (g-1)^2/2 + (mu D / 2) sum ((X d g - b)_j / |b_j|)^2
    D = d.sum()
    S2 = np.diag(1 / b**2)
    A = np.eye(n) + mu * D * X.T @ S2 @ X @ np.diag(d)
    g = np.linalg.solve(A, np.ones(n) + mu * D * X.T @ S2 @ b)
    # soft targets: missing them is the optimum of the program, reported as a trade-off
    assert r.status == "trade_off" and not r.success
    np.testing.assert_allclose(r.g, g, rtol=1e-6 if solver != "newton" else 1e-11)
    assert r.max_rel_error > 1e-3  # the targets conflict, so they are traded off


def test_iteration_cap_is_reported_honestly():
    rng = np.random.default_rng(5)
    X = rng.lognormal(size=(5, 200))
    d = np.ones(200)
    b = X @ (d * rng.uniform(0.3, 3, 200))
    p = co.CalibrationProblem(X, b, initial_weights=d)
    r = co.calibrate(p, method="raking", max_iter=1, fallback=None)
    assert r.status == "stopped" and r.iterations == 1 and r.solver == "newton"
    assert "iteration cap" in r.message and "feasible" in r.message
    # by default a feasible problem Newton leaves unsolved goes to an interior-point solver
    fb = co.calibrate(p, method="raking", max_iter=1)
    assert fb.status == "optimal" and fb.solver == "newton+CLARABEL"
    assert "Newton did not converge" in fb.message and fb.max_rel_error < 1e-8
    full = co.calibrate(p, method="raking")
    assert full.status == "optimal" and full.max_rel_error < 1e-9
    assert full.info["history"][-1] < 1e-10 and len(full.info["history"]) == full.iterations + 1


def test_zero_design_weights_keep_zero_weight():
    X = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 0.0, 1.0]])
    d = np.array([1.0, 0.0, 2.0, 1.0])
    p = co.CalibrationProblem(X, [5.0, 3.0], initial_weights=d)
    for method in ("linear", "raking"):
        r = co.calibrate(p, method=method)
        assert r.weights[1] == 0.0 and r.g[1] == 1.0
        assert r.max_rel_error < 1e-10


def test_sparse_input_is_not_densified_or_copied():
    n = 200_000
    rng = np.random.default_rng(6)
    rows = rng.integers(0, 30, n)
    X = sp.csc_matrix((np.ones(n), rows, np.arange(n + 1)), shape=(30, n))
    p = co.CalibrationProblem(X, np.bincount(rows, minlength=30) * 1.2)
    assert np.shares_memory(p.csc.data, X.data)  # used as given, not copied
    r = co.calibrate(p, method="raking")
    np.testing.assert_allclose(r.g, 1.2, rtol=1e-12)


@pytest.mark.parametrize("method", ["truncated", "raking"])
def test_many_binding_bounds(method):
    """Bounds that bind for many units: KKT by construction, and no cvxpy solver does better."""
    import warnings

    import pandas as pd

    rng = np.random.default_rng(5)
    n = 2000
    df = pd.DataFrame(
        {"a": rng.integers(0, 3, n), "b": rng.integers(0, 4, n), "x": rng.lognormal(0, 1, n)}
    )
    d = rng.uniform(1, 3, n)
    df["a"] = np.where(rng.random(n) < 0.5, 0, df["a"])
    hidden = d * np.where(df["a"] == 1, 1.38, np.where(df["a"] == 2, 0.8, 1.0))
    hidden *= rng.uniform(0.8, 1.2, n)
    margins = {
        "a": pd.Series(hidden).groupby(df["a"]).sum().to_dict(),
        "b": pd.Series(hidden).groupby(df["b"]).sum().to_dict(),
        "x": float(hidden @ df["x"]),
    }
    p = co.problem_from_margins(df, margins, weights=d, ratio_bounds=(0.785, 1.39))
    r = co.calibrate(p, method=method, epsilon=1e-12)
    assert r.status == "optimal"
    at_lo = int(np.sum(r.g <= 0.785 + 1e-12))
    at_hi = int(np.sum(r.g >= 1.39 - 1e-12))
    assert min(at_lo, at_hi) >= 5 and at_lo + at_hi >= 30, (at_lo, at_hi)  # bounds bind
    dist = get_distance("linear" if method == "truncated" else "raking")
    g = dist.F(p.X.T @ r.multipliers, np.full(n, 0.785), np.full(n, 1.39))
    np.testing.assert_allclose(r.g, g, rtol=1e-12)
    assert r.max_rel_error < 1e-11
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for solver in ("CLARABEL", "SCS", "ECOS"):
            other = co.calibrate(p, method=method, solver=solver)
            assert r.objective <= other.objective * (1 + 1e-9)


def test_local_area_problem_sparse_newton_system():
    """A local-area problem (1,231 targets) goes through the sparse LU Newton system and
    lands on the optimum that Clarabel finds, with the redundant targets dropped."""
    import warnings

    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country("small", n_states=10, n_districts=90, n_households=300, seed=1)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    p = m.to_problem()  # bounds (0, None): truncated linear with many weights at 0
    assert p.n_targets > 1000
    r = co.calibrate(p, method="linear", epsilon=1e-11)
    assert r.status == "optimal" and "sparse-lu" in r.info["linear_solvers"]
    assert len(r.dropped_targets) > 50  # states = sums of their districts
    assert r.max_rel_error < 1e-9 and np.sum(r.weights == 0) > 500
    np.testing.assert_allclose(p.X @ c.true_weights, p.targets, rtol=1e-12)  # feasible truth
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = co.calibrate(p, method="linear", solver="CLARABEL")
    assert r.objective <= other.objective * (1 + 1e-9)
    assert other.objective == pytest.approx(r.objective, rel=1e-6)


def test_cvxpy_route_leaves_out_dependent_exact_targets():
    # nested geographies: a category per area and every state and national row depend on the
    # others; the cvxpy model keeps an independent set, and both routes give the same optimum
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_dependence import nested_matrix

    from calibopt.formulations.distance_cvxpy import build

    X, d = nested_matrix(0)
    T = X @ (d * np.random.default_rng(1).uniform(0.8, 1.25, d.size))
    p = co.CalibrationProblem(X, T, initial_weights=d)
    model = build(p, "linear")
    rows = sum(c.size for c in model.constraints if c.__class__.__name__ == "Equality")
    assert rows == 3 * 120  # count, income and one category per district
    for method in ("linear", "raking"):
        ref = co.calibrate(p, method=method)
        r = co.calibrate(p, method=method, solver="CLARABEL", fallback=None)
        assert r.status == "optimal"
        np.testing.assert_allclose(r.weights, ref.weights, rtol=1e-6, atol=1e-9 * d.max())
    # a dependent target whose total contradicts the others is named, not handed to the solver
    T_bad = T.copy()
    T_bad[-1] *= 1.01  # the national second category: no longer the sum of the districts'
    bad = co.CalibrationProblem(X, T_bad, initial_weights=d)
    with pytest.raises(co.InfeasibleError, match="contradictory targets"):
        co.calibrate(bad, method="linear", solver="CLARABEL", fallback=None)
