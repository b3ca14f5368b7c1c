"""The synthetic country: :func:`synthetic_country` and the :class:`SyntheticCountry` it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...errors import InvalidProblemError
from ...targets import GEO_LEVELS, TargetsDatabase
from ..dataset import Dataset
from ..geography import Geography, make_geography
from ..rules import GeographyRules
from .benefits import synthetic_rules
from .population import design_weights, sample_households, true_weights
from .targets import true_targets

__all__ = ["SIZES", "SyntheticCountry", "synthetic_country"]

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"states": {2: 1, 15: 2, 37: 3}, "n_households": 240},
    "small": {"n_states": 8, "n_districts": 40, "n_households": 2_000},
    "default": {"n_states": 51, "n_districts": 436, "n_households": 2_000},
    "full": {"n_states": 51, "n_districts": 436, "n_households": 12_000},
}
"""Preset sizes: ``tiny`` (3 states, 6 districts, 240 households: tests), ``small``,
``default`` (the US layout, 2,000 households: 872,000 columns) and ``full`` (the US layout,
12,000 households: 5,232,000 columns, the size of production local-area calibration)."""


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
        geographic one, as :func:`calibopt.targets.normalise_constraints` orders
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
        self, database: TargetsDatabase, *, source: str | None = None, replace: bool = False
    ) -> int:
        """Write the targets (with their strata) into a :class:`~calibopt.targets.TargetsDatabase`
        (``replace=True`` overwrites targets that are already there). Returns the number of
        targets written.
        """
        frame = self.targets[["variable", "period", "value", "constraints", "source"]]
        if source is not None:
            frame = frame.assign(source=source)
        return database.add_targets(frame, replace=replace)

    def targets_database(self, url: str = "sqlite://") -> TargetsDatabase:
        """A new targets database (default: in-memory SQLite) holding this country's targets."""
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
        unknown = set(noise) - set(GEO_LEVELS)
        if unknown:
            raise InvalidProblemError(f"noise levels {sorted(unknown)} not in {list(GEO_LEVELS)}.")
        out = {lvl: float(noise.get(lvl, 0.0)) for lvl in GEO_LEVELS}
    else:
        out = dict.fromkeys(GEO_LEVELS, float(noise))
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
    dataset, home_state_pos = sample_households(geography, n_hh, rng_people)
    truth = true_weights(
        geography, dataset, home_state_pos, households_per_district, migration, rng_truth
    )
    dataset = dataset.assign(
        "household",
        household_weight=design_weights(
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
    targets = true_targets(
        geography, dataset, by_state, truth, period, noise_levels, rng_noise, seed
    )
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
