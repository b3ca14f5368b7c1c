"""Tax-Calculator's CPS tax units and the published state targets: loader fingerprints, the
derived tax variables against closed forms, and the real local-area matrix on three states.

The independent references: the raw files read with pandas (row counts, weight totals, the
published targets' sums), hand-computed tax cases, and every matrix row recomputed from the
raw CSV with pandas group-bys (no calibopt code on the reference side).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import calibopt as co
from calibopt.datasets.public import (
    adjusted_gross_income,
    is_filer,
    read_state_targets,
    read_taxcalc_cps,
    target_conflicts,
)
from calibopt.matrix import MatrixBuilder
from calibopt.matrix.areas import area_problem, area_rows, area_shares, shared_prior

STATES = [10, 50, 56]  # Delaware, Vermont, Wyoming: small, so the test stays fast


def test_cps_fingerprints(cps_2023):
    ds, _ = cps_2023
    raw = read_taxcalc_cps()
    cps, weights = raw["cps"], raw["weights"]
    assert cps.shape == (280_005, 68) and weights.shape == (280_005, 23)
    assert int(cps["s006"].sum()) == 17_063_381_100  # hundredths (awk): 170.6M units in 2014
    assert int(weights["WT2023"].sum()) == 21_228_353_433
    assert cps["fips"].nunique() == 51 and cps["RECID"].is_unique
    assert ds.n_households == 280_005 and ds.n("tax_unit") == 280_005
    assert ds.household["household_weight"].sum() == pytest.approx(212_283_534.33, abs=0.01)
    # persons: head + spouse (MARS 2) + dependents from the age-band counts
    per_unit = ds.map_to(None, "person", "household", how="sum")
    married = (cps["MARS"] == 2).to_numpy()
    assert ds.n_persons == 541_851
    assert (per_unit >= 1 + married).all()
    heads = ds.person.loc[ds.person["role"] == 0, "age"].to_numpy()
    np.testing.assert_array_equal(heads, cps["age_head"].to_numpy())
    dep = ds.person.loc[ds.person["role"] == 2]
    unit = pd.Index(cps["RECID"]).get_indexer(dep["household_id"])
    under6 = np.bincount(unit[dep["age"].to_numpy() < 6], minlength=len(cps))
    expect = (cps["nu06"] - (cps["age_head"] < 6) - (married & (cps["age_spouse"] < 6))).clip(
        lower=0
    )
    np.testing.assert_array_equal(under6, expect.to_numpy())
    assert dep["age"].between(0, 85).all()


def test_agi_and_filing_closed_forms():
    zero = {
        c: 0.0
        for c in (
            "e00200",
            "e00200p",
            "e00200s",
            "e00300",
            "e00400",
            "e00600",
            "e00800",
            "e00900",
            "e00900p",
            "e00900s",
            "e01100",
            "e01400",
            "e01700",
            "e02100",
            "e02100p",
            "e02100s",
            "e02300",
            "e02400",
            "e03150",
            "e03210",
            "e03240",
            "e03270",
            "e03300",
        )
    }
    rows = pd.DataFrame(
        [
            # single, wages 30,000 + SS 20,000: provisional 40,000 > 34,000:
            # taxable = min(0.85 * 6,000 + 0.5 * min(20,000, 9,000), 0.85 * 20,000) = 9,600
            {
                **zero,
                "MARS": 1,
                "e00200": 30_000.0,
                "e00200p": 30_000.0,
                "e02400": 20_000.0,
                "age_head": 70,
                "age_spouse": 0,
            },
            # joint, self-employed 50,000: half SE tax = 0.5 * 0.153 * 0.9235 * 50,000
            {
                **zero,
                "MARS": 2,
                "e00900": 50_000.0,
                "e00900p": 50_000.0,
                "age_head": 40,
                "age_spouse": 40,
            },
            # joint aged 66/67, pension 29,000 only: below 27,700 + 2 * 1,500 = 30,700: no filing
            {**zero, "MARS": 2, "e01700": 29_000.0, "age_head": 66, "age_spouse": 67},
            # married filing separately with 10 dollars of interest: files ($5 threshold)
            {**zero, "MARS": 3, "e00300": 10.0, "age_head": 30, "age_spouse": 0},
        ]
    )
    agi = adjusted_gross_income(rows, 2023)
    half_se = 0.5 * 0.153 * 0.9235 * 50_000
    np.testing.assert_allclose(agi["taxable_social_security"], [9_600, 0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(
        agi["adjusted_gross_income"], [39_600, 50_000 - half_se, 29_000, 10], atol=1e-9
    )
    rows = pd.concat([rows, agi], axis=1)
    filing = is_filer(rows, agi["gross_income"].to_numpy(), 2023)
    np.testing.assert_array_equal(filing, [True, True, False, True])


def test_state_targets_loader(cps_2023):
    _, db = cps_2023
    frame = read_state_targets()
    raw = pd.read_csv(db_folder() / "agi_state.csv")
    assert len(frame) == 1020 + 900 + 51 + 4
    agi = frame.loc[frame["variable"] == "adjusted_gross_income"]
    states = agi.loc[agi["constraints"].str.startswith("state_fips"), "value"]
    assert states.sum() == pytest.approx(
        raw.loc[raw["VARIABLE"].str.endswith("amount"), "VALUE"].sum(), rel=1e-15
    )
    t = db.targets(period=2023)
    assert set(t["period"]) == {2022, 2023}
    assert t.groupby("geo_level").size().to_dict() == {"national": 2, "state": 1971}
    assert (t["source"].str.len() > 20).all()
    # 2022 state AGI targets uprated by the national Table 1.1 growth 2022 -> 2023
    up = db.uprating().set_index("variable")["factor"]
    assert up["adjusted_gross_income"] == pytest.approx(15.28602e12 / 14.83396e12, rel=1e-5)
    assert up["tax_unit_count"] == pytest.approx(160.6021e6 / 161.3367e6, rel=1e-5)


def db_folder():
    from calibopt.datasets.public import locate

    return locate("targets")


def test_conflicting_published_figures():
    c = target_conflicts().set_index(["quantity", "geography"])["rel_gap"]
    assert len(c) == 52  # 50 states (age_state has no DC) + 2 national
    assert c[("AGI 2022", "US")] == pytest.approx(0.010789, abs=1e-6)
    assert c[("returns 2022", "US")] == pytest.approx(0.016549, abs=1e-6)
    assert c.loc["persons aged 0-4"].abs().max() > 0.05  # not rounding: different sources


@pytest.fixture(scope="module")
def three_states(cps_2023):
    ds, db = cps_2023
    return MatrixBuilder(db, ds, STATES, level="state", period=2023).build()


def test_matrix_rows_equal_pandas_groupbys(cps_2023, three_states):
    ds, _ = cps_2023
    m = three_states
    n = 280_005
    assert m.X.shape == (3 * 39, 3 * n)
    assert set(m.targets["geo_level"]) == {"state"}  # national targets are dropped (partial)
    tu = ds.table("tax_unit")
    agi, filer = tu["adjusted_gross_income"].to_numpy(), tu["is_filer"].to_numpy() == 1
    person = ds.person.merge(ds.household[["household_id"]].reset_index(), on="household_id")
    for j, row in m.targets.iterrows():
        state = int(row["geographic_id"])
        g = STATES.index(state)
        block = m.X[j, g * n : (g + 1) * n].toarray().ravel()
        outside = m.X[j].nnz - np.count_nonzero(block)
        assert outside == 0
        cons = {(v, op): float(x) for v, op, x in row["constraints"] if v != "state_fips"}
        if row["variable"] == "person_count":
            lo, hi = cons.get(("age", ">="), -np.inf), cons.get(("age", "<"), np.inf)
            sel = person.loc[(person["age"] >= lo) & (person["age"] < hi), "index"]
            expect = np.bincount(sel, minlength=n).astype(float)
        else:
            lo = cons.get(("adjusted_gross_income", ">="), -np.inf)
            hi = cons.get(("adjusted_gross_income", "<"), np.inf)
            inside = filer & (agi >= lo) & (agi < hi)
            expect = np.where(inside, agi if row["variable"] != "tax_unit_count" else 1.0, 0.0)
        np.testing.assert_array_equal(block, expect)


def test_per_state_bounded_qps(three_states):
    """Each state's bounded-ratio QP (its 38-39 targets over all 280,005 units): the published
    AGI < $1 bin is certified out of reach and named; without it every state solves exactly,
    and the weights satisfy the KKT conditions of min sum d (g - 1)^2 / 2, 0 <= g <= 10."""
    m = three_states
    us = read_state_targets(["population"])["value"].sum()
    d = shared_prior(m.columns, area_shares(m, total=us), home_share=0.0)
    for state in STATES:
        rows = area_rows(m, state)
        with pytest.raises(co.InfeasibleError) as info:
            co.calibrate(area_problem(m, state, d, rows=rows), method="truncated")
        assert any("adjusted_gross_income<1;" in t for t in info.value.targets)
        keep = rows[~m.targets["name"].iloc[rows].str.contains("adjusted_gross_income<1;")]
        p = area_problem(m, state, d, rows=keep)
        r = co.calibrate(p, method="truncated")
        assert r.status == co.OPTIMAL and r.max_rel_error < 1e-10
        g = r.weights / p.initial_weights
        assert g.min() >= 0 and g.max() <= 10 + 1e-12
        # KKT: g = clip(1 + x' lam, 0, 10) with one lam for every unit
        X = p.X.T.tocsr()
        free = (g > 1e-6) & (g < 10 - 1e-6)
        scale = np.abs(p.targets) + 1
        lam, *_ = np.linalg.lstsq((X[free] / scale).toarray(), g[free] - 1, rcond=None)
        fitted = 1 + (X / scale) @ lam
        np.testing.assert_allclose(g, np.clip(fitted, 0, 10), atol=1e-6)


def test_conflicting_sources_are_named(cps_2023):
    """Census's population under 5 and the 0-4 age group of the age file describe the same
    persons with different numbers (Vermont: 27,168 vs 27,193): exact calibration to both is
    impossible, and the error names both targets."""
    from calibopt.datasets.public import load_state_targets

    ds, _ = cps_2023
    db = load_state_targets(include=("age", "under5"))
    m = MatrixBuilder(db, ds, [50], level="state", period=2023).build()
    pair = m.targets["constraints"].map(lambda c: ("age", "<", "5") in c).to_numpy()
    assert pair.sum() == 2
    rows = m.X[np.flatnonzero(pair)].toarray()
    np.testing.assert_array_equal(rows[0], rows[1])  # the same persons
    assert sorted(m.targets.loc[pair, "value"]) == [27_168.0, 27_193.0]
    d = shared_prior(m.columns, np.array([0.002]), home_share=0.0)
    with pytest.raises(co.InfeasibleError) as info:
        co.calibrate(area_problem(m, 50, d), method="truncated")
    assert set(m.targets.loc[pair, "name"]) <= set(info.value.targets)
