"""The embedded synthetic country: seeded microdata, state rules, true weights and targets.

:func:`synthetic_country` builds, in a few vectorised NumPy passes,

* a geography shaped like the US (:mod:`calibopt.datasets.geography`);
* a national household sample: households with persons (head, spouse, dependants, other
  adults) in tax units, ages, employment and retirement income, design weights;
* state rules (:func:`synthetic_rules`): a SNAP-like benefit (income tests against a poverty
  line, deductions, a maximum allotment by household size, a seeded take-up draw per household
  and state) and a flat state income tax, so a household placed in another state gets other
  values;
* "true" per-district weights: integer weights for every (district, household) pair, mostly on
  the district's own state's households, tilted by income and home district, plus a few
  out-of-state donors;
* the targets these weights imply at national, state and district level, computed here with
  dense NumPy code independent of the matrix builder. Every variable is in whole dollars and
  every true weight is an integer, so ``X @ true_weights`` reproduces each noiseless target
  exactly (all partial sums are integers below 2**53).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from .dataset import Dataset
from .geography import US_STATES, Geography, apportion, make_geography
from .rules import GeographyRules, seeded_uniform

__all__ = ["SIZES", "SyntheticCountry", "synthetic_country", "synthetic_rules"]

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"states": {2: 1, 15: 2, 37: 3}, "n_households": 240},
    "small": {"n_states": 8, "n_districts": 40, "n_households": 2_000},
    "default": {"n_states": 51, "n_districts": 436, "n_households": 2_000},
    "full": {"n_states": 51, "n_districts": 436, "n_households": 12_000},
}
"""Preset sizes: ``tiny`` (3 states, 6 districts, 240 households: tests), ``small``,
``default`` (the US layout, 2,000 households: 872,000 columns) and ``full`` (the US layout,
12,000 households: 5,232,000 columns, the size of production local-area calibration)."""

LEVELS = ("national", "state", "district")
AGE_BANDS = ((0, 5), (5, 18), (18, 65), (65, None))
AGI_BANDS = ((None, 25_000), (25_000, 50_000), (50_000, 100_000), (100_000, None))
SNAP_STREAM = 20240601  # seed of the take-up draws (a fixed stream: rules are data)

# annual maximum allotment by household size 1..8 (contiguous states), and per extra person
_MAX_ALLOTMENT = np.array([0, 3504, 6432, 9216, 11700, 13896, 16680, 18432, 21072], float)
_ALLOTMENT_EXTRA = 2640.0
_NO_INCOME_TAX = {2, 12, 32, 33, 46, 47, 48, 53, 56}  # AK FL NV NH SD TN TX WA WY


# ------------------------------------------------------------------------------------ rules
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


# ------------------------------------------------------------------------------ target specs
@dataclass(frozen=True)
class _Spec:
    """One kind of target, with an independent way to compute each household's contribution."""

    variable: str
    domain: tuple[tuple[str, str, str], ...]
    levels: tuple[str, ...]
    contribution: Callable[[dict[str, np.ndarray]], np.ndarray]
    geo_dependent: bool = False


def _per_household(a: dict, link: str, values: np.ndarray) -> np.ndarray:
    """Sum values over the rows of an entity into households (``link``: row -> household)."""
    return np.bincount(a[link], weights=values, minlength=a["n_households"])


def _banded_counts(count: str, variable: str, link: str, bands: tuple) -> list[_Spec]:
    """One count target per band ``[lo, hi)`` of ``variable`` (``>= lo`` and ``< hi``)."""
    specs = []
    for lo, hi in bands:
        domain = tuple((variable, op, str(v)) for op, v in ((">=", lo), ("<", hi)) if v is not None)

        def contribution(a: dict, lo: float | None = lo, hi: float | None = hi) -> np.ndarray:
            x = a[variable]
            ok = np.ones(x.shape, dtype=bool)
            if lo is not None:
                ok &= x >= lo
            if hi is not None:
                ok &= x < hi
            return _per_household(a, link, ok)

        specs.append(_Spec(count, domain, LEVELS, contribution))
    return specs


def _specs() -> list[_Spec]:
    """The synthetic country's target list: 14 per state and nation, 12 per district."""
    snap_domain = (("snap", ">", "0"),)
    out = [_Spec("household_count", (), LEVELS, lambda a: np.ones(a["n_households"]))]
    out += _banded_counts("person_count", "age", "person_household", AGE_BANDS)
    out += [
        _Spec(
            "employment_income",
            (),
            LEVELS,
            lambda a: _per_household(a, "person_household", a["employment_income"]),
        ),
        _Spec(
            "household_count",
            snap_domain,
            LEVELS,
            lambda a: (a["snap"] > 0).astype(float),
            geo_dependent=True,
        ),
        _Spec(
            "snap",
            snap_domain,
            ("national", "state"),
            lambda a: np.where(a["snap"] > 0, a["snap"], 0.0),
            geo_dependent=True,
        ),
    ]
    out += _banded_counts(
        "tax_unit_count", "adjusted_gross_income", "tax_unit_household", AGI_BANDS
    )
    out += [
        _Spec(
            "adjusted_gross_income",
            (),
            LEVELS,
            lambda a: _per_household(a, "tax_unit_household", a["adjusted_gross_income"]),
        ),
        _Spec(
            "state_income_tax",
            (),
            ("national", "state"),
            lambda a: _per_household(a, "tax_unit_household", a["state_income_tax"]),
            geo_dependent=True,
        ),
    ]
    return out


# ---------------------------------------------------------------------------------- country
@dataclass
class SyntheticCountry:
    """A generated country. Columns are geography-major: column ``g * n_households + h`` is
    household ``h`` (row position) placed in district ``geographies[g]``.

    Attributes
    ----------
    dataset : Dataset
        Households (``household_id``, ``household_weight``, ``state_fips``,
        ``congressional_district_geoid`` = home district, ``household_income``, ``snap``),
        persons (``person_id``, ``household_id``, ``tax_unit_id``, ``role``,
        ``is_household_head``, ``age``, ``employment_income``, ``retirement_income``) and tax
        units (``tax_unit_id``, ``household_id``, ``filing_status``, ``adjusted_gross_income``,
        ``state_income_tax``); geography-dependent columns hold home-state values.
    geography : Geography
    rules : GeographyRules
        The state rules (``snap``, ``state_income_tax``) for the matrix builder.
    true_weights : ndarray
        Integer-valued weights, length ``n_districts * n_households``, geography-major.
    targets : DataFrame
        One row per target: ``variable``, ``period``, ``geo_level``, ``geographic_id``,
        ``constraints`` (canonical tuple of ``(variable, operation, value)`` including the
        geographic one, as :func:`calibopt.matrix.constraints.normalise_constraints` orders
        them), ``true_value``, ``value`` (with noise if asked), ``source``.
    period, seed : int
    noise : dict
        Relative noise standard deviation per level.
    """

    dataset: Dataset
    geography: Geography
    rules: GeographyRules
    true_weights: np.ndarray
    targets: pd.DataFrame
    period: int
    seed: int
    noise: dict[str, float] = field(default_factory=dict)

    @property
    def geographies(self) -> np.ndarray:
        """District GEOIDs in column order."""
        return self.geography.geoids

    @property
    def n_columns(self) -> int:
        """Number of (district, household) columns."""
        return len(self.geographies) * self.dataset.n_households

    def true_weight_matrix(self) -> np.ndarray:
        """``true_weights`` as an ``(n_districts, n_households)`` view."""
        return self.true_weights.reshape(len(self.geographies), self.dataset.n_households)

    def write_targets(
        self, database: Any, *, source: str | None = None, replace: bool = False
    ) -> int:
        """Write the targets (with their strata) into a :class:`~calibopt.matrix.TargetsDatabase`
        (``replace=True`` overwrites targets that are already there). Returns the number of
        targets written.
        """
        frame = self.targets[["variable", "period", "value", "constraints", "source"]]
        if source is not None:
            frame = frame.assign(source=source)
        return database.add_targets(frame, replace=replace)

    def targets_database(self, url: str = "sqlite://") -> Any:
        """A new targets database (default: in-memory SQLite) holding this country's targets."""
        from ..matrix.database import TargetsDatabase

        db = TargetsDatabase.create(url)
        self.write_targets(db)
        return db

    def __repr__(self) -> str:
        return (
            f"SyntheticCountry({len(self.geography.states)} states, {len(self.geographies)} "
            f"districts, {self.dataset.n_households} households, {self.dataset.n_persons} "
            f"persons, {len(self.targets)} targets, seed={self.seed})"
        )


def _noise_levels(noise: float | Mapping[str, float]) -> dict[str, float]:
    if isinstance(noise, Mapping):
        unknown = set(noise) - set(LEVELS)
        if unknown:
            raise InvalidProblemError(f"noise levels {sorted(unknown)} not in {list(LEVELS)}.")
        out = {lvl: float(noise.get(lvl, 0.0)) for lvl in LEVELS}
    else:
        out = dict.fromkeys(LEVELS, float(noise))
    if any(not np.isfinite(v) or v < 0 or v >= 1 for v in out.values()):
        raise InvalidProblemError(f"noise must be in [0, 1) per level, got {out}.")
    return out


def synthetic_country(
    size: str = "default",
    *,
    seed: int = 0,
    n_states: int | None = None,
    n_districts: int | None = None,
    n_households: int | None = None,
    states: Mapping[int, int] | None = None,
    noise: float | Mapping[str, float] = 0.0,
    period: int = 2024,
    households_per_district: int = 300_000,
    migration: float = 0.002,
) -> SyntheticCountry:
    """Generate the seeded synthetic country (same arguments -> identical country).

    Parameters
    ----------
    size
        A preset from :data:`SIZES`: ``"tiny"``, ``"small"``, ``"default"``, ``"full"``.
        The keyword arguments below override the preset.
    seed
        Seed of everything random (the state rules are fixed data, not drawn per seed).
    n_states, n_districts, states
        The geography; see :func:`~calibopt.datasets.geography.make_geography`.
    n_households
        Households in the national sample (allocated to states in proportion to their size,
        at least two per district).
    noise
        Relative standard deviation of measurement noise added to published targets: one
        number for every level or ``{"national": ..., "state": ..., "district": ...}``. With
        noise, levels conflict (the districts of a state no longer sum to the state's value).
    period
        The year the targets describe.
    households_per_district
        Population scale: households in an average district.
    migration
        Probability that an out-of-state household is a (small) donor to a district in the
        true weights.

    Returns
    -------
    SyntheticCountry
    """
    if size not in SIZES:
        raise InvalidProblemError(f"size={size!r} is not one of {list(SIZES)}.")
    preset = dict(SIZES[size])
    if states is not None or n_states is not None or n_districts is not None:
        preset.pop("states", None)
        preset.pop("n_states", None)
        preset.pop("n_districts", None)
    geography = make_geography(
        n_states if n_states is not None else preset.get("n_states"),
        n_districts if n_districts is not None else preset.get("n_districts"),
        states=states if states is not None else preset.get("states"),
        seed=seed,
    )
    n_hh = int(n_households if n_households is not None else preset["n_households"])
    if not 0 <= migration < 1:
        raise InvalidProblemError(f"migration must be in [0, 1), got {migration}.")
    noise_levels = _noise_levels(noise)
    streams = np.random.SeedSequence([seed, 4_121_973]).spawn(4)
    rng_people, rng_weights, rng_truth, rng_noise = (np.random.default_rng(s) for s in streams)
    dataset, home_state_pos = _households(geography, n_hh, rng_people)
    truth = _true_weights(
        geography, dataset, home_state_pos, households_per_district, migration, rng_truth
    )
    dataset = dataset.assign(
        "household",
        household_weight=_design_weights(
            geography, home_state_pos, households_per_district, rng_weights
        ),
    )
    rules = synthetic_rules()
    home = dataset.household["state_fips"].to_numpy()
    by_state = {int(s): rules.evaluate(dataset, int(s)) for s in geography.state_fips}
    snap = np.zeros(n_hh)
    sit = np.zeros(dataset.n("tax_unit"))
    tu_home = home[dataset.household_index("tax_unit")]
    for s, values in by_state.items():
        snap = np.where(home == s, values["snap"], snap)
        sit = np.where(tu_home == s, values["state_income_tax"], sit)
    dataset = dataset.assign("household", snap=snap).assign("tax_unit", state_income_tax=sit)
    dataset.name = f"synthetic country ({size}, seed={seed})"
    dataset.period = period
    targets = _targets(geography, dataset, by_state, truth, period, noise_levels, rng_noise, seed)
    return SyntheticCountry(
        dataset=dataset,
        geography=geography,
        rules=rules,
        true_weights=truth.reshape(-1),
        targets=targets,
        period=period,
        seed=seed,
        noise=noise_levels,
    )


def _households(
    geography: Geography, n_hh: int, rng: np.random.Generator
) -> tuple[Dataset, np.ndarray]:
    """Households, persons and tax units (vectorised). Returns the dataset and home state rows."""
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
    fips = states["state_fips"].to_numpy()[state_pos]
    # home district: uniform among the state's districts
    first = np.concatenate([[0], np.cumsum(k)[:-1]])
    district_pos = first[state_pos] + np.floor(rng.random(n_hh) * k[state_pos]).astype(int)
    home_cd = geography.geoids[district_pos]
    household_id = np.sort(rng.choice(np.arange(1, 20 * n_hh + 1), n_hh, replace=False))

    # household composition
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
    is_spouse = married[hh_of] & (slot == 1)
    kid_lo = 1 + married[hh_of]
    is_kid = (slot >= kid_lo) & (slot < kid_lo + n_kids[hh_of])
    is_other = slot >= kid_lo + n_kids[hh_of]
    n_p = size.sum()

    age = head_age[hh_of].astype(float)
    age = np.where(is_spouse, np.clip(age + rng.normal(0, 4, n_p), 18, 95), age)
    max_kid_age = np.clip(head_age[hh_of] - 17, 1, 18)
    age = np.where(is_kid, np.floor(rng.random(n_p) * max_kid_age), age)
    other_age = np.where(rng.random(n_p) < 0.6, rng.uniform(18, 30, n_p), rng.uniform(60, 92, n_p))
    age = np.rint(np.where(is_other, other_age, age)).astype(np.int64)

    # tax units: head + spouse + dependants, and one per other adult
    unit_slot = np.where(is_other, slot - kid_lo - n_kids[hh_of] + 1, 0)
    units_per_hh = 1 + n_other
    unit_start = np.cumsum(units_per_hh) - units_per_hh
    unit_pos = unit_start[hh_of] + unit_slot
    n_units = units_per_hh.sum()
    tax_unit_id = np.arange(1, n_units + 1) * 3 + 1000
    role = np.where(is_spouse, "spouse", np.where(is_kid, "dependant", "head"))

    # incomes (whole dollars)
    state_level = rng.normal(0, 0.12, len(states))[state_pos]
    latent = rng.normal(0, 1, n_hh)
    adult = age >= 18
    p_work = np.where(age >= 65, 0.15, np.where(adult, np.where(is_spouse, 0.70, 0.85), 0.0))
    p_work = np.where(is_kid & (age >= 15), 0.2, p_work)
    works = rng.random(n_p) < p_work
    log_earn = 10.95 + state_level[hh_of] + 0.45 * latent[hh_of] + 0.65 * rng.normal(0, 1, n_p)
    log_earn = np.where(adult, log_earn, 8.0 + 0.5 * rng.normal(0, 1, n_p))
    earnings = np.where(works, np.rint(np.exp(log_earn)), 0.0)
    retirement = np.where(age >= 62, np.rint(np.exp(10.15 + 0.5 * rng.normal(0, 1, n_p))), 0.0)
    agi = np.bincount(unit_pos, weights=earnings + retirement, minlength=n_units)
    unit_has_spouse = np.bincount(unit_pos, weights=is_spouse, minlength=n_units) > 0
    unit_deps = np.bincount(unit_pos, weights=is_kid, minlength=n_units)
    filing = np.where(
        unit_has_spouse, "joint", np.where(unit_deps > 0, "head_of_household", "single")
    )
    household = pd.DataFrame(
        {
            "household_id": household_id,
            "state_fips": fips,
            "congressional_district_geoid": home_cd,
            "household_size": size,
            "household_income": np.bincount(hh_of, weights=earnings + retirement, minlength=n_hh),
        }
    )
    person = pd.DataFrame(
        {
            "person_id": np.arange(1, n_p + 1) * 7 + 5,
            "household_id": household_id[hh_of],
            "tax_unit_id": tax_unit_id[unit_pos],
            "role": pd.Categorical(role, categories=["head", "spouse", "dependant"]),
            "is_household_head": slot == 0,
            "age": age,
            "employment_income": earnings,
            "retirement_income": retirement,
        }
    )
    unit_hh = np.repeat(np.arange(n_hh), units_per_hh)
    tax_unit = pd.DataFrame(
        {
            "tax_unit_id": tax_unit_id,
            "household_id": household_id[unit_hh],
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


def _design_weights(
    geography: Geography, state_pos: np.ndarray, per_district: int, rng: np.random.Generator
) -> np.ndarray:
    """Survey design weights: state population / state sample size, with weighting noise."""
    sample = np.bincount(state_pos, minlength=len(geography.states))
    base = _state_households(geography, per_district)[state_pos] / sample[state_pos]
    return base * np.exp(rng.normal(0, 0.25, state_pos.size) - 0.25**2 / 2)


def _true_weights(
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


def _targets(
    geography: Geography,
    dataset: Dataset,
    by_state: dict[int, dict[str, np.ndarray]],
    truth: np.ndarray,
    period: int,
    noise: dict[str, float],
    rng: np.random.Generator,
    seed: int,
) -> pd.DataFrame:
    """Every target's true value from the true weights (dense, exact), plus optional noise."""
    hh = dataset.household
    person = dataset.person
    tu = dataset.table("tax_unit")
    base = {
        "n_households": dataset.n_households,
        "person_household": dataset.household_index("person"),
        "tax_unit_household": dataset.household_index("tax_unit"),
        "age": person["age"].to_numpy(),
        "employment_income": person["employment_income"].to_numpy(dtype=float),
        "adjusted_gross_income": tu["adjusted_gross_income"].to_numpy(dtype=float),
        "household_id": hh["household_id"].to_numpy(),
    }
    fips = geography.state_fips
    geo_state = pd.Index(fips).get_indexer(geography.districts["state_fips"].to_numpy())
    geoids = geography.geoids
    rows = []
    for spec in _specs():
        if spec.geo_dependent:
            contrib = np.stack([spec.contribution({**base, **by_state[int(s)]}) for s in fips])
            per_district = np.einsum("gh,gh->g", truth, contrib[geo_state])
        else:
            per_district = truth @ spec.contribution(base)
        per_state = np.bincount(geo_state, weights=per_district, minlength=len(fips))
        values = {
            "national": [("US", (), per_district.sum())],
            "state": [
                (str(s), (("state_fips", "==", str(s)),), v) for s, v in zip(fips, per_state)
            ],
            "district": [
                (str(g), (("congressional_district_geoid", "==", str(g)),), v)
                for g, v in zip(geoids, per_district)
            ],
        }
        for level in spec.levels:
            for geo_id, geo_constraint, value in values[level]:
                if spec.geo_dependent and value == 0:
                    continue  # no such benefit or tax there (a state without income tax)
                rows.append(
                    (spec.variable, level, geo_id, geo_constraint + spec.domain, float(value))
                )
    from ..matrix.constraints import normalise_constraints

    frame = pd.DataFrame(
        rows, columns=["variable", "geo_level", "geographic_id", "constraints", "true_value"]
    )
    frame["constraints"] = frame["constraints"].map(normalise_constraints)
    sigma = frame["geo_level"].map(noise).to_numpy(dtype=float)
    eps = rng.normal(0, 1, len(frame))
    frame["value"] = np.where(
        sigma > 0, np.rint(frame["true_value"] * (1 + sigma * eps)), frame["true_value"]
    )
    frame.insert(1, "period", period)
    frame["source"] = f"calibopt synthetic country (seed={seed})"
    return frame
