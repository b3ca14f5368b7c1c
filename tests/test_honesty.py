"""Statuses that never lie: the reproducers of the house issue, each as a regression test.

Every result's status must agree with its own weights, as checked by the one shared function
(``calibopt.fit.check_weights``); soft fits say ``trade_off``; a failed re-fit never returns
weights outside the bounds; bad input is a typed ``CalibrationError``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import calibopt as co
from calibopt import status as st
from calibopt.fit import check_weights
from calibopt.formulations import get_method

ISSUE_X = np.array(
    [[3, 0, 0, 1, 0, 3, 3, 1, 2], [0, 0, 1, 0, 1, 0, 0, 3, 3], [2, 1, 2, 1, 0, 0, 3, 0, 1]], float
)
ISSUE_B = [163.776572, 78.112738, 156.413683]


def agrees(problem: co.CalibrationProblem, r: co.CalibrationResult) -> bool:
    """The status agrees with the weights checked from scratch."""
    fit = check_weights(problem, r.weights, sparse=get_method(r.method).sparse)
    return r.success == fit.ok and (r.status != st.OPTIMAL or fit.ok)


def conflicting(seed: int = 0) -> co.CalibrationProblem:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 2, (3, 30))
    d = rng.uniform(1, 2, 30)
    b = X @ d
    X = np.vstack([X, X[0]])
    b = np.r_[b, 1.2 * b[0]]  # a duplicated target 20% off: no weights meet both
    return co.CalibrationProblem(X, b, initial_weights=d)


# ------------------------------------------------------------------ soft fits are trade-offs
def test_gradient_on_infeasible_input_is_a_trade_off():
    p = conflicting()
    r = co.calibrate(p, method="gradient")
    assert r.status == st.TRADE_OFF and not r.success and agrees(p, r)
    assert "trade-off" in r.message and r.max_rel_error > 0.01


def test_penalty_mode_misses_are_a_trade_off():
    p = conflicting(1)
    r = co.calibrate(p, method="linear", penalty=10.0)
    assert r.status == st.TRADE_OFF and agrees(p, r)


def test_l0_error_plus_count_misses_are_a_trade_off():
    p = conflicting(2).with_options(bounds=(0, 50.0), tolerance=0.01)
    r = co.calibrate(p, method="l0-mip", objective="error+count", lam=1e-3, time_limit=20)
    assert agrees(p, r)
    assert r.status == (st.TRADE_OFF if r.info["proven_optimal"] else st.STOPPED)


def test_statuses_are_the_exported_constants():
    assert co.OPTIMAL == "optimal" and co.TRADE_OFF == "trade_off"
    assert set(st.RESULT_STATUSES) == {"optimal", "within_tolerance", "trade_off", "stopped"}


# ------------------------------------------------------------------ never invalid weights
def test_l0_mip_never_prefers_an_invalid_warm_start():
    p = co.CalibrationProblem(
        ISSUE_X, ISSUE_B, initial_weights=np.full(9, 10.0), bounds=(0, None), ratio_bounds=(0.5, 2)
    )
    r = co.calibrate(p, method="l0-mip", time_limit=5)
    fit = check_weights(p, r.weights, sparse=True)
    assert fit.bounds_ok  # on 4259d32: 5 non-zeros with g down to 0.128
    kept = r.g[r.weights != 0]
    assert np.all((kept >= 0.5 - 1e-9) & (kept <= 2 + 1e-9))
    assert r.success and agrees(p, r)


@pytest.mark.parametrize("seed", range(40))
def test_reweighted_l1_never_returns_weights_outside_ratio_bounds(seed):
    rng = np.random.default_rng(seed)
    n, m = 12, 3
    X = rng.integers(0, 4, (m, n)).astype(float)
    X[:, X.sum(axis=0) == 0] = 1.0
    d = np.full(n, 10.0)
    b = X @ (d * rng.uniform(0.5, 2.0, n))
    p = co.CalibrationProblem(X, b, initial_weights=d, ratio_bounds=(0.5, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = co.calibrate(p, method="reweighted-l1")
    assert check_weights(p, r.weights, sparse=True).bounds_ok
    assert agrees(p, r)


def test_truncated_with_disjoint_absolute_and_ratio_bounds_is_refused():
    hi = np.full(9, np.inf)
    hi[8] = 0.0
    p = co.CalibrationProblem(
        ISSUE_X, ISSUE_B, initial_weights=np.full(9, 10.0), bounds=(0, hi), ratio_bounds=(0.5, 2)
    )
    for method in ("truncated", "logit", "linear", "ipf", "gradient"):
        with pytest.raises(co.InvalidProblemError, match=r"unit 8.*do not intersect"):
            co.calibrate(p, method=method)
    # a sparse method may drop the unit: its weight is then exactly 0
    r = co.calibrate(p.with_options(tolerance=0.05), method="l0-mip", time_limit=5)
    assert r.weights[8] == 0 and agrees(p.with_options(tolerance=0.05), r)


def test_ipf_with_zero_design_weight_and_positive_lower_bound_is_refused():
    d = np.full(9, 10.0)
    d[0] = 0.0
    lower = np.zeros(9)
    lower[0] = 1.0
    p = co.CalibrationProblem(ISSUE_X, ISSUE_B, initial_weights=d, bounds=(lower, None))
    with pytest.raises(co.InvalidProblemError, match=r"unit\(s\) \[0\] have initial weight 0"):
        co.calibrate(p, method="ipf")


# ------------------------------------------------------------------ small and huge targets
def _survey(scale: float) -> co.CalibrationProblem:
    rng = np.random.default_rng(0)
    X = (rng.uniform(0, 1, (4, 30)) > 0.4).astype(float)
    X[0] = 1.0
    d = rng.uniform(1, 2, 30)
    b = X @ (d * rng.uniform(0.8, 1.2, 30))
    return co.CalibrationProblem(X * scale, b * scale, initial_weights=d)


@pytest.mark.parametrize("scale", [1e-28, 3e-6, 1e162])
@pytest.mark.parametrize("method", ["linear", "raking", "ipf", "gradient"])
def test_tiny_and_huge_targets_are_judged_relatively(scale, method):
    p = _survey(scale)
    r = co.calibrate(p, method=method)
    assert agrees(p, r)
    if r.success:  # on 4259d32: success with 3-97% errors at 1e-28, 6e-5 at 3e-6 (ipf)
        assert r.max_rel_error < 1e-8
    if method == "gradient" and scale > 1:  # on 4259d32: 0 iterations and 9% errors at 1e162
        assert r.iterations > 0 and r.max_rel_error < 1e-6
    # (at 1e-28 the loss' absolute eps = 1 dominates |b|: gradient reports a trade-off)


def test_zero_target_scale_is_its_gross_activity():
    p = co.CalibrationProblem([[1.0, 1.0, 0.0], [1.0, -1.0, 1.0]], [2.0, 0.0], bounds=None)
    fit = check_weights(p, np.array([1.0, 1.0 + 1e-6, 0.0]))
    assert fit.scale[1] == pytest.approx(3.0)  # |1| + |-1| + |1| at the initial weights
    assert not fit.target_met[1] and fit.rel_errors[1] == pytest.approx(-1e-6 / 3)


# ------------------------------------------------------------------ typed errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tolerance": "1%"}, r"`tolerance` must be a number.*0.01 for 1%"),
        ({"bounds": ("0", "x")}, r"`bounds\[0\] \(lower\)` must be a number"),
        ({"target_names": 7}, r"`target_names` must be a sequence"),
        ({"groups": 3.0}, r"`groups` must be a sequence"),
        ({"bounds": 5}, r"`bounds` must be a pair"),
        ({"initial_weights": ["a", "b", "c"]}, r"`initial_weights` must be numeric"),
    ],
)
def test_bad_problem_arguments_are_typed(kwargs, match):
    X = np.eye(3)
    with pytest.raises(co.InvalidProblemError, match=match):
        co.CalibrationProblem(X, [1.0, 2.0, 3.0], **kwargs)


@pytest.mark.parametrize(
    "method, options, match",
    [
        ("linear", {"max_iter": None}, r"`max_iter` must be an integer"),
        ("raking", {"max_iter": "ten"}, r"`max_iter` must be an integer"),
        ("linear", {"solver": 3}, r"`solver` must be a solver name"),
        ("ipf", {"epsilon": "small"}, r"`epsilon` must be a number"),
        ("gradient", {"l1": None}, r"`l1` must be a number"),
        ("l0-mip", {"time_limit": "1m"}, r"`time_limit` must be a number"),
        ("hard-concrete", {"epochs": 2.5}, r"`epochs` must be an integer"),
    ],
)
def test_bad_options_are_typed(method, options, match):
    p = _survey(1.0)
    with pytest.raises(co.InvalidProblemError, match=match):
        co.calibrate(p, method=method, **options)


def test_entries_near_the_underflow_limit_are_solved():
    p = _survey(1e-170)  # on 4259d32: the Gram underflowed, then np.max([]) in newton.py
    for method in ("linear", "raking"):
        r = co.calibrate(p, method=method)
        assert r.status == st.OPTIMAL and r.max_rel_error < 1e-9
        np.testing.assert_allclose(r.g, co.calibrate(_survey(1.0), method=method).g, rtol=1e-9)


def test_gradient_with_every_weight_fixed():
    p = _survey(1.0)
    fixed = co.CalibrationProblem(
        p.X, p.targets, initial_weights=p.initial_weights, ratio_bounds=(1, 1)
    )
    r = co.calibrate(fixed, method="gradient")  # on 4259d32: SciPy result without `nit`
    assert r.iterations == 0 and agrees(fixed, r)
    np.testing.assert_array_equal(r.weights, p.initial_weights)


def test_margins_with_nullable_missing_levels_and_bad_data():
    data = pd.DataFrame({"sex": pd.array(["F", "M", None, "F"], dtype="string")})
    with pytest.raises(co.InvalidProblemError, match=r"missing value"):
        co.problem_from_margins(data, {"sex": {"F": 3.0, "M": 2.0}})
    dup = pd.DataFrame([[1, 2], [3, 4]], columns=["x", "x"])
    with pytest.raises(co.InvalidProblemError, match=r"duplicated column"):
        co.problem_from_margins(dup, {"x": 10.0})
    with pytest.raises(co.InvalidProblemError, match=r"`data` must be a pandas DataFrame"):
        co.problem_from_margins({"x": [1, 2]}, {"x": 10.0})


def test_margins_drop_an_empty_level_with_zero_total_as_r_does():
    data = pd.DataFrame({"region": ["N", "S", "N", "S"], "w": [1.0, 2.0, 1.0, 2.0]})
    p = co.problem_from_margins(data, {"region": {"N": 4.0, "S": 8.0, "E": 0.0}}, weights="w")
    assert p.target_names == ["region=N", "region=S"]  # 'E': total 0 and no unit
    with pytest.raises(co.InvalidProblemError, match=r"level\(s\) \['E'\] that no unit"):
        co.problem_from_margins(data, {"region": {"N": 4.0, "S": 8.0, "E": 1.0}}, weights="w")
    r = co.calibrate(p, method="raking")
    s = r.weights_series()
    assert list(s.index) == list(data.index) and s.name == "weight"


# ------------------------------------------------------------------ reproducible stops
def test_l0_mip_node_limit_is_deterministic():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 3, (8, 60)).astype(float)
    d = np.full(60, 5.0)
    b = X @ (d * rng.uniform(0.5, 1.5, 60))
    p = co.CalibrationProblem(X, b, initial_weights=d, bounds=(0, 50.0), tolerance=0.02)
    runs = [
        co.calibrate(p, method="l0-mip", node_limit=20, time_limit=None, threads=1, seed=7)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].weights, runs[1].weights)


def test_one_block_l0_run_reports_its_block():
    p = co.CalibrationProblem(
        ISSUE_X, ISSUE_B, initial_weights=np.full(9, 10.0), ratio_bounds=(0.5, 2)
    )
    r = co.calibrate(p, method="l0-mip", time_limit=5)
    table = r.info["blocks"]
    assert list(table["block"]) == ["(all)"] and table["nnz"].iloc[0] == r.nnz
    assert bool(table["proven_optimal"].iloc[0]) == r.info["proven_optimal"]
