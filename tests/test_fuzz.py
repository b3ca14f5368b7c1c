"""Fuzz: malformed and awkward problems across every method.

Each call must end in a typed ``CalibrationError`` or in a result whose status agrees with its
own weights (``calibopt.fit.check_weights``): never an untyped exception, never a success that
misses a band or a bound.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

import calibopt as co
from calibopt.fit import check_weights
from calibopt.formulations import get_method

METHODS = co.methods()
QUICK = {  # options that keep every call short
    "l0-mip": {"time_limit": 2},
    "hard-concrete": {"epochs": 30, "eval_every": 10},
    "cross-category": {"sparsity": 0.3},
    "distance": {"distance": co.Distance(F=np.exp, dF=np.exp, name="exp")},
    "gradient": {"max_iter": 200},
}

_magnitudes = hs.sampled_from([1.0, 1.0, 1.0, 1e-170, 1e-28, 3e-6, 1e12, 1e162])
_special = hs.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, "x", None])


@hs.composite
def problems(draw):
    m = draw(hs.integers(1, 4))
    n = draw(hs.integers(1, 8))
    scale = draw(_magnitudes)
    X = draw(
        hs.lists(
            hs.sampled_from([0.0, 0.0, 1.0, 1.0, 2.0, 0.5, -1.0, 3.0]),
            min_size=m * n,
            max_size=m * n,
        )
    )
    X = np.asarray(X).reshape(m, n) * scale
    d = np.asarray(
        draw(hs.lists(hs.sampled_from([1.0, 2.0, 0.5, 0.0, 10.0]), min_size=n, max_size=n))
    )
    kind = draw(hs.sampled_from(["feasible", "feasible", "random", "zero", "negative"]))
    if kind == "feasible":
        b = X @ (d * np.asarray(draw(hs.lists(hs.floats(0.5, 2.0), min_size=n, max_size=n))))
    elif kind == "random":
        b = np.asarray(draw(hs.lists(hs.floats(-5, 50), min_size=m, max_size=m))) * scale
    elif kind == "zero":
        b = np.zeros(m)
    else:
        b = -np.abs(X @ d) - 1.0
    kwargs = {"initial_weights": d}
    if draw(hs.booleans()):  # corrupt one argument
        which = draw(hs.sampled_from(["X", "b", "d", "bounds", "ratio", "tol", "names", "len"]))
        bad = draw(_special)
        if which == "X":
            X = X.astype(object)
            X[0, 0] = bad
        elif which == "b":
            b = b.astype(object)
            b[0] = bad
        elif which == "d":
            kwargs["initial_weights"] = d.astype(object)
            kwargs["initial_weights"][0] = bad
        elif which == "bounds":
            kwargs["bounds"] = draw(hs.sampled_from([(bad, None), (0, bad), bad, ("0", "x")]))
        elif which == "ratio":
            kwargs["ratio_bounds"] = draw(hs.sampled_from([(2, 0.5), (bad, 2), (1, 1)]))
        elif which == "tol":
            kwargs["tolerance"] = draw(hs.sampled_from(["1%", -0.1, bad, [0.01] * (m + 1)]))
        elif which == "names":
            kwargs["target_names"] = draw(hs.sampled_from([7, ["a"] * m, list("abcdefgh")]))
        else:
            b = np.r_[b, 1.0]
    else:
        kwargs["bounds"] = draw(
            hs.sampled_from([(0, None), None, (0, 5.0), (0.5, None), (0, [0.0] + [9.0] * (n - 1))])
        )
        kwargs["ratio_bounds"] = draw(hs.sampled_from([None, None, (0.5, 2.0), (0.0, 5.0)]))
        kwargs["tolerance"] = draw(hs.sampled_from([0.0, 0.0, 0.01, 0.2]))
    return X, b, kwargs


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(data=problems(), method=hs.sampled_from(METHODS))
def test_typed_error_or_an_honest_status(data, method):
    X, b, kwargs = data
    if method == "hard-concrete":
        pytest.importorskip("torch")
    options = dict(QUICK.get(method, {}))
    if method == "distance" and "bounds" in kwargs and kwargs["bounds"] is None:
        kwargs = dict(kwargs, bounds=(0, None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bounds = kwargs.get("bounds")
            if isinstance(bounds, tuple) and np.ndim(bounds[1]) == 1:
                hi = np.resize(np.asarray(kwargs["bounds"][1], dtype=float), X.shape[1])
                kwargs = dict(kwargs, bounds=(kwargs["bounds"][0], hi))
            p = co.CalibrationProblem(X, b, **kwargs)
            r = co.calibrate(p, method=method, **options)
        except co.CalibrationError:
            return
    fit = check_weights(
        p, r.weights, sparse=get_method(r.method if r.method in METHODS else "distance").sparse
    )
    assert r.status in co.status.RESULT_STATUSES
    assert r.success == fit.ok, (r.status, fit.describe(), r.message)
    assert r.weights.shape == (p.n_units,)
