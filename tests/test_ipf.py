"""ipf: converges to the raking solution (and to R's), names the failing margin, never loops."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import calibopt as co


def sample(n=3000, seed=0, amount=False):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {"a": rng.integers(0, 5, n), "b": rng.integers(0, 7, n), "c": rng.integers(0, 3, n)}
    )
    d = rng.uniform(0.5, 2.0, n)
    w = d * rng.uniform(0.8, 1.25, n)
    margins = {v: {k: float(w[df[v] == k].sum()) for k in sorted(df[v].unique())} for v in "abc"}
    if amount:
        df["income"] = rng.lognormal(10, 1, n)
        margins["income"] = float((w * df["income"]).sum())
    return df, d, margins


@pytest.mark.parametrize("amount", [False, True])
def test_ipf_to_convergence_equals_raking(amount):
    df, d, margins = sample(amount=amount)
    p = co.problem_from_margins(df, margins, weights=d)
    r_ipf = co.calibrate(p, method="ipf", epsilon=1e-12)
    r_rake = co.calibrate(p, method="raking")
    assert r_ipf.status == "optimal"
    np.testing.assert_allclose(r_ipf.weights, r_rake.weights, rtol=1e-9)
    assert r_ipf.objective == pytest.approx(r_rake.objective, rel=1e-8)


def test_ipf_with_binding_bounds_equals_bounded_raking():
    df, d, margins = sample(seed=1)
    margins["a"] = {k: v * (1.08 if k == 0 else 0.98) for k, v in margins["a"].items()}
    total = sum(margins["a"].values())
    for var in "bc":  # keep the margins consistent
        s = sum(margins[var].values())
        margins[var] = {k: v * total / s for k, v in margins[var].items()}
    p = co.problem_from_margins(df, margins, weights=d, ratio_bounds=(0.9, 1.12))
    r_ipf = co.calibrate(p, method="ipf", epsilon=1e-12, max_iter=5000)
    r_rake = co.calibrate(p, method="raking")
    assert r_ipf.status == "optimal"
    assert np.isclose(r_ipf.g, 1.12).sum() > 100  # bounds bind
    np.testing.assert_allclose(r_ipf.weights, r_rake.weights, rtol=1e-7)


def test_single_margin_is_one_proportional_step():
    df, d, margins = sample(seed=2)
    p = co.problem_from_margins(df, {"b": margins["b"]}, weights=d)
    r = co.calibrate(p, method="ipf")
    assert r.iterations == 1
    factor = np.array([margins["b"][k] / d[df["b"] == k].sum() for k in df["b"]])
    np.testing.assert_allclose(r.weights, d * factor, rtol=1e-14)


def test_matches_r_survey_raking(r_oracle_dir):
    case = r_oracle_dir / "ii_raking"
    X = pd.read_csv(case / "X.csv")
    d = pd.read_csv(case / "d.csv")["d"].to_numpy()
    totals = pd.read_csv(case / "totals.csv")
    w_r = pd.read_csv(case / "weights.csv")["w"].to_numpy()
    meta = json.loads((case / "meta.json").read_text())
    assert meta["calfun"] == "raking"
    p = co.CalibrationProblem(
        X.to_numpy().T, totals["value"], initial_weights=d, target_names=list(X.columns)
    )
    r = co.calibrate(p, method="ipf", epsilon=1e-13, max_iter=10000)
    assert r.status == "optimal"
    np.testing.assert_allclose(r.weights, w_r, rtol=1e-9)


def test_conflicting_margins_stop_and_name_the_margin():
    df, d, margins = sample(seed=3)
    margins["c"] = {k: v * 1.02 for k, v in margins["c"].items()}
    p = co.problem_from_margins(df, margins, weights=d)
    r = co.calibrate(p, method="ipf", max_iter=100000, patience=30)
    assert r.status == "stopped"
    assert r.iterations < 200  # stopped by the no-progress rule, not the cap
    assert r.info["failing_margin"] in {"a", "b", "c"}
    assert "disagree on the population total" in r.message
    assert "'c' sums to" in r.message
    table = r.info["margins"].set_index("margin")
    assert not table["within_tolerance"].all()


def test_iteration_cap_is_reported():
    df, d, margins = sample(seed=4)
    p = co.problem_from_margins(df, margins, weights=d)
    r = co.calibrate(p, method="ipf", max_iter=1)
    assert r.status == "stopped"
    assert "iteration cap (1 sweeps)" in r.message


def test_tolerance_stops_early():
    df, d, margins = sample(seed=5)
    p = co.problem_from_margins(df, margins, weights=d, tolerance=0.01)
    r = co.calibrate(p, method="ipf")
    assert r.status == "within_tolerance"
    assert r.max_rel_error <= 0.01
    assert r.iterations <= 3


def test_bad_input():
    X = np.array([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0]])
    with pytest.raises(co.InvalidProblemError, match="non-negative X"):
        co.calibrate(co.CalibrationProblem(X, [1.0, 3.0]), method="ipf")
    X = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    p = co.CalibrationProblem(
        X, [2.0, 5.0], initial_weights=[1.0, 1.0, 0.0], target_names=["x", "y"]
    )
    with pytest.raises(co.InfeasibleError, match="positive initial weight") as err:
        co.calibrate(p, method="ipf")
    assert err.value.targets == ["y"]
    with pytest.raises(co.InfeasibleError, match="negative"):
        co.calibrate(co.CalibrationProblem(np.ones((1, 2)), [-1.0]), method="ipf")
    p = co.CalibrationProblem(np.ones((1, 2)), [1.0])
    for opts, match in (
        ({"epsilon": 0}, "epsilon"),
        ({"max_iter": 0}, "max_iter"),
        ({"solver": "newton"}, "one algorithm"),
    ):
        with pytest.raises(co.InvalidProblemError, match=match):
            co.calibrate(p, method="ipf", **opts)
