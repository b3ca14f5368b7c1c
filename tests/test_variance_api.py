"""Standard errors on R's api data (loaded by calibopt.datasets.public.load_api) equal R survey's.

References: tests/references/api_variance (make_references.R there, R survey 4.1.1 on R's own
data(api)): the designs of R's ?svydesign examples (simple random, stratified, one- and
two-stage cluster samples, with and without fpc), calibrated to apipop's school types and api99
total by every distance, linearised and with jackknife replicates re-calibrated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import calibopt as co
import calibopt.variance as cv
from calibopt.errors import InfeasibleError
from calibopt.variance import DesignError

REFS = json.loads(
    (Path(__file__).parent / "references" / "api_variance" / "references.json").read_text()
)
TOL = 1e-9  # the goal is 1e-6; we agree with R to ~1e-12
# R's svydesign calls of make_references.R
DESIGNS = {
    "srs": ("apisrs", dict(fpc="fpc")),
    "strat": ("apistrat", dict(strata="stype", weights="pw", fpc="fpc")),
    "clus1": ("apiclus1", dict(psu="dnum", weights="pw", fpc="fpc")),
    "clus2": ("apiclus2", dict(psu=["dnum", "snum"], fpc=["fpc1", "fpc2"])),
    "clus2_nofpc": ("apiclus2", dict(psu=["dnum", "snum"], weights="pw")),
}
CALIBRATIONS = {
    "linear": ("linear", None),
    "raking": ("raking", None),
    "logit": ("logit", (0.7, 1.7)),
    "linear_bounded": ("linear", (0.85, 1.3)),
}
REPLICATES = {
    "clus1_JK1": ("clus1", "JK1"),
    "strat_JKn": ("strat", "JKn"),
    "clus2_JK1": ("clus2", "JK1"),
}


def rel(a, b) -> float:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return float(np.max(np.abs(a - b) / np.abs(b)))


def _design(api_data, name: str) -> cv.Design:
    frame, spec = DESIGNS[name]
    return cv.Design(getattr(api_data, frame), **spec)


def _problem(des: cv.Design, calibration: str) -> co.CalibrationProblem:
    """R's calibrate(des, ~stype + api99, population = apipop's totals)."""
    data = des.data
    X = np.vstack(
        [
            np.ones(des.n),
            (data["stype"] == "H").to_numpy(float),
            (data["stype"] == "M").to_numpy(float),
            data["api99"].to_numpy(float),
        ]
    )
    return co.CalibrationProblem(
        X,
        np.asarray(REFS["population"], float),
        initial_weights=des.weights,
        ratio_bounds=CALIBRATIONS[calibration][1],
        bounds=None,
    )


def _check(target, ref) -> None:
    for stat, y in (("total", ["api00", "api.stu"]), ("mean", ["api00", "meals"])):
        est = getattr(cv, stat)(y, target)
        assert rel(est.estimate, ref[stat]["estimate"]) < 1e-10, stat
        assert rel(est.se, ref[stat]["se"]) < TOL, (stat, est.se, ref[stat]["se"])
    awards = cv.mean("awards", target)  # a factor: one proportion per level, as R's svymean
    assert awards.names == ["awards=No", "awards=Yes"]
    assert rel(awards.estimate, ref["awards"]["estimate"]) < 1e-10
    assert rel(awards.se, ref["awards"]["se"]) < TOL
    r = cv.ratio("api00", "api99", target)
    assert rel(r.estimate, ref["ratio"]["estimate"]) < 1e-10
    assert rel(r.se, ref["ratio"]["se"]) < TOL
    for stat, key in (("total", "by_total"), ("mean", "by_mean")):
        est = getattr(cv, stat)("api00", target, by="sch.wide")
        assert [str(d) for d in est.domains] == ref[key]["levels"]
        assert rel(est.estimate, ref[key]["estimate"]) < 1e-10
        assert rel(est.se, ref[key]["se"]) < TOL, (key, est.se, ref[key]["se"])
    # R's na.rm=TRUE (enroll is missing for 6 schools of apiclus2): a domain, design unchanged
    na = ref["na_rm"]
    for stat in ("total", "mean"):
        est = getattr(cv, stat)("enroll", target, na_rm=True)
        assert rel(est.estimate, na[stat]["estimate"]) < 1e-10, stat
        assert rel(est.se, np.ravel(na[stat]["se"])) < TOL, (stat, est.se, na[stat]["se"])
    r = cv.ratio("api.stu", "enroll", target, na_rm=True)
    assert rel(np.r_[r.estimate, r.se], [na["ratio"]["estimate"], na["ratio"]["se"]]) < TOL
    est = cv.mean("enroll", target, by="stype", na_rm=True)
    assert [str(d) for d in est.domains] == na["by_mean"]["levels"]
    assert rel(est.estimate, na["by_mean"]["estimate"]) < 1e-10
    assert rel(est.se, na["by_mean"]["se"]) < TOL


@pytest.mark.parametrize("case", sorted(REFS["linearisation"]))
def test_linearised_se_on_api_equals_r(api_data, case):
    name, calibration = case.split("/")
    des = _design(api_data, name)
    if calibration == "none":
        target = des
    else:
        cal = des.calibrate(_problem(des, calibration), CALIBRATIONS[calibration][0], epsilon=1e-13)
        assert cal.result.success, cal.result.summary()
        target = cal
    _check(target, REFS["linearisation"][case])


@pytest.mark.parametrize("case", sorted(REFS["replicates"]))
def test_recalibrated_jackknife_on_api_equals_r(api_data, case):
    rep_name, calibration = case.split("/")
    name, kind = REPLICATES[rep_name]
    ref = REFS["replicates"][case]
    des = _design(api_data, name)
    reps = cv.replicate_weights(des, kind)  # first-stage PSUs; later fpc unused, as R
    assert reps.n_replicates == ref["n_replicates"]
    assert reps.scale == pytest.approx(ref["scale"], rel=1e-14)
    if calibration != "none":
        reps = reps.calibrate(
            _problem(des, calibration), CALIBRATIONS[calibration][0], epsilon=1e-13
        )
    _check(reps, ref)


def test_missing_values_need_na_rm(api_data):
    des = _design(api_data, "clus2")
    with pytest.raises(DesignError, match=r"'enroll' has missing .* 6 row\(s\).*na_rm=True"):
        cv.total("enroll", des)
    frame = api_data.apiclus2.assign(award=api_data.apiclus2["awards"].astype(object))
    frame.loc[3, "award"] = None
    des = cv.Design(frame, psu=["dnum", "snum"], fpc=["fpc1", "fpc2"])
    with pytest.raises(DesignError, match="'award' has 1 missing value"):
        cv.mean("award", des)
    # a missing category: that row leaves the proportions' denominator too
    est = cv.mean("award", des, na_rm=True)
    keep = frame["award"].notna().to_numpy()
    w = des.weights * keep
    assert est.estimate.sum() == pytest.approx(1.0, rel=1e-14)
    assert est.estimate[1] == pytest.approx(w @ (frame["award"] == "Yes") / w.sum(), rel=1e-14)


def test_what_r_cannot_calibrate_we_explain(api_data):
    """R's calibrate fails on these (bounds too tight for the totals); ours names the target."""
    assert sorted(REFS["failed"]) == [
        "clus1/linear_bounded",
        "clus1_JK1/logit",
        "clus2/linear_bounded",
        "clus2_JK1/logit",
        "clus2_nofpc/linear_bounded",
    ]
    for name in ("clus1", "clus2", "clus2_nofpc"):
        des = _design(api_data, name)
        with pytest.raises(InfeasibleError, match="target_1"):  # stypeH: 755 high schools
            des.calibrate(_problem(des, "linear_bounded"), "linear")
