"""From weights to dollars: LEA estimates, allocation of weights, comparisons, the command."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibopt import InvalidProblemError
from calibopt.allocation import (
    AbowdAllocator,
    SonnenbergAllocator,
    allocate_weights,
    compare_allocations,
    compare_weightings,
    lea_estimates,
    synthetic_lea_inputs,
    synthetic_state_minimum_rules,
    to_cents,
)
from calibopt.cli import main


def _people(seed: int = 0, n_households: int = 3000):
    """Households with persons: state, district, ages, poverty; household weights."""
    rng = np.random.default_rng(seed)
    hh = pd.DataFrame(
        {
            "household_id": np.arange(100, 100 + n_households),
            "state": rng.integers(1, 4, size=n_households),
            "poor": rng.random(n_households) < 0.18,
            "weight": rng.uniform(50, 150, size=n_households),
        }
    )
    hh["district"] = hh["state"] * 100 + rng.integers(1, 6, size=n_households)
    size = rng.integers(1, 6, size=n_households)
    person = pd.DataFrame({"household_id": np.repeat(hh["household_id"].to_numpy(), size)})
    person["age"] = rng.integers(0, 90, size=len(person))
    person = person.merge(hh[["household_id", "state", "district", "poor"]], on="household_id")
    person["child"] = person["age"].between(5, 17)
    person["formula_child"] = person["child"] & person["poor"]
    return hh, person


def test_lea_estimates_against_groupby() -> None:
    hh, person = _people()
    w = hh.set_index("household_id")["weight"]
    est = lea_estimates(
        person, w, key="household_id", children="child", formula_children="formula_child"
    )
    ref = person.assign(w=person["household_id"].map(w))
    ref = ref.assign(e=ref["w"] * ref["formula_child"], n=ref["w"] * ref["child"])
    ref = ref.groupby(["state", "district"])[["e", "n"]].sum()
    np.testing.assert_allclose(
        est["est_children_eligible"].to_numpy(), ref["e"].to_numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        est["est_children_total"].to_numpy(), ref["n"].to_numpy(), rtol=1e-12
    )
    assert est.index.names == ["state", "district"] and est.index.equals(ref.index)
    # per-row weights give the same answer
    rows = lea_estimates(
        person,
        person["household_id"].map(w).to_numpy(),
        children="child",
        formula_children="formula_child",
        prefix="x",
    )
    np.testing.assert_allclose(
        rows["x_children_eligible"], est["est_children_eligible"], rtol=1e-12
    )


def test_lea_estimates_errors() -> None:
    hh, person = _people(n_households=50)
    w = hh.set_index("household_id")["weight"]
    with pytest.raises(InvalidProblemError, match="no weight"):
        lea_estimates(
            person,
            w.iloc[1:],
            key="household_id",
            children="child",
            formula_children="formula_child",
        )
    with pytest.raises(InvalidProblemError, match="lacks column"):
        lea_estimates(person, w, key="household_id")
    with pytest.raises(InvalidProblemError, match="rows"):
        lea_estimates(person, np.ones(3), children="child", formula_children="formula_child")
    with pytest.raises(InvalidProblemError, match="more 'child'"):
        lea_estimates(
            person, w, key="household_id", children="formula_child", formula_children="child"
        )


@pytest.fixture(scope="module")
def world():
    hh, person = _people(seed=2)
    w = hh.set_index("household_id")["weight"]
    truth = lea_estimates(
        person,
        w,
        key="household_id",
        children="child",
        formula_children="formula_child",
        prefix="true",
    )
    leas = synthetic_lea_inputs(truth.round(), seed=4)
    return hh, person, w, leas


def test_allocate_weights_equals_direct_allocation(world) -> None:
    _, person, w, leas = world
    alloc = SonnenbergAllocator(state_minimum_rules=synthetic_state_minimum_rules(leas))
    cols = {"key": "household_id", "children": "child", "formula_children": "formula_child"}
    w2 = w * np.random.default_rng(0).uniform(0.9, 1.1, size=w.size)
    got = allocate_weights(person, w2, leas, alloc, **cols)
    frame = leas.join(lea_estimates(person, w2, **cols))
    direct = alloc.allocate(frame, prefixes=("est",))
    pd.testing.assert_frame_equal(got.table, direct.table)
    for g, a in got.appropriations.items():
        assert to_cents(got.grants("est", g)).sum() == round(a * 100)
    # the Abowd allocator through the same door
    ab = allocate_weights(person, w2, leas, AbowdAllocator(), appropriations={"total": 1e6}, **cols)
    assert to_cents(ab.grants("est")).sum() == 100_000_000


def test_compare_allocations_by_hand() -> None:
    a = pd.Series([100.0, 100.0, 0.0, 50.0], index=list("abcd"))
    b = pd.Series([50.0, 100.0, 50.0, 48.0, 2.0], index=list("abcde"))
    cmp = compare_allocations(a, b, threshold=0.03)
    assert cmp.dollars_moved == 0.5 * (50 + 0 + 50 + 2 + 2)
    assert cmp.leas_losing == 2  # a lost 50%, d lost 4% (> 3%)
    s = cmp.summary()
    assert s["max_loss_pct"] == 0.5 and cmp.table.loc["e", "a"] == 0.0


def test_compare_weightings(world) -> None:
    _, person, w, leas = world
    alloc = SonnenbergAllocator(state_minimum_rules=synthetic_state_minimum_rules(leas))
    cols = {"key": "household_id", "children": "child", "formula_children": "formula_child"}
    same = compare_weightings(person, w, w.copy(), leas, alloc, **cols)
    assert same.dollars_moved == 0.0 and same.leas_losing == 0
    rng = np.random.default_rng(1)
    other = w * rng.uniform(0.5, 1.5, size=w.size)
    moved = compare_weightings(person, w, other, leas, alloc, threshold=0.05, **cols)
    assert moved.dollars_moved > 0
    assert np.isclose(moved.total_a, moved.total_b)
    # half the L1 change equals the dollars gained (same totals)
    gained = moved.table["change"].clip(lower=0).sum()
    assert np.isclose(moved.dollars_moved, gained, rtol=1e-9)
    assert moved.leas_losing == int((moved.table["change"] < -0.05 * moved.table["a"]).sum())


def test_allocate_command(tmp_path, world) -> None:
    _, _, _, leas = world
    src = tmp_path / "leas.csv"
    leas.rename(columns=lambda c: c.replace("true_", "est_")).reset_index().to_csv(src, index=False)
    out = tmp_path / "alloc.csv"
    rc = main(
        [
            "allocate",
            str(src),
            "-o",
            str(out),
            "--prefix",
            "est",
            "--grants",
            "basic,targeted",
            "--scale-state-minimums",
        ]
    )
    assert rc == 0
    table = pd.read_csv(out)
    assert {"state", "district", "est_grant_basic", "est_grant_targeted", "est_grant_total"} <= set(
        table
    )
    assert to_cents(table["est_grant_basic"]).sum() == to_cents([leas["official_basic"].sum()])[0]
    # refuses to overwrite, and reports bad input as an error message, not a traceback
    assert main(["allocate", str(src), "-o", str(out)]) == 1
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"state": [1], "district": [2]}).to_csv(bad, index=False)
    assert main(["allocate", str(bad), "-o", str(tmp_path / "x.csv")]) == 1
    assert not (tmp_path / "x.csv").exists()
