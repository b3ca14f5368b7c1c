"""Solver comparison studies."""

from __future__ import annotations

import numpy as np

import calibopt as co
from calibopt.datasets.survey import survey_sample


def test_compare_methods_and_solvers():
    s = survey_sample(n_population=30_000, sample_size=800, seed=2)
    p = co.problem_from_margins(s.sample, s.margins, weights="pw", ratio_bounds=(0.3, 3.5))
    table, results = co.compare(
        p, methods=["linear", "raking"], solvers=[None, "CLARABEL", "OSQP"], keep_results=True
    )
    assert len(table) == 6
    row = table.set_index(["method", "solver"])
    assert row.loc[("raking", "OSQP"), "status"] == "not_applicable"
    assert row.loc[("linear", "OSQP"), "status"] == "optimal"
    for method in ("linear", "raking"):
        assert row.loc[(method, "newton"), "status"] == "optimal"
        assert row.loc[(method, "newton"), "distance_to_first"] == 0.0
        # the second solver lands on the same optimum
        assert row.loc[(method, "CLARABEL"), "distance_to_first"] < 1e-6
        assert row.loc[(method, "CLARABEL"), "max_rel_error"] < 1e-8
    np.testing.assert_allclose(
        results[("linear", "OSQP")].weights, results[("linear", "newton")].weights, rtol=1e-6
    )


def test_compare_reports_failures_and_goes_on():
    s = survey_sample(n_population=30_000, sample_size=800, seed=2)
    p = co.problem_from_margins(s.sample, s.margins, weights="pw", ratio_bounds=(0.99, 1.01))
    table = co.compare(p, methods=["linear", "raking"])
    assert list(table["status"]) == ["infeasible", "infeasible"]
    assert table["message"].str.contains("cannot be reached").all()
