"""The project's target loss (calibopt.loss): values, gradient, optimum, groups, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.solvers.loss import TargetLoss, group_coefficients, loss_weights, target_loss


@pytest.fixture
def small():
    rng = np.random.default_rng(3)
    X = sp.random(6, 15, density=0.5, random_state=4, format="csr") * 10
    b = np.array([10.0, -4.0, 0.0, 250.0, 3.0, 1e4])
    groups = ["a", "a", "b", "c", "c", "c"]
    w = rng.uniform(0, 3, 15)
    return X, b, groups, w


def test_value_is_the_documented_formula(small):
    X, b, groups, w = small
    r = (X @ w - b) / (np.abs(b) + 1.0)
    c = np.array([1 / 2, 1 / 2, 1, 1 / 3, 1 / 3, 1 / 3])
    value, _ = target_loss(X, w, targets=b, groups=groups)
    assert value == pytest.approx(float(np.sum(c * r**2)), rel=1e-14)
    value_flat, _ = target_loss(X, w, targets=b, groups=groups, group_normalise=False)
    assert value_flat == pytest.approx(float(np.sum(r**2)), rel=1e-14)
    value_eps, _ = target_loss(X, w, targets=b, eps=0.5)
    assert value_eps == pytest.approx(float(np.sum(((X @ w - b) / (np.abs(b) + 0.5)) ** 2)))


def test_gradient_matches_central_differences(small):
    X, b, groups, w = small
    _, grad = target_loss(X, w, targets=b, groups=groups)
    h = 1e-2  # the loss is quadratic: central differences are exact up to rounding
    num = np.array(
        [
            (
                target_loss(X, w + h * e, targets=b, groups=groups)[0]
                - target_loss(X, w - h * e, targets=b, groups=groups)[0]
            )
            / (2 * h)
            for e in np.eye(w.size)
        ]
    )
    np.testing.assert_allclose(grad, num, rtol=1e-7, atol=1e-12)


def test_problem_form_equals_matrix_form(small):
    X, b, groups, w = small
    p = co.CalibrationProblem(X, b, groups=groups)
    v1, g1 = target_loss(p, w)
    v2, g2 = target_loss(X, w, targets=b, groups=groups)
    assert v1 == v2
    np.testing.assert_array_equal(g1, g2)
    # default problem groups are singletons: normalisation changes nothing
    p1 = co.CalibrationProblem(X, b)
    assert target_loss(p1, w)[0] == pytest.approx(target_loss(p1, w, group_normalise=False)[0])


def test_optimum_has_no_offset_bias():
    """The minimiser hits every target exactly (no 'one unit below the target' bias)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 5, (4, 12))
    b = X @ rng.uniform(1, 2, 12)
    loss = TargetLoss(X, b)
    # unconstrained minimiser: least-norm solution of the weighted least squares
    W = np.sqrt(loss.omega)[:, None]
    w_star = np.linalg.lstsq(W * X, W[:, 0] * b, rcond=None)[0]
    value, grad = loss(w_star)
    assert value < 1e-25
    np.testing.assert_allclose(X @ w_star, b, rtol=1e-12)
    assert np.max(np.abs(grad)) < 1e-12
    # a loss of the form ((Xw - b) + 1) / (b + 1) would be zero one unit below: ours is not
    assert loss.value(w_star) < loss.value(w_star * (1 - 1 / b.max()))


def test_group_coefficients_make_groups_count_equally():
    c = group_coefficients(["x", "x", "x", "y", np.nan, np.nan], 6)
    np.testing.assert_allclose(c, [1 / 3, 1 / 3, 1 / 3, 1, 1 / 2, 1 / 2])
    omega = loss_weights(np.array([1.0, -3.0, 0.0]), ["g", "g", "h"], eps=1.0)
    np.testing.assert_allclose(omega, [0.5 / 4, 0.5 / 16, 1.0])


def test_bands_are_a_dead_zone(small):
    X, b, _, w = small
    est = X @ w
    lo, hi = np.minimum(est, b) - 1, np.maximum(est, b) + 1
    loss = TargetLoss(X, b, bands=(lo, hi))
    assert loss(w)[0] == 0.0
    np.testing.assert_array_equal(loss(w)[1], 0.0)
    loss2 = TargetLoss(X, b, bands=(b, b))
    assert loss2.value(w) == pytest.approx(TargetLoss(X, b).value(w))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eps": -1.0}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"eps": 0.0}, "target 2 is 0"),
        ({"groups": ["a", "b"]}, "groups"),
    ],
)
def test_bad_input(small, kwargs, match):
    X, b, _, w = small
    with pytest.raises(co.InvalidProblemError, match=match):
        target_loss(X, w, targets=b, **kwargs)


def test_bad_shapes(small):
    X, b, _, w = small
    with pytest.raises(co.InvalidProblemError, match="targets"):
        target_loss(X, w)
    with pytest.raises(co.InvalidProblemError, match="length"):
        target_loss(X, w[:-1], targets=b)
    with pytest.raises(co.InvalidProblemError, match="rows"):
        TargetLoss(X, b[:-1])
    p = co.CalibrationProblem(X, b)
    with pytest.raises(co.InvalidProblemError, match="not both"):
        target_loss(p, w, targets=b)
