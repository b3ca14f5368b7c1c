"""Dataset container, HDF5 layouts, seeded randomness, geography and the synthetic country."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from calibopt.datasets import (
    US_STATES,
    Dataset,
    make_geography,
    seeded_uniform,
    synthetic_country,
)
from calibopt.datasets.synthetic import STATE_PARAMETERS, snap_benefit
from calibopt.errors import InvalidProblemError
from calibopt.files import atomic_output


# ---------------------------------------------------------------------------------- fixtures
def small_frames() -> dict[str, pd.DataFrame]:
    household = pd.DataFrame(
        {
            "household_id": [10, 20, 30],
            "household_weight": [1.5, 2.0, 3.0],
            "state_fips": [37, 15, 37],
        }
    )
    person = pd.DataFrame(
        {
            "person_id": [1, 2, 3, 4, 5, 6],
            "household_id": [10, 10, 20, 30, 30, 30],
            "tax_unit_id": [100, 100, 200, 300, 300, 301],
            "age": [40, 3, 70, 35, 33, 19],
            "earnings": [50_000.0, 0.0, 0.0, 20_000.0, 15_000.0, 4_000.0],
        }
    )
    tax_unit = pd.DataFrame(
        {
            "tax_unit_id": [100, 200, 300, 301],
            "household_id": [10, 20, 30, 30],
            "filing": ["single", "single", "joint", "single"],
        }
    )
    return {"household": household, "person": person, "tax_unit": tax_unit}


# ---------------------------------------------------------------------------------- Dataset
def test_dataset_links_and_positions():
    ds = Dataset(small_frames(), period=2024)
    assert ds.group_entities == ["tax_unit"]
    assert ds.n_households == 3 and ds.n_persons == 6 and ds.n("tax_unit") == 4
    np.testing.assert_array_equal(ds.entity_index("household"), [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(ds.entity_index("tax_unit"), [0, 0, 1, 2, 2, 3])
    np.testing.assert_array_equal(ds.household_index("tax_unit"), [0, 1, 2, 2])
    assert ds.entity_of("filing") == "tax_unit" and ds.entity_of("age") == "person"
    assert ds.variables["household_weight"] == "household"


def test_map_to_matches_pandas_groupby():
    rng = np.random.default_rng(1)
    n_hh = 200
    size = rng.integers(1, 6, n_hh)
    hh_of = np.repeat(np.arange(n_hh), size)
    person = pd.DataFrame(
        {
            "person_id": np.arange(hh_of.size) + 1,
            "household_id": hh_of + 1,
            "x": rng.normal(size=hh_of.size),
            "age": rng.integers(0, 90, hh_of.size),
        }
    )
    ds = Dataset(
        {"household": pd.DataFrame({"household_id": np.arange(n_hh) + 1}), "person": person}
    )
    g = person.groupby("household_id")
    x = person["x"].to_numpy()
    kid = person["age"].to_numpy() < 5
    np.testing.assert_allclose(ds.map_to(x, "person", "household"), g["x"].sum(), rtol=1e-14)
    np.testing.assert_allclose(ds.map_to(x, "person", "household", how="min"), g["x"].min())
    np.testing.assert_allclose(ds.map_to(x, "person", "household", how="max"), g["x"].max())
    np.testing.assert_allclose(
        ds.map_to(x, "person", "household", how="mean"), g["x"].mean(), rtol=1e-12
    )
    kids = person.assign(k=kid).groupby("household_id")["k"]
    np.testing.assert_array_equal(ds.map_to(kid, "person", "household", how="any"), kids.any())
    np.testing.assert_array_equal(ds.map_to(kid, "person", "household", how="all"), kids.all())
    np.testing.assert_array_equal(ds.map_to(kid, "person", "household", how="count"), kids.sum())
    # where: sum of x over children only
    expected = person.assign(y=np.where(kid, x, 0)).groupby("household_id")["y"].sum()
    np.testing.assert_allclose(ds.map_to(x, "person", "household", where=kid), expected)
    # broadcast down and count
    hh_values = np.arange(n_hh) * 2.0
    np.testing.assert_array_equal(ds.map_to(hh_values, "household", "person"), hh_values[hh_of])
    np.testing.assert_array_equal(ds.map_to(None, "person", "household"), size)


def test_map_to_between_groups():
    ds = Dataset(small_frames())
    tu = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(ds.map_to(tu, "tax_unit", "household"), [1, 2, 7])
    np.testing.assert_array_equal(ds.map_to([5, 6, 7], "household", "tax_unit"), [5, 6, 7, 7])
    np.testing.assert_array_equal(ds.map_to(tu, "tax_unit", "person"), [1, 1, 2, 3, 3, 4])
    np.testing.assert_array_equal(
        ds.map_to([5, 6, 7], "household", "tax_unit", where=[True, False, True]), [5, 0, 7, 7]
    )
    np.testing.assert_array_equal(ds.map_to(tu, "tax_unit", "household", where=tu != 3), [1, 2, 4])
    with pytest.raises(InvalidProblemError, match="not nested"):
        Dataset(
            {
                **small_frames(),
                "spm_unit": small_frames()["tax_unit"].rename(
                    columns={"tax_unit_id": "spm_unit_id", "filing": "spm"}
                ),
            }
            | {
                "person": small_frames()["person"].assign(
                    spm_unit_id=[100, 100, 200, 300, 300, 301]
                )
            }
        ).map_to(tu, "tax_unit", "spm_unit")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.pop("person"), "needs a 'person' table"),
        (lambda f: f.update(household=f["household"].drop(columns="household_id")), "lacks its id"),
        (lambda f: f.update(person=f["person"].drop(columns="tax_unit_id")), "link column"),
        (lambda f: f["person"].loc.__setitem__((0, "person_id"), 2), "duplicated"),
        (lambda f: f["person"].loc.__setitem__((0, "household_id"), 99), "dangling"),
        (lambda f: f["tax_unit"].loc.__setitem__((0, "household_id"), 77), "dangling"),
        (lambda f: f["person"].loc.__setitem__((3, "tax_unit_id"), 100), "another household"),
        (lambda f: f["tax_unit"].loc.__setitem__(4, [999, 10, "x"]), "no persons"),
        (lambda f: f["tax_unit"].__setitem__("age", 1), "appears in both"),
        (lambda f: f["person"].__setitem__("person_id", [1.5, 2, 3, 4, 5, 6]), "integer ids"),
    ],
)
def test_dataset_validation_errors(mutate, message):
    frames = small_frames()
    mutate(frames)
    with pytest.raises(InvalidProblemError, match=message):
        Dataset(frames)


def test_subset_and_assign():
    ds = Dataset(small_frames())
    sub = ds.subset(np.array([False, True, True]))
    assert sub.ids("household").tolist() == [20, 30]
    assert sub.ids("person").tolist() == [3, 4, 5, 6]
    assert sub.ids("tax_unit").tolist() == [200, 300, 301]
    new = ds.assign("household", snap=[1.0, 2.0, 3.0])
    assert new.entity_of("snap") == "household" and "snap" not in ds.variables
    with pytest.raises(InvalidProblemError, match="shape"):
        ds.assign("household", snap=[1.0])


# ---------------------------------------------------------------------------------- HDF5
def test_hdf5_round_trip_both_layouts(tmp_path, tiny):
    ds = tiny.dataset
    own = tmp_path / "own.h5"
    ds.to_hdf5(own)
    back = Dataset.from_hdf5(own)
    assert back.equals(ds) and back.period == 2024
    assert isinstance(back.person["role"].dtype, pd.CategoricalDtype)
    pe = tmp_path / "pe.h5"
    ds.to_hdf5(pe, layout="policyengine")
    with h5py.File(pe) as f:
        assert set(f["person_household_id"]) == {"2024"}
        assert "person_tax_unit_id" in f and "household_id" in f
        np.testing.assert_array_equal(f["age"]["2024"][...], ds.person["age"])
    read = Dataset.from_hdf5(pe)
    for entity, frame in ds.entities.items():
        other = read.table(entity)
        for col in frame.columns:
            np.testing.assert_array_equal(
                other[col].astype(str).to_numpy(), frame[col].astype(str).to_numpy()
            )


def test_read_policyengine_file_written_by_hand(tmp_path):
    path = tmp_path / "users.h5"
    with h5py.File(path, "w") as f:

        def put(name, values, period="2024"):
            f.require_group(name).create_dataset(period, data=np.asarray(values))

        put("household_id", [5, 9])
        put("person_id", [1, 2, 3])
        put("tax_unit_id", [50, 90])
        put("person_household_id", [5, 5, 9])
        put("person_tax_unit_id", [50, 50, 90])
        put("household_weight", [100.0, 250.0])
        put("state_fips", [37, 2])
        put("age", [30, 2, 60])
        put("county_str", np.array([b"WAKE", b"NOME", b"NOME"]))
        put("tax_unit_income", [10.0, 20.0])
        put("age", [31, 3, 61], period="2025")
    with pytest.raises(InvalidProblemError, match="several periods"):
        Dataset.from_hdf5(path)
    with pytest.raises(InvalidProblemError, match="no data for period"):
        Dataset.from_hdf5(path, period=2023)
    ds = Dataset.from_hdf5(path, period=2024)
    assert ds.table("tax_unit")["household_id"].tolist() == [5, 9]
    assert ds.person["age"].tolist() == [30, 2, 60]
    assert ds.person["county_str"].tolist() == ["WAKE", "NOME", "NOME"]
    # households and tax units both have 2 rows: known names and prefixes decide
    assert ds.entity_of("tax_unit_income") == "tax_unit"
    assert ds.entity_of("household_weight") == "household"
    assert ds.entity_of("state_fips") == "household"


def test_read_policyengine_ambiguous_entity(tmp_path):
    path = tmp_path / "amb.h5"
    with h5py.File(path, "w") as f:
        for name, values in {
            "household_id": [5, 9],
            "person_id": [1, 2],
            "tax_unit_id": [50, 90],
            "person_household_id": [5, 9],
            "person_tax_unit_id": [50, 90],
            "income": [1.0, 2.0],
        }.items():
            f.create_group(name).create_dataset("2024", data=np.asarray(values))
    with pytest.raises(InvalidProblemError, match="cannot tell the entity"):
        Dataset.from_hdf5(path)
    ds = Dataset.from_hdf5(path, entities={"income": "tax_unit"})
    assert ds.entity_of("income") == "tax_unit"


def test_bad_files_and_atomic_writes(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not hdf5" * 10)
    with pytest.raises(InvalidProblemError, match="not a readable HDF5"):
        Dataset.from_hdf5(junk)
    with pytest.raises(InvalidProblemError, match="does not exist"):
        Dataset.from_hdf5(tmp_path / "missing.h5")
    ds = Dataset(small_frames())
    target = tmp_path / "out.h5"
    target.write_bytes(b"old")
    with pytest.raises(InvalidProblemError, match="already exists"):
        ds.to_hdf5(target)
    assert target.read_bytes() == b"old"
    ds.to_hdf5(target, overwrite=True)
    assert Dataset.from_hdf5(target).equals(ds)
    # a failure inside the write leaves neither a temp file nor a half file
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "never.h5") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["junk.h5", "out.h5"]


# ---------------------------------------------------------------------------------- randomness
def test_seeded_uniform_is_reproducible_and_uniform():
    ids = np.arange(1, 200_001)
    u = seeded_uniform(11, ids, 37)
    assert u.min() >= 0 and u.max() < 1
    # same draw for the same (seed, household, geography), whatever else is in the call
    np.testing.assert_array_equal(seeded_uniform(11, ids[::-7], 37), u[::-7])
    assert seeded_uniform(11, 5, 37)[0] == u[4]
    # another geography or seed gives independent draws
    v = seeded_uniform(11, ids, 15)
    assert abs(np.corrcoef(u, v)[0, 1]) < 0.01
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert stats.kstest(v, "uniform").pvalue > 1e-3
    assert not np.array_equal(seeded_uniform(12, ids, 37), u)
    with pytest.raises(InvalidProblemError, match="integers"):
        seeded_uniform(1, np.array([0.5]))


# ---------------------------------------------------------------------------------- geography
def test_us_geography_shape():
    assert len(US_STATES) == 51 and US_STATES["n_districts"].sum() == 436
    geo = make_geography()
    assert len(geo.districts) == 436
    assert (
        geo.districts["congressional_district_geoid"] // 100 == geo.districts["state_fips"]
    ).all()
    counts = geo.districts.groupby("state_fips").size()
    assert counts[6] == 52 and counts[48] == 38 and counts[2] == 1 and counts[11] == 1
    small = make_geography(8, 40, seed=3)
    assert len(small.states) == 8 and small.states["n_districts"].sum() == 40
    assert (small.states["n_districts"] >= 1).all()
    with pytest.raises(InvalidProblemError):
        make_geography(60)


# ---------------------------------------------------------------------------------- synthetic
def test_synthetic_country_is_seeded(tiny):
    again = synthetic_country("tiny", seed=0)
    assert again.dataset.equals(tiny.dataset)
    np.testing.assert_array_equal(again.true_weights, tiny.true_weights)
    pd.testing.assert_frame_equal(again.targets, tiny.targets)
    other = synthetic_country("tiny", seed=1)
    assert not np.array_equal(other.true_weights, tiny.true_weights[: other.true_weights.size])


def test_synthetic_country_structure(tiny):
    ds = tiny.dataset
    assert tiny.geographies.tolist() == [201, 1501, 1502, 3701, 3702, 3703]
    assert tiny.true_weights.size == 6 * 240 == tiny.n_columns
    assert np.all(tiny.true_weights == np.rint(tiny.true_weights))
    assert set(ds.person["role"].astype(str)) == {"head", "spouse", "dependant"}
    # each tax unit has exactly one head; spouses only in joint units
    person = ds.person
    heads = (person["role"] == "head").groupby(person["tax_unit_id"]).sum()
    assert (heads == 1).all()
    joint = ds.table("tax_unit").set_index("tax_unit_id")["filing_status"] == "joint"
    spouses = (person["role"] == "spouse").groupby(person["tax_unit_id"]).sum()
    assert ((spouses > 0) == joint.loc[spouses.index]).all()
    # AGI is the members' income
    income = person["employment_income"] + person["retirement_income"]
    agi = income.groupby(person["tax_unit_id"]).sum()
    tu = ds.table("tax_unit").set_index("tax_unit_id")
    np.testing.assert_array_equal(agi.loc[tu.index].to_numpy(), tu["adjusted_gross_income"])
    # true weights live on own-state households, plus a few out-of-state donors
    W = tiny.true_weight_matrix()
    home = ds.household["state_fips"].to_numpy()
    own = (tiny.geographies // 100)[:, None] == home[None, :]
    assert np.all(W[own] >= 1)
    assert 0 < np.count_nonzero(W[~own]) < 0.05 * (~own).sum()


def test_synthetic_targets_are_consistent_across_levels(tiny):
    t = tiny.targets
    # 14 kinds for the nation and each state, 12 per district; Alaska has no income tax
    assert len(t) == 14 + 3 * 14 + 6 * 12 - 1
    assert not ((t["variable"] == "state_income_tax") & (t["geographic_id"] == "2")).any()
    # noiseless: the districts of a state sum to the state, the states to the nation
    key = t["constraints"].map(
        lambda cs: tuple(
            c for c in cs if c[0] not in ("state_fips", "congressional_district_geoid")
        )
    )
    t = t.assign(domain=key)
    for _, grp in t.groupby(["variable", "domain"]):
        nat = grp.loc[grp["geo_level"] == "national", "value"].sum()
        states = grp.loc[grp["geo_level"] == "state", "value"]
        assert states.sum() == nat
        districts = grp.loc[grp["geo_level"] == "district"]
        if len(districts):
            state_of = districts["geographic_id"].astype(int) // 100
            by_state = districts.groupby(state_of.to_numpy())["value"].sum()
            st = grp.loc[grp["geo_level"] == "state"].set_index(
                grp.loc[grp["geo_level"] == "state", "geographic_id"].astype(int)
            )["value"]
            np.testing.assert_array_equal(by_state.to_numpy(), st.loc[by_state.index].to_numpy())
    # the national household count is the sum of all true weights
    hh = t[
        (t["variable"] == "household_count") & (t["geo_level"] == "national") & (t["domain"] == ())
    ]
    assert hh["value"].iloc[0] == tiny.true_weights.sum()


def test_noise_makes_levels_conflict():
    noisy = synthetic_country("tiny", seed=0, noise={"district": 0.05})
    t = noisy.targets
    np.testing.assert_array_equal(
        t.loc[t["geo_level"] != "district", "value"],
        t.loc[t["geo_level"] != "district", "true_value"],
    )
    d = t[t["geo_level"] == "district"]
    rel = (d["value"] - d["true_value"]) / d["true_value"].where(d["true_value"] != 0)
    assert 0.02 < rel.std() < 0.08
    with pytest.raises(InvalidProblemError, match="noise"):
        synthetic_country("tiny", noise=1.5)


def test_snap_depends_on_the_state(tiny):
    ds = tiny.dataset
    nc = snap_benefit(ds, 37)
    ak = snap_benefit(ds, 2)
    hi = snap_benefit(ds, 15)
    home = ds.household["state_fips"].to_numpy()
    np.testing.assert_array_equal(ds.household["snap"].to_numpy()[home == 37], nc[home == 37])
    assert np.count_nonzero(nc != ak) > 5 and np.count_nonzero(nc != hi) > 5
    # Alaska's larger allotment: among households eligible and taking up in both, AK pays more
    both = (nc > 0) & (ak > 0)
    assert both.sum() > 3 and np.all(ak[both] > nc[both])
    assert STATE_PARAMETERS.loc[2, "allotment_factor"] > 1


def test_full_size_shape():
    full = synthetic_country("full", seed=0)
    assert full.n_columns == 436 * 12_000 == 5_232_000
    assert full.dataset.n_households == 12_000
    share = (full.dataset.household["snap"] > 0).mean()
    assert 0.08 < share < 0.25
    per_state = full.dataset.household.groupby("state_fips").size()
    assert per_state.min() >= 2 and per_state[6] > 10 * per_state[56]
