"""calibopt.stacking: the stacked file reproduces X @ w, ids, mapping, layouts, id scheme.

The file's totals are recomputed here by an evaluator independent of calibopt's (pandas
merges on the file's id columns, every constraint, geographic ones included, evaluated on the
file's own columns), and compared with X @ w from the matrix builder and, for the true
weights, with the synthetic country's own dense computation of its targets.
"""

from __future__ import annotations

import operator

import h5py
import numpy as np
import pandas as pd
import pytest

from calibopt.datasets import synthetic_country
from calibopt.datasets.synthetic import snap_benefit
from calibopt.matrix import MatrixBuilder
from calibopt.stacking import IdScheme, load, stack, stacked_dataset, verify
from calibopt.stacking.ids import choose_scheme
from calibopt.targets import TargetFilter

OPS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def country():
    return synthetic_country("small", seed=3)


@pytest.fixture(scope="module")
def matrix(country):
    db = country.targets_database()
    return MatrixBuilder(db, country.dataset, country.geographies, rules=country.rules).build()


@pytest.fixture(scope="module")
def weights(country):
    """Fractional weights on ~30% of the true columns plus ~1% out-of-state placements, so
    households are moved across states (their SNAP and state tax change)."""
    rng = np.random.default_rng(11)
    t = country.true_weights
    w = np.where(rng.random(t.size) < 0.3, t * rng.uniform(0.3, 1.7, t.size), 0.0)
    movers = (t == 0) & (rng.random(t.size) < 0.01)
    w[movers] = rng.uniform(0.1, 40.0, int(movers.sum()))
    return w


def wide_tables(ds):
    """Per entity, its table joined with the tables of the entities containing it."""
    hh = ds.household
    tu = ds.table("tax_unit").merge(hh, on="household_id", how="left", validate="many_to_one")
    person = ds.person.merge(hh, on="household_id", how="left", validate="many_to_one").merge(
        ds.table("tax_unit").drop(columns="household_id"),
        on="tax_unit_id",
        how="left",
        validate="many_to_one",
    )
    assert len(tu) == ds.n("tax_unit") and len(person) == ds.n_persons
    return {"household": hh, "person": person, "tax_unit": tu}


def independent_totals(ds, targets):
    """sum(value x weight) over the records satisfying every constraint (pandas only)."""
    wide = wide_tables(ds)
    owner = {c: e for e, t in ds.entities.items() for c in t.columns}
    totals = []
    for var, cons in zip(targets["variable"], targets["constraints"], strict=True):
        entity = var[: -len("_count")] if var.endswith("_count") else owner[var]
        frame = wide[entity]
        value = np.ones(len(frame)) if var.endswith("_count") else frame[var].to_numpy(float)
        keep = np.ones(len(frame), dtype=bool)
        for v, op, text in cons:
            if owner[v] == "person" and entity != "person":
                raise NotImplementedError("person constraint on a group target")
            keep &= OPS[op](frame[v].to_numpy(dtype=float), float(text))
        totals.append(float(np.sum(value * keep * frame["household_weight"].to_numpy())))
    return np.array(totals)


def inside(w, matrix, geographies):
    """w with the columns of geographies not in the file set to zero."""
    cm = matrix.columns
    W = w.reshape(cm.n_geographies, cm.n_households)
    out = np.zeros_like(W)
    pos = cm.geography_positions(geographies)
    out[pos] = W[pos]
    return out.reshape(-1)


# ------------------------------------------------------------------------------ the invariant
def _subset(country, which):
    geos = country.geographies
    if which == "all":
        return None
    if which == "state":  # the state with the most districts, by its FIPS code
        return int(pd.Series(geos // 100).value_counts().idxmax())
    if which == "district":
        return int(geos[1])
    return [int(g) for g in geos[[0, geos.size // 2, geos.size - 1]]]  # three states


@pytest.mark.parametrize("layout", ["calibopt", "policyengine"])
@pytest.mark.parametrize("which", ["all", "state", "district", "three"])
def test_file_totals_equal_X_w(tmp_path, country, matrix, weights, layout, which):
    subset = _subset(country, which)
    out = stack(weights, matrix, country, tmp_path / "s.h5", subset, layout=layout)
    back = load(out.path)
    assert back.layout == layout
    expected = matrix.X @ inside(weights, matrix, back.geographies)
    got = independent_totals(back.dataset, matrix.targets)
    # float rounding: relative to sum |x| w of each target (the sums run in other orders)
    scale = np.abs(matrix.X) @ inside(weights, matrix, back.geographies)
    assert np.all(np.abs(got - expected) <= 1e-12 * np.maximum(scale, 1))
    touched = expected != 0
    assert touched.sum() > 10  # the check covers real targets
    # verify() (calibopt's own evaluator) agrees
    check = verify(back, matrix, weights)
    assert float(check["rel_error"].abs().max()) < 1e-12
    np.testing.assert_allclose(check["expected"], expected, rtol=1e-15, atol=0)


def test_true_weights_reproduce_the_country_targets_exactly(tmp_path, country):
    """Integer weights and whole-dollar variables: the file's totals are the synthetic
    country's own targets, computed without the matrix builder, to the last digit."""
    out = stack(country.true_weights, country.geographies, country, tmp_path / "all.h5")
    got = independent_totals(load(out.path).dataset, country.targets)
    np.testing.assert_array_equal(got, country.targets["true_value"].to_numpy())


# ------------------------------------------------------------------------------ structure
@pytest.fixture(scope="module")
def stacked(tmp_path_factory, country, weights, matrix):
    path = tmp_path_factory.mktemp("stacked") / "all.h5"
    stack(weights, matrix, country, path)
    return load(path)


def test_zero_weight_columns_produce_no_records(stacked, weights, matrix):
    nz = np.flatnonzero(weights)
    assert stacked.dataset.n_households == nz.size
    np.testing.assert_array_equal(np.sort(stacked.mapping["matrix_column"].to_numpy()), nz)
    np.testing.assert_array_equal(
        stacked.mapping["household_weight"].to_numpy(),
        weights[stacked.mapping["matrix_column"].to_numpy()],
    )
    where = matrix.columns.locate(stacked.mapping["matrix_column"])
    np.testing.assert_array_equal(
        stacked.mapping["original_household_id"], where["household_id"].to_numpy()
    )
    np.testing.assert_array_equal(stacked.mapping["congressional_district"], where["geography"])


def test_ids_unique_and_in_their_geography_range(stacked):
    ds, ids = stacked.dataset, stacked.ids
    hh = ds.household.set_index("household_id")
    for e in ds.entities:
        new = ds.ids(e)
        assert pd.Index(new).is_unique, e
        assert new.dtype == np.int64  # read back; written as int32
        # the range rule says where each record is: the household's own district
        home = ds.map_to(hh["congressional_district_geoid"].to_numpy(), "household", e)
        np.testing.assert_array_equal(ids.geography_of(new), home)
        for g in np.unique(home)[:5]:
            lo, hi = ids.id_range(int(g))
            assert np.all((new[home == g] >= lo) & (new[home == g] < hi))
    # every person in exactly one household, of the same district as its tax unit
    person = ds.person
    assert person["household_id"].isin(hh.index).all()
    tu = ds.table("tax_unit").set_index("tax_unit_id")
    np.testing.assert_array_equal(
        tu.loc[person["tax_unit_id"], "household_id"].to_numpy(), person["household_id"]
    )
    np.testing.assert_array_equal(
        ids.geography_of(person["person_id"]), ids.geography_of(person["household_id"])
    )


def test_written_as_int32_with_headroom(stacked):
    with h5py.File(stacked.path, "r") as f:
        for e in stacked.dataset.entities:
            assert f[e][f"{e}_id"].dtype == np.int32
    top = max(int(stacked.dataset.ids(e).max()) for e in stacked.dataset.entities)
    assert top * 100 <= np.iinfo(np.int32).max


def test_mapping_round_trips_to_original_records(stacked, country):
    """Each record is a copy of its original household: same persons (in order), same
    tax units, same non-geographic variables."""
    src, ds, mapping = country.dataset, stacked.dataset, stacked.mapping
    np.testing.assert_array_equal(mapping["new_household_id"], ds.ids("household"))
    orig = src.household.set_index("household_id").loc[mapping["original_household_id"]]
    for col in ("household_size", "household_income"):
        np.testing.assert_array_equal(ds.household[col].to_numpy(), orig[col].to_numpy())
    # persons: the original persons of each original household, in order
    new_to_orig = dict(zip(mapping["new_household_id"], mapping["original_household_id"]))
    p_orig_hh = ds.person["household_id"].map(new_to_orig).to_numpy()
    by_hh = src.person.groupby("household_id", sort=False)
    expected = pd.concat([by_hh.get_group(h) for h in mapping["original_household_id"]])
    np.testing.assert_array_equal(p_orig_hh, expected["household_id"].to_numpy())
    for col in ("age", "employment_income", "retirement_income", "is_household_head"):
        np.testing.assert_array_equal(ds.person[col].to_numpy(), expected[col].to_numpy())
    assert (ds.person["role"].astype(str).to_numpy() == expected["role"].astype(str)).all()
    tus = src.table("tax_unit").groupby("household_id", sort=False)
    expected_tu = pd.concat([tus.get_group(h) for h in mapping["original_household_id"]])
    np.testing.assert_array_equal(
        ds.table("tax_unit")["adjusted_gross_income"], expected_tu["adjusted_gross_income"]
    )


def test_geography_variables_follow_the_destination(stacked, country):
    """A household moved to another state gets that state's SNAP (recomputed with its seeded
    take-up draw), not its home value."""
    src, mapping = country.dataset, stacked.mapping
    home_state = src.household.set_index("household_id").loc[
        mapping["original_household_id"], "state_fips"
    ]
    moved = mapping["state_fips"].to_numpy() != home_state.to_numpy()
    assert moved.sum() > 20
    hh = stacked.dataset.household
    np.testing.assert_array_equal(hh["state_fips"], mapping["state_fips"])
    np.testing.assert_array_equal(
        hh["congressional_district_geoid"], mapping["congressional_district"]
    )
    home_snap = src.household.set_index("household_id").loc[
        mapping["original_household_id"], "snap"
    ]
    differs = moved & (hh["snap"].to_numpy() != home_snap.to_numpy())
    assert differs.sum() > 0
    rows = np.flatnonzero(moved)[:50]
    pos = pd.Index(src.ids("household")).get_indexer(mapping["original_household_id"].iloc[rows])
    for r, h in zip(rows, pos, strict=True):
        dest = int(mapping["state_fips"].iloc[r])
        assert hh["snap"].iloc[r] == snap_benefit(src, dest)[h]


def test_rules_called_once_per_destination_state(country, weights, matrix):
    calls = []
    rules = country.rules

    def counting(ds, key):
        calls.append(key)
        return rules.compute(ds, key)

    from dataclasses import replace

    s = stacked_dataset(weights, matrix, country.dataset, rules=replace(rules, compute=counting))
    assert sorted(calls) == sorted(set(s.mapping["state_fips"].tolist()))


def test_ids_do_not_depend_on_the_subset(country, weights, matrix):
    """A district's records get the same ids alone, with its state, or with the country."""
    g = int(country.geographies[5])
    alone = stacked_dataset(weights, matrix, country, subset=g)
    state = stacked_dataset(weights, matrix, country, subset=g // 100)
    everything = stacked_dataset(weights, matrix, country)
    assert alone.ids == state.ids == everything.ids
    for e in alone.dataset.entities:
        a = alone.dataset.ids(e)
        for other in (state, everything):
            ids = other.dataset.ids(e)
            assert np.isin(a, ids).all()


def test_fixed_stride_is_the_documented_rule(country, weights, matrix):
    s = stacked_dataset(
        weights, matrix, country, subset=[int(country.geographies[2])], stride=25_000
    )
    hh = s.dataset.ids("household")
    assert hh[0] == 3 * 25_000 and np.array_equal(hh, 75_000 + np.arange(hh.size))
    persons = s.dataset.ids("person")
    np.testing.assert_array_equal(persons, 75_000 + np.arange(persons.size))
    assert s.ids.id_range(int(country.geographies[2])) == (75_000, 100_000)


def test_policyengine_layout_is_variable_period(tmp_path, country, weights, matrix):
    out = stack(weights, matrix, country, tmp_path / "pe.h5", 1502, layout="policyengine")
    with h5py.File(out.path, "r") as f:
        assert set(f["household_weight"].keys()) == {"2024"}
        n = f["household_id"]["2024"].shape[0]
        assert n == out.dataset.n_households
        assert f["person_household_id"]["2024"].shape == f["person_id"]["2024"].shape
        assert "person_tax_unit_id" in f
        np.testing.assert_array_equal(
            f["household_weight"]["2024"][...], out.mapping["household_weight"]
        )
        assert f["person_id"]["2024"].dtype == np.int32
    back = load(out.path)
    assert back.dataset.n_persons == out.dataset.n_persons


def test_variables_selection_keeps_ids_weights_and_geography(country, weights, matrix):
    s = stacked_dataset(weights, matrix, country, subset=1502, variables=["age", "snap"])
    assert list(s.dataset.household.columns) == [
        "household_id",
        "state_fips",
        "congressional_district_geoid",
        "household_weight",
        "snap",
    ]
    assert list(s.dataset.person.columns) == ["person_id", "household_id", "tax_unit_id", "age"]
    assert list(s.dataset.table("tax_unit").columns) == ["tax_unit_id", "household_id"]


def test_inputs_in_other_forms(tmp_path, country, weights, matrix):
    """A dataset file, a plain geography list, a 2-D weight array and a result object."""
    path = tmp_path / "data.h5"
    country.dataset.to_hdf5(path)

    class Result:
        def __init__(self, w):
            self.weights = w

    base = stacked_dataset(weights, matrix, country, subset=1502)
    for w, geos, data in [
        (weights.reshape(matrix.columns.n_geographies, -1), country.geographies, path),
        (Result(weights), matrix.columns, country.dataset),
    ]:
        s = stacked_dataset(w, geos, data, subset=1502, rules=country.rules)
        assert s.dataset.equals(base.dataset)


def test_other_weight_columns_follow_the_household(country, weights, matrix):
    ds = country.dataset.assign("person", person_weight=-1.0).assign("tax_unit", tax_unit_weight=0)
    s = stacked_dataset(weights, matrix, ds, subset=1502, rules=country.rules)
    hh_w = s.dataset.household["household_weight"].to_numpy()
    for e in ("person", "tax_unit"):
        np.testing.assert_array_equal(
            s.dataset.table(e)[f"{e}_weight"], hh_w[s.dataset.household_index(e)]
        )


def test_state_level_columns(tmp_path):
    c = synthetic_country("tiny", seed=1)
    flt = TargetFilter(geo_levels=["national", "state"])
    m = MatrixBuilder(
        c.targets_database(),
        c.dataset,
        sorted(set((c.geographies // 100).tolist())),
        rules=c.rules,
        level="state",
    ).build(flt)
    rng = np.random.default_rng(0)
    w = np.where(rng.random(m.X.shape[1]) < 0.5, rng.uniform(1, 100, m.X.shape[1]), 0.0)
    out = stack(w, m, c, tmp_path / "states.h5")
    back = load(out.path)
    assert "congressional_district_geoid" not in back.dataset.household.columns
    assert "congressional_district" not in back.mapping.columns
    got = independent_totals(back.dataset, m.targets)
    np.testing.assert_allclose(got, m.X @ w, rtol=1e-13)


def test_loaded_equals_written(stacked, tmp_path, country, weights, matrix):
    out = stack(weights, matrix, country, tmp_path / "x.h5", 1502)
    back = load(out.path)
    assert back.dataset.equals(out.dataset)
    pd.testing.assert_frame_equal(back.mapping, out.mapping, check_exact=True)
    assert back.ids == out.ids and back.level == "district"
    np.testing.assert_array_equal(back.geographies, out.geographies)


def test_mapping_csv_is_what_pandas_writes(tmp_path, stacked):
    from calibopt.stacking.files import write_csv

    frame = stacked.mapping.assign(household_weight=stacked.mapping["household_weight"] / 3)
    write_csv(frame, tmp_path / "ours.csv", chunk=1000)
    frame.to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()


# ------------------------------------------------------------------------------ id scheme
def test_choose_scheme_auto_rounds_and_falls_back():
    geos = np.arange(101, 101 + 436)
    counts = np.full((436, 2), 30_000)
    s = choose_scheme(counts, geos, np.arange(436), level="district")
    # the last id with stride 50,000 is 436 x 50,000 + 29,999: x 100 overflows int32;
    # with the exact count, 436 x 30,000 + 29,999 fits
    assert s.stride == 30_000
    # the choice does not depend on the subset: a few early districts alone would fit 50,000
    assert choose_scheme(counts, geos, np.arange(4), level="district").stride == 30_000
    s = choose_scheme(np.full((4, 2), 301), geos[:4], np.arange(4), level="district")
    assert s.stride == 500
    s = choose_scheme(
        np.full((4, 2), 301), geos[:4], np.arange(4), level="district", id_dtype="int64"
    )
    assert s.stride == 500 and s.dtype == "int64"


def test_scheme_overflow_is_refused_before_writing(tmp_path, country, weights, matrix):
    from calibopt import InvalidProblemError

    with pytest.raises(InvalidProblemError, match=r"id overflow.*x 100.*int32"):
        stack(weights, matrix, country, tmp_path / "o.h5", stride=10_000_000)
    assert not list(tmp_path.iterdir())
    # with 64-bit ids the same stride is fine
    s = stacked_dataset(weights, matrix, country, subset=1502, stride=10_000_000, id_dtype="int64")
    assert s.dataset.ids("household").max() > np.iinfo(np.int32).max // 100


def test_id_scheme_json_round_trip():
    s = IdScheme(500, "int32", 100, np.array([201, 3701]), "district")
    assert IdScheme.from_dict(s.to_dict()) == s
    np.testing.assert_array_equal(s.geography_of([500, 999, 1000]), [201, 201, 3701])


@pytest.mark.slow
def test_us_layout_one_percent_of_columns(tmp_path):
    """All 436 districts and 51 states, 1% of the 872,000 columns non-zero (random, so most
    placements are out of state), PolicyEngine layout: every target from the file = X @ w."""
    c = synthetic_country("default", seed=2)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    rng = np.random.default_rng(4)
    w = np.zeros(m.X.shape[1])
    cols = rng.choice(w.size, w.size // 100, replace=False)
    w[cols] = rng.uniform(0.5, 50.0, cols.size)
    out = stack(w, m, c, tmp_path / "us.h5", layout="policyengine")
    back = load(out.path)
    assert back.dataset.n_households == cols.size
    got = independent_totals(back.dataset, m.targets)
    expected = m.X @ w
    scale = np.abs(m.X) @ w
    assert np.all(np.abs(got - expected) <= 1e-12 * np.maximum(scale, 1))
    assert float(verify(back, m, w)["rel_error"].abs().max()) < 1e-12
