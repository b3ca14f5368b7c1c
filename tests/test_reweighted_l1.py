"""reweighted-l1: feasible sparse supports, exact re-fit, the LP relaxation, solvers, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from test_l0_mip import random_problem

import calibopt as co
from calibopt.fit import check_weights
from calibopt.solvers.domain import sparse_domain
from calibopt.solvers.reweighted_l1 import reweighted_l1


def test_support_is_feasible_sparse_and_refitted():
    p = random_problem(60, 6, 1, tol=0.01, ratio=(0, 20))
    r = co.calibrate(p, method="reweighted-l1")
    assert r.status == "within_tolerance"
    assert check_weights(p, r.weights, sparse=True).ok
    assert r.nnz <= p.n_targets  # a vertex-like support: at most one record per binding row
    assert r.info["refit"] == "linear"
    # the re-fit is the chi-square-closest point on the support: the core method agrees
    S = np.flatnonzero(r.weights)
    lo, hi = p.weight_bounds()
    sub = co.CalibrationProblem(
        p.X[:, S],
        p.targets,
        initial_weights=p.initial_weights[S],
        bounds=(lo[S].clip(0), hi[S]),
        tolerance=p.tolerance,
    )
    ref = co.calibrate(sub, method="linear", solver="CLARABEL")
    np.testing.assert_allclose(r.weights[S], ref.weights, rtol=1e-5)
    sizes = r.info["support_sizes"]
    assert r.nnz <= min(sizes)


def test_first_lp_is_the_lp_relaxation_of_the_l0_model():
    """Iteration 1 minimises sum w_i / M_i: its optimum is the MIP's LP bound."""
    p = random_problem(30, 4, 2, tol=0.02, ratio=(0, 10))
    dom = sparse_domain(p)
    rl = reweighted_l1(p, dom, max_iter=1)
    lp_value = float(np.sum(np.abs(rl.weights) / dom.big_m))
    model = co.formulations.get_method("reweighted-l1").build(p)
    model.solve(solver="CLARABEL")
    assert lp_value == pytest.approx(model.value, rel=1e-6)
    # a lower bound on the exact minimum support
    assert lp_value <= co.calibrate(p, method="l0-mip").nnz


def test_exact_zeros_and_bounds():
    p = random_problem(40, 5, 3, tol=0.01, ratio=(0.5, 15))
    r = co.calibrate(p, method="reweighted-l1")
    lo, hi = p.weight_bounds()
    kept = r.weights != 0
    assert kept.sum() == r.nnz < p.n_units
    assert np.all(r.weights[kept] >= lo[kept] * (1 - 1e-9))
    assert np.all(r.weights[kept] <= hi[kept] * (1 + 1e-9))


def test_cvxpy_solver_matches_highs_support_size():
    p = random_problem(30, 4, 4, tol=0.02, ratio=(0, 10))
    r_h = co.calibrate(p, method="reweighted-l1")
    r_c = co.calibrate(p, method="reweighted-l1", solver="CLARABEL")
    assert r_c.success
    assert abs(r_c.nnz - r_h.nnz) <= 1


def test_reweighting_improves_on_plain_l1():
    improved = 0
    for seed in range(6):
        p = random_problem(80, 8, 10 + seed, tol=0.005, ratio=(0, 20))
        one = co.calibrate(p, method="reweighted-l1", max_iter=1, refit=None).nnz
        many = co.calibrate(p, method="reweighted-l1", max_iter=10, refit=None).nnz
        assert many <= one
        improved += many < one
    assert improved >= 1


def test_no_refit_keeps_lp_weights():
    p = random_problem(30, 4, 5, tol=0.02, ratio=(0, 10))
    r = co.calibrate(p, method="reweighted-l1", refit=None)
    assert r.info["refit"] is None
    assert r.success


@pytest.mark.parametrize(
    "options, match",
    [
        ({"eps": 0.0}, "eps"),
        ({"max_iter": 0}, "max_iter"),
        ({"threshold": -1.0}, "threshold"),
        ({"refit": 3}, "refit"),
    ],
)
def test_bad_options(options, match):
    p = random_problem(10, 3, 0)
    with pytest.raises(co.InvalidProblemError, match=match):
        co.calibrate(p, method="reweighted-l1", **options)


def test_infeasible_relaxation():
    p = co.CalibrationProblem(np.ones((1, 3)), [100.0], bounds=(0, 10), tolerance=0.01)
    with pytest.raises(co.InfeasibleError):
        co.calibrate(p, method="reweighted-l1")
