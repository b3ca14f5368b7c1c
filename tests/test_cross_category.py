"""cross-category: exact sparsity, proportional cells, seeded, calibrated, and the hybrid refine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import calibopt as co
from calibopt.formulations.cross_category import apportion, cell_labels, sample_cells


@pytest.fixture(scope="module")
def survey():
    rng = np.random.default_rng(0)
    n = 6000
    df = pd.DataFrame(
        {"a": rng.integers(0, 4, n), "b": rng.integers(0, 6, n), "c": rng.integers(0, 3, n)}
    )
    df["income"] = rng.lognormal(10, 1, n)
    d = rng.uniform(0.5, 2.0, n)
    w = d * rng.uniform(0.8, 1.2, n)
    margins = {v: {k: float(w[df[v] == k].sum()) for k in sorted(df[v].unique())} for v in "abc"}
    margins["income"] = float((w * df["income"]).sum())
    return df, d, margins


def test_apportion_is_exact_proportional_and_at_least_one():
    sizes = np.array([1, 2, 50, 400, 7, 1000, 3])
    for k in (7, 20, 100, 731, 1463):
        a = apportion(sizes, k)
        assert a.sum() == k
        assert np.all(a >= 1) and np.all(a <= sizes)
    a = apportion(np.array([100, 200, 300, 400]), 10)
    np.testing.assert_array_equal(a, [1, 2, 3, 4])
    a = apportion(np.array([10, 10, 10]), 4)  # quotas 1.33 each: one cell gets the extra seat
    assert sorted(a.tolist()) == [1, 1, 2]
    # quotas q = s k / n: every count within 1 of its quota when the minimum does not bind
    sizes = np.random.default_rng(1).integers(50, 500, 40)
    a = apportion(sizes, 1000)
    assert np.all(np.abs(a - sizes * 1000 / sizes.sum()) < 1)
    with pytest.raises(co.InvalidProblemError, match="k >= 7"):
        apportion(np.array([1, 2, 50, 400, 7, 1000, 3]), 5)


def test_cells_are_the_cross_product():
    X = np.array([[1, 1, 0, 0, 1], [0, 0, 1, 1, 0], [1, 0, 1, 0, 1], [0, 1, 0, 1, 0]], dtype=float)
    cells = cell_labels(X)
    # records 0 and 4 share (row0, row2); the others are alone
    assert cells[0] == cells[4]
    assert len(set(cells.tolist())) == 4


def test_sample_cells_respects_quotas_and_seed():
    cells = np.repeat(np.arange(5), [10, 20, 30, 40, 50])
    quota = np.array([1, 2, 3, 4, 5])
    s1 = sample_cells(cells, quota, np.random.default_rng(3))
    s2 = sample_cells(cells, quota, np.random.default_rng(3))
    s3 = sample_cells(cells, quota, np.random.default_rng(4))
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    np.testing.assert_array_equal(np.bincount(cells[s1]), quota)
    # weighted sampling favours heavy records
    w = np.where(np.arange(150) % 2 == 0, 100.0, 1.0)
    hits = sum(
        (sample_cells(cells, quota, np.random.default_rng(s), w) % 2 == 0).mean() for s in range(20)
    )
    assert hits / 20 > 0.9


def test_paper_method_exact_sparsity_categorical_fit(survey):
    df, d, margins = survey
    p = co.problem_from_margins(df, margins, weights=d, tolerance=0.001)
    r = co.calibrate(p, method="cross-category", n_keep=300, seed=1)
    assert r.nnz == 300
    assert r.info["n_cells"] == 4 * 6 * 3
    assert r.info["max_rel_error_categorical"] <= 0.001
    # the paper's method does not fit continuous targets; the report says how far they are
    assert r.info["max_rel_error_continuous"] > 0.001
    assert r.status == "stopped"
    kept = r.info["kept"]
    cells = cell_labels(p.X[np.flatnonzero(p.groups != "income")])
    assert len(np.unique(cells[kept])) == r.info["n_cells"]  # every cell represented
    again = co.calibrate(p, method="cross-category", n_keep=300, seed=1)
    np.testing.assert_array_equal(again.weights, r.weights)


@pytest.mark.parametrize("refine", ["linear", "gradient"])
def test_hybrid_refine_fits_continuous_targets(survey, refine):
    df, d, margins = survey
    p = co.problem_from_margins(df, margins, weights=d, tolerance=0.001, ratio_bounds=(0, 50))
    r = co.calibrate(p, method="cross-category", sparsity=0.95, refine=refine)
    assert r.nnz == 300
    assert r.max_rel_error <= 0.001 * (1 + 1e-6)
    assert r.info["max_rel_error_continuous"] <= 0.001 * (1 + 1e-6)
    assert r.g.max() <= 50 + 1e-9


def test_linear_calibration_and_named_categorical(survey):
    df, d, margins = survey
    p = co.problem_from_margins(df, margins, weights=d)
    r = co.calibrate(
        p, method="cross-category", n_keep=200, calibration="linear", categorical=["a", "b"]
    )
    assert r.info["n_cells"] == 24
    diag = r.diagnostics
    ab = diag["group"].isin(["a", "b"])
    assert np.abs(diag.loc[ab, "rel_error"]).max() < 1e-9


@pytest.mark.parametrize(
    "options, match",
    [
        ({}, "exactly one"),
        ({"n_keep": 10, "sparsity": 0.5}, "exactly one"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"n_keep": 10}, "k >= 72"),
        ({"n_keep": 100, "sampling": "pps"}, "sampling"),
        ({"n_keep": 100, "calibration": "logit"}, "calibration"),
        ({"n_keep": 100, "refine": "ipf"}, "refine"),
        ({"n_keep": 100, "categorical": ["nope"]}, "match no target"),
    ],
)
def test_bad_options(survey, options, match):
    df, d, margins = survey
    p = co.problem_from_margins(df, margins, weights=d)
    with pytest.raises(co.InvalidProblemError, match=match):
        co.calibrate(p, method="cross-category", **options)


def test_no_categorical_targets():
    X = np.array([[2.0, 3.0, 1.5]])
    with pytest.raises(co.InvalidProblemError, match="no categorical targets"):
        co.calibrate(co.CalibrationProblem(X, [5.0]), method="cross-category", n_keep=2)
