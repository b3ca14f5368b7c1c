"""Allocators against hand-computed cases, and the provisions' guarantees on synthetic LEAs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibopt import InfeasibleError, InvalidProblemError
from calibopt.allocation import (
    GRANT_TYPES,
    AbowdAllocator,
    SonnenbergAllocator,
    StateMinimumRule,
    UncertaintyThresholder,
    adjusted_sppe,
    equity_factor,
    hold_harmless_rates,
    synthetic_leas,
    synthetic_state_minimum_rules,
    to_cents,
)


def _tiny() -> pd.DataFrame:
    idx = pd.MultiIndex.from_tuples(
        [(1, 11), (1, 12), (2, 21), (2, 22)], names=["state", "district"]
    )
    return pd.DataFrame(
        {
            "est_children_eligible": [100, 9, 50, 30],
            "est_children_total": [1000, 100, 1000, 2000],
            "sppe": [10000.0, 10000.0, 20000.0, 20000.0],
            "per_capita_income": [40000.0, 40000.0, 60000.0, 60000.0],
            "equity_factor": [0.05, 0.05, 0.15, 0.15],
        },
        index=idx,
    )


def test_basic_grant_by_hand() -> None:
    df = _tiny()
    # average SPPE 15,000: bounds 4,800 and 7,200; 40% of 10,000 -> 4,800, of 20,000 -> 7,200
    np.testing.assert_array_equal(adjusted_sppe(df["sppe"]).to_numpy(), [4800, 4800, 7200, 7200])
    alloc = SonnenbergAllocator(grant_types=("basic",), hold_harmless=False, state_minimum=False)
    out = alloc.allocate(df, appropriations={"basic": 100_000})
    # eligible: (1,11) 100 of 1000; (2,21) 50 of 1000; (1,12) has 9 < 10; (2,22) 1.5% <= 2%
    assert out.table["est_eligible_basic"].tolist() == [True, False, True, False]
    assert out.table["est_auth_basic"].tolist() == [480_000, 0, 360_000, 0]
    assert out.grants("est", "basic").tolist() == [57142.86, 0.0, 42857.14, 0.0]
    assert out.grants("est").tolist() == [57142.86, 0.0, 42857.14, 0.0]


def test_efig_by_hand() -> None:
    df = _tiny()
    alloc = SonnenbergAllocator(grant_types=("efig",), hold_harmless=False, state_minimum=False)
    out = alloc.allocate(df, appropriations={"efig": 1_000_000})
    # EFIG factor: 40% of SPPE in [34%, 46%] of 15,000 = [5,100, 6,900]
    # effort: 10000*50000/(40000*15000) = 0.833 -> 0.95; 20000*50000/(60000*15000) -> 1.05
    s1 = 109 * 5100 * 0.95 * (1.30 - 0.05)  # all formula children of the state count
    s2 = 80 * 6900 * 1.05 * (1.30 - 0.15)
    assert np.isclose(out.states["est_auth_efig_state"].loc[1], s1)
    assert np.isclose(out.states["est_auth_efig_state"].loc[2], s2)
    share = [s1 / (s1 + s2), s2 / (s1 + s2)]
    expected = to_cents(np.array(share) * 1_000_000) / 100
    # within each state only the eligible LEA (>= 10 and >= 5%) receives the state's amount
    assert out.grants("est", "efig").tolist() == [expected[0], 0.0, expected[1], 0.0]
    assert out.table["est_eligible_efig"].tolist() == [True, False, True, False]


def test_efig_within_state_uses_the_equity_band_schedule() -> None:
    idx = pd.MultiIndex.from_tuples([(1, 1), (1, 2)], names=["state", "district"])
    df = pd.DataFrame(
        {
            "est_children_eligible": [1000, 3000],
            "est_children_total": [5000, 60000],
            "sppe": [12000.0] * 2,
            "per_capita_income": [50000.0] * 2,
            "equity_factor": [0.25] * 2,
        },
        index=idx,
    )
    out = SonnenbergAllocator(
        grant_types=("efig",), hold_harmless=False, state_minimum=False
    ).allocate(df, appropriations={"efig": 100_000})
    # equity >= .20: (1000, 5000) -> max(779 + 221 x 2, 691 + 309 x 2) = 1309;
    # (3000, 60000) (5%) -> by number 691 + 1571 x 2 + 738 x 3 = 6047
    w = np.array([1309.0, 6047.0])
    np.testing.assert_allclose(
        out.grants("est", "efig").to_numpy(), 100_000 * w / w.sum(), atol=0.01
    )


def test_state_minimum_binds_exactly() -> None:
    df = synthetic_leas(n_states=6, seed=3)
    small = df.index.get_level_values(0) == 1
    df.loc[small, "true_children_eligible"] = (df.loc[small, "true_children_eligible"] // 20).clip(
        lower=10
    )
    rule = StateMinimumRule(share="0.05")  # a generous minimum so state 1 needs it
    alloc = SonnenbergAllocator(
        grant_types=("targeted",), hold_harmless=False, state_minimum_rules={"targeted": rule}
    )
    A = 1e8
    out = alloc.allocate(df, prefixes=("true",), appropriations={"targeted": A})
    res = out.provisions[("true", "targeted")]
    assert res.state_at_minimum[0]
    e = df["true_children_eligible"].to_numpy()
    elig = out.table["true_eligible_targeted"].to_numpy()
    children_1 = e[small].sum()
    national = e[elig].sum()
    m = min(0.05 * A, 0.5 * (0.05 * A + 1.5 * A / national * children_1))
    assert out.states.loc[1, "true_grant_targeted"] == to_cents([m], "up")[0] / 100
    assert to_cents(out.grants("true", "targeted")).sum() == round(A * 100)


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return synthetic_leas(n_states=10, seed=11)


@pytest.fixture(scope="module")
def allocation(synthetic):
    alloc = SonnenbergAllocator(state_minimum_rules=synthetic_state_minimum_rules(synthetic))
    return alloc.allocate(synthetic, prefixes=("true", "est"))


def test_totals_to_the_cent_and_floors(synthetic, allocation) -> None:
    for p in ("true", "est"):
        e = synthetic[f"{p}_children_eligible"].to_numpy()
        n = synthetic[f"{p}_children_total"].to_numpy()
        rate = hold_harmless_rates(e, n)
        for g in GRANT_TYPES:
            cents = to_cents(allocation.grants(p, g))
            assert cents.sum() == round(allocation.appropriations[g] * 100), (p, g)
            covered = allocation.table[f"{p}_eligible_{g}"].to_numpy()
            if g == "concentration":
                covered = covered | (synthetic["prior_concentration"].to_numpy() > 0)
            floor = to_cents(rate * synthetic[f"prior_{g}"].to_numpy(), "up")
            assert np.all(cents[covered] >= floor[covered]), (p, g)
            # ineligible LEAs get nothing from basic, targeted and EFIG
            if g != "concentration":
                assert np.all(cents[~covered] == 0)
    d = allocation.diagnostics
    assert (d["ratable_factor"] == 1.0).all()
    assert np.array_equal(to_cents(d["allocated"]), to_cents(d["appropriation"]))


def test_grant_totals_are_whole_cents(allocation) -> None:
    """The total column is the exact cents sum of the grants, with no float noise in a CSV."""
    for table in (allocation.table, allocation.states):
        for p in ("true", "est"):
            total = table[f"{p}_grant_total"].to_numpy()
            parts = sum(to_cents(table[f"{p}_grant_{g}"].to_numpy()) for g in GRANT_TYPES)
            assert np.array_equal(to_cents(total), parts)
            assert all(float(f"{v:.2f}") == v for v in total)  # prints as whole cents


def test_row_order_invariance(synthetic, allocation) -> None:
    rng = np.random.default_rng(0)
    shuffled = synthetic.iloc[rng.permutation(len(synthetic))]
    alloc = SonnenbergAllocator(state_minimum_rules=synthetic_state_minimum_rules(synthetic))
    again = alloc.allocate(shuffled, prefixes=("true", "est"))
    assert again.table.index.equals(shuffled.index)
    pd.testing.assert_frame_equal(again.table.loc[synthetic.index], allocation.table)


def test_ratable_reduction_and_raise(synthetic) -> None:
    rich = synthetic.copy()
    rich["prior_basic"] *= 3.0
    with pytest.raises(InfeasibleError):
        SonnenbergAllocator(
            grant_types=("basic",), state_minimum=False, insufficient="raise"
        ).allocate(rich, prefixes=("true",))
    out = SonnenbergAllocator(grant_types=("basic",), state_minimum=False).allocate(
        rich, prefixes=("true",)
    )
    r = out.diagnostics["ratable_factor"].iloc[0]
    assert 0 < r < 1
    cents = to_cents(out.grants("true", "basic"))
    assert cents.sum() == round(out.appropriations["basic"] * 100)
    rate = hold_harmless_rates(rich["true_children_eligible"], rich["true_children_total"])
    elig = out.table["true_eligible_basic"].to_numpy()
    reduced = to_cents(r * rate * rich["prior_basic"].to_numpy(), "down")
    assert np.all(cents[elig] >= reduced[elig])


def test_uncertainty_thresholder_runs_through(synthetic) -> None:
    alloc = SonnenbergAllocator(
        thresholder=UncertaintyThresholder(mode="expected"),
        state_minimum_rules=synthetic_state_minimum_rules(synthetic),
    )
    out = alloc.allocate(synthetic, prefixes=("est",))
    for g in GRANT_TYPES:
        assert to_cents(out.grants("est", g)).sum() == round(out.appropriations[g] * 100)


def test_total_appropriation_scales_grant_types(synthetic) -> None:
    out = SonnenbergAllocator(
        grant_types=("basic", "targeted"), hold_harmless=False, state_minimum=False
    ).allocate(synthetic, prefixes=("true",), total_appropriation=1e9)
    ratio = synthetic["official_basic"].sum() / synthetic["official_targeted"].sum()
    assert np.isclose(sum(out.appropriations.values()), 1e9)
    assert np.isclose(out.appropriations["basic"] / out.appropriations["targeted"], ratio)


def test_abowd() -> None:
    df = _tiny()
    out = AbowdAllocator().allocate(df)
    assert out.grant_types == ("total",)
    assert out.grants("est").tolist() == [480_000, 43_200, 360_000, 216_000]
    scaled = AbowdAllocator().allocate(df, appropriation=1000)
    assert to_cents(scaled.grants("est")).sum() == 100_000


def test_input_errors(synthetic) -> None:
    with pytest.raises(InvalidProblemError, match="not the string 'basic'"):
        SonnenbergAllocator(grant_types="basic")
    with pytest.raises(InvalidProblemError, match="unknown grant"):
        SonnenbergAllocator(grant_types=("total",))
    with pytest.raises(InvalidProblemError, match="prior_targeted"):
        SonnenbergAllocator().allocate(
            synthetic.drop(columns=["prior_targeted"]), prefixes=("est",)
        )
    bad = synthetic.copy()
    bad.iloc[3, bad.columns.get_loc("est_children_eligible")] = -4
    with pytest.raises(InvalidProblemError, match=r"'est_children_eligible'.*non-negative"):
        SonnenbergAllocator().allocate(bad, prefixes=("est",))
    bad = synthetic.copy()
    bad.iloc[0, bad.columns.get_loc("sppe")] = np.nan
    with pytest.raises(InvalidProblemError, match="'sppe'"):
        SonnenbergAllocator().allocate(bad, prefixes=("est",))
    with pytest.raises(InvalidProblemError, match="prefixes"):
        SonnenbergAllocator().allocate(synthetic, prefixes="est")
    with pytest.raises(InvalidProblemError, match="appropriations"):
        SonnenbergAllocator().allocate(
            synthetic.drop(columns=["official_basic"]), prefixes=("est",)
        )
    with pytest.raises(InvalidProblemError, match="more than once"):
        SonnenbergAllocator().allocate(
            pd.concat([synthetic, synthetic.iloc[:1]]), prefixes=("est",)
        )
    with pytest.raises(InvalidProblemError, match="equity"):
        SonnenbergAllocator(grant_types=("efig",), hold_harmless=False).allocate(
            synthetic.drop(columns=["expenditure"]), prefixes=("est",)
        )


def test_equity_factor_by_hand() -> None:
    # state 1: two LEAs over 200 pupils; weighted pupils 1000 + 0.4 x 100 = 1040 and
    # 500 + 0.4 x 250 = 600; per-pupil spending 10 and 20; a third LEA (150 pupils) is ignored
    eq = equity_factor(
        [1, 1, 1, 2], [10400.0, 12000.0, 9e9, 5.0], [1000, 500, 150, 300], [100, 250, 0, 1]
    )
    w = np.array([1040.0, 600.0])
    ppe = np.array([10.0, 20.0])
    mean = (w * ppe).sum() / w.sum()
    cv = np.sqrt((w * (ppe - mean) ** 2).sum() / w.sum()) / mean
    assert np.isclose(eq.loc[1], cv) and eq.loc[2] == 0.0
