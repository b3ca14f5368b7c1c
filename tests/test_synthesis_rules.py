"""Tables and hierarchy rules of calibopt.synthesis: flatten/unflatten, enforce_hierarchy.

References: hand-computed values, and a per-household Python loop written independently of
the vectorised rules (every household's repair computed row by row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibopt import CalibrationError
from calibopt.datasets import Dataset
from calibopt.synthesis import (
    ChildAgeGap,
    OneHead,
    Shared,
    SpouseAgeGap,
    SumTo,
    check_hierarchy,
    enforce_hierarchy,
    flatten,
    group_variables,
    unflatten,
)


# ---------------------------------------------------------------------------- tables
def test_flatten_unflatten_round_trip_exact(tiny):
    ds = tiny.dataset
    flat = flatten(ds, "all")
    assert len(flat) == ds.n_persons
    assert flat["filing_status"].dtype == ds.table("tax_unit")["filing_status"].dtype
    back = unflatten(flat, group_variables(ds), period=ds.period, name=ds.name)
    assert back.equals(ds)
    for e in ds.entities:
        assert back.table(e).dtypes.equals(ds.table(e).dtypes)


def test_flatten_copies_group_variables_only_when_asked(tiny):
    ds = tiny.dataset
    plain = flatten(ds)
    assert list(plain.columns) == list(ds.person.columns)
    some = flatten(ds, ["household_income", "filing_status"])
    assert list(some.columns) == [*ds.person.columns, "household_income", "filing_status"]
    hh_pos = ds.entity_index("household")
    assert np.array_equal(
        some["household_income"], ds.household["household_income"].to_numpy()[hh_pos]
    )
    assert unflatten(plain, like=ds).equals(ds)
    assert unflatten(some, like=ds).equals(ds)


def test_unflatten_errors(tiny):
    ds = tiny.dataset
    flat = flatten(ds, "all")
    with pytest.raises(CalibrationError, match="lacks the id column 'tax_unit_id'"):
        unflatten(flat.drop(columns="tax_unit_id"), group_variables(ds))
    spanning = flat.copy()
    spanning.loc[0, "tax_unit_id"] = spanning.loc[len(flat) - 1, "tax_unit_id"]
    with pytest.raises(CalibrationError, match="span several households"):
        unflatten(spanning, group_variables(ds))
    varying = flat.copy()
    big = int(np.flatnonzero(varying["household_id"].duplicated().to_numpy())[0])
    varying.loc[big, "household_income"] += 1
    with pytest.raises(CalibrationError, match=r"household_income.*identical within its group"):
        unflatten(varying, group_variables(ds))
    with pytest.raises(CalibrationError, match="no rows"):
        unflatten(flat.iloc[:0], group_variables(ds))
    orphan = flatten(ds)
    orphan.loc[0, "household_id"] = 10**9
    with pytest.raises(CalibrationError, match="not in `like`"):
        unflatten(orphan, like=ds)


def test_dataset_refuses_persons_of_absent_households(tiny):
    ds = tiny.dataset
    person = ds.person.copy()
    person.loc[0, "household_id"] = 10**9
    with pytest.raises(CalibrationError, match="dangling"):
        Dataset({"household": ds.household, "person": person, "tax_unit": ds.table("tax_unit")})


# ---------------------------------------------------------------------------- rules, by hand
def _people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "household_id": [1, 1, 1, 2, 2, 3, 3, 3],
            "tax_unit_id": [10, 10, 11, 20, 20, 30, 30, 30],
            "role": ["head", "spouse", "head", "head", "head", "spouse", "dependant", "dependant"],
            "age": [30, 75, 20, 50, 40, 30, 20, 3],
            "region": ["a", "b", "b", "c", "c", "a", "a", "b"],
            "income": [10.0, 20.0, 60.0, 5.0, 7.0, 1.0, 2.0, 6.0],
            "tu_income": [30.0, 30.0, 60.0, 12.0, 12.0, 9.0, 9.0, 9.0],
            "hh_income": [80.0, 80.0, 80.0, 12.0, 12.0, 9.0, 9.0, 9.0],
        }
    )


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("mean", [30.0, 30.0, 30.0, 6.0, 6.0, 3.0, 3.0, 3.0]),
        ("median", [20.0, 20.0, 20.0, 6.0, 6.0, 2.0, 2.0, 2.0]),
        ("head", [10.0, 10.0, 10.0, 5.0, 5.0, 1.0, 1.0, 1.0]),
    ],
)
def test_shared_numbers(how, expected):
    fixed, report = enforce_hierarchy(_people(), shared={"income": how})
    assert fixed["income"].tolist() == expected
    assert report.loc[0, "violations_before"] == 3
    assert report.loc[0, "violations_after"] == 0


def test_shared_mode_breaks_ties_by_smallest_value():
    fixed, report = enforce_hierarchy(_people(), shared=["region"])
    assert fixed["region"].tolist() == ["b", "b", "b", "c", "c", "a", "a", "a"]
    assert report.loc[0, "rows_changed"] == 2


def test_shared_check_counts_groups_with_several_values():
    # missing values are one value, 0.0 and -0.0 are equal, categories compare by value
    hh = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    x = [np.nan, np.nan, 0.0, -0.0, 1.0, np.nan, 2.0, 3.0, 7.0, 7.0]
    cat = pd.Categorical(["a", None, None, None, "b", "b", "a", "b", "c", "c"])
    people = pd.DataFrame({"household_id": hh, "x": x, "cat": cat, "obj": list(cat)})
    people["i"] = [1, 1, 2, 2, 3, 4, 5, 5, 6, 7]
    found = check_hierarchy(people, shared={"x": "mode", "cat": "mode", "obj": "mode", "i": "mode"})
    assert found["violations"].tolist() == [2, 2, 2, 2]


def test_relationship_rules_by_hand():
    fixed, report = enforce_hierarchy(
        _people(), rules=[OneHead(), SpouseAgeGap(max_years=20), ChildAgeGap(min_years=15)]
    )
    # tax unit 20: two heads (50, 40) and no spouse -> the younger becomes the spouse;
    # tax unit 30: no head -> the oldest (the spouse, 30) becomes head
    assert fixed["role"].tolist() == [
        "head",
        "spouse",
        "head",
        "head",
        "spouse",
        "head",
        "dependant",
        "dependant",
    ]
    # spouse 75 with head 30 -> 50; dependant 20 with parent 30 -> 15
    assert fixed["age"].tolist() == [30, 50, 20, 50, 40, 30, 15, 3]
    assert report["violations_before"].tolist() == [2, 1, 1]
    assert report["rows_changed"].tolist() == [2, 1, 1]
    assert report["violations_after"].tolist() == [0, 0, 0]


def test_sum_to_total_and_parts():
    people = _people()
    fixed, report = enforce_hierarchy(people, rules=[SumTo("hh_income", "tu_income")])
    assert fixed["hh_income"].tolist() == [90.0, 90.0, 90.0, 12.0, 12.0, 9.0, 9.0, 9.0]
    assert report.loc[0, "violations_before"] == 1
    fixed, _ = enforce_hierarchy(people, rules=[SumTo("hh_income", "tu_income", adjust="parts")])
    assert fixed["tu_income"].tolist() == pytest.approx([80 / 3, 80 / 3, 160 / 3, 12, 12, 9, 9, 9])
    per_person, _ = enforce_hierarchy(people, rules=[SumTo("hh_income", "income", part_id=None)])
    assert per_person["hh_income"].tolist() == [90.0, 90.0, 90.0, 12.0, 12.0, 9.0, 9.0, 9.0]


def test_draw_repairs_are_seeded_and_within_limits():
    rng = np.random.default_rng(3)
    n = 400
    people = pd.DataFrame(
        {
            "household_id": np.repeat(np.arange(n), 2),
            "tax_unit_id": np.repeat(np.arange(n), 2),
            "role": np.tile(["head", "spouse"], n),
            "age": rng.integers(18, 95, 2 * n),
        }
    )
    rule = [SpouseAgeGap(max_years=10, fix="draw")]
    a, ra = enforce_hierarchy(people, rules=rule, seed=5)
    b, _ = enforce_hierarchy(people, rules=rule, seed=5)
    c, _ = enforce_hierarchy(people, rules=rule, seed=6)
    assert a.equals(b) and not a.equals(c)
    gap = np.abs(a["age"].to_numpy()[1::2] - a["age"].to_numpy()[::2])
    assert gap.max() <= 10 and ra.loc[0, "violations_after"] == 0
    assert ra.loc[0, "violations_before"] > 100


# ---------------------------------------------------------------------------- vs a loop
def _reference_loop(people: pd.DataFrame, gap: int, child: int) -> pd.DataFrame:
    """Row-by-row repairs per household: mean income, spouse clip, dependant clip."""
    out = people.copy()
    for _, idx in out.groupby("household_id", sort=False).groups.items():
        rows = list(idx)
        mean = sum(out.at[r, "income"] for r in rows) / len(rows)
        for r in rows:
            out.at[r, "income"] = mean
        head = next(r for r in rows if out.at[r, "role"] == "head")
        for r in rows:
            if out.at[r, "role"] == "spouse":
                a, h = out.at[r, "age"], out.at[head, "age"]
                out.at[r, "age"] = min(max(a, h - gap), h + gap)
        parents = [out.at[r, "age"] for r in rows if out.at[r, "role"] in ("head", "spouse")]
        for r in rows:
            if out.at[r, "role"] == "dependant" and out.at[r, "age"] > min(parents) - child:
                out.at[r, "age"] = max(min(parents) - child, 0)
    return out


def test_enforce_matches_a_per_household_loop():
    rng = np.random.default_rng(11)
    n = 500
    size = rng.integers(1, 6, n)
    hh = np.repeat(np.arange(n) * 7 + 3, size)
    slot = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)
    role = np.where(slot == 0, "head", np.where(slot == 1, "spouse", "dependant"))
    people = pd.DataFrame(
        {
            "household_id": hh,
            "tax_unit_id": hh,
            "role": role,
            "age": np.where(slot < 2, rng.integers(18, 90, hh.size), rng.integers(0, 40, hh.size)),
            "income": rng.lognormal(10, 1, hh.size).round(),
        }
    )
    rules = [SpouseAgeGap(max_years=12), ChildAgeGap(min_years=18)]
    fixed, report = enforce_hierarchy(people, shared={"income": "mean"}, rules=rules)
    expected = _reference_loop(people, 12, 18)
    assert np.array_equal(fixed["age"].to_numpy(), expected["age"].to_numpy())
    assert np.allclose(fixed["income"].to_numpy(), expected["income"].to_numpy(), rtol=1e-12)
    assert report["violations_after"].sum() == 0
    assert (report["violations_before"] > 0).all()
    assert check_hierarchy(fixed, shared={"income": "mean"}, rules=rules)["violations"].sum() == 0


def test_enforce_on_a_dataset(tiny):
    ds = tiny.dataset
    fixed, report = enforce_hierarchy(ds, rules=[SpouseAgeGap(max_years=5)])
    assert isinstance(fixed, Dataset)
    assert report.loc[0, "violations_before"] > 0 and report.loc[0, "violations_after"] == 0
    assert fixed.household.equals(ds.household)
    changed = (fixed.person["age"] != ds.person["age"]).sum()
    assert changed == report.loc[0, "rows_changed"]


# ---------------------------------------------------------------------------- bad input
def test_enforce_errors():
    people = _people()
    with pytest.raises(CalibrationError, match="household id column 'hh'"):
        enforce_hierarchy(people, household_id="hh", shared=["income"])
    with pytest.raises(CalibrationError, match="'region' is not numeric"):
        enforce_hierarchy(people, shared={"region": "mean"})
    spanning = people.copy()
    spanning.loc[0, "tax_unit_id"] = 20
    with pytest.raises(CalibrationError, match=r"1 tax_unit_id group.*e.g. tax_unit_id 20;"):
        enforce_hierarchy(spanning, rules=[OneHead()])
    with pytest.raises(CalibrationError, match="empty"):
        enforce_hierarchy(people.iloc[:0], shared=["income"])
    with pytest.raises(CalibrationError, match="needs the column 'age'"):
        enforce_hierarchy(people.drop(columns="age"), rules=[SpouseAgeGap()])
    with pytest.raises(CalibrationError, match="unknown rule"):
        enforce_hierarchy(people, rules=["spouse_age_diff"])
    with pytest.raises(CalibrationError, match="how must be one of"):
        Shared("income", how="average")
