"""Impossible problems end in InfeasibleError naming the targets and why; never a hang or NaN."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt import InfeasibleError

METHODS = [
    ("linear", (0.5, 2.0)),
    ("raking", (0.5, 2.0)),
    ("logit", (0.5, 2.0)),
    ("truncated", (0.5, 2.0)),
]


def sample(n=300, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n)})
    d = rng.uniform(1, 2, n)
    return df, d


@pytest.mark.parametrize("method, bounds", METHODS)
def test_bounds_too_tight_names_target_and_range(method, bounds):
    df, d = sample()
    counts = pd.Series(d).groupby(df["a"]).sum()
    margins = {"a": {0: counts[0] * 3.0, 1: counts[1], 2: counts[2]}}  # a=0 needs g = 3 > 2
    p = co.problem_from_margins(df, margins, weights=d, ratio_bounds=bounds)
    with pytest.raises(InfeasibleError) as err:
        co.calibrate(p, method=method)
    assert err.value.targets == ["a=0"]
    lo, hi = counts[0] * 0.5, counts[0] * 2.0
    assert f"[{lo:.6g}, {hi:.6g}]" in str(err.value)


@pytest.mark.parametrize("method", ["linear", "raking"])
def test_zero_row_with_nonzero_total(method):
    X = sp.csr_matrix(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    p = co.CalibrationProblem(X, [3.0, 5.0], target_names=["n", "empty"])
    with pytest.raises(InfeasibleError, match=r"'empty'.*row of X is all zero") as err:
        co.calibrate(p, method=method)
    assert err.value.targets == ["empty"]


def test_contradictory_targets_intercept_vs_categories():
    df, d = sample()
    counts = pd.Series(d).groupby(df["a"]).sum()
    # categories add up to 1.1 x the population total: contradictory
    p = co.problem_from_margins(
        df, {"a": counts.to_dict()}, weights=d, population=float(counts.sum()) * 1.1
    )
    with pytest.raises(InfeasibleError, match=r"contradictory targets") as err:
        co.calibrate(p, method="linear")
    assert set(err.value.targets) == {"(population)", "a=0", "a=1", "a=2"}


def test_consistent_redundant_targets_are_dropped_and_met():
    df, d = sample()
    rng = np.random.default_rng(1)
    w = d * rng.uniform(0.8, 1.3, len(d))
    ma = pd.Series(w).groupby(df["a"]).sum().to_dict()
    mb = pd.Series(w).groupby(df["b"]).sum().to_dict()
    p = co.problem_from_margins(df, {"a": ma, "b": mb}, weights=d, population=float(w.sum()))
    r = co.calibrate(p, method="raking", epsilon=1e-12)
    assert r.status == "optimal"
    assert len(r.dropped_targets) == 2  # intercept + 3 a-levels + 2 b-levels: rank 4 of 6
    assert "linearly dependent" in r.message
    assert r.max_rel_error < 1e-11


@pytest.mark.parametrize("method", ["truncated", "raking"])
def test_jointly_infeasible_gets_lp_certificate(method):
    # each target alone is reachable within g in [0.9, 1.1], but not both together:
    # unit 0 is in both rows, units 1 and 2 in one each.
    X = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    d = np.ones(3)
    b = np.array([2.18, 2.18, 1.8])  # rows 0,1 need g ~ 1.09 everywhere, row 2 needs 0.9
    p = co.CalibrationProblem(
        X, b, initial_weights=d, ratio_bounds=(0.9, 1.1), target_names=["r0", "r1", "r2"]
    )
    t0 = time.perf_counter()
    with pytest.raises(
        InfeasibleError, match=r"no weights within the bounds meet all targets"
    ) as err:
        co.calibrate(p, method=method)
    assert time.perf_counter() - t0 < 30
    assert set(err.value.targets) == {"r0", "r1", "r2"}
    y = err.value.certificate
    # Farkas: y'X w stays on one side of y'b for every w in the box
    lo, hi = 0.9 * d, 1.1 * d
    yX = y @ X
    reach = np.sum(np.where(yX > 0, yX * hi, yX * lo)), np.sum(np.where(yX > 0, yX * lo, yX * hi))
    assert not (min(reach) - 1e-9 <= y @ b <= max(reach) + 1e-9)


def test_raking_cannot_reach_zero_weights():
    # the target needs every unit in row 1 at weight 0, which raking (w = d exp(u)) cannot reach
    X = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    p = co.CalibrationProblem(X, [3.0, 0.0], target_names=["n", "zero"])
    with pytest.raises(InfeasibleError, match=r"'zero'.*domain \(w > 0\)"):
        co.calibrate(p, method="raking")
    # the linear distance reaches it (with a negative weight allowed)
    r = co.calibrate(p, method="linear")
    assert r.status == "optimal" and r.weights @ X[1] == pytest.approx(0.0, abs=1e-12)


def test_infeasible_with_cvxpy_solver_also_explained():
    X = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    p = co.CalibrationProblem(
        X, [2.18, 2.18, 1.8], ratio_bounds=(0.9, 1.1), target_names=["r0", "r1", "r2"]
    )
    with pytest.raises(InfeasibleError, match="no weights within the bounds"):
        co.calibrate(p, method="truncated", solver="CLARABEL")


def test_conflicting_levels_certified_through_every_cvxpy_solver():
    """Local-area levels that do not add up (the national total 1.6% above its states'):
    Newton names the contradicted dependence, and a cvxpy solver's "infeasible" is confirmed
    by the phase-1 LP, whose HiGHS optimum (shortfall 0.919) stands in for L(y) when units
    without an upper bound have reduced costs of the wrong sign within HiGHS's tolerance.
    Before the fix the LP returned "undecided" and the cvxpy path called it a solver failure."""
    import scipy.sparse as sp

    from calibopt.solvers.phase_one import phase_one
    from calibopt.studies import make_instance

    p = make_instance("conflicting", "tiny", 0).problem
    lo, hi = p.target_bands()
    res = phase_one(sp.csc_matrix(p.X), lo, hi, np.zeros(p.n_units), np.full(p.n_units, np.inf))
    assert res.optimal and res.bound == pytest.approx(res.shortfall) and res.shortfall > 0.9
    for solver in ("newton", "CLARABEL"):
        with pytest.raises(co.InfeasibleError) as info:
            co.calibrate(p, method="linear", solver=solver)
        assert any("US/" in t for t in info.value.targets)
