"""Bad designs and misuse give clear CalibrationErrors; export and import of replicates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from variance_cases import design, problem, references, sample

import calibopt as co
import calibopt.variance as cv


def test_missing_strata_column_is_named():
    with pytest.raises(co.CalibrationError, match=r"`strata`: column 'region_code' is not in"):
        cv.Design(sample(), weights="weight", strata="region_code", psu="psu")


def test_psus_not_nested_in_strata():
    with pytest.raises(cv.DesignError, match=r"PSUs are not nested in strata.*nest=True"):
        cv.Design(sample(), weights="weight", strata="stratum", psu="psu_local")
    # with nest=True the labels restart within strata, as R's nest=TRUE
    nested = cv.Design(sample(), weights="weight", strata="stratum", psu="psu_local", nest=True)
    assert nested.n_psu == sample()["psu"].nunique()


def test_fewer_than_two_replicates():
    des = design("strat_cluster_nofpc")
    with pytest.raises(co.CalibrationError, match=r"`replicates` must be an integer >= 2"):
        cv.replicate_weights(des, "bootstrap", replicates=1)
    with pytest.raises(cv.DesignError, match=r"at least 2 replicates"):
        cv.ReplicateDesign(des.weights, des.weights[:, None], scale=1.0)
    frame = pd.DataFrame({"w": des.weights, "rep1": des.weights})
    with pytest.raises(cv.DesignError, match=r"found 1 replicate column"):
        cv.ReplicateDesign.from_frame(frame, "w", "rep", scale=1.0)


def test_weights_that_do_not_belong_to_the_design():
    data = sample()
    with pytest.raises(cv.DesignError, match=r"shape \(10,\) but the design has 67 rows"):
        cv.Design(data, weights=np.ones(10), strata="stratum", psu="psu")
    shifted = pd.Series(data["weight"].to_numpy(), index=data.index + 1000)
    with pytest.raises(cv.DesignError, match=r"index does not match"):
        cv.Design(data, weights=shifted, strata="stratum", psu="psu")
    des = design("strat_cluster_nofpc")
    prob = problem(des, data, "raking")
    other = prob.with_options(initial_weights=prob.initial_weights * 1.01)
    with pytest.raises(cv.DesignError, match=r"initial weights are not the design's weights"):
        des.calibrate(other, "raking")
    small = co.CalibrationProblem(prob.X[:, :10], prob.targets, initial_weights=des.weights[:10])
    with pytest.raises(cv.DesignError, match=r"has 10 units .* but the design has 67 rows"):
        des.calibrate(small, "raking")
    reps = cv.replicate_weights(des, "JKn")
    with pytest.raises(cv.DesignError, match=r"initial weights are not the design's weights"):
        reps.calibrate(other, "raking")


def test_bad_fpc():
    data = sample().assign(mixed=np.where(sample()["stratum"] == "A", 0.2, 15.0))
    with pytest.raises(cv.DesignError, match=r"all population sizes .* or all sampling fractions"):
        cv.Design(data, weights="weight", strata="stratum", psu="psu", fpc="mixed")
    with pytest.raises(cv.DesignError, match=r"more than 100% sampling at stage 1"):
        cv.Design(data.assign(N1=2), weights="weight", strata="stratum", psu="psu", fpc="N1")
    varying = data.assign(N1=data["N1"] + (data["psu"] % 2))
    with pytest.raises(cv.DesignError, match=r"`fpc` varies within a stratum"):
        cv.Design(varying, weights="weight", strata="stratum", psu="psu", fpc="N1")
    with pytest.raises(cv.DesignError, match=r"one fpc per stage"):
        cv.Design(data, weights="weight", strata="stratum", psu=["psu", "ssu"], fpc="N1")
    with pytest.raises(cv.DesignError, match=r"ambiguous"):
        cv.Design(data.assign(one=1.0), weights="weight", psu="psu", fpc="one")


def test_lonely_psu_and_single_psu():
    with pytest.raises(cv.DesignError, match=r"stratum 'E' has only one PSU at stage 1.*remove"):
        cv.Design(sample("lonely"), weights="weight", strata="stratum", psu="psu", fpc="N1")
    with pytest.raises(co.CalibrationError, match=r"`lonely_psu` must be one of"):
        cv.Design(sample(), weights="weight", psu="psu", lonely_psu="drop")
    with pytest.raises(cv.DesignError, match=r"single primary sampling unit"):
        cv.Design(sample(), weights="weight", psu=np.zeros(len(sample())))
    with pytest.raises(cv.DesignError, match=r"NaN|missing"):
        cv.Design(sample().assign(stratum=None), weights="weight", strata="stratum", psu="psu")


def test_replicate_types_refuse_designs_they_cannot_take():
    with pytest.raises(cv.DesignError, match=r"JK1 is for unstratified designs"):
        cv.replicate_weights(design("strat_cluster_nofpc"), "JK1")
    with pytest.raises(cv.DesignError, match=r"BRR needs exactly two PSUs in every stratum"):
        cv.replicate_weights(design("strat_cluster_nofpc"), "BRR")
    with pytest.raises(cv.DesignError, match=r"needs `fay_rho`"):
        cv.replicate_weights(design("strat_cluster_nofpc", sample("paired")), "Fay")


def test_linearisation_refuses_what_it_cannot_linearise():
    des = design("strat_cluster_nofpc")
    prob = problem(des, sample(), "raking")
    sparse = des.calibrate(prob.with_options(tolerance=0.02), "reweighted-l1")
    with pytest.raises(co.CalibrationError, match=r"not to 'reweighted-l1'.*replicates"):
        cv.total("y", sparse)
    soft = des.calibrate(prob, "raking", penalty=10.0)
    with pytest.raises(co.CalibrationError, match=r"penalty"):
        cv.total("y", soft)
    with pytest.raises(co.CalibrationError, match=r"also give `problem=`"):
        cv.total("y", des, calibration=soft.result)
    with pytest.raises(cv.DesignError, match=r"variable 'income' is not a column"):
        cv.total("income", des)
    with pytest.raises(cv.DesignError, match=r"missing or non-finite"):
        cv.total(np.where(sample()["z"] > 0, np.nan, 1.0), des)


def test_replicates_round_trip_through_a_file(tmp_path):
    des = design("strat_cluster_fpc")
    cal = des.calibrate(problem(des, sample(), "raking"), "raking")
    reps = cal.replicates("JKn")
    path, meta = reps.write(tmp_path / "weights.csv")
    assert meta.name == "weights.csv.json"
    frame = pd.read_csv(path)
    assert list(frame.columns[:3]) == ["Unnamed: 0", "weight", "replicate_1"]
    np.testing.assert_allclose(frame["weight"], cal.weights, rtol=1e-15)
    back = cv.ReplicateDesign.read(path, data=sample())
    a, b = cv.total(["y", "z"], reps), cv.total(["y", "z"], back)
    np.testing.assert_allclose(a.se, b.se, rtol=1e-12)
    with pytest.raises(co.CalibrationError, match=r"exists"):
        reps.write(tmp_path / "weights.csv")
    # identifying columns first, for users who join the weights back to their data
    path, _ = reps.write(tmp_path / "ids.csv", ids=["stratum", "psu"])
    frame = pd.read_csv(path)
    assert list(frame.columns[:4]) == ["stratum", "psu", "weight", "replicate_1"]
    assert (frame["psu"].to_numpy() == sample()["psu"].to_numpy()).all()
    again = cv.ReplicateDesign.read(path, data=sample())
    np.testing.assert_allclose(cv.total(["y", "z"], again).se, a.se, rtol=1e-12)
    with pytest.raises(co.CalibrationError, match=r"`ids`: \['nope'\] not in"):
        reps.frame(ids="nope")
    # the replicate SE equals R's for the same JKn re-calibration
    ref = references()["replicates"]["jkn_strat_cluster_fpc/raking"]
    np.testing.assert_allclose(a.se, ref["total"]["se"], rtol=1e-9)


def test_any_weighted_statistic():
    des = design("strat_cluster_nofpc")
    reps = cv.replicate_weights(des, "bootstrap", replicates=30, seed=1)
    y = sample()["y"].to_numpy()
    via_total = cv.total(y, reps)
    via_function = reps.estimate(lambda w: w @ y)
    np.testing.assert_allclose(via_function.se, via_total.se, rtol=1e-12)

    def median(w):
        order = np.argsort(y)
        cum = np.cumsum(w[order])
        return y[order][np.searchsorted(cum, cum[-1] / 2)]

    est = reps.estimate(median, names=["median"])
    thetas = np.array([median(reps.replicate_weights[:, r]) for r in range(30)])
    assert est.se[0] == pytest.approx(np.sqrt(np.sum((thetas - thetas.mean()) ** 2) / 29))
    assert est.frame()["variable"].tolist() == ["median"]


def test_replicates_on_a_process_pool_equal_in_process():
    des = design("strat_cluster_fpc")
    cal = des.calibrate(problem(des, sample(), "logit"), "logit")
    here = cal.replicates("JKn")
    pool = cal.replicates("JKn", executor=2, chunk_size=5, progress=False)
    np.testing.assert_array_equal(pool.replicate_weights, here.replicate_weights)
    assert pool.info["executor"] == "process-pool" and here.info["executor"] == "in-process"
    ref = references()["replicates"]["jkn_strat_cluster_fpc/logit"]
    np.testing.assert_allclose(cv.total(["y", "z"], pool).se, ref["total"]["se"], rtol=1e-9)
