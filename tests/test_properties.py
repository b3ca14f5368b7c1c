"""Property tests on random feasible problems: KKT conditions, bounds, targets, a second solver."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import calibopt as co
from calibopt.solvers.distances import get_distance

METHODS = {
    "linear": ("linear", None),
    "raking": ("raking", None),
    "logit": ("logit", (0.4, 2.5)),
    "truncated": ("linear", (0.6, 1.7)),
    "raking-bounded": ("raking", (0.6, 1.7)),
}


def random_problem(seed: int, method: str, tolerance: float = 0.0):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 80))
    m = int(rng.integers(1, max(2, n // 6)))
    X = rng.lognormal(0.0, 1.0, (m, n)) * (rng.random((m, n)) < 0.6)
    X[0] = 1.0  # an intercept keeps every problem non-trivial
    d = rng.uniform(0.5, 3.0, n)
    dist, bounds = METHODS[method]
    lo, hi = bounds if bounds is not None else (0.3, 3.0)
    # hidden weights inside the bounds make the problem feasible (strictly, for logit/raking)
    g_true = rng.uniform(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo), n)
    b = X @ (d * g_true)
    if tolerance:
        b = b * rng.uniform(1 - 3 * tolerance, 1 + 3 * tolerance, m)
    method_name = "truncated" if method == "truncated" else dist
    return (
        co.CalibrationProblem(X, b, initial_weights=d, ratio_bounds=bounds, tolerance=tolerance),
        method_name,
        dist,
    )


def check_kkt(problem, result, dist_name):
    """g = clip(F(X' lambda), L, U) and the target conditions, recomputed from scratch."""
    dist = get_distance(dist_name)
    glo, ghi = problem.g_bounds()
    lam = result.multipliers
    u = problem.X.T @ lam
    g = dist.F(u, glo, ghi)
    np.testing.assert_allclose(result.g, g, rtol=1e-9, atol=1e-12)
    assert np.all(result.g >= glo - 1e-12) and np.all(result.g <= ghi + 1e-12)
    est = problem.X @ result.weights
    lo_b, hi_b = problem.target_bands()
    scale = 1 + np.abs(problem.targets)
    assert np.all(est >= lo_b - 1e-9 * scale) and np.all(est <= hi_b + 1e-9 * scale)
    # complementary slackness on tolerance bands: lambda > 0 only at the lower end, < 0 upper
    band = lo_b < hi_b
    at_lo = np.abs(est - lo_b) <= 1e-8 * scale
    at_hi = np.abs(est - hi_b) <= 1e-8 * scale
    big = np.abs(lam) > 1e-9 * max(1.0, np.abs(lam).max())
    assert np.all(~(band & big & (lam > 0)) | at_lo)
    assert np.all(~(band & big & (lam < 0)) | at_hi)


SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


@pytest.mark.parametrize("method", sorted(METHODS))
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_newton_kkt_and_second_solver(method, seed):
    problem, name, dist = random_problem(seed, method)
    result = co.calibrate(problem, method=name, epsilon=1e-12)
    assert result.status == "optimal", result.message
    check_kkt(problem, result, dist)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = co.calibrate(problem, method=name, solver="CLARABEL")
    # same optimum: the objective agrees, and so do the weights (strictly convex program)
    assert other.objective == pytest.approx(result.objective, rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(
        other.weights, result.weights, rtol=0, atol=1e-4 * np.abs(result.weights).max()
    )
    assert result.objective <= other.objective + 1e-9 * max(1.0, abs(other.objective))


@pytest.mark.parametrize("method", ["linear", "raking", "logit"])
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_tolerance_bands_kkt_and_second_solver(method, seed):
    problem, name, dist = random_problem(seed, method, tolerance=0.01)
    result = co.calibrate(problem, method=name, epsilon=1e-12)
    assert result.status == "optimal", result.message
    check_kkt(problem, result, dist)
    assert result.diagnostics["within_tolerance"].all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = co.calibrate(problem, method=name, solver="CLARABEL")
    assert other.objective == pytest.approx(result.objective, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("method", ["linear", "raking"])
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_dense_and_matrix_free_newton_agree(method, seed):
    problem, name, _ = random_problem(seed, method)
    dense = co.calibrate(problem, method=name, epsilon=1e-12)
    cg = co.calibrate(problem, method=name, epsilon=1e-12, dense_limit=0)
    np.testing.assert_allclose(cg.weights, dense.weights, rtol=1e-8)
