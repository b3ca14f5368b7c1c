"""Targeted/EFIG weighted child counts and eligibility thresholds, against exact references."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from calibopt import CalibrationError, InvalidProblemError
from calibopt.allocation import (
    BASIC_RULE,
    CONCENTRATION_RULE,
    EFIG_LEA_TABLES,
    TARGETED_COUNTY,
    TARGETED_LEA,
    TARGETED_RULE,
    HardThresholder,
    Threshold,
    UncertaintyThresholder,
    WeightingTable,
    all_of,
    any_of,
    efig_table,
    hold_harmless_rates,
    weighted_child_count,
    weighted_counts,
)
from calibopt.allocation.thresholds import compare_share


# ---------------------------------------------------------------- independent reference
def _child_weight_number(j: int, table: WeightingTable) -> Fraction:
    """Weight of the j-th formula child (1-based) under the number schedule."""
    for edge, w in zip(table.number_edges, table.number_weights):
        if j <= edge:
            return Fraction(w)
    return Fraction(table.number_weights[-1])


def _reference(e: int, n: int, table: WeightingTable) -> tuple[Fraction, Fraction]:
    """Child by child: the number schedule counts whole children; the percentage schedule
    integrates the weight over each child's slice ((j-1)/n, j/n] of the population share."""
    by_number = sum((_child_weight_number(j, table) for j in range(1, e + 1)), Fraction(0))
    edges = [Fraction(0)] + [Fraction(p) * n for p in table.percent_edges] + [None]
    by_percent = Fraction(0)
    for j in range(1, e + 1):
        lo, hi = Fraction(j - 1), Fraction(j)
        for k, w in enumerate(table.percent_weights):
            a, b = edges[k], edges[k + 1]
            left = max(lo, a)
            right = hi if b is None else min(hi, b)
            if right > left:
                by_percent += Fraction(w) * (right - left)
    return by_number, by_percent


# ---------------------------------------------------------------- known values (issue)
def test_known_values_from_the_issue() -> None:
    parts = weighted_counts([1000, 691, 40000, 40000], [5000, 100000, 1000000, 100000])
    assert parts["weighted"].tolist()[:3] == [1165.75, 691.0, 96841.0]
    # (40000, 100000): the percentage schedule gives 80,432.5 (the reference's float band
    # edges gave 80,430); the number schedule gives 96,841, and the count is the larger.
    assert parts["by_percentage"].iloc[3] == 80432.5
    assert parts["by_number"].iloc[3] == 96841.0
    assert parts["weighted"].iloc[3] == 96841.0
    # the reference's off-by-one at the number edges gave 96,844
    assert parts["by_number"].iloc[2] == 96841.0


def test_hand_computed_bands() -> None:
    # 1000 of 5000 (20%): 779 x 1 + 221 x 1.75 = 1165.75; by number 691 + 309 x 1.5 = 1154.5
    p = weighted_counts([1000], [5000])
    assert (p["by_number"].iloc[0], p["by_percentage"].iloc[0]) == (1154.5, 1165.75)
    # 40000 children: 691 + 1571 x 1.5 + 5589 x 2 + 27663 x 2.5 + 4486 x 3
    assert (
        weighted_child_count([40000], [10**7])[0]
        == 691 + 1571 * 1.5 + 5589 * 2 + 27663 * 2.5 + 4486 * 3
    )


@pytest.mark.parametrize("edge", TARGETED_LEA.number_edges)
def test_number_band_edges_exact(edge: int) -> None:
    e = np.array([edge - 1, edge, edge + 1])
    n = np.full(3, 10**9)  # share tiny: the number schedule decides
    got = weighted_counts(e, n)["by_number"].to_numpy()
    for ei, g in zip(e, got):
        assert g == float(_reference_number_fast(int(ei), TARGETED_LEA))


def _reference_number_fast(e: int, table: WeightingTable) -> Fraction:
    # count children in [lo, hi] per band by integer arithmetic (independent of the code)
    out, lo = Fraction(0), 1
    for edge, w in zip([*table.number_edges, None], table.number_weights):
        hi = e if edge is None else min(e, edge)
        if hi >= lo:
            out += Fraction(w) * (hi - lo + 1)
        lo = (edge or 0) + 1
    return out


def test_percentage_edges_exact_where_float_fails() -> None:
    # 0.3016 * 100000 is 30159.999999999996 in binary floating point
    assert 0.3016 * 100000 != 30160
    for n, e in [
        (100000, 15580),
        (100000, 22110),
        (100000, 30160),
        (100000, 38240),
        (1000, 156),
        (1000, 302),
        (10000, 1558),
        (3, 1),
        (7, 2),
        (12345, 4721),
    ]:
        ref = _reference(e, n, TARGETED_LEA)[1] if e < 3000 else _continuous_pct(e, n)
        assert weighted_counts([e], [n])["by_percentage"].iloc[0] == float(ref)


def _continuous_pct(e: int, n: int) -> Fraction:
    edges = [Fraction(p) * n for p in TARGETED_LEA.percent_edges]
    out, prev = Fraction(0), Fraction(0)
    for w, edge in zip(TARGETED_LEA.percent_weights, [*edges, None]):
        cur = Fraction(e) if edge is None else min(Fraction(e), edge)
        out += Fraction(w) * (cur - prev)
        prev = cur
    return out


@pytest.mark.parametrize("table", [TARGETED_LEA, TARGETED_COUNTY, *EFIG_LEA_TABLES])
def test_against_child_by_child_reference(table: WeightingTable) -> None:
    rng = np.random.default_rng(7)
    n = np.r_[rng.integers(1, 6000, size=8), 4000, 4000, 20000]
    e = np.minimum(np.r_[rng.integers(0, 3000, size=8), 691, 692, 2263], n)
    parts = weighted_counts(e, n, table)
    for k in range(e.size):
        num, pct = _reference(int(e[k]), int(n[k]), table)
        assert parts["by_number"].iloc[k] == float(num)
        assert parts["by_percentage"].iloc[k] == float(pct)
        assert parts["weighted"].iloc[k] == float(max(num, pct))


def test_non_integer_estimates_close_to_exact_and_continuous() -> None:
    rng = np.random.default_rng(3)
    n = rng.uniform(100, 2e5, size=200)
    e = n * rng.uniform(0, 0.6, size=200)
    got = weighted_counts(e, n)
    for k in range(200):
        ef, nf = Fraction(float(e[k])), Fraction(float(n[k]))
        # exact continuous schedule on the exact binary values
        ref = _continuous(ef, nf, TARGETED_LEA)
        assert abs(got["weighted"].iloc[k] - float(ref)) <= 4e-16 * float(ref) * 8
    # no jump at any edge: just below / on / above differ by at most the slope x step
    for edge in TARGETED_LEA.number_edges:
        x = np.array([np.nextafter(edge, 0), float(edge), np.nextafter(edge, np.inf)])
        w = weighted_child_count(x, np.full(3, 1e12))
        assert np.all(np.diff(w) >= 0) and np.all(np.diff(w) < 1e-9)


def _continuous(e: Fraction, n: Fraction, table: WeightingTable) -> Fraction:
    def banded(x, edges, weights):
        out, prev = Fraction(0), Fraction(0)
        for w, edge in zip(weights, [*edges, None]):
            cur = x if edge is None else min(x, edge)
            out += Fraction(w) * (cur - prev)
            prev = cur
        return out

    num = banded(e, [Fraction(u) for u in table.number_edges], table.number_weights)
    pct = banded(e, [Fraction(p) * n for p in table.percent_edges], table.percent_weights)
    return max(num, pct)


def test_puerto_rico_cap_and_series_alignment() -> None:
    s = pd.Series([40000, 100], index=["PR", "x"])
    capped = weighted_child_count(s, pd.Series([100000, 1000], index=["PR", "x"]), cap="1.82")
    assert isinstance(capped, pd.Series) and list(capped.index) == ["PR", "x"]
    assert capped["PR"] == 40000 * 1.82 and capped["x"] == 100.0


def test_efig_schedule_by_equity_band() -> None:
    assert efig_table(0.0999) is EFIG_LEA_TABLES[0]
    assert efig_table(0.10) is EFIG_LEA_TABLES[1]
    assert efig_table(0.1999) is EFIG_LEA_TABLES[1]
    assert efig_table(0.20) is EFIG_LEA_TABLES[2]
    # >= .20: by percentage 779 + 221 x 2 = 1221, by number 691 + 309 x 2 = 1309
    assert weighted_child_count([1000], [5000], EFIG_LEA_TABLES[2])[0] == 1309.0
    # [.10, .20): by percentage 779 + 221 x 1.5 = 1110.5, by number 691 + 309 x 1.5 = 1154.5
    assert weighted_child_count([1000], [5000], EFIG_LEA_TABLES[1])[0] == 1154.5


def test_vectorised_speed_and_bad_input() -> None:
    rng = np.random.default_rng(0)
    n = rng.integers(1, 10**6, size=200_000)
    e = rng.integers(0, 1, size=200_000) + n // 5
    import time

    t0 = time.perf_counter()
    weighted_child_count(e, n)
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(InvalidProblemError, match="non-negative"):
        weighted_child_count([-1], [10])
    with pytest.raises(InvalidProblemError, match="same length"):
        weighted_child_count([1, 2], [10])
    with pytest.raises(InvalidProblemError, match="finite"):
        weighted_child_count([np.nan], [10])
    with pytest.raises(InvalidProblemError, match="weights"):
        WeightingTable("bad", (10,), ("1",), ("0.1",), ("1", "2"))


# ---------------------------------------------------------------- thresholds
def test_basic_threshold_boundaries() -> None:
    thr = HardThresholder()
    # 10 / 11 children ("10 or more") with a high share
    e = np.array([9, 10, 11])
    _, mask = thr(np.ones(3), e, np.full(3, 100), BASIC_RULE)
    assert mask.tolist() == [False, True, True]
    # 2% / 2.0001% ("more than 2 percent")
    e = np.array([20000, 20001, 10, 10])
    n = np.array([10**6, 10**6, 500, 499])
    grants, mask = thr(np.full(4, 5.0), e, n, BASIC_RULE)
    assert mask.tolist() == [False, True, False, True]
    assert grants.tolist() == [0.0, 5.0, 0.0, 5.0]


def test_targeted_and_concentration_boundaries() -> None:
    thr = HardThresholder()
    # "at least 5 percent": 10 of 200 is in, 10 of 201 is out
    _, m = thr(np.ones(3), np.array([10, 10, 9]), np.array([200, 201, 100]), TARGETED_RULE)
    assert m.tolist() == [True, False, False]
    # "exceeds either 6,500 or 15 percent"
    e = np.array([6500, 6501, 150, 151, 6501])
    n = np.array([200000, 200000, 1000, 1000, 10**6])  # the last is not basic-eligible (<= 2%)
    _, m = thr(np.ones(5), e, n, CONCENTRATION_RULE)
    assert m.tolist() == [False, True, False, True, False]


def test_compare_share_is_exact_on_floats() -> None:
    rng = np.random.default_rng(11)
    p = Fraction("0.02")
    n = rng.uniform(10, 1e7, size=2000)
    e = n * 0.02
    e = np.array(
        [
            np.nextafter(x, np.inf if k % 3 == 0 else -np.inf) if k % 3 else x
            for k, x in enumerate(e)
        ]
    )
    got = compare_share(e, n, p, strict=True)
    ref = np.array([Fraction(float(a)) * 50 > Fraction(float(b)) for a, b in zip(e, n)])
    assert np.array_equal(got, ref)
    got = compare_share(e, n, p, strict=False)
    ref = np.array([Fraction(float(a)) * 50 >= Fraction(float(b)) for a, b in zip(e, n)])
    assert np.array_equal(got, ref)
    assert not compare_share(np.array([0.0]), np.array([0.0]), p, False)[0]


def test_rules_compose() -> None:
    rule = any_of(Threshold(100), all_of(Threshold(10), Threshold("0.5", share=True)))
    _, m = HardThresholder()(
        np.ones(4), np.array([100, 10, 10, 9]), np.array([10**6, 20, 21, 10]), rule
    )
    assert m.tolist() == [True, True, False, False]
    assert "share >= 0.5" in str(rule)


def test_uncertainty_thresholder_modes() -> None:
    e = np.array([8.0, 12.0, 50.0])
    n = np.array([100.0, 100.0, 1000.0])
    cv = np.array([0.2, 0.2, 0.1])
    g = np.array([1.0, 2.0, 3.0])
    rule = all_of(Threshold(10))
    lenient = UncertaintyThresholder(z=1.645, mode="lenient")
    strict = UncertaintyThresholder(z=1.645, mode="strict")
    _, m = lenient(g, e, n, rule, cv)
    assert m.tolist() == [True, True, True]  # 8 + 1.645 x 1.6 = 10.6 >= 10
    _, m = strict(g, e, n, rule, cv)
    assert m.tolist() == [False, False, True]  # 12 - 1.645 x 2.4 = 8.05 < 10
    grants, m = UncertaintyThresholder(mode="expected")(g, e, n, rule, cv)
    prob = norm.sf(10, loc=e, scale=cv * e)
    np.testing.assert_allclose(grants, g * prob, rtol=1e-12)
    assert m.tolist() == (prob >= 0.5).tolist()
    # "and" of a count and a share threshold is one threshold at the larger count
    rule2 = all_of(Threshold(10), Threshold("0.05", share=True))
    grants, _ = UncertaintyThresholder(mode="expected")(g, e, n, rule2, cv)
    need = np.maximum(10, 0.05 * n)
    np.testing.assert_allclose(grants, g * norm.sf(need, loc=e, scale=cv * e), rtol=1e-12)
    with pytest.raises(CalibrationError, match="cv"):
        lenient(g, e, n, rule)
    with pytest.raises(InvalidProblemError, match="mode"):
        UncertaintyThresholder(mode="soft")  # type: ignore[arg-type]


def test_thresholder_keeps_series_index() -> None:
    idx = pd.MultiIndex.from_tuples([(1, 1), (1, 2)], names=["state", "district"])
    g, m = HardThresholder()(
        pd.Series([5.0, 6.0], index=idx),
        pd.Series([10, 1], index=idx),
        pd.Series([100, 100], index=idx),
        BASIC_RULE,
    )
    assert g.index.equals(idx) and m.tolist() == [True, False] and g.tolist() == [5.0, 0.0]


def test_hold_harmless_rate_edges() -> None:
    # below 15% -> 85, 15% or more but below 30% -> 90, 30% or more -> 95 (6332(c)(1))
    e = np.array([1499, 1500, 2999, 3000, 0])
    n = np.array([10000, 10000, 10000, 10000, 0])
    assert hold_harmless_rates(e, n).tolist() == [0.85, 0.90, 0.90, 0.95, 0.85]
