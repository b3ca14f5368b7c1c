"""Minimal conflicting sets (``co.diagnose``), checked by an independent LP (Clarabel via cvxpy).

Every returned set must be infeasible on its own (its targets' bands, its bounds, no other
constraint), every one-smaller subset feasible, the sets disjoint in their targets, and the
problem left after dropping their targets feasible; planted conflicts must be found by name.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from lp_reference import least_max_miss

import calibopt as co
from calibopt import InfeasibleError


def assert_irreducible(problem, c):
    """The set is infeasible; dropping any one target or bound makes it feasible."""
    assert least_max_miss(problem, c.positions, c.lower_bounds, c.upper_bounds) > 1e-6
    assert c.misfit == pytest.approx(
        least_max_miss(problem, c.positions, c.lower_bounds, c.upper_bounds), rel=1e-5
    )
    for k in range(len(c.positions)):
        rest = np.delete(c.positions, k)
        assert least_max_miss(problem, rest, c.lower_bounds, c.upper_bounds) < 1e-8
    for side in ("lower", "upper"):
        units = getattr(c, f"{side}_bounds")
        for i in units[:: max(1, units.size // 5)]:  # up to ~5 bounds per side
            kept = units[units != i]
            args = (kept, c.upper_bounds) if side == "lower" else (c.lower_bounds, kept)
            assert least_max_miss(problem, c.positions, *args) < 1e-8


def margins_problem(total_factor=1.0, a0_factor=1.0, ratio_bounds=None):
    """Two categorical variables (a: 3 levels, b: 2) and a population total."""
    rng = np.random.default_rng(7)
    n = 60
    df = pd.DataFrame({"a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n)})
    d = rng.uniform(1, 3, n)
    ma = pd.Series(d).groupby(df["a"]).sum() * 1.05
    mb = pd.Series(d).groupby(df["b"]).sum() * 1.05
    ma[0] *= a0_factor
    return co.problem_from_margins(
        df,
        {"a": ma.to_dict(), "b": mb.to_dict()},
        weights=d,
        population=float(mb.sum()) * total_factor,
        ratio_bounds=ratio_bounds,
    )


def test_feasible_problem_has_no_conflict():
    report = co.diagnose(margins_problem())
    assert report.feasible and report.complete and report.conflicts == []
    assert report.misfit <= 1e-9
    assert report.error() is None
    assert "feasible" in report.summary()


def test_planted_total_that_does_not_add_up():
    p = margins_problem(total_factor=1.1)
    report = co.diagnose(p)
    assert not report.feasible and report.complete
    assert len(report.conflicts) == 1  # both IIS contain the total: one disjoint set
    c = report.conflicts[0]
    assert c.irreducible is True and not c.needs_bounds
    assert set(c.targets) in ({"(population)", "a=0", "a=1", "a=2"}, {"(population)", "b=0", "b=1"})
    # the parts add up to 1/1.1 of the total: a 10% gap, split evenly by the min-max LP
    assert c.misfit == pytest.approx(0.1 / 2.1, rel=1e-9)
    assert c.direction[c.targets.index("(population)")] == "too high"
    assert_irreducible(p, c)


def test_planted_unreachable_target_names_its_bounds():
    p = margins_problem(a0_factor=1.5, ratio_bounds=(0.9, 1.1))
    report = co.diagnose(p)
    assert not report.feasible and report.complete
    c = report.conflicts[0]
    assert c.targets == ["a=0"] and c.direction == ["too high"]
    # every unit of category a=0 at its upper bound g = 1.1 is needed, and nothing else
    a0 = np.flatnonzero(p.X[p.target_names.index("a=0")].toarray().ravel())
    assert set(c.upper_bounds) == set(a0) and c.lower_bounds.size == 0
    # reachable: 1.1 x design total; wanted 1.5 x 1.05 x design total
    assert c.misfit == pytest.approx(1 - 1.1 / (1.5 * 1.05), rel=1e-9)
    assert_irreducible(p, c)


def test_sparse_bounds_allow_zero():
    X = np.ones((1, 4))
    p = co.CalibrationProblem(X, [2.0], bounds=(1.0, None), target_names=["n"])
    report = co.diagnose(p)
    assert not report.feasible and report.conflicts[0].targets == ["n"]
    assert report.conflicts[0].direction == ["too low"]
    assert set(report.conflicts[0].lower_bounds) == {0, 1, 2, 3}
    assert co.diagnose(p, sparse=True).feasible  # two units may be dropped (w = 0)


@pytest.fixture(scope="module")
def noisy_tiny():
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country("tiny", seed=0, noise=0.02)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    return m.to_problem()


def test_noisy_country_sets_are_irreducible_disjoint_and_complete(noisy_tiny):
    p = noisy_tiny
    report = co.diagnose(p, time_limit=60)
    assert report.complete and not report.feasible
    assert len(report.conflicts) >= 20
    seen: set[str] = set()
    for c in report.conflicts:
        assert c.irreducible is True
        assert not seen & set(c.targets)
        seen |= set(c.targets)
        assert len(set(c.groups)) >= 1 and all(
            g == p.groups[j] for g, j in zip(c.groups, c.positions)
        )
    for c in report.conflicts[:: max(1, len(report.conflicts) // 8)]:
        assert_irreducible(p, c)
    rest = np.setdiff1d(np.arange(p.n_targets), [j for c in report.conflicts for j in c.positions])
    assert least_max_miss(p, rest, all_bounds=True) < 1e-8
    # the first set certifies the whole problem's least largest miss
    assert report.misfit == pytest.approx(
        least_max_miss(p, np.arange(p.n_targets), all_bounds=True), rel=1e-5
    )
    table = report.table()
    assert len(table) == len(seen) and set(table["name"]) == seen


def test_planted_conflict_in_a_clean_country(tiny_matrix):
    p = tiny_matrix.to_problem()
    assert co.diagnose(p).feasible  # noiseless: X @ true weights hits every target
    name = "3702/household_count"
    b = p.targets.copy()
    b[p.target_names.index(name)] *= 1.05
    report = co.diagnose(p.with_options(targets=b))
    assert report.complete and len(report.conflicts) == 1
    c = report.conflicts[0]
    assert name in c.targets and c.direction[c.targets.index(name)] == "too high"
    assert all(t.endswith("/household_count") for t in c.targets)
    assert_irreducible(p.with_options(targets=b), c)


def test_error_carries_the_sets_and_partial_answers_are_flagged(noisy_tiny):
    with pytest.raises(InfeasibleError) as err:
        co.diagnose(noisy_tiny, max_sets=2, raise_error=True)
    assert len(err.value.conflicts) == 2
    assert set(err.value.targets) == {t for c in err.value.conflicts for t in c.targets}
    report = co.diagnose(noisy_tiny, max_sets=2)
    assert report.stop_reason == "max_sets" and not report.complete
    assert "there may be more" in report.summary()
    t0 = time.perf_counter()
    quick = co.diagnose(noisy_tiny, time_limit=0.05)
    assert time.perf_counter() - t0 < 5
    assert not quick.complete and quick.stop_reason == "time_limit"


def test_highs_engine_finds_verified_sets():
    p = margins_problem(total_factor=1.1)
    report = co.diagnose(p, engine="highs")
    assert report.complete and len(report.conflicts) == 1
    assert report.conflicts[0].irreducible is True
    assert_irreducible(p, report.conflicts[0])


def test_bad_options():
    p = margins_problem()
    with pytest.raises(co.InvalidProblemError, match="engine"):
        co.diagnose(p, engine="gurobi")
    with pytest.raises(co.InvalidProblemError, match="time_limit"):
        co.diagnose(p, time_limit=0)
    with pytest.raises(co.InvalidProblemError, match="problem"):
        co.diagnose(np.ones((2, 2)))
