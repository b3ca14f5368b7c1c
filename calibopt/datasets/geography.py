"""States and congressional-district-like geographies for the synthetic country.

The full layout copies the shape of the United States: the 50 states and DC with their FIPS
codes and the number of congressional districts each has after the 2020 apportionment
(435 districts plus DC's delegate district = 436). District GEOIDs follow the convention
``state_fips * 100 + district number`` (district 1 for an at-large seat), so
``geoid // 100`` is always the state's FIPS code.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["US_STATES", "Geography", "apportion", "district_state", "make_geography"]

# (FIPS, postal code, name, districts after the 2020 apportionment; DC = its delegate's seat)
_US = [
    (1, "AL", "Alabama", 7),
    (2, "AK", "Alaska", 1),
    (4, "AZ", "Arizona", 9),
    (5, "AR", "Arkansas", 4),
    (6, "CA", "California", 52),
    (8, "CO", "Colorado", 8),
    (9, "CT", "Connecticut", 5),
    (10, "DE", "Delaware", 1),
    (11, "DC", "District of Columbia", 1),
    (12, "FL", "Florida", 28),
    (13, "GA", "Georgia", 14),
    (15, "HI", "Hawaii", 2),
    (16, "ID", "Idaho", 2),
    (17, "IL", "Illinois", 17),
    (18, "IN", "Indiana", 9),
    (19, "IA", "Iowa", 4),
    (20, "KS", "Kansas", 4),
    (21, "KY", "Kentucky", 6),
    (22, "LA", "Louisiana", 6),
    (23, "ME", "Maine", 2),
    (24, "MD", "Maryland", 8),
    (25, "MA", "Massachusetts", 9),
    (26, "MI", "Michigan", 13),
    (27, "MN", "Minnesota", 8),
    (28, "MS", "Mississippi", 4),
    (29, "MO", "Missouri", 8),
    (30, "MT", "Montana", 2),
    (31, "NE", "Nebraska", 3),
    (32, "NV", "Nevada", 4),
    (33, "NH", "New Hampshire", 2),
    (34, "NJ", "New Jersey", 12),
    (35, "NM", "New Mexico", 3),
    (36, "NY", "New York", 26),
    (37, "NC", "North Carolina", 14),
    (38, "ND", "North Dakota", 1),
    (39, "OH", "Ohio", 15),
    (40, "OK", "Oklahoma", 5),
    (41, "OR", "Oregon", 6),
    (42, "PA", "Pennsylvania", 17),
    (44, "RI", "Rhode Island", 2),
    (45, "SC", "South Carolina", 7),
    (46, "SD", "South Dakota", 1),
    (47, "TN", "Tennessee", 9),
    (48, "TX", "Texas", 38),
    (49, "UT", "Utah", 4),
    (50, "VT", "Vermont", 1),
    (51, "VA", "Virginia", 11),
    (53, "WA", "Washington", 10),
    (54, "WV", "West Virginia", 2),
    (55, "WI", "Wisconsin", 8),
    (56, "WY", "Wyoming", 1),
]

US_STATES = pd.DataFrame(_US, columns=["state_fips", "abbreviation", "name", "n_districts"])
"""The 50 states and DC: FIPS code, postal code, name and number of districts (436 in all)."""


def district_state(geoid: np.ndarray | int) -> np.ndarray | int:
    """The state FIPS code of a district GEOID (``geoid // 100``)."""
    return np.asarray(geoid) // 100 if np.ndim(geoid) else int(geoid) // 100


class Geography:
    """States and their districts.

    Attributes
    ----------
    states : DataFrame
        One row per state: ``state_fips``, ``abbreviation``, ``name``, ``n_districts``,
        ``population_share`` (the state's share of all households).
    districts : DataFrame
        One row per district, sorted by GEOID: ``congressional_district_geoid``,
        ``state_fips``, ``district_number``.
    """

    def __init__(self, states: pd.DataFrame) -> None:
        states = states.sort_values("state_fips").reset_index(drop=True)
        if (states["n_districts"] < 1).any() or (states["n_districts"] > 99).any():
            raise InvalidProblemError("every state needs between 1 and 99 districts.")
        if "population_share" not in states:
            states = states.assign(
                population_share=states["n_districts"] / states["n_districts"].sum()
            )
        self.states = states
        fips = np.repeat(states["state_fips"].to_numpy(), states["n_districts"].to_numpy())
        number = np.concatenate([np.arange(1, k + 1) for k in states["n_districts"]])
        self.districts = pd.DataFrame(
            {
                "congressional_district_geoid": fips * 100 + number,
                "state_fips": fips,
                "district_number": number,
            }
        )

    @property
    def geoids(self) -> np.ndarray:
        """District GEOIDs, sorted."""
        return self.districts["congressional_district_geoid"].to_numpy()

    @property
    def state_fips(self) -> np.ndarray:
        """State FIPS codes, sorted."""
        return self.states["state_fips"].to_numpy()

    def __repr__(self) -> str:
        return f"Geography({len(self.states)} states, {len(self.districts)} districts)"


def apportion(shares: np.ndarray, total: int, minimum: int | np.ndarray = 0) -> np.ndarray:
    """Integer seats summing to ``total``: a floor ``minimum`` per state, the rest in
    proportion to ``shares`` by largest remainder."""
    n = shares.size
    seats = np.broadcast_to(np.asarray(minimum, dtype=int), (n,)).copy()
    if total < seats.sum():
        raise InvalidProblemError(
            f"cannot give {n} states their minimum ({int(seats.sum())} in all) out of {total}."
        )
    rest = total - seats.sum()
    quota = shares / shares.sum() * rest
    seats += np.floor(quota).astype(int)
    order = np.argsort(-(quota - np.floor(quota)), kind="stable")
    seats[order[: total - seats.sum()]] += 1
    return seats


def make_geography(
    n_states: int | None = None,
    n_districts: int | None = None,
    *,
    states: Mapping[int, int] | None = None,
    seed: int = 0,
) -> Geography:
    """A geography shaped like the US: heavy-tailed state sizes, near-equal districts.

    Parameters
    ----------
    n_states, n_districts
        Number of states (1-51) and districts. With 51 and 436 (the defaults) this is the US
        layout exactly. Otherwise ``n_states`` real states are drawn (seeded) and the
        districts are apportioned among them in proportion to their real sizes, at least
        one each.
    states
        Explicit ``{state FIPS: number of districts}`` (overrides the counts).
    seed
        Which states are drawn when ``n_states < 51``.
    """
    table = US_STATES
    if states is not None:
        fips = np.array(sorted(states), dtype=int)
        unknown = sorted(set(fips) - set(table["state_fips"]))
        if unknown:
            raise InvalidProblemError(f"unknown state FIPS code(s) {unknown}.")
        chosen = table.set_index("state_fips").loc[fips].reset_index()
        chosen["n_districts"] = [int(states[f]) for f in fips]
        return Geography(chosen)
    n_states = 51 if n_states is None else int(n_states)
    if not 1 <= n_states <= 51:
        raise InvalidProblemError(f"n_states must be between 1 and 51, got {n_states}.")
    if n_states == 51:
        chosen = table.copy()
    else:
        rng = np.random.default_rng([seed, 17])
        pick = np.sort(rng.choice(len(table), size=n_states, replace=False))
        chosen = table.iloc[pick].reset_index(drop=True)
    real = chosen["n_districts"].to_numpy(dtype=float)
    if n_districts is None:
        n_districts = int(real.sum())
    if n_districts > 99 * n_states:
        raise InvalidProblemError(f"{n_districts} districts do not fit in {n_states} states.")
    if n_districts != real.sum():  # the real counts when they add up, else re-apportioned
        chosen = chosen.assign(n_districts=apportion(real, int(n_districts), 1))
    chosen["population_share"] = real / real.sum()
    return Geography(chosen)
