"""Scale invariance: multiplying X and b (or b, the design weights and the bounds) by 1e-12 or
1e12 changes no status and no g (to 1e-9) for any exact method."""

from __future__ import annotations

import numpy as np
import pytest

import calibopt as co
from calibopt.formulations import get_method

EXACT = [m for m in co.methods() if get_method(m).guarantee == "exact" and m != "distance"]


def base(tolerance: float) -> co.CalibrationProblem:
    rng = np.random.default_rng(11)
    n = 80
    X = np.vstack(
        [
            np.ones(n),
            (rng.uniform(size=n) < 0.5).astype(float),
            (rng.uniform(size=n) < 0.3).astype(float),
            rng.lognormal(3, 1, n),
        ]
    )
    d = rng.uniform(5, 15, n)
    b = X @ (d * rng.uniform(0.85, 1.2, n))
    return co.CalibrationProblem(
        X,
        b,
        initial_weights=d,
        bounds=(0, 40 * d),
        ratio_bounds=(0.3, 3.0),
        tolerance=tolerance,
    )


def scaled(p: co.CalibrationProblem, c: float, weights: bool) -> co.CalibrationProblem:
    if weights:  # b, d and the absolute bounds: the weights scale by c, g does not
        return co.CalibrationProblem(
            p.X,
            p.targets * c,
            initial_weights=p.initial_weights * c,
            bounds=(p.lower * c, p.upper * c),
            ratio_bounds=(p.ratio_lower, p.ratio_upper),
            tolerance=p.tolerance,
        )
    return co.CalibrationProblem(  # X and b: the weights do not change
        p.X * c,
        p.targets * c,
        initial_weights=p.initial_weights,
        bounds=(p.lower, p.upper),
        ratio_bounds=(p.ratio_lower, p.ratio_upper),
        tolerance=p.tolerance,
    )


@pytest.mark.parametrize("tolerance", [0.0, 0.002])
@pytest.mark.parametrize("method", EXACT)
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("c", [1e-12, 1e12])
def test_status_and_g_do_not_depend_on_scale(method, tolerance, weights, c):
    p = base(tolerance)
    ref = co.calibrate(p, method=method)
    assert ref.success
    r = co.calibrate(scaled(p, c, weights), method=method)
    assert r.status == ref.status
    np.testing.assert_allclose(r.g, ref.g, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.fit.rel_errors, ref.fit.rel_errors, atol=1e-9)


def test_the_fit_check_is_scale_invariant():
    p = base(0.0)
    w = p.initial_weights * 1.01
    ref = co.check_weights(p, w)
    for c in (1e-12, 1e12):
        for weights in (False, True):
            q = scaled(p, c, weights)
            fit = co.check_weights(q, w * (c if weights else 1.0))
            np.testing.assert_allclose(fit.rel_errors, ref.rel_errors, rtol=1e-12)
            np.testing.assert_array_equal(fit.target_met, ref.target_met)
            assert fit.bounds_ok == ref.bounds_ok
