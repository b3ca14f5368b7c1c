"""Household-level reweighting of a synthesised population, and the quality metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from calibopt import OPTIMAL, CalibrationError
from calibopt.synthesis import (
    ChildAgeGap,
    HierarchicalSynthesizer,
    SpouseAgeGap,
    calibrate_households,
    household_weights,
    quality_report,
)
from calibopt.synthesis.quality import total_variation

AGGREGATES = {
    "household_size": None,
    "household_income": ["employment_income", "retirement_income"],
    "adjusted_gross_income": ["employment_income", "retirement_income"],
}


@pytest.fixture(scope="module")
def population(tiny):
    synth = HierarchicalSynthesizer(
        aggregates=AGGREGATES, rules=[SpouseAgeGap(max_years=20), ChildAgeGap(min_years=14)]
    ).fit(tiny.dataset, rules=tiny.rules)
    return synth.generate(1500, seed=2, rules=tiny.rules)


def _band(x: np.ndarray, constraints: tuple) -> np.ndarray:
    ok = np.ones(x.shape, dtype=bool)
    for _, op, value in constraints:
        ok &= (x >= float(value)) if op == ">=" else (x < float(value))
    return ok


def test_household_reweighting_hits_person_and_household_targets(tiny, population):
    cal = calibrate_households(population, tiny.targets_database(), rules=tiny.rules)
    assert cal.result.status == OPTIMAL
    w = cal.weights
    assert w.shape == (population.n_households,) and (w >= 0).all()
    # every member carries its household's weight
    pw = cal.person_weights()
    hh_of = population.household_index("person")
    assert np.array_equal(pw, w[hh_of])
    # recompute district targets from the data and the weights, without the matrix
    hh = population.household
    district = hh["congressional_district_geoid"].to_numpy()
    age = population.person["age"].to_numpy()
    checked = 0
    for _, t in tiny.targets.iterrows():
        if t["geo_level"] != "district":
            continue
        in_d = district == int(t["geographic_id"])
        domain = tuple(c for c in t["constraints"] if c[0] == "age")
        if t["variable"] == "household_count" and len(t["constraints"]) == 1:
            got = w[in_d].sum()
        elif t["variable"] == "person_count":
            got = pw[in_d[hh_of] & _band(age, domain)].sum()
        else:
            continue
        assert got == pytest.approx(t["value"], rel=1e-8)
        checked += 1
    assert checked == 6 * 5


def test_person_level_weights_refused(tiny, population):
    per_person = np.ones(population.n_persons)
    with pytest.raises(CalibrationError, match="one value per person"):
        household_weights(population, per_person)
    with pytest.raises(CalibrationError, match="one value per person"):
        calibrate_households(
            population, tiny.targets_database(), rules=tiny.rules, initial_weights=per_person
        )
    with pytest.raises(CalibrationError, match="geographic_ids"):
        calibrate_households(population, tiny.targets_database(), filter={"geographic_ids": [2]})


def test_calibrated_population_stacks(tmp_path, tiny, population):
    from calibopt.stacking import load, stack

    cal = calibrate_households(population, tiny.targets_database(), rules=tiny.rules)
    geos, W = cal.stack_weights()
    path = tmp_path / "synthetic.h5"
    stack(W, geos, population, path, rules=tiny.rules)
    back = load(path).dataset
    assert back.n_households == int((cal.weights > 0).sum())
    total = back.household["household_weight"].sum()
    us = tiny.targets.query("variable == 'household_count' and geo_level == 'national'")
    assert total == pytest.approx(us["value"].iloc[0], rel=1e-9)


# ---------------------------------------------------------------------------- metrics
def test_quality_metrics_against_closed_forms(tiny):
    ds = tiny.dataset
    other = ds.assign("person", age=ds.person["age"].to_numpy() + 1)
    report = quality_report(ds, other)
    row = report.marginals.set_index("variable").loc["age"]
    assert row["distance"] == pytest.approx(
        ks_2samp(ds.person["age"], ds.person["age"] + 1).statistic
    )
    # the same data: every distance and correlation difference is zero
    same = quality_report(ds, ds)
    assert same.marginals["distance"].max() == 0.0
    assert same.correlations["difference"].max() == 0.0
    assert total_variation(["a", "a", "b", "c"], ["a", "b", "b", "b"]) == pytest.approx(0.5)
    roles = pd.Series(ds.person["role"].astype(str))
    shares = roles.value_counts(normalize=True)
    flipped = roles.replace({"head": "spouse", "spouse": "head"})
    assert total_variation(roles, flipped) == pytest.approx(abs(shares["head"] - shares["spouse"]))


def test_privacy_numbers(tiny):
    ds = tiny.dataset
    half = ds.subset(np.arange(ds.n_households) % 2 == 0)
    report = quality_report(half, half, train=half)
    p = report.privacy.set_index("data")
    assert p.loc["synthetic", "identical_share"] == 1.0
    assert p.loc["synthetic", "dcr_median"] == 0.0


def test_quality_metrics_match_sdmetrics(tiny):
    """Values computed by SDMetrics 0.32 (KSComplement, TVComplement, CorrelationSimilarity)
    in the SDV benchmark venv on the same split::

        a, b = (pd.read_parquet(...)["..."] for the even and odd halves)
        KSComplement.compute(a[c], b[c]); TVComplement.compute(a["role"], b["role"])
        CorrelationSimilarity.compute(a[[x, y]], b[[x, y]], coefficient="Pearson")
    """
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "data" / "sdmetrics_reference.json").read_text())
    ds = tiny.dataset
    even = ds.subset(np.arange(ds.n_households) % 2 == 0)
    odd = ds.subset(np.arange(ds.n_households) % 2 == 1)
    report = quality_report(even, odd)
    m = report.marginals.set_index("variable")["distance"]
    for c in ("age", "employment_income", "retirement_income"):
        assert 1 - m[c] == pytest.approx(ref[f"KSComplement.{c}"], abs=1e-12)
    assert 1 - m["role"] == pytest.approx(ref["TVComplement.role"], abs=1e-12)
    corr = report.correlations.set_index("pair").loc["age ~ employment_income", "difference"]
    assert 1 - corr / 2 == pytest.approx(
        ref["CorrelationSimilarity.age~employment_income"], abs=1e-12
    )
