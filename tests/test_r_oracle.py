"""Reproduce R survey::calibrate and sampling::calib on R's own api data.

References: ../shared/fixtures/r_oracle (survey 4.1.1, sampling 2.9, R 4.2.2); see its README.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import calibopt as co
from calibopt.formulations import get_method
from calibopt.solvers.cvx import installed_solvers

# case -> (method, ratio bounds)
SURVEY_CASES = {
    "i_linear": ("linear", None),
    "ii_raking": ("raking", None),
    "iii_logit_0.5_2": ("logit", (0.5, 2.0)),
    "iv_linear_bounded_0.6_1.6": ("linear", (0.6, 1.6)),
}
SAMPLING_CASES = {
    "vi_calib_linear": ("linear", None),
    "vi_calib_raking": ("raking", None),
    "vi_calib_logit_0.5_2": ("logit", (0.5, 2.0)),
    "vi_calib_truncated_0.6_1.6": ("truncated", (0.6, 1.6)),
}
ALL_CASES = {**SURVEY_CASES, **SAMPLING_CASES}


def load(root, case):
    folder = root / case
    X = pd.read_csv(folder / "X.csv")
    d = pd.read_csv(folder / "d.csv")["d"].to_numpy()
    totals = pd.read_csv(folder / "totals.csv")
    weights = pd.read_csv(folder / "weights.csv")
    meta = json.loads((folder / "meta.json").read_text())
    assert list(totals["name"]) == list(X.columns)
    bounds = ALL_CASES[case][1]
    problem = co.CalibrationProblem(
        X.to_numpy().T,
        totals["value"].to_numpy(),
        initial_weights=d,
        ratio_bounds=bounds,
        target_names=list(X.columns),
    )
    return problem, weights, meta, folder


def max_rel_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))))


@pytest.mark.parametrize("case", sorted(SURVEY_CASES))
def test_newton_reproduces_survey_calibrate(r_oracle_dir, case):
    problem, weights, meta, folder = load(r_oracle_dir, case)
    method = ALL_CASES[case][0]
    result = co.calibrate(problem, method=method, epsilon=1e-12)
    assert result.status == "optimal"
    assert max_rel_diff(result.weights, weights["w"]) < 1e-10
    assert max_rel_diff(result.g, weights["g"]) < 1e-10
    # the same estimate of the api00 total as R's svytotal
    api00 = pd.read_csv(folder / "design.csv")["api00"].to_numpy()
    assert result.weights @ api00 == pytest.approx(meta["svytotal_api00"]["total"], rel=1e-12)
    # R's Newton iterations, one for one (closed form counts as R's 0, our single step)
    assert result.iterations == max(1, meta["iterations"])


@pytest.mark.parametrize("case", sorted(c for c in SURVEY_CASES if c != "i_linear"))
def test_newton_reproduces_survey_default_epsilon_iterate(r_oracle_dir, case):
    """With R's default epsilon = 1e-7, R stops one step short; we stop at the same iterate."""
    problem, _, meta, folder = load(r_oracle_dir, case)
    default = pd.read_csv(folder / "weights_default.csv")
    result = co.calibrate(problem, method=ALL_CASES[case][0], epsilon=1e-7)
    assert result.iterations == meta["default_settings_run"]["iterations"]
    assert max_rel_diff(result.weights, default["w"]) < 1e-10


@pytest.mark.parametrize("case", sorted(SAMPLING_CASES))
def test_newton_reproduces_sampling_calib(r_oracle_dir, case):
    """sampling::calib stops at max |X'w - T| / T < 1e-6, so its weights are that close."""
    problem, weights, meta, _ = load(r_oracle_dir, case)
    result = co.calibrate(problem, method=ALL_CASES[case][0], epsilon=1e-12)
    assert result.status == "optimal"
    closed_form = meta["iterations"] <= 1
    assert max_rel_diff(result.weights, weights["w"]) < (1e-10 if closed_form else 1e-6)
    # and our weights meet the totals far better than sampling's own rule
    assert result.max_rel_error < 1e-12


CVXPY_SOLVERS = {
    "linear": ["CLARABEL", "OSQP", "ECOS", "SCS"],
    "truncated": ["CLARABEL", "OSQP", "SCS"],
    "raking": ["CLARABEL", "ECOS", "SCS"],
    "logit": ["CLARABEL", "ECOS", "SCS"],
}


@pytest.mark.parametrize("case", sorted(SURVEY_CASES))
def test_cvxpy_solvers_reproduce_survey(r_oracle_dir, case):
    problem, weights, _, _ = load(r_oracle_dir, case)
    method = ALL_CASES[case][0]
    if ALL_CASES[case][1] is not None and method == "linear":
        method = "truncated"
    agreeing = []
    for solver in CVXPY_SOLVERS[method]:
        if solver not in installed_solvers():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = co.calibrate(problem, method=method, solver=solver)
        if max_rel_diff(result.weights, weights["w"]) < 1e-5:
            agreeing.append(solver)
    assert "CLARABEL" in agreeing
    assert len(agreeing) >= 2, agreeing


def test_cvxpy_model_is_separate_from_solving(r_oracle_dir):
    """build() gives an unsolved cvxpy problem; solving it reproduces R's raking weights."""
    import cvxpy as cp

    problem, weights, _, _ = load(r_oracle_dir, "ii_raking")
    model = get_method("raking").build(problem)
    assert isinstance(model, cp.Problem) and model.status is None
    model.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    g = next(v for v in model.variables() if v.name() == "g").value
    assert max_rel_diff(g * problem.initial_weights, weights["w"]) < 1e-6
