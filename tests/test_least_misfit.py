"""``least-misfit``: its largest miss is the LP optimum, checked by an independent LP."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from lp_reference import least_max_miss

import calibopt as co
from calibopt.formulations.least_misfit import misses


def parts_and_total(total_factor=1.1):
    """A population total that is ``total_factor`` x the sum of two consistent partitions."""
    rng = np.random.default_rng(3)
    n = 80
    df = pd.DataFrame({"a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n)})
    d = rng.uniform(1, 3, n)
    ma = (pd.Series(d).groupby(df["a"]).sum() * 1.02).to_dict()
    mb = (pd.Series(d).groupby(df["b"]).sum() * 1.02).to_dict()
    S = float(sum(mb.values()))
    return co.problem_from_margins(df, {"a": ma, "b": mb}, weights=d, population=S * total_factor)


@pytest.fixture(scope="module")
def noisy_tiny():
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country("tiny", seed=1, noise=0.03)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    return m.to_problem()


def test_largest_miss_equals_the_independent_lp_optimum(noisy_tiny):
    p = noisy_tiny
    reference = least_max_miss(p, np.arange(p.n_targets), all_bounds=True)
    assert reference > 0.005  # the noise makes the levels conflict
    vertex = co.calibrate(p, method="least-misfit", distance=None)
    assert vertex.info["misfit"] == pytest.approx(reference, rel=1e-7)
    assert np.abs(misses(p, vertex.weights)).max() == pytest.approx(reference, rel=1e-7)
    assert vertex.status == co.TRADE_OFF and vertex.fit.bounds_ok
    closest = co.calibrate(p, method="least-misfit")
    largest = np.abs(misses(p, closest.weights)).max()
    assert reference * (1 - 1e-9) <= largest <= reference * (1 + 2e-7)
    assert closest.status == co.TRADE_OFF and closest.fit.bounds_ok
    assert closest.info["stage2"].startswith("linear via")
    # the closest minimiser is much nearer the design weights than the LP vertex
    d = p.initial_weights
    chi2 = [float(np.sum((r.weights - d) ** 2 / d)) for r in (vertex, closest)]
    assert chi2[1] < 0.5 * chi2[0]
    table = closest.info["misses"]
    assert len(table) == int(np.sum(np.abs(misses(p, closest.weights)) > 1e-8))
    assert table["miss"].abs().max() == pytest.approx(largest)


def test_closed_forms_on_a_total_that_does_not_add_up():
    p = parts_and_total(1.1)
    # max: T (1 - t) = S (1 + t)  ->  t = (1.1 - 1) / (1.1 + 1)
    r = co.calibrate(p, method="least-misfit", distance=None)
    assert r.info["misfit"] == pytest.approx(0.1 / 2.1, rel=1e-9)
    # sum: moving the total alone costs 1 - 1/1.1; moving the 5 parts costs 5 x 0.1
    r = co.calibrate(p, method="least-misfit", objective="sum")
    assert r.info["misfit"] == pytest.approx(1 - 1 / 1.1, rel=1e-9)
    assert list(r.info["misses"]["name"]) == ["(population)"]
    # importance 10 on the total: T (1 - t/10) = S (1 + t)  ->  t = 0.1 / (1.1/10 + 1)
    k = np.ones(p.n_targets)
    k[p.target_names.index("(population)")] = 10.0
    r = co.calibrate(p, method="least-misfit", weights=k, distance=None)
    assert r.info["misfit"] == pytest.approx(0.1 / 1.11, rel=1e-9)
    assert r.info["misfit"] == pytest.approx(
        least_max_miss(p, np.arange(p.n_targets), all_bounds=True, weights=k), rel=1e-6
    )
    # a hard total: every part must rise by 10%
    r = co.calibrate(p, method="least-misfit", hard=["(population)"])
    assert r.info["misfit"] == pytest.approx(0.1, rel=1e-9)
    assert abs(r.fit.rel_errors[p.target_names.index("(population)")]) < 1e-9


def test_feasible_problem_is_the_distance_calibration():
    p = parts_and_total(1.0)
    r = co.calibrate(p, method="least-misfit")
    ref = co.calibrate(p, method="linear")
    assert r.status == co.OPTIMAL and r.info["misfit"] <= 1e-9
    np.testing.assert_allclose(r.weights, ref.weights, rtol=1e-7)


def test_hard_targets_that_conflict_raise():
    p = parts_and_total(1.1)
    with pytest.raises(co.InfeasibleError, match="hard targets"):
        co.calibrate(p, method="least-misfit", hard=["(population)", "a=0", "a=1", "a=2"])
    with pytest.raises(co.InvalidProblemError, match="neither target names nor groups"):
        co.calibrate(p, method="least-misfit", hard=["nope"])
    with pytest.raises(co.InvalidProblemError, match="weights"):
        co.calibrate(p, method="least-misfit", weights=np.zeros(p.n_targets))


def test_sifting_gives_the_same_optimum(noisy_tiny):
    full = co.calibrate(noisy_tiny, method="least-misfit", distance=None, sift=False)
    sifted = co.calibrate(noisy_tiny, method="least-misfit", distance=None, sift=True)
    assert sifted.info["working_set"] < noisy_tiny.n_units
    assert sifted.info["misfit"] == pytest.approx(full.info["misfit"], rel=1e-9)


def test_lexicographic_passes_match_independent_lps(noisy_tiny):
    p = noisy_tiny
    r = co.calibrate(p, method="least-misfit", distance=None)
    passes, level = r.info["passes"], r.info["levels"]
    assert len(passes) >= 3 and passes[0][0] == pytest.approx(r.info["misfit"])
    assert all(a[0] >= b[0] * (1 - 1e-9) for a, b in itertools.pairwise(passes))
    rows = np.arange(p.n_targets)
    first = np.flatnonzero(level == passes[0][0])
    assert first.size == passes[0][1]
    # with the first pass's targets held at their level, the others cannot do better
    caps = {int(j): passes[0][0] for j in first}
    second = least_max_miss(p, rows, all_bounds=True, caps=caps)
    assert second == pytest.approx(passes[1][0], rel=1e-6)
    # every target misses by at most its level (the levels are what stage 2 keeps)
    assert np.all(np.abs(misses(p, r.weights)) <= level * (1 + 1e-7) + 1e-12)


def test_one_impossible_target_does_not_free_the_others():
    import scipy.sparse as sp

    X = sp.csr_matrix(np.array([[1.0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]]))
    p = co.CalibrationProblem(X, [3.0, 5.0, 2.0, 1.2], bounds=None, target_names=list("abcd"))
    one = co.calibrate(p, method="least-misfit", lexicographic=False)
    lex = co.calibrate(p, method="least-misfit")
    assert one.info["misfit"] == lex.info["misfit"] == pytest.approx(1.0)  # the empty row b
    # a = c + d, so (3, 2, 1.2) are 1/31 apart at best: the lexicographic answer says so
    assert lex.info["passes"][1][0] == pytest.approx(0.2 / 6.2, rel=1e-9)
    keep = np.abs(misses(p, lex.weights))
    assert keep[[0, 2, 3]].max() == pytest.approx(0.2 / 6.2, rel=1e-6)
