"""Uncertainty under sparsity: the bootstrap re-runs selection + calibration in every replicate.

Checked: each replicate's weights are exactly what the method gives on that replicate's design
weights (recomputed independently), replicates drop the same units for every method (common
random numbers), the SE is R's replicate rule applied to those weights, and the local-area
design treats a household as one PSU across its district columns.
"""

from __future__ import annotations

import numpy as np
import pytest

import calibopt as co
import calibopt.variance as cv
from calibopt.datasets.survey import survey_sample
from calibopt.variance.recalibrate import replicate_problem

REPLICATES = 4


@pytest.fixture(scope="module")
def survey():
    s = survey_sample(n_population=50_000, sample_size=300, seed=3)
    problem = co.problem_from_margins(s.sample, s.margins, weights="pw")
    design = cv.Design(s.sample, weights="pw", strata="region")
    return design, problem, s.sample


METHODS = {
    "reweighted-l1": {},
    # a node limit (not a time limit) keeps the runs deterministic and the test short
    "l0-mip": {"time_limit": None, "node_limit": 20, "threads": 1, "seed": 0},
    "cross-category": {"n_keep": 80},
}


@pytest.fixture(scope="module")
def study(survey):
    design, problem, _ = survey
    return cv.sparsity_uncertainty(
        design, problem, ["income", "employed"], METHODS, replicates=REPLICATES, seed=5
    )


def _check_method(study, survey, label, method, options, replicates=REPLICATES):
    design, problem, data = survey
    reps = study.replicates[label]
    base = cv.replicate_weights(design, "bootstrap", replicates=replicates, seed=5)
    factors = base.factors[base.index]
    W = reps.replicate_weights
    # dropped units (multiplier 0) have weight 0 in every replicate, as in every method
    assert np.all(W[factors == 0] == 0)
    # one replicate recomputed independently: the same weights
    r = 1
    sub, keep = replicate_problem(problem, design.weights * factors[:, r])
    direct = co.calibrate(sub, method, **options)
    np.testing.assert_allclose(W[keep, r], direct.weights, rtol=1e-9, atol=1e-9)
    assert reps.info["replicate_status"][r] == direct.status
    # the SE is R's bootstrap rule on the replicate totals (centred at their mean)
    y = data["income"].to_numpy()
    thetas = W.T @ y
    se = np.sqrt(np.sum((thetas - thetas.mean()) ** 2) / (replicates - 1))
    row = study.table[(study.table["method"] == label) & (study.table["variable"] == "income")]
    assert row["se"].iloc[0] == pytest.approx(se, rel=1e-12)
    assert row["kept"].iloc[0] == reps.info["calibration"].nnz
    return row


@pytest.mark.parametrize("label", sorted(METHODS))
def test_sparse_bootstrap_replicates(study, survey, label):
    row = _check_method(study, survey, label, label, METHODS[label])
    assert row["kept"].iloc[0] < len(survey[2])  # it is sparse


def test_dense_reference_and_its_linearised_se(study, survey):
    design, problem, _ = survey
    dense = study.table[study.table["method"] == "raking"]
    assert list(dense["se_ratio"]) == [1.0, 1.0]
    lin = cv.total(["income", "employed"], design.calibrate(problem, "raking"))
    np.testing.assert_allclose(dense["se_linearised"], lin.se, rtol=1e-12)
    # every method ran on the same replicates: the dense one keeps every unit with a multiplier
    W = study.replicates["raking"].replicate_weights
    for label in METHODS:
        assert np.all(study.replicates[label].replicate_weights[W == 0] == 0)


def test_hard_concrete_bootstrap(survey):
    pytest.importorskip("torch")
    design, problem, _ = survey
    options = {"epochs": 60, "lambda_l0": 1e-2, "seed": 0, "threads": 1}
    study = cv.sparsity_uncertainty(
        design, problem, "income", {"hard-concrete": options}, replicates=2, seed=5
    )
    row = _check_method(study, survey, "hard-concrete", "hard-concrete", options, replicates=2)
    assert row["kept"].iloc[0] < len(survey[2])


def test_local_area_design(tiny_matrix):
    problem = tiny_matrix.to_problem()
    design = cv.local_area_design(tiny_matrix, problem)
    cm = tiny_matrix.columns
    assert design.n == problem.n_units and design.n_psu == cm.n_households
    assert int(design.strata[0].max()) + 1 == np.unique(cm.home_state).size
    reps = cv.replicate_weights(design, "bootstrap", replicates=3, seed=0)
    F = reps.factors[reps.index].reshape(cm.n_geographies, cm.n_households, 3)
    assert np.all(F == F[:1])  # a household has one multiplier across its district columns
    cal = design.calibrate(problem, "raking")
    # a calibration variable has no variance: the state SNAP dollars are targets
    snap_row = problem.target_names.index(
        next(n for n in problem.target_names if n.startswith("2/snap"))
    )
    y = np.asarray(problem.X[snap_row].todense()).ravel()
    by_district = cv.total(y, cal, by="geography")
    raw = cv.total(y, design, by="geography")
    assert by_district.se.max() < 1e-9 * raw.se.max()
    assert by_district.estimate.sum() == pytest.approx(problem.targets[snap_row], rel=1e-10)
