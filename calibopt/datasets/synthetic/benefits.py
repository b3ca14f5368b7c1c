"""The synthetic country's state rules: a SNAP-like benefit and a flat state income tax.

Both depend on where a household is placed (the state's parameters and a seeded take-up draw
per household and state), so a household placed in another state gets other values. The
parameters are fixed data, the same for every country and seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dataset import Dataset
from ..geography import US_STATES
from ..rules import GeographyRules, seeded_uniform

__all__ = ["SNAP_STREAM", "STATE_PARAMETERS", "snap_benefit", "state_income_tax", "synthetic_rules"]

SNAP_STREAM = 20240601
"""Seed of the take-up draws (a fixed stream: rules are data)."""

# annual maximum allotment by household size 1..8 (contiguous states), and per extra person
_MAX_ALLOTMENT = np.array([0, 3504, 6432, 9216, 11700, 13896, 16680, 18432, 21072], float)
_ALLOTMENT_EXTRA = 2640.0
_NO_INCOME_TAX = {2, 12, 32, 33, 46, 47, 48, 53, 56}  # AK FL NV NH SD TN TX WA WY


def _state_parameters() -> pd.DataFrame:
    """Benefit and tax parameters per state (deterministic: the same for every country)."""
    rows = []
    for fips in US_STATES["state_fips"]:
        rng = np.random.default_rng([SNAP_STREAM, int(fips)])
        gross_limit = float(rng.choice([1.30, 1.65, 2.00], p=[0.45, 0.20, 0.35]))
        utility = float(np.round(rng.uniform(2_400, 6_600), -1))
        takeup = float(np.round(rng.uniform(0.72, 0.96), 3))
        rate = 0.0 if fips in _NO_INCOME_TAX else float(np.round(rng.uniform(0.02, 0.07), 4))
        exemption = float(np.round(rng.uniform(1_000, 5_000), -2))
        poverty, allotment, deduction = 1.0, 1.0, 2_376.0
        if fips == 2:  # Alaska
            poverty, allotment, deduction = 1.25, 1.45, 4_056.0
        elif fips == 15:  # Hawaii
            poverty, allotment, deduction = 1.15, 1.62, 3_348.0
        rows.append(
            (
                int(fips),
                gross_limit,
                poverty,
                allotment,
                deduction,
                utility,
                takeup,
                rate,
                exemption,
            )
        )
    return pd.DataFrame(
        rows,
        columns=[
            "state_fips",
            "snap_gross_limit",
            "poverty_factor",
            "allotment_factor",
            "standard_deduction",
            "utility_allowance",
            "snap_takeup_rate",
            "income_tax_rate",
            "income_tax_exemption",
        ],
    ).set_index("state_fips")


STATE_PARAMETERS = _state_parameters()
"""Per-state rule parameters of the synthetic country (indexed by FIPS code)."""


def snap_benefit(dataset: Dataset, state_fips: int) -> np.ndarray:
    """The SNAP-like benefit of every household under the rules of ``state_fips`` (dollars).

    Gross income (earnings + retirement income) must be within the state's gross limit
    (a multiple of the poverty line; households with someone aged 60+ are exempt); net income
    (gross - 20% of earnings - standard deduction - the state's utility allowance) must be
    within the poverty line; the benefit is the maximum allotment for the household size
    minus 30% of net income, at least the minimum benefit for one- and two-person
    households; the household takes it up when its seeded draw for (household, state) is
    below the state's take-up rate.
    """
    p = STATE_PARAMETERS.loc[int(state_fips)]
    age = dataset.get("age")
    earned = dataset.map_to(dataset.get("employment_income"), "person", "household")
    unearned = dataset.map_to(dataset.get("retirement_income"), "person", "household")
    size = dataset.map_to(None, "person", "household")
    elderly = dataset.map_to(age >= 60, "person", "household", how="any")
    gross = earned + unearned
    poverty = (15_060.0 + 5_380.0 * (size - 1)) * p["poverty_factor"]
    gross_ok = elderly | (gross <= p["snap_gross_limit"] * poverty)
    deduction = p["standard_deduction"] * (1.0 + 0.05 * np.maximum(size - 3, 0))
    net = np.maximum(gross - 0.2 * earned - deduction - p["utility_allowance"], 0.0)
    net_ok = net <= poverty
    capped = np.minimum(size, 8).astype(int)
    allotment = (_MAX_ALLOTMENT[capped] + _ALLOTMENT_EXTRA * np.maximum(size - 8, 0)) * p[
        "allotment_factor"
    ]
    benefit = allotment - 0.3 * net
    minimum = np.where(size <= 2, 276.0, 0.0)
    benefit = np.where(gross_ok & net_ok, np.maximum(benefit, minimum), 0.0)
    draw = seeded_uniform(SNAP_STREAM, dataset.ids("household"), int(state_fips))
    return np.rint(np.where(draw < p["snap_takeup_rate"], benefit, 0.0))


def state_income_tax(dataset: Dataset, state_fips: int) -> np.ndarray:
    """A flat state income tax per tax unit: rate x (AGI - exemption per member), >= 0."""
    p = STATE_PARAMETERS.loc[int(state_fips)]
    members = dataset.map_to(None, "person", "tax_unit")
    agi = dataset.get("adjusted_gross_income").astype(float)
    taxable = np.maximum(agi - p["income_tax_exemption"] * members, 0.0)
    return np.rint(p["income_tax_rate"] * taxable)


def _compute_rules(dataset: Dataset, state_fips: int) -> dict[str, np.ndarray]:
    return {
        "snap": snap_benefit(dataset, state_fips),
        "state_income_tax": state_income_tax(dataset, state_fips),
    }


def synthetic_rules() -> GeographyRules:
    """The synthetic country's state rules: ``snap`` (household), ``state_income_tax``
    (tax unit), recomputed per state from ``age``, ``employment_income``,
    ``retirement_income`` and ``adjusted_gross_income``."""
    return GeographyRules(
        compute=_compute_rules,
        variables={"snap": "household", "state_income_tax": "tax_unit"},
        level="state",
        name="synthetic country state rules",
    )
