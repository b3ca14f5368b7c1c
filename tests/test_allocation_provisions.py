"""Exact normalisation with hold-harmless floors and state minimums.

References: the issue's toy cases, the closed form max(f, t a), a linear program solved by
HiGHS through cvxpy, and the recursive procedure where it converges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibopt import CalibrationError, InfeasibleError, InvalidProblemError
from calibopt.allocation import (
    apply_floors,
    apply_floors_recursive,
    ratable_reduction,
    solve_provisions,
    to_cents,
)

cp = pytest.importorskip("cvxpy")


# ------------------------------------------------------------------- the cases
def test_toy_cases() -> None:
    a = [100, 200, 700]
    np.testing.assert_array_equal(apply_floors(a, 500), [50, 100, 350])
    np.testing.assert_array_equal(apply_floors(a, 500, [90, 150, 0]), [90, 150, 260])
    np.testing.assert_array_equal(apply_floors(a, 500, [55, 99, 0]), [55, 99, 346])
    with pytest.raises(InfeasibleError, match=r"short by 50\.00") as err:
        apply_floors(a, 500, [300, 250, 0])
    assert isinstance(err.value, CalibrationError)
    assert err.value.certificate == {"required": 550.0, "appropriation": 500.0}


def test_raising_the_appropriation_never_lowers_an_lea() -> None:
    rng = np.random.default_rng(5)
    for _ in range(30):
        n = int(rng.integers(2, 60))
        a = rng.gamma(0.7, 1e5, size=n)
        f = np.where(rng.random(n) < 0.5, a * rng.uniform(0, 0.3, size=n), 0.0)
        A = np.sort(f.sum() + rng.uniform(0, a.sum(), size=6))
        exact = np.array([apply_floors(a, x, f, cents=False) for x in A])
        assert np.all(np.diff(exact, axis=0) >= -1e-9 * A[-1])
        cents = np.array([apply_floors(a, round(x, 2), f) for x in A])
        assert np.all(np.diff(cents, axis=0) >= -0.01 - 1e-9)  # rounding: at most one cent


def test_toy_monotone_in_appropriation() -> None:
    a, f = [100, 200, 700], [90, 150, 0]
    prev = np.zeros(3)
    for A in (240, 300, 500, 1000, 5000):
        x = apply_floors(a, A, f, cents=False)
        assert np.all(x >= prev) and np.isclose(x.sum(), A)
        prev = x


# ------------------------------------------------------------------- closed form / cents
def _random_case(rng, n, states=False):
    a = rng.gamma(0.6, 2e5, size=n) * (rng.random(n) < 0.9)
    prior = rng.gamma(0.6, 2e5, size=n)
    f = np.where(rng.random(n) < 0.6, prior * rng.choice([0.85, 0.9, 0.95], size=n), 0.0)
    f = np.round(f, 3)
    A = float(f.sum() + rng.uniform(0.05, 1.0) * a.sum())
    if not states:
        return a, f, A, None, None
    s = rng.integers(0, max(2, n // 8), size=n)
    F = np.bincount(s, f)
    auth = np.bincount(s, a) > 0
    mins = {
        int(k): float(F[k] + rng.uniform(0.0, 0.15) * A)
        if (auth[k] and rng.random() < 0.5)
        else 0.0
        for k in np.unique(s)
    }
    A = float(sum(max(mins[k], F[k]) for k in mins) + rng.uniform(0.05, 1.0) * a.sum())
    return a, f, A, s, mins


@pytest.mark.parametrize("seed", range(8))
def test_closed_form_floors_and_cents(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, f, A, _, _ = _random_case(rng, int(rng.integers(5, 400)))
    A = A + 0.0049  # sub-cent appropriation: rounded to the nearest cent
    res = solve_provisions(a, A, f)
    x = res.exact
    f_up = to_cents(f, "up") / 100  # floors are owed in whole cents, rounded up
    # closed form: x = max(f, t a) with sum x = A
    np.testing.assert_allclose(x, np.maximum(f_up, res.level * a), rtol=0, atol=1e-9)
    assert abs(x.sum() - round(A, 2)) <= 1e-9 * A
    cents = to_cents(res.allocations)
    assert cents.sum() == round(A * 100)  # the total to the cent
    assert np.all(cents >= to_cents(f, "up"))  # every floor met
    assert np.all(np.abs(cents - x * 100) < 1.0 + 1e-6)  # within a cent of the exact value


@pytest.mark.parametrize("seed", range(8))
def test_state_minimums_exact(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    a, f, A, s, mins = _random_case(rng, int(rng.integers(20, 300)), states=True)
    res = solve_provisions(a, A, f, states=s, state_minimums=mins)
    cents = to_cents(res.allocations)
    assert cents.sum() == round(A * 100)
    assert np.all(cents >= to_cents(f, "up"))
    m_c = to_cents([mins[k] for k in res.states], "up")
    tot = np.bincount(np.searchsorted(res.states, s), cents)
    assert np.all(tot >= m_c)
    # states at the minimum get exactly it
    assert np.array_equal(tot[res.state_at_minimum], m_c[res.state_at_minimum])
    # characterisation: each LEA at max(f, level a) with its state's level
    level = np.maximum(res.level, res.state_levels[np.searchsorted(res.states, s)])
    f_up = to_cents(f, "up") / 100
    np.testing.assert_allclose(res.exact, np.maximum(f_up, level * a), atol=1e-9 * A)


# ------------------------------------------------------------------- LP cross-check
def _lp(a, f, A, s=None, mins=None):
    """Max t s.t. x >= f, x >= t_s a, t_s >= t, state sums >= m, sum x = A (HiGHS), then
    max sum t_s with t fixed: the unique allocation of the water-filling solution."""
    n = a.size
    x, t = cp.Variable(n), cp.Variable()
    if s is None:
        cons = [x >= f, x >= t * a, cp.sum(x) == A]
        cp.Problem(cp.Maximize(t), cons).solve(solver="HIGHS")
        return x.value
    codes, uniq = pd.factorize(s, sort=True)
    k = len(uniq)
    ts = cp.Variable(k)
    S = np.zeros((k, n))
    S[codes, np.arange(n)] = 1.0
    m = np.array([mins[u] for u in uniq])
    base = [x >= f, x >= cp.multiply(a, ts[codes]), ts >= t, S @ x >= m, cp.sum(x) == A]
    cp.Problem(cp.Maximize(t), base).solve(solver="HIGHS")
    t1 = t.value
    cp.Problem(cp.Maximize(cp.sum(ts)), [*base, t >= t1 - 1e-9 * abs(t1)]).solve(solver="HIGHS")
    return x.value


@pytest.mark.parametrize("seed", range(6))
def test_matches_linear_program(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    a, f, A, _, _ = _random_case(rng, int(rng.integers(10, 80)))
    x = apply_floors(a, A, f, cents=False)
    np.testing.assert_allclose(x, _lp(a, f, A), rtol=0, atol=1e-6 * A)


@pytest.mark.parametrize("seed", range(6))
def test_state_minimums_match_linear_program(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    a, f, A, s, mins = _random_case(rng, int(rng.integers(20, 80)), states=True)
    x = apply_floors(a, A, f, states=s, state_minimums=mins, cents=False)
    np.testing.assert_allclose(x, _lp(a, f, A, s, mins), rtol=0, atol=2e-6 * A)


# ------------------------------------------------------------------- recursive reference
def _cascade(k: int):
    """k LEAs that the recursion pins one per round, plus a pool LEA (see module doc)."""
    h = 1.0 / (4 * k)
    a = [1.0]  # the pool
    for _ in range(k):
        a.insert(0, 2 * sum(a))
    a = np.array(a)
    floors = np.r_[[(1 - 2 * (j - 1) * h + h) * a[j - 1] for j in range(1, k + 1)], 0.0]
    return a, floors, float(a.sum())


def test_recursion_stops_unconverged_where_exact_does_not() -> None:
    a, f, A = _cascade(15)
    rec = apply_floors_recursive(a, A, f, max_rounds=10)
    assert not rec.converged and rec.rounds == 10
    # the 10th round finds LEA 10 below its floor and stops there (the cascade would reach
    # 5 more LEAs): the result sums to A but misses a floor by 8.10
    assert rec.below_floor == 1 and np.isclose(rec.max_shortfall, 8.1)
    assert np.isclose(rec.allocations.sum(), A)
    exact = apply_floors(a, A, f, cents=False)
    assert np.all(exact >= f - 1e-9) and np.isclose(exact.sum(), A)
    # with enough rounds the recursion reaches the exact answer
    full = apply_floors_recursive(a, A, f, max_rounds=100)
    assert full.converged and full.rounds == 16
    np.testing.assert_allclose(full.allocations, exact, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_recursion_agrees_where_it_converges(seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    a, f, A, _, _ = _random_case(rng, int(rng.integers(5, 200)))
    rec = apply_floors_recursive(a, A, f)
    if rec.converged:
        np.testing.assert_allclose(
            rec.allocations, apply_floors(a, A, f, cents=False), rtol=1e-10, atol=1e-6
        )


def test_recursion_with_state_minimums_is_feasible_but_not_proportional() -> None:
    """With state minimums the recursion pins an LEA at its floor for good, even after its
    state is raised to the minimum and the state's level would lift it above the floor; its
    fixed point meets every constraint but is not the proportional (LP-verified) solution."""
    differ = 0
    for seed in range(12):
        rng = np.random.default_rng(500 + seed)
        a, f, A, s, mins = _random_case(rng, int(rng.integers(20, 120)), states=True)
        rec = apply_floors_recursive(a, A, f, states=s, state_minimums=mins, max_rounds=50)
        assert rec.converged and rec.below_floor == 0 and rec.states_below_minimum == 0
        assert np.isclose(rec.allocations.sum(), A)
        exact = apply_floors(a, A, f, states=s, state_minimums=mins, cents=False)
        differ += not np.allclose(rec.allocations, exact, rtol=1e-9, atol=1e-6)
    assert differ >= 3


# ------------------------------------------------------------------- types and order
def test_series_in_series_out_and_row_order_invariance() -> None:
    rng = np.random.default_rng(9)
    idx = pd.Index([f"lea{k:03d}" for k in range(50)])
    a = pd.Series(rng.gamma(0.8, 1e4, size=50), index=idx, name="auth")
    f = pd.Series(np.where(rng.random(50) < 0.5, rng.gamma(0.8, 5e3, size=50), 0.0), index=idx)
    A = float(f.sum() + 0.4 * a.sum()) + 0.37
    out = apply_floors(a, A, f)
    assert isinstance(out, pd.Series) and out.index.equals(idx) and out.name == "auth"
    perm = rng.permutation(50)
    out2 = apply_floors(a.iloc[perm], A, f.iloc[perm])
    pd.testing.assert_series_equal(out2.reindex(idx), out)
    # floors given as a Series in another order are aligned by label
    out3 = apply_floors(a, A, f.iloc[perm])
    pd.testing.assert_series_equal(out3, out)
    assert isinstance(apply_floors(list(a), A), np.ndarray)


def test_ties_go_to_the_earlier_label() -> None:
    # 3 equal LEAs share 1.00: 33.33 each plus one cent to the earliest label
    s = pd.Series([1.0, 1.0, 1.0], index=["c", "a", "b"])
    out = apply_floors(s, 1.0)
    assert out.to_dict() == {"c": 0.33, "a": 0.34, "b": 0.33}
    np.testing.assert_array_equal(apply_floors([1, 1, 1], 1.0), [0.34, 0.33, 0.33])


def test_floors_round_up_to_the_cent() -> None:
    out = apply_floors([0, 1], 10.0, [0.85 * 1000.10 / 100, 0])  # 8.5008.5 -> 8.51
    assert out[0] == 8.51 and np.isclose(out.sum(), 10.0)
    # 0.85 x 100.10 = 85.085 exactly in decimal, noisy in binary: rounded up once, to 85.09
    assert to_cents([0.85 * 100.10], "up")[0] == 8509


def test_ratable_reduction() -> None:
    assert ratable_reduction([90, 150, 0], 500) == 1.0
    r = ratable_reduction([300, 250, 0], 500)
    assert np.isclose(r, 500 / 550)
    # with a state minimum: sum_s max(m_s, r F_s) = A
    r = ratable_reduction([300, 250, 100], 500, states=["x", "x", "y"], state_minimums={"y": 120})
    assert np.isclose(max(120, r * 100) + r * 550, 500)
    with pytest.raises(InfeasibleError):
        ratable_reduction([1, 1], 10, states=["x", "y"], state_minimums={"x": 6, "y": 6})


def test_bad_input() -> None:
    with pytest.raises(InvalidProblemError, match="non-negative"):
        apply_floors([1, -2], 10)
    with pytest.raises(InvalidProblemError, match="appropriation"):
        apply_floors([1, 2], float("nan"))
    with pytest.raises(InvalidProblemError, match="3 entries"):
        apply_floors([1, 2], 10, [1, 2, 3])
    with pytest.raises(InvalidProblemError, match="needs `states`"):
        apply_floors([1, 2], 10, state_minimums={"x": 1})
    with pytest.raises(InvalidProblemError, match="no authorization"):
        apply_floors([1, 0], 10, states=["x", "y"], state_minimums={"y": 3})
    with pytest.raises(InvalidProblemError, match="every authorization is 0"):
        apply_floors([0, 0], 10, [1, 1])
    with pytest.raises(InvalidProblemError, match="no entry"):
        apply_floors(pd.Series([1, 2], index=["a", "b"]), 10, pd.Series([1], index=["a"]))
    with pytest.raises(InvalidProblemError, match="no LEA"):
        apply_floors([1, 2], 10, states=["x", "x"], state_minimums={"z": 1})
    # exactly enough for the floors: everyone at the floor, total exact
    np.testing.assert_array_equal(apply_floors([5, 5], 10, [4, 6]), [4, 6])


def test_large_case_is_fast() -> None:
    import time

    rng = np.random.default_rng(1)
    n = 200_000
    a, f, A, s, mins = _random_case(rng, n, states=True)
    t0 = time.perf_counter()
    res = solve_provisions(a, A, f, states=s, state_minimums=mins)
    assert time.perf_counter() - t0 < 3.0
    assert to_cents(res.allocations).sum() == round(A * 100)
