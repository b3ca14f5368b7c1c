"""gradient: the loss optimum (no offset bias), closed forms, bounds, L1 zeros, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.formulations.gradient import gradient_objective
from calibopt.solvers.loss import loss_weights, target_loss


def feasible(n=2000, m=30, seed=0, **kw):
    rng = np.random.default_rng(seed)
    X = sp.random(m, n, density=0.3, random_state=seed, data_rvs=lambda k: rng.lognormal(0, 1, k))
    d = rng.uniform(50, 150, n)
    b = X @ (d * rng.uniform(0.8, 1.2, n))
    return co.CalibrationProblem(X, b, initial_weights=d, **kw)


def test_feasible_targets_are_hit_without_offset():
    p = feasible(bounds=(0, None))
    r = co.calibrate(p, method="gradient")
    assert r.status == "optimal"
    assert r.max_rel_error < 1e-8
    # no systematic sign: a biased loss would leave every estimate on one side of its target
    err = r.diagnostics["error"].to_numpy()
    assert np.abs(err).max() / np.abs(p.targets).max() < 1e-8


def test_conflicting_targets_match_the_closed_form():
    """Unbounded: grad = 0 is a linear system; L-BFGS-B must find its solution."""
    rng = np.random.default_rng(1)
    n, m = 40, 6
    X = rng.uniform(0, 3, (m, n))
    X = np.vstack([X, X[0] * 1.0])  # target 6 duplicates target 0 ...
    b = X @ rng.uniform(1, 2, n)
    b[-1] *= 1.05  # ... with a 5% different total: the two conflict
    d = rng.uniform(1, 2, n)
    groups = ["g0", "g1", "g1", "g2", "g2", "g2", "g0"]
    l2 = 0.1
    p = co.CalibrationProblem(X, b, initial_weights=d, groups=groups)
    r = co.calibrate(p, method="gradient", l2=l2)
    omega = loss_weights(b, groups)
    D = d.sum()
    A = X.T @ (omega[:, None] * X) + np.diag(l2 / (D * d))
    w_star = np.linalg.solve(A, X.T @ (omega * b) + l2 / D)
    np.testing.assert_allclose(r.weights, w_star, rtol=1e-6)
    assert r.status == "trade_off" and not r.success  # the loss' optimum misses, by design
    # the compromise sits between the two conflicting totals
    est = X @ r.weights
    assert b[0] < est[0] < b[-1]
    assert r.info["loss"] == pytest.approx(target_loss(p, r.weights)[0])


def test_bounds_hold_and_kkt():
    # 30 targets from weights 20% off the design, but g is held within 2%: bounds must bind
    p = feasible(n=60, m=30, seed=2, ratio_bounds=(0.98, 1.02))
    r = co.calibrate(p, method="gradient")
    assert np.all(r.g >= 0.98 - 1e-12) and np.all(r.g <= 1.02 + 1e-12)
    f, s = gradient_objective(p)
    x = r.weights / s
    _, g = f(x)
    lo, hi = 0.98, 1.02
    assert np.isclose(x, lo).sum() + np.isclose(x, hi).sum() >= 10
    # KKT of a box: gradient >= 0 at the lower bound, <= 0 at the upper, ~0 inside
    inside = (x > lo + 1e-9) & (x < hi - 1e-9)
    scale = np.abs(g).max()
    assert np.all(np.abs(g[inside]) <= 1e-4 * scale)
    assert np.all(g[np.isclose(x, lo)] >= -1e-4 * scale)
    assert np.all(g[np.isclose(x, hi)] <= 1e-4 * scale)


def test_l1_gives_exact_zeros():
    p = feasible(n=1000, m=10, seed=3, bounds=(0, None))
    r0 = co.calibrate(p, method="gradient")
    r1 = co.calibrate(p, method="gradient", l1=1e-2)
    assert r0.nnz == 1000
    assert r1.nnz < 1000
    assert np.all(r1.weights >= 0)


def test_tolerance_is_a_dead_zone():
    p = feasible(n=800, m=15, seed=4, bounds=(0, None), tolerance=0.02)
    r = co.calibrate(p, method="gradient")
    assert r.diagnostics["within_tolerance"].all()
    assert r.iterations <= 5  # design weights already nearly inside the 2% bands


def test_interrupt_returns_best_so_far(monkeypatch):
    import calibopt.formulations.gradient as gmod

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gmod, "minimize", boom)
    p = feasible(n=100, m=5, seed=5)
    r = co.calibrate(p, method="gradient")
    assert r.status == "stopped"
    assert "interrupted" in r.message
    np.testing.assert_allclose(r.weights, p.initial_weights)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"l1": 0.1}, "non-negative weights"),
        ({"l2": -1.0}, "l2"),
        ({"init": np.ones(3)}, "init"),
        ({"solver": "adam"}, "L-BFGS-B only"),
        ({"max_iter": 0}, "max_iter"),
        ({"eps": -1.0}, "eps"),
    ],
)
def test_bad_input(options, match):
    p = feasible(n=50, m=5, seed=6).with_options(bounds=None)  # weights may be negative
    with pytest.raises(co.InvalidProblemError, match=match):
        co.calibrate(p, method="gradient", **options)
