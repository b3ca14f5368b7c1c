"""The synthetic country's targets and their true values.

Each kind of target (:func:`target_specs`: 14 per state and nation, 12 per district) comes
with its own way to compute each household's contribution, written here with dense NumPy
code independent of the matrix builder; :func:`true_targets` applies the true weights.
Every variable is in whole dollars and every true weight is an integer, so the matrix
builder's ``X @ true_weights`` reproduces each noiseless target exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...targets import GEO_LEVELS, normalise_constraints
from ..dataset import Dataset
from ..geography import Geography

__all__ = ["AGE_BANDS", "AGI_BANDS", "target_specs", "true_targets"]

AGE_BANDS = ((0, 5), (5, 18), (18, 65), (65, None))
AGI_BANDS = ((None, 25_000), (25_000, 50_000), (50_000, 100_000), (100_000, None))


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

        specs.append(_Spec(count, domain, GEO_LEVELS, contribution))
    return specs


def target_specs() -> list[_Spec]:
    """The synthetic country's target list: 14 per state and nation, 12 per district."""
    snap_domain = (("snap", ">", "0"),)
    out = [_Spec("household_count", (), GEO_LEVELS, lambda a: np.ones(a["n_households"]))]
    out += _banded_counts("person_count", "age", "person_household", AGE_BANDS)
    out += [
        _Spec(
            "employment_income",
            (),
            GEO_LEVELS,
            lambda a: _per_household(a, "person_household", a["employment_income"]),
        ),
        _Spec(
            "household_count",
            snap_domain,
            GEO_LEVELS,
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
            GEO_LEVELS,
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


def true_targets(
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
    for spec in target_specs():
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
