"""The synthetic country's people: a household sample, design weights and true weights.

:func:`sample_households` draws, in a few vectorised NumPy passes, households placed in
states and home districts, their persons (head, spouse, dependants, other adults) with ages,
tax units, and employment and retirement income in whole dollars. :func:`design_weights`
gives survey weights; :func:`true_weights` the integer per-district weights that define the
country's true population. The random draws happen in a fixed order, so the same generator
state gives the same country.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import InvalidProblemError
from ..dataset import Dataset
from ..geography import Geography, apportion

__all__ = ["design_weights", "sample_households", "true_weights"]


@dataclass
class _Members:
    """Who lives in each household: one entry per person unless named per household."""

    head_age: np.ndarray  # per household
    n_kids: np.ndarray  # per household
    n_other: np.ndarray  # per household
    size: np.ndarray  # per household
    hh_of: np.ndarray  # the person's household position
    slot: np.ndarray  # position within the household (0 = head)
    is_spouse: np.ndarray
    is_kid: np.ndarray
    is_other: np.ndarray
    kid_lo: np.ndarray  # slot of the first dependant

    @property
    def n_persons(self) -> int:
        return int(self.size.sum())


def _place(
    geography: Geography, n_hh: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Home state rows (at least two households per district), home districts, household ids."""
    states = geography.states
    k = states["n_districts"].to_numpy()
    if n_hh < 2 * k.sum():
        raise InvalidProblemError(
            f"n_households={n_hh} is too small: the geography has {k.sum()} districts and "
            f"needs at least two sample households per district ({2 * k.sum()})."
        )
    share = states["population_share"].to_numpy(dtype=float)
    alloc = apportion(share, n_hh, 2 * k)
    state_pos = rng.permutation(np.repeat(np.arange(len(states)), alloc))
    # home district: uniform among the state's districts
    first = np.concatenate([[0], np.cumsum(k)[:-1]])
    district_pos = first[state_pos] + np.floor(rng.random(n_hh) * k[state_pos]).astype(int)
    home_cd = geography.geoids[district_pos]
    household_id = np.sort(rng.choice(np.arange(1, 20 * n_hh + 1), n_hh, replace=False))
    return state_pos, home_cd, household_id


def _members(n_hh: int, rng: np.random.Generator) -> _Members:
    """Household composition: a head, maybe a spouse, dependants, other adults."""
    head_age = np.clip(np.rint(rng.normal(50, 17, n_hh)), 18, 90).astype(int)
    p_married = np.where((head_age >= 28) & (head_age <= 72), 0.56, 0.32)
    married = rng.random(n_hh) < p_married
    kids_p = np.where(
        head_age[:, None] < 58, [0.55, 0.18, 0.16, 0.08, 0.03], [0.95, 0.04, 0.01, 0.0, 0.0]
    )
    n_kids = (rng.random(n_hh)[:, None] > np.cumsum(kids_p, axis=1)).sum(axis=1)
    n_other = (rng.random(n_hh)[:, None] > np.cumsum([0.86, 0.11, 0.03])).sum(axis=1)
    size = 1 + married + n_kids + n_other
    hh_of = np.repeat(np.arange(n_hh), size)
    start = np.cumsum(size) - size
    slot = np.arange(size.sum()) - start[hh_of]
    kid_lo = 1 + married[hh_of]
    return _Members(
        head_age=head_age,
        n_kids=n_kids,
        n_other=n_other,
        size=size,
        hh_of=hh_of,
        slot=slot,
        is_spouse=married[hh_of] & (slot == 1),
        is_kid=(slot >= kid_lo) & (slot < kid_lo + n_kids[hh_of]),
        is_other=slot >= kid_lo + n_kids[hh_of],
        kid_lo=kid_lo,
    )


def _ages(m: _Members, rng: np.random.Generator) -> np.ndarray:
    """Whole-year ages: spouses near the head, dependants under 18, other adults young or old."""
    n_p = m.n_persons
    age = m.head_age[m.hh_of].astype(float)
    age = np.where(m.is_spouse, np.clip(age + rng.normal(0, 4, n_p), 18, 95), age)
    max_kid_age = np.clip(m.head_age[m.hh_of] - 17, 1, 18)
    age = np.where(m.is_kid, np.floor(rng.random(n_p) * max_kid_age), age)
    other_age = np.where(rng.random(n_p) < 0.6, rng.uniform(18, 30, n_p), rng.uniform(60, 92, n_p))
    return np.rint(np.where(m.is_other, other_age, age)).astype(np.int64)


def _tax_units(m: _Members) -> tuple[np.ndarray, np.ndarray]:
    """Each person's tax unit position (head + spouse + dependants, one per other adult), and
    the number of tax units per household."""
    unit_slot = np.where(m.is_other, m.slot - m.kid_lo - m.n_kids[m.hh_of] + 1, 0)
    units_per_hh = 1 + m.n_other
    unit_start = np.cumsum(units_per_hh) - units_per_hh
    return unit_start[m.hh_of] + unit_slot, units_per_hh


def _incomes(
    m: _Members, age: np.ndarray, state_pos: np.ndarray, n_states: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Employment and retirement income per person (whole dollars)."""
    n_p = m.n_persons
    state_level = rng.normal(0, 0.12, n_states)[state_pos]
    latent = rng.normal(0, 1, len(m.size))
    adult = age >= 18
    p_work = np.where(age >= 65, 0.15, np.where(adult, np.where(m.is_spouse, 0.70, 0.85), 0.0))
    p_work = np.where(m.is_kid & (age >= 15), 0.2, p_work)
    works = rng.random(n_p) < p_work
    log_earn = 10.95 + state_level[m.hh_of] + 0.45 * latent[m.hh_of] + 0.65 * rng.normal(0, 1, n_p)
    log_earn = np.where(adult, log_earn, 8.0 + 0.5 * rng.normal(0, 1, n_p))
    earnings = np.where(works, np.rint(np.exp(log_earn)), 0.0)
    retirement = np.where(age >= 62, np.rint(np.exp(10.15 + 0.5 * rng.normal(0, 1, n_p))), 0.0)
    return earnings, retirement


def sample_households(
    geography: Geography, n_hh: int, rng: np.random.Generator
) -> tuple[Dataset, np.ndarray]:
    """Households, persons and tax units (vectorised). Returns the dataset and each
    household's home state row in ``geography.states``."""
    state_pos, home_cd, household_id = _place(geography, n_hh, rng)
    m = _members(n_hh, rng)
    age = _ages(m, rng)
    unit_pos, units_per_hh = _tax_units(m)
    n_units = int(units_per_hh.sum())
    tax_unit_id = np.arange(1, n_units + 1) * 3 + 1000
    earnings, retirement = _incomes(m, age, state_pos, len(geography.states), rng)
    agi = np.bincount(unit_pos, weights=earnings + retirement, minlength=n_units)
    unit_has_spouse = np.bincount(unit_pos, weights=m.is_spouse, minlength=n_units) > 0
    unit_deps = np.bincount(unit_pos, weights=m.is_kid, minlength=n_units)
    filing = np.where(
        unit_has_spouse, "joint", np.where(unit_deps > 0, "head_of_household", "single")
    )
    role = np.where(m.is_spouse, "spouse", np.where(m.is_kid, "dependant", "head"))
    household = pd.DataFrame(
        {
            "household_id": household_id,
            "state_fips": geography.states["state_fips"].to_numpy()[state_pos],
            "congressional_district_geoid": home_cd,
            "household_size": m.size,
            "household_income": np.bincount(m.hh_of, weights=earnings + retirement, minlength=n_hh),
        }
    )
    person = pd.DataFrame(
        {
            "person_id": np.arange(1, m.n_persons + 1) * 7 + 5,
            "household_id": household_id[m.hh_of],
            "tax_unit_id": tax_unit_id[unit_pos],
            "role": pd.Categorical(role, categories=["head", "spouse", "dependant"]),
            "is_household_head": m.slot == 0,
            "age": age,
            "employment_income": earnings,
            "retirement_income": retirement,
        }
    )
    tax_unit = pd.DataFrame(
        {
            "tax_unit_id": tax_unit_id,
            "household_id": household_id[np.repeat(np.arange(n_hh), units_per_hh)],
            "filing_status": pd.Categorical(
                filing, categories=["single", "joint", "head_of_household"]
            ),
            "adjusted_gross_income": agi,
        }
    )
    ds = Dataset({"household": household, "person": person, "tax_unit": tax_unit})
    return ds, state_pos


def _state_households(geography: Geography, per_district: int) -> np.ndarray:
    """Population households per state."""
    return geography.states["n_districts"].to_numpy() * float(per_district)


def design_weights(
    geography: Geography, state_pos: np.ndarray, per_district: int, rng: np.random.Generator
) -> np.ndarray:
    """Survey design weights: state population / state sample size, with weighting noise."""
    sample = np.bincount(state_pos, minlength=len(geography.states))
    base = _state_households(geography, per_district)[state_pos] / sample[state_pos]
    return base * np.exp(rng.normal(0, 0.25, state_pos.size) - 0.25**2 / 2)


def true_weights(
    geography: Geography,
    dataset: Dataset,
    state_pos: np.ndarray,
    per_district: int,
    migration: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Integer weights (n_districts x n_households) that define the true population."""
    n_hh = dataset.n_households
    districts = geography.districts
    n_geo = len(districts)
    state_index = pd.Index(geography.state_fips)
    geo_state = state_index.get_indexer(districts["state_fips"].to_numpy())
    # district sizes: near-equal with +-5% variation
    pop = per_district * np.exp(rng.normal(0, 0.05, n_geo))
    income = dataset.household["household_income"].to_numpy()
    z = np.log1p(income)
    z = (z - z.mean()) / (z.std() or 1.0)
    tilt = rng.normal(0, 0.25, n_geo)
    home = pd.Index(geography.geoids).get_indexer(
        dataset.household["congressional_district_geoid"].to_numpy()
    )
    own = geo_state[:, None] == state_pos[None, :]
    log_w = tilt[:, None] * z[None, :] + rng.normal(0, 0.3, (n_geo, n_hh))
    log_w[np.arange(n_geo)[:, None] == home[None, :]] += 0.7
    w = np.where(own, np.exp(log_w), 0.0)
    w *= (pop / w.sum(axis=1))[:, None]
    migrants = (~own) & (rng.random((n_geo, n_hh)) < migration)
    mean_own = pop / np.maximum(own.sum(axis=1), 1)
    w = np.where(migrants, (0.05 * mean_own)[:, None] * rng.uniform(0.2, 1.0, (n_geo, n_hh)), w)
    w = np.rint(w)
    # every own-state household keeps a positive weight in each district of its state
    w[own & (w < 1)] = 1.0
    return w
