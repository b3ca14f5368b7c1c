"""Cross-area consistency: a household's area weights add up to its national weight."""

from __future__ import annotations

import numpy as np
import pytest

import calibopt as co


@pytest.fixture(scope="module")
def clean(tiny, tiny_matrix):
    """The tiny country's matrix and its true national weights (sum of true area weights)."""
    truth = tiny.true_weight_matrix()
    return tiny_matrix, truth.sum(axis=0)


def test_truth_is_consistent_and_rows_are_right(clean):
    m, W = clean
    p = m.to_problem(consistency=W)
    H = m.columns.n_households
    assert p.n_targets == m.X.shape[0] + H
    assert p.target_names[-H:][0] == f"consistency/{m.columns.household_ids[0]}"
    assert set(p.groups[-H:]) == {"consistency"}
    truth = np.asarray(m.columns.reshape(np.arange(m.columns.n_columns)))  # column numbers
    h = 7
    row = p.X[m.X.shape[0] + h]
    assert set(row.indices) == set(truth[:, h]) and np.all(row.data == 1.0)


@pytest.mark.parametrize("method", ["linear", "raking"])
def test_exact_methods_meet_consistency_to_1e_9(clean, method):
    m, W = clean
    r = co.calibrate(m.to_problem(consistency=W), method=method, epsilon=1e-13)
    assert r.status == co.OPTIMAL
    total = m.columns.reshape(r.weights).sum(axis=0)
    assert np.max(np.abs(total - W) / W) <= 1e-9
    report = m.inconsistency(r.weights, W)
    assert report["worst"] <= 1 + 1e-9 and report["dropped"] == 0
    # without the rows, the same method spreads households very differently
    free = co.calibrate(m.to_problem(), method=method)
    assert free.status == co.OPTIMAL
    assert m.inconsistency(free.weights, W)["worst"] > 1.5


def test_band_and_design_weights(clean):
    m, W = clean
    p = m.to_problem(consistency=W, consistency_tolerance=0.05)
    r = co.calibrate(p, method="linear", solver="CLARABEL")
    assert r.success
    f = m.inconsistency(r.weights, W)["factor"]
    assert np.all(np.abs(f - 1) <= 0.05 * (1 + 1e-9))
    assert np.any(np.abs(f - 1) > 0.01)  # the band is used, not collapsed to equality
    p = m.to_problem(consistency=True)  # national weight = design weight
    np.testing.assert_array_equal(p.targets[-W.size :], m.columns.household_weight)


def test_hard_concrete_treats_it_as_a_penalty(clean):
    pytest.importorskip("torch")
    m, W = clean
    opts = dict(lambda_l0=1e-7, epochs=300, polish=None, seed=0, threads=1, progress=False)
    with_rows = co.calibrate(m.to_problem(consistency=W), method="hard-concrete", **opts)
    without = co.calibrate(m.to_problem(), method="hard-concrete", **opts)
    err_with = m.inconsistency(with_rows.weights, W)["max_abs_rel_error"]
    err_without = m.inconsistency(without.weights, W)["max_abs_rel_error"]
    assert err_with < 0.5 * err_without


def test_bad_national_weights(clean):
    m, W = clean
    with pytest.raises(co.InvalidProblemError, match="one per household"):
        m.to_problem(consistency=W[:-1])
    with pytest.raises(co.InvalidProblemError, match=">= 0"):
        m.to_problem(consistency=-W)
