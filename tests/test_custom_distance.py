"""User distances (R's ``calibrate(calfun=)``): the built-ins written by hand reproduce the
built-ins; a new distance (Hellinger) agrees between Newton and an interior-point solver and
satisfies its own optimality conditions."""

from __future__ import annotations

import numpy as np
import pytest

import calibopt as co


def problem(ratio_bounds=None) -> co.CalibrationProblem:
    rng = np.random.default_rng(5)
    n = 60
    X = np.vstack([np.ones(n), (rng.uniform(size=n) < 0.4).astype(float), rng.gamma(2, 3, n)])
    d = rng.uniform(1, 3, n)
    b = X @ (d * rng.uniform(0.8, 1.25, n))
    return co.CalibrationProblem(X, b, initial_weights=d, ratio_bounds=ratio_bounds)


def raking_by_hand(with_G: bool) -> co.Distance:
    G = (
        (lambda g: np.where(g > 0, g * np.log(np.where(g > 0, g, 1)) - g + 1, 1.0))
        if with_G
        else None
    )
    return co.Distance(F=np.exp, dF=np.exp, G=G, name="my-raking", domain_lower=0, open_lower=True)


@pytest.mark.parametrize("with_G", [True, False])
@pytest.mark.parametrize("bounds", [None, (0.6, 1.6)])
def test_raking_written_by_hand_is_raking(with_G, bounds):
    p = problem(bounds)
    ref = co.calibrate(p, method="raking")
    r = co.calibrate(p, method=raking_by_hand(with_G))
    assert r.status == "optimal" and r.method == "my-raking"
    np.testing.assert_allclose(r.weights, ref.weights, rtol=1e-11)
    if with_G:  # the same dual, the same line search: the same iterates
        assert r.iterations == ref.iterations
        assert r.objective == pytest.approx(ref.objective, rel=1e-12)
    else:
        assert np.isnan(r.objective)


def test_linear_written_by_hand_is_linear():
    p = problem().with_options(bounds=None)
    lin = co.Distance(F=lambda u: 1 + u, dF=np.ones_like, G=lambda g: 0.5 * (g - 1) ** 2)
    r = co.calibrate(p, method="distance", distance=lin)
    ref = co.calibrate(p, method="linear")
    np.testing.assert_allclose(r.weights, ref.weights, rtol=1e-12)


def hellinger() -> co.Distance:
    import cvxpy as cp

    def F(u):
        with np.errstate(divide="ignore"):
            return np.where(u < 2, 1 / (1 - u / 2) ** 2, np.inf)

    def dF(u):
        with np.errstate(divide="ignore"):
            return np.where(u < 2, 1 / (1 - u / 2) ** 3, np.inf)

    return co.Distance(
        F=F,
        dF=dF,
        G=lambda g: 2 * (np.sqrt(g) - 1) ** 2,
        cvxpy=lambda g: 2 * g - 4 * cp.sqrt(g) + 2,
        name="hellinger",
        domain_lower=0.0,
        open_lower=True,
    )


def test_hellinger_newton_meets_its_optimality_conditions_and_clarabel():
    p = problem()
    h = hellinger()
    r = co.calibrate(p, method=h)
    assert r.status == "optimal" and r.max_rel_error < 1e-10
    # KKT: g_i = F(x_i' lambda) with the reported multipliers
    u = p.X.T @ r.multipliers
    np.testing.assert_allclose(r.g, h.F(u), rtol=1e-9)
    other = co.calibrate(p, method="distance", distance=h, solver="CLARABEL")
    np.testing.assert_allclose(other.g, r.g, rtol=1e-5)
    assert r.objective <= other.objective * (1 + 1e-9)


def test_custom_distance_errors():
    with pytest.raises(co.InvalidProblemError, match=r"F\(0\) = 1"):
        co.Distance(F=lambda u: 2 + u, dF=np.ones_like)
    with pytest.raises(co.InvalidProblemError, match="needs `dF`"):
        co.Distance(F=np.exp, dF=None)
    with pytest.raises(co.InvalidProblemError, match="vectorised"):
        co.Distance(F=lambda u: float(u), dF=np.exp)
    p = problem()
    with pytest.raises(co.InvalidProblemError, match="needs `distance=`"):
        co.calibrate(p, method="distance")
    no_cvx = co.Distance(F=np.exp, dF=np.exp, name="exp")
    with pytest.raises(co.SolverError, match="no cvxpy expression"):
        co.calibrate(p, method=no_cvx, solver="CLARABEL")


def test_needs_bounds_is_a_property_of_the_distance():
    p = problem().with_options(bounds=None)
    strict = co.Distance(F=lambda u: 1 + u, dF=np.ones_like, needs_bounds=True, name="strict")
    with pytest.raises(co.InvalidProblemError, match="'strict' needs finite bounds"):
        co.calibrate(p, method=strict)
    with pytest.raises(co.InvalidProblemError, match="'truncated' needs finite bounds"):
        co.calibrate(p, method="truncated")
