"""The linearised variance beyond R's cases: the exact derivative, custom distances, bands.

``residuals="derivative"`` claims the scores are the derivatives of the calibrated total with
respect to the design weights; a finite difference of re-calibrations checks it.
"""

from __future__ import annotations

import numpy as np
import pytest
from variance_cases import design, problem, rel, sample

import calibopt as co
import calibopt.variance as cv

HELLINGER = co.Distance(
    F=lambda u: 1.0 / (1.0 - u / 2.0) ** 2,
    dF=lambda u: 1.0 / (1.0 - u / 2.0) ** 3,
    G=lambda g: 2.0 * (np.sqrt(g) - 1.0) ** 2,
    name="hellinger",
    domain_lower=0.0,
)
EXP = co.Distance(
    F=np.exp,
    dF=np.exp,
    G=lambda g: g * np.log(g) - g + 1.0,
    name="exp",
    domain_lower=0.0,
    open_lower=True,
)


def _scores(cal, y, residuals):
    X, q = cal.regression(residuals)
    return cv.residualise(y[:, None], X, q)[:, 0] * cal.weights


def _finite_difference(prob, method, y, units, step=1e-6):
    d = prob.initial_weights
    out = []
    for k in units:
        h = step * d[k]
        totals = []
        for sign in (1.0, -1.0):
            dk = d.copy()
            dk[k] += sign * h
            res = co.calibrate(prob.with_options(initial_weights=dk), method, epsilon=1e-14)
            totals.append(res.weights @ y)
        out.append((totals[0] - totals[1]) / (2.0 * h))
    return np.array(out)


@pytest.mark.parametrize(
    ("calibration", "method"),
    [("raking", "raking"), ("logit", "logit"), ("linear_bounded", "linear"), ("raking", HELLINGER)],
    ids=["raking", "logit", "linear-binding-bounds", "custom-hellinger"],
)
def test_derivative_residuals_are_the_derivative(calibration, method):
    des = design("strat_cluster_fpc")
    data = sample()
    prob = problem(des, data, calibration)
    cal = des.calibrate(prob, method, epsilon=1e-14)
    y = data["y"].to_numpy()
    g = cal.result.g
    bounds = prob.g_bounds()
    at_bound = np.flatnonzero((np.abs(g - bounds[0]) < 1e-9) | (np.abs(g - bounds[1]) < 1e-9))
    units = np.concatenate([np.arange(0, data.shape[0], 9), at_bound[:3]])
    if calibration == "linear_bounded":
        assert at_bound.size >= 5
    z = _scores(cal, y, "derivative")
    numeric = _finite_difference(prob, method, y, units)
    np.testing.assert_allclose(z[units] / des.weights[units], numeric, rtol=2e-5, atol=1e-6)
    if calibration != "linear_bounded":
        # R's residuals (design-weighted) are not the derivative for a non-linear distance
        r_style = _scores(cal, y, "design")
        assert rel(r_style[units] / des.weights[units], numeric) > 1e-4


def test_both_residuals_agree_for_the_linear_distance():
    des = design("twostage_fpc")
    cal = des.calibrate(problem(des, sample(), "linear"), "linear")
    a = cv.total(["y", "z"], cal)
    b = cv.total(["y", "z"], cal, residuals="derivative")
    np.testing.assert_allclose(a.se, b.se, rtol=1e-12)
    assert b.info["residuals"] == "derivative"


def test_custom_distance_equal_to_raking_gives_raking_standard_errors():
    des = design("strat_cluster_fpc")
    prob = problem(des, sample(), "raking")
    builtin = des.calibrate(prob, "raking", epsilon=1e-13)
    custom = des.calibrate(prob, EXP, epsilon=1e-13)
    np.testing.assert_allclose(custom.weights, builtin.weights, rtol=1e-10)
    for residuals in cv.RESIDUALS:
        a = cv.total(["y", "z"], builtin, residuals=residuals)
        b = cv.total(["y", "z"], custom, residuals=residuals)
        np.testing.assert_allclose(b.se, a.se, rtol=1e-8)


def test_many_variables_in_one_pass_equal_one_at_a_time():
    des = design("twostage_fpc")
    cal = des.calibrate(problem(des, sample(), "raking"), "raking")
    together = cv.mean(sample()[["y", "z", "x"]], cal, by="domain")
    for name in ("y", "z", "x"):
        alone = cv.mean(name, cal, by="domain")
        for dom in alone.domains:
            assert together[(name, dom)] == pytest.approx(alone[(name, dom)], rel=1e-12)


def test_categorical_variable_gives_one_total_per_level():
    des = design("strat_cluster_nofpc")
    est = cv.total("region", des)
    assert est.names == ["region=R1", "region=R2", "region=R3"]
    data = sample()
    manual = cv.total((data["region"] == "R2").to_numpy(float), des)
    assert est["region=R2"] == pytest.approx(manual[0], rel=1e-14)


def test_only_binding_bands_enter_the_regression():
    """With a band that does not bind, the calibration and its SEs are those without it."""
    des = design("strat_cluster_fpc")
    data = sample()
    prob = problem(des, data, "raking")
    loose = prob.with_options(tolerance=np.array([0.0, 0.0, 0.0, 0.5]))
    cal = des.calibrate(loose, "raking", epsilon=1e-13)
    assert np.abs(cal.result.fit.rel_errors[3]) < 0.4  # x's band does not bind
    three = co.CalibrationProblem(
        prob.X[:3], prob.targets[:3], initial_weights=des.weights, bounds=None
    )
    ref = des.calibrate(three, "raking", epsilon=1e-13)
    np.testing.assert_allclose(cal.weights, ref.weights, rtol=1e-8)
    np.testing.assert_allclose(
        cv.total(["y", "z"], cal).se, cv.total(["y", "z"], ref).se, rtol=1e-8
    )
