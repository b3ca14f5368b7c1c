"""MatrixBuilder: exactness against the synthetic truth, geography structure, constraint
semantics checked against pandas brute force, rule caching, filters and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibopt.datasets import Dataset, GeographyRules, synthetic_country
from calibopt.datasets.synthetic import snap_benefit
from calibopt.errors import InvalidProblemError
from calibopt.matrix import CalibrationMatrix, MatrixBuilder
from calibopt.targets import TargetsDatabase


def custom_db(rows):
    db = TargetsDatabase.create("sqlite://")
    db.add_targets(pd.DataFrame(rows, columns=["variable", "period", "value", "constraints"]))
    return db


# ------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("size", ["tiny", "small", "default"])
def test_true_weights_reproduce_every_noiseless_target_exactly(size):
    c = synthetic_country(size, seed=1)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    assert m.X.shape == (len(c.targets), c.n_columns)
    estimate = m.X @ c.true_weights
    np.testing.assert_array_equal(estimate, m.targets["value"].to_numpy())
    # and every target of the country is in the matrix
    assert sorted(m.targets["value"]) == sorted(c.targets["value"])


def test_noisy_targets_differ_but_truth_still_exact():
    c = synthetic_country("tiny", seed=3, noise={"state": 0.02, "district": 0.05})
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    truth = c.targets.assign(key=c.targets["constraints"]).set_index(["variable", "key"])
    keyed = m.targets.assign(key=m.targets["constraints"]).set_index(["variable", "key"])
    true_values = truth.loc[keyed.index, "true_value"].to_numpy()
    np.testing.assert_array_equal(m.X @ c.true_weights, true_values)
    noisy = m.targets["geo_level"] != "national"
    assert np.all(m.targets.loc[noisy, "value"].to_numpy() != true_values[noisy.to_numpy()])


# ------------------------------------------------------------------------- structure
def test_rows_touch_only_their_geography(tiny, tiny_matrix):
    m = tiny_matrix
    X = m.X
    n = tiny.dataset.n_households
    geos = m.columns.geographies
    row_of_entry = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    geo_of_entry = geos[X.indices // n]
    level = m.targets["geo_level"].to_numpy()[row_of_entry]
    gid = m.targets["geographic_id"].to_numpy()[row_of_entry]
    state_rows = level == "state"
    assert state_rows.sum() > 1000
    np.testing.assert_array_equal(geo_of_entry[state_rows] // 100, gid[state_rows].astype(int))
    district_rows = level == "district"
    np.testing.assert_array_equal(geo_of_entry[district_rows], gid[district_rows].astype(int))
    # the NC state household count has exactly the NC district columns, all households
    row = m.tracer().row_of(name="37/household_count")
    cols = X.indices[X.indptr[row] : X.indptr[row + 1]]
    expected = np.concatenate([np.arange(g * n, (g + 1) * n) for g in (3, 4, 5)])
    np.testing.assert_array_equal(cols, expected)


def test_state_swapped_benefits_in_the_matrix(tiny, tiny_matrix):
    m = tiny_matrix
    row = m.tracer().row_of(name="US/snap|snap>0")
    dense = m.columns.reshape(m.X[row].toarray().ravel())
    for g, geo in enumerate(m.columns.geographies):
        np.testing.assert_array_equal(dense[g], snap_benefit(tiny.dataset, geo // 100))
    # the same household gets different values in North Carolina and Alaska
    nc, ak = dense[3], dense[0]
    assert np.count_nonzero(nc != ak) > 5
    # non-zero entries only where the benefit is positive: no explicit zeros anywhere
    assert np.all(m.X.data != 0)


def test_csr_is_canonical_and_counts_match(tiny_matrix):
    X = tiny_matrix.X
    assert X.format == "csr" and X.indices.dtype == np.int32
    assert X.has_sorted_indices
    copy = X.copy()
    copy.sort_indices()
    np.testing.assert_array_equal(copy.indices, X.indices)
    np.testing.assert_array_equal(tiny_matrix.targets["nnz"].to_numpy(), np.diff(X.indptr))


def test_rules_run_once_per_state_and_are_cached(tiny):
    calls = []

    def compute(ds, key):
        calls.append(key)
        return tiny.rules.compute(ds, key)

    rules = GeographyRules(compute, tiny.rules.variables, level="state")
    db = tiny.targets_database()
    builder = MatrixBuilder(db, tiny.dataset, tiny.geographies, rules=rules)
    builder.build(
        filter={"variables": ["person_count", "household_count"], "domain_variables": ["age", ""]}
    )
    assert calls == []
    m = builder.build()
    assert sorted(calls) == [2, 15, 37]  # 6 districts, 3 states: one call per state
    assert m.info["rule_calls"] == {2: 1, 15: 1, 37: 1}
    builder.build(filter={"domain_variables": ["snap"]})
    assert len(calls) == 3
    # district-level rules run once per district
    calls.clear()
    per_district = GeographyRules(compute, tiny.rules.variables, level="district")

    def by_district(ds, key):
        return tiny.rules.compute(ds, key // 100)

    per_district = GeographyRules(
        lambda ds, k: (calls.append(k), by_district(ds, k))[1],
        tiny.rules.variables,
        level="district",
    )
    m2 = MatrixBuilder(db, tiny.dataset, tiny.geographies, rules=per_district).build()
    assert sorted(calls) == sorted(tiny.geographies.tolist())
    assert (m2.X != m.X).nnz == 0


# ------------------------------------------------------------------------- constraint semantics
def brute_force(ds: Dataset, snap: np.ndarray) -> dict[str, np.ndarray]:
    """Per-household contributions computed with pandas, independently of the builder."""
    p = ds.person.copy()
    tu = ds.table("tax_unit").copy()
    hh = ds.household.copy()
    hh_ids = hh["household_id"]
    p["snap"] = pd.Series(snap, index=hh_ids.to_numpy()).loc[p["household_id"]].to_numpy()
    tu = tu.merge(hh[["household_id", "household_size"]], on="household_id")

    def per_hh(frame, values):
        return (
            frame.assign(v=values)
            .groupby("household_id")["v"]
            .sum()
            .reindex(hh_ids, fill_value=0)
            .to_numpy(dtype=float)
        )

    age = p["age"]
    tu_old = p.assign(o=age >= 65).groupby("tax_unit_id")["o"].any()
    hh_kid = p.assign(k=age < 5).groupby("household_id")["k"].any().reindex(hh_ids).to_numpy()
    return {
        "person_count|age==3": per_hh(p, age == 3),
        "person_count|age!=3": per_hh(p, age != 3),
        "person_count|age<5": per_hh(p, age < 5),
        "person_count|age<=5": per_hh(p, age <= 5),
        "person_count|age>64": per_hh(p, age > 64),
        "person_count|age>=65": per_hh(p, age >= 65),
        "person_count|age in 0,1,2": per_hh(p, age.isin([0, 1, 2])),
        "tax_unit_count|filing in": per_hh(
            tu, tu["filing_status"].astype(str).isin(["joint", "head_of_household"])
        ),
        "household_count|child": hh_kid.astype(float),
        "household_count|child&snap": (hh_kid & (snap > 0)).astype(float),
        "employment_income|spouse": per_hh(
            p, np.where(p["role"].astype(str) == "spouse", p["employment_income"], 0)
        ),
        "agi|any65": per_hh(
            tu, np.where(tu_old.loc[tu["tax_unit_id"]].to_numpy(), tu["adjusted_gross_income"], 0)
        ),
        "tax_unit_count|hh>=4": per_hh(tu, tu["household_size"] >= 4),
        "person_count|head": per_hh(p, p["is_household_head"]),
        "person_count|role!=dependant&age<30": per_hh(
            p, (p["role"].astype(str) != "dependant") & (age < 30)
        ),
    }


CUSTOM = [
    ("person_count", "age == 3", "person_count|age==3"),
    ("person_count", "age != 3", "person_count|age!=3"),
    ("person_count", "age < 5", "person_count|age<5"),
    ("person_count", "age <= 5", "person_count|age<=5"),
    ("person_count", "age > 64", "person_count|age>64"),
    ("person_count", "age >= 65", "person_count|age>=65"),
    ("person_count", "age in 0,1,2", "person_count|age in 0,1,2"),
    ("tax_unit_count", "filing_status in joint,head_of_household", "tax_unit_count|filing in"),
    ("household_count", "age < 5", "household_count|child"),
    ("household_count", "age < 5; snap > 0", "household_count|child&snap"),
    ("employment_income", "role == spouse", "employment_income|spouse"),
    ("adjusted_gross_income", "age >= 65", "agi|any65"),
    ("tax_unit_count", "household_size >= 4", "tax_unit_count|hh>=4"),
    ("person_count", "is_household_head == True", "person_count|head"),
    ("person_count", "role != dependant; age < 30", "person_count|role!=dependant&age<30"),
]


def test_constraint_operations_and_entities_match_brute_force(tiny):
    ds = tiny.dataset
    db = custom_db([(var, 2024, 1.0, f"state_fips == 37; {cons}") for var, cons, _ in CUSTOM])
    m = MatrixBuilder(db, ds, tiny.geographies, rules=tiny.rules).build()
    expected = brute_force(ds, snap_benefit(ds, 37))
    for var, cons, key in CUSTOM:
        hits = [
            i
            for i, cs in enumerate(m.targets["constraints"])
            if m.targets["variable"][i] == var
            and sorted(c for c in cs if c[0] != "state_fips")
            == sorted(tuple(x.strip() for x in _split(c)) for c in cons.split(";"))
        ]
        assert len(hits) == 1, (var, cons)
        dense = m.columns.reshape(m.X[hits[0]].toarray().ravel())
        for g in (3, 4, 5):  # the NC districts
            np.testing.assert_array_equal(dense[g], expected[key], err_msg=f"{var} | {cons}")
        assert not dense[:3].any()
        assert expected[key].sum() > 0, key


def _split(clause: str) -> tuple[str, str, str]:
    for op in ("==", "!=", "<=", ">=", "<", ">", " in "):
        if op in clause:
            a, b = clause.split(op, 1)
            return a.strip(), op.strip(), b.strip()
    raise AssertionError(clause)


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [("person_count", 2024, 1.0, "income_tax_paid > 0")],
            "unknown variable 'income_tax_paid'",
        ),
        ([("wealth", 2024, 1.0, "")], "unknown variable 'wealth'"),
        ([("filing_status", 2024, 1.0, "")], "not numeric"),
        ([("person_count", 2024, 1.0, "age > abc")], "not a number"),
        ([("person_count", 2024, 1.0, "is_household_head == maybe")], "not a boolean"),
    ],
)
def test_bad_target_definitions(tiny, rows, message):
    with pytest.raises(InvalidProblemError, match=message):
        MatrixBuilder(custom_db(rows), tiny.dataset, tiny.geographies, rules=tiny.rules).build()


def test_bad_filters_and_geographies(tiny):
    db = tiny.targets_database()
    b = MatrixBuilder(db, tiny.dataset, tiny.geographies, rules=tiny.rules)
    with pytest.raises(InvalidProblemError, match=r"geography \['3799'\] that the calibrated"):
        b.build(filter={"geographic_ids": ["3701", "3799"]})
    with pytest.raises(InvalidProblemError, match=r"geography.*'6'"):
        b.build(filter={"geographic_ids": [6]})
    with pytest.raises(InvalidProblemError, match="no target matches"):
        b.build(filter={"variables": ["no_such_variable"]})
    with pytest.raises(InvalidProblemError, match="not district GEOIDs"):
        MatrixBuilder(db, tiny.dataset, [37, 15])
    with pytest.raises(InvalidProblemError, match="listed twice"):
        MatrixBuilder(db, tiny.dataset, [3701, 3701])
    with pytest.raises(InvalidProblemError, match="integer codes"):
        MatrixBuilder(db, tiny.dataset, ["NC-01"])
    with pytest.raises(InvalidProblemError, match="partial"):
        MatrixBuilder(db, tiny.dataset, tiny.geographies, partial="maybe")
    assert len(b.build(filter={"geographic_ids": [3701, "37", "US"]}).targets) == 12 + 14 + 14


def test_duplicate_strata_for_the_same_constraints(tiny):
    db = custom_db([("household_count", 2024, 5.0, "state_fips == 37")])
    from calibopt.targets.schema import strata, stratum_constraints, targets

    with db.engine.begin() as conn:  # a second stratum with the same constraints (another parent)
        sid = conn.execute(
            strata.insert()
            .values(definition_hash="other", parent_stratum_id=None)
            .returning(strata.c.stratum_id)
        ).scalar_one()
        conn.execute(
            stratum_constraints.insert().values(
                stratum_id=sid, constraint_variable="state_fips", operation="==", value="37"
            )
        )
        conn.execute(
            targets.insert().values(
                variable="household_count", period=2024, stratum_id=sid, value=6.0
            )
        )
    with pytest.raises(InvalidProblemError, match="duplicate targets"):
        MatrixBuilder(db, tiny.dataset, tiny.geographies).build()


def test_partly_calibrated_geographies(tiny):
    db = tiny.targets_database()
    nc = [3701, 3702, 3703]
    m = MatrixBuilder(db, tiny.dataset, nc, rules=tiny.rules).build()
    assert set(m.targets["geographic_id"]) == {"37", "3701", "3702", "3703"}
    assert set(m.info["dropped_targets"]["reason"]) == {"not calibrated", "partly calibrated"}
    kept = MatrixBuilder(db, tiny.dataset, nc, rules=tiny.rules, partial="keep").build()
    assert "US" in set(kept.targets["geographic_id"])
    with pytest.raises(InvalidProblemError, match="only partly calibrated"):
        MatrixBuilder(db, tiny.dataset, nc, rules=tiny.rules, partial="error").build()
    two = MatrixBuilder(db, tiny.dataset, [3701, 3702], rules=tiny.rules).build()
    assert set(two.targets["geographic_id"]) == {"3701", "3702"}


def test_geography_order_is_kept(tiny, tiny_matrix):
    order = [3702, 201, 1502, 3701, 1501, 3703]
    m = MatrixBuilder(tiny.targets_database(), tiny.dataset, order, rules=tiny.rules).build()
    assert m.columns.geographies.tolist() == order
    w = tiny.true_weight_matrix()
    pos = [tiny.geographies.tolist().index(g) for g in order]
    np.testing.assert_array_equal(m.X @ w[pos].ravel(), m.targets["value"].to_numpy())
    assert m.X.has_sorted_indices
    perm = np.concatenate([np.arange(p * 240, (p + 1) * 240) for p in pos])
    assert (m.X != tiny_matrix.X[:, perm]).nnz == 0


def test_state_columns(tiny):
    db = tiny.targets_database()
    with pytest.raises(InvalidProblemError, match="cannot be calibrated with state columns"):
        MatrixBuilder(db, tiny.dataset, [2, 15, 37], level="state", rules=tiny.rules).build()
    m = MatrixBuilder(db, tiny.dataset, [2, 15, 37], level="state", rules=tiny.rules).build(
        filter={"geo_levels": ["national", "state"]}
    )
    W = tiny.true_weight_matrix()
    states = tiny.geographies // 100
    per_state = np.stack([W[states == s].sum(axis=0) for s in (2, 15, 37)])
    np.testing.assert_array_equal(m.X @ per_state.ravel(), m.targets["value"].to_numpy())


def test_uprated_targets_in_the_matrix(tiny):
    db = custom_db(
        [("household_count", 2022, 100.0, ""), ("household_count", 2024, 50.0, "state_fips == 37")]
    )
    db.add_uprating("household_count", 2022, 2024, 1.25)
    m = MatrixBuilder(db, tiny.dataset, tiny.geographies, partial="keep").build()
    t = m.targets.set_index("geographic_id")
    assert t.loc["US", "value"] == 125.0 and t.loc["US", "original_value"] == 100.0
    assert t.loc["37", "value"] == 50.0


# ------------------------------------------------------------------------- problem and files
def test_design_prior_and_problem(tiny, tiny_matrix):
    m = tiny_matrix
    d = m.columns.design_weights(0.02)
    D = m.columns.reshape(d)
    hw = tiny.dataset.household["household_weight"].to_numpy()
    np.testing.assert_allclose(D.sum(axis=0), hw, rtol=1e-13)
    home = tiny.dataset.household["state_fips"].to_numpy()
    own = m.columns.states[:, None] == home[None, :]
    np.testing.assert_allclose((D * own).sum(axis=0), 0.98 * hw, rtol=1e-13)
    # NC households: 3 NC districts share 98% evenly
    nc = np.flatnonzero(home == 37)[0]
    np.testing.assert_allclose(D[3:, nc], 0.98 * hw[nc] / 3)
    np.testing.assert_allclose(D[:3, nc], 0.02 * hw[nc] / 3)
    p = m.to_problem()
    assert p.n_targets == len(m.targets) and p.n_units == tiny.n_columns
    assert len(set(p.target_names)) == p.n_targets
    assert list(p.groups[:3]) == list(m.targets["group"][:3])
    assert p.lower.min() == 0 and np.isinf(p.upper).all()
    np.testing.assert_allclose(p.initial_weights, m.columns.design_weights(0.01))
    assert np.all(p.tolerance == 0)


def test_tolerance_from_the_database(tiny):
    db = TargetsDatabase.create("sqlite://")
    db.add_targets(
        pd.DataFrame(
            {
                "variable": ["household_count", "person_count"],
                "period": [2024, 2024],
                "value": [10.0, 20.0],
                "constraints": ["state_fips == 37", "state_fips == 37"],
                "tolerance": [0.025, None],
            }
        )
    )
    m = MatrixBuilder(db, tiny.dataset, tiny.geographies).build()
    np.testing.assert_array_equal(m.targets["tolerance"], [0.025, np.nan])
    p = m.to_problem(default_tolerance=0.1)
    np.testing.assert_array_equal(p.tolerance, [0.025, 0.1])


def test_matrix_files_keep_tolerances_as_fractions(tmp_path, tiny):
    import h5py

    db = TargetsDatabase.create("sqlite://")
    db.add_targets(
        pd.DataFrame(
            {
                "variable": ["household_count", "person_count"],
                "period": [2024, 2024],
                "value": [10.0, 20.0],
                "constraints": ["state_fips == 37", "state_fips == 37"],
                "tolerance": [0.025, None],
            }
        )
    )
    path = tmp_path / "m.h5"
    MatrixBuilder(db, tiny.dataset, tiny.geographies).build().save(path)
    back = CalibrationMatrix.load(path)
    np.testing.assert_array_equal(back.to_problem(default_tolerance=0.1).tolerance, [0.025, 0.1])
    # a version-1 file stored the database's percentage: it still reads as a fraction
    with h5py.File(path, "r+") as f:
        assert f.attrs["format_version"] == 2
        f.attrs["format_version"] = 1
        f["targets/tolerance"][...] = [2.5, np.nan]
    old = CalibrationMatrix.load(path)
    np.testing.assert_array_equal(old.to_problem(default_tolerance=0.1).tolerance, [0.025, 0.1])


def test_save_load_and_hdf5_dataset(tmp_path, tiny, tiny_matrix):
    path = tmp_path / "m.h5"
    tiny_matrix.save(path)
    back = CalibrationMatrix.load(path)
    assert (back.X != tiny_matrix.X).nnz == 0
    pd.testing.assert_series_equal(back.targets["constraints"], tiny_matrix.targets["constraints"])
    pd.testing.assert_series_equal(
        back.targets["name"].astype(object), tiny_matrix.targets["name"].astype(object)
    )
    np.testing.assert_array_equal(
        back.to_problem().initial_weights, tiny_matrix.to_problem().initial_weights
    )
    # the builder reads a dataset file (PolicyEngine layout) as well
    data = tmp_path / "data.h5"
    tiny.dataset.to_hdf5(data, layout="policyengine")
    m = MatrixBuilder(
        tiny.targets_database(), str(data), tiny.geographies, rules=tiny.rules
    ).build()
    assert (m.X != tiny_matrix.X).nnz == 0


@pytest.mark.slow
def test_full_size_is_exact():
    c = synthetic_country("full", seed=0)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    assert m.X.shape == (len(c.targets), 5_232_000)
    np.testing.assert_array_equal(m.X @ c.true_weights, m.targets["value"].to_numpy())


@pytest.mark.parametrize(
    "module",
    [
        "calibopt.datasets",
        "calibopt.datasets.dataset",
        "calibopt.datasets.rules",
        "calibopt.matrix",
        "calibopt.targets",
        "calibopt.targets.database",
    ],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_bad_household_columns(tiny):
    db = tiny.targets_database()
    hh = tiny.dataset.household.copy()
    hh.loc[3, "household_weight"] = np.nan
    broken = tiny.dataset.assign("household", household_weight=hh["household_weight"])
    with pytest.raises(InvalidProblemError, match=r"household\.household_weight has 1 missing"):
        MatrixBuilder(db, broken, tiny.geographies)
    no_weight = Dataset(
        {**tiny.dataset.entities, "household": hh.drop(columns="household_weight")}, period=2024
    )
    m = MatrixBuilder(db, no_weight, tiny.geographies, rules=tiny.rules).build()
    with pytest.raises(InvalidProblemError, match="pass initial_weights explicitly"):
        m.to_problem()
    assert m.to_problem(np.ones(m.X.shape[1])).n_units == tiny.n_columns
