"""calibopt.variance reproduces R survey's standard errors (svytotal, svymean, svyratio, svyby).

References: tests/fixtures/r_variance (make_references.R, survey 4.1.1) on committed synthetic
samples, and the shared R oracle (svytotal(~api00) before and after calibration of apistrat).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from variance_cases import (
    API_CALIBRATIONS,
    CALIBRATIONS,
    FIXTURES,
    design,
    problem,
    references,
    rel,
    sample,
)

import calibopt as co
import calibopt.variance as cv

TOL = 1e-9  # we agree with R to ~1e-13; the goal is 1e-6


def _check_stats(target, ref, y=("y", "z"), ratio=("y", "x"), by="domain", zero_se=None):
    """Every statistic of a reference case, SEs and estimates."""
    for stat in ("total", "mean"):
        est = getattr(cv, stat)(list(y), target)
        assert rel(est.estimate, ref[stat]["estimate"]) < 1e-10, stat
        se_ref = np.asarray(ref[stat]["se"], float)
        zero = se_ref < (zero_se or 0.0)  # a calibration variable: SE 0 up to rounding
        assert np.all(est.se[zero] < zero_se), (stat, est.se, se_ref)
        assert rel(est.se[~zero], se_ref[~zero]) < TOL, (stat, est.se, se_ref)
    r = cv.ratio(ratio[0], ratio[1], target)
    assert rel(r.estimate, ref["ratio"]["estimate"]) < 1e-10
    assert rel(r.se, ref["ratio"]["se"]) < TOL
    if by is not None:
        for stat, key in (("total", "by_total"), ("mean", "by_mean")):
            est = getattr(cv, stat)(y[0], target, by=by)
            assert [str(d) for d in est.domains] == ref[key]["levels"]
            assert rel(est.estimate, ref[key]["estimate"]) < 1e-10
            assert rel(est.se, ref[key]["se"]) < TOL, (key, est.se, ref[key]["se"])


@pytest.mark.parametrize("case", sorted(references()["linearisation"]))
def test_linearised_se_equals_r(case):
    name, calibration = case.split("/")
    ref = references()["linearisation"][case]
    des = design(name)
    if calibration == "none":
        target = des
    else:
        method = CALIBRATIONS[calibration][0]
        target = des.calibrate(problem(des, sample(), calibration), method, epsilon=1e-13)
        w_r = pd.read_csv(FIXTURES / "weights.csv")[case].to_numpy()
        assert rel(target.weights, w_r) < 1e-9
        if calibration == "linear_bounded":
            assert ref["n_at_bounds"] >= 5  # the bounds bind: R keeps those units in the fit
    _check_stats(target, ref)


@pytest.mark.parametrize("case", sorted(references()["lonely"]))
def test_lonely_psu_options_equal_r(case):
    name, option = case.split("/")
    des = design(name, sample("lonely"), lonely_psu=option)
    _check_stats(des, references()["lonely"][case], by=None)


@pytest.mark.parametrize("case", sorted(references()["replicates"]))
def test_replicate_se_equals_r(case):
    """Our replicate variance and re-calibration on R's own replicate weights."""
    rep_case, calibration = case.split("/")
    ref = references()["replicates"][case]
    data = sample("paired" if "paired" in rep_case else "sample")
    des = design(ref["design"], data)
    factors = pd.read_csv(FIXTURES / f"rep_{rep_case}.csv").to_numpy()
    reps = cv.ReplicateDesign(
        des.weights,
        des.weights[:, None] * factors,
        scale=ref["scale"],
        rscales=np.atleast_1d(ref["rscales"]),
        type=ref["type"],
        data=data,
    )
    if calibration == "none":
        target = reps
    else:
        population = [ref["population"][k] for k in ref["population_names"]]
        prob = problem(des, data, calibration, population)
        target = reps.calibrate(prob, CALIBRATIONS[calibration][0], epsilon=1e-13)
        assert set(target.info["replicate_status"]) == {"optimal"}
    _check_stats(target, ref)


@pytest.mark.parametrize(
    "rep_case", ["jkn_strat_cluster_fpc", "jkn_strat_cluster_nofpc", "jk1_cluster_fpc"]
)
def test_jackknife_replicates_are_rs(rep_case):
    ref = references()["replicates"][f"{rep_case}/none"]
    des = design(ref["design"])
    ours = cv.replicate_weights(des, ref["type"])
    r_factors = pd.read_csv(FIXTURES / f"rep_{rep_case}.csv").to_numpy()
    np.testing.assert_array_equal(ours.factors[ours.index], r_factors)
    assert ours.scale == pytest.approx(ref["scale"], rel=1e-15)
    np.testing.assert_allclose(ours.rscales, np.atleast_1d(ref["rscales"]), rtol=1e-15)


@pytest.mark.parametrize("rep_case", ["brr_paired", "fay_paired"])
def test_brr_and_fay_replicates_match_r(rep_case):
    """Our Hadamard matrix is balanced like R's: totals' variances agree; with R's matrix
    (recovered from its replicates) the replicate weights themselves agree."""
    ref = references()["replicates"][f"{rep_case}/none"]
    data = sample("paired")
    des = design(ref["design"], data)
    ours = cv.replicate_weights(des, ref["type"], fay_rho=ref["rho"])
    r_factors = pd.read_csv(FIXTURES / f"rep_{rep_case}.csv").to_numpy()
    assert ours.scale == pytest.approx(ref["scale"], rel=1e-15)
    est = cv.total(["y", "z"], ours)
    assert rel(est.se, ref["total"]["se"]) < TOL
    # R's Hadamard rows: the first PSU of each stratum (strata sorted by name) gets 2 - rho
    first_rows = [
        int(np.flatnonzero(data["stratum"] == s)[0]) for s in sorted(set(data["stratum"]))
    ]
    H = np.vstack([np.ones(r_factors.shape[1]), r_factors[first_rows] > 1]).astype(int)
    again = cv.replicate_weights(des, ref["type"], fay_rho=ref["rho"], hadamard_matrix=H)
    np.testing.assert_allclose(again.factors[again.index], r_factors, rtol=1e-15)


def _api(oracle):
    data = pd.read_csv(oracle / "i_linear" / "design.csv")
    X = pd.read_csv(oracle / "i_linear" / "X.csv").to_numpy().T
    totals = pd.read_csv(oracle / "i_linear" / "totals.csv")["value"].to_numpy()
    return data, X, totals


@pytest.mark.parametrize("case", sorted(references()["api"]))
def test_api_references(r_oracle_dir, case):
    """apistrat (shared fixtures' design): linearised, JKn and R's bootstrap replicates."""
    ref = references()["api"][case]
    data, X, totals = _api(r_oracle_dir)
    des = cv.Design(data, weights="pw", strata="stype", fpc="fpc")
    calibration, _, kind = case.partition("/")
    if kind == "JKn":
        base = cv.replicate_weights(des, "JKn")
    elif kind == "bootstrap_factors":
        factors = pd.read_csv(FIXTURES / "rep_api_subboot.csv").to_numpy()
        base = cv.ReplicateDesign(
            des.weights, des.weights[:, None] * factors, scale=ref["scale"], data=data
        )
    else:
        base = des
    if calibration == "none":
        target = base
    else:
        method, bounds = API_CALIBRATIONS[calibration]
        prob = co.CalibrationProblem(
            X, totals, initial_weights=des.weights, ratio_bounds=bounds, bounds=None
        )
        target = base.calibrate(prob, method, epsilon=1e-13)
    # enroll is a calibration variable: its calibrated SE is 0 up to rounding in both
    zero_se = 1e-8 * references()["api"]["none"]["total"]["se"][1]
    _check_stats(
        target,
        ref,
        y=("api00", "enroll"),
        ratio=("api00", "enroll"),
        by="sch.wide",
        zero_se=zero_se if calibration != "none" else None,
    )


def test_every_shared_fixture_se(r_oracle_dir):
    """svytotal(~api00) SE before and after calibration, for every shared R oracle case."""
    cases = [p for p in sorted(r_oracle_dir.iterdir()) if (p / "meta.json").exists()]
    checked = 0
    for folder in cases:
        meta = json.loads((folder / "meta.json").read_text())
        if "svytotal_api00" not in meta:
            continue  # sampling::calib cases have no design
        data = pd.read_csv(folder / "design.csv")
        d = pd.read_csv(folder / "d.csv")["d"].to_numpy()
        X = pd.read_csv(folder / "X.csv").to_numpy().T
        totals = pd.read_csv(folder / "totals.csv")["value"].to_numpy()
        des = cv.Design(data, weights=d, strata="stype", fpc="fpc")
        prob = co.CalibrationProblem(X, totals, initial_weights=d, ratio_bounds=meta["bounds"])
        cal = des.calibrate(prob, meta["calfun"], epsilon=1e-12)
        est = cv.total("api00", cal)
        assert est.estimate[0] == pytest.approx(meta["svytotal_api00"]["total"], rel=1e-12)
        assert rel(est.se, meta["svytotal_api00"]["SE"]) < TOL
        raw = cv.total("api00", des)
        assert raw.estimate[0] == pytest.approx(
            meta["svytotal_api00_uncalibrated"]["total"], rel=1e-12
        )
        assert rel(raw.se, meta["svytotal_api00_uncalibrated"]["SE"]) < TOL
        # the same through a bare result and its problem (the signature)
        again = cv.total("api00", des, calibration=cal.result, problem=prob)
        assert again.se[0] == est.se[0]
        checked += 1
    assert checked == 4
