"""The column map of a local-area matrix: column <-> (household, geography), by arithmetic.

Columns are geography-major: column ``c = g * n_households + h`` is household row ``h``
placed in geography ``geographies[g]``. Nothing per column is stored; every lookup is integer
arithmetic on two short arrays, so the map of a 5-million-column matrix costs kilobytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["ColumnMap"]


class ColumnMap:
    """Column <-> (household, geography) for geography-major local-area columns.

    Parameters
    ----------
    geographies
        Geography ids in column-block order (district GEOIDs, or state FIPS codes when
        ``level="state"``).
    household_ids
        Household ids in row order of the dataset.
    level
        ``"district"`` (GEOID // 100 is the state) or ``"state"``.
    household_weight, home_state
        Design weight and home state of each household (used for the design prior).

    Raises
    ------
    InvalidProblemError
        Duplicated geographies or household ids, or ids that are not district GEOIDs
        (``level="district"``) / state FIPS codes (``level="state"``).
    """

    def __init__(
        self,
        geographies: Sequence[Any] | np.ndarray,
        household_ids: np.ndarray,
        *,
        level: str = "district",
        household_weight: np.ndarray | None = None,
        home_state: np.ndarray | None = None,
    ) -> None:
        if level not in ("district", "state"):
            raise InvalidProblemError(f"level must be 'district' or 'state', got {level!r}.")
        self.level = level
        self.geographies = _geo_ids(geographies)
        self.household_ids = np.asarray(household_ids, dtype=np.int64)
        self.n_geographies = self.geographies.size
        self.n_households = self.household_ids.size
        self.household_weight = (
            None if household_weight is None else np.asarray(household_weight, dtype=np.float64)
        )
        self.home_state = None if home_state is None else np.asarray(home_state, dtype=np.int64)
        self._geo_pos = pd.Index(self.geographies)
        self._hh_pos = pd.Index(self.household_ids)
        if not self._hh_pos.is_unique:
            raise InvalidProblemError("household ids must be unique.")
        self._check_geographies()

    def _check_geographies(self) -> None:
        geos = self.geographies
        dup = self._geo_pos.duplicated()
        if dup.any():
            raise InvalidProblemError(f"geographies listed twice: {geos[dup][:10].tolist()}.")
        if self.level == "district":
            bad = geos[(geos < 100) | (geos // 100 > 99)]
            if bad.size:
                raise InvalidProblemError(
                    f"{bad[:10].tolist()} are not district GEOIDs (state FIPS x 100 + district "
                    f"number, e.g. 3701); for state columns pass level='state'."
                )
        elif ((geos < 1) | (geos > 99)).any():
            raise InvalidProblemError(
                f"{geos[(geos < 1) | (geos > 99)][:10].tolist()} are not state FIPS codes."
            )

    # ------------------------------------------------------------------ basic facts
    @property
    def n_columns(self) -> int:
        """Number of columns (geographies x households)."""
        return self.n_geographies * self.n_households

    @property
    def states(self) -> np.ndarray:
        """The state FIPS code of each geography."""
        return self.geographies // 100 if self.level == "district" else self.geographies.copy()

    def geography_positions(self, geographies: Any) -> np.ndarray:
        """Block positions of geography ids; unknown ids raise a clear error."""
        ids = _geo_ids(geographies)
        pos = self._geo_pos.get_indexer(ids)
        if (pos < 0).any():
            raise InvalidProblemError(
                f"geograph{'y' if (pos < 0).sum() == 1 else 'ies'} {ids[pos < 0][:10].tolist()} "
                f"not among the {self.n_geographies} calibrated {self.level}s."
            )
        return pos

    def household_positions(self, household_ids: Any) -> np.ndarray:
        """Row positions of household ids; unknown ids raise a clear error."""
        ids = np.atleast_1d(np.asarray(household_ids, dtype=np.int64))
        pos = self._hh_pos.get_indexer(ids)
        if (pos < 0).any():
            raise InvalidProblemError(f"unknown household id(s) {ids[pos < 0][:10].tolist()}.")
        return pos

    # ------------------------------------------------------------------ lookups
    def column(self, household_id: Any, geography: Any) -> np.ndarray | int:
        """Column(s) of household id(s) placed in geography id(s) (broadcast)."""
        h = self.household_positions(household_id)
        g = self.geography_positions(geography)
        cols = g * self.n_households + h
        return int(cols[0]) if np.ndim(household_id) == 0 and np.ndim(geography) == 0 else cols

    def locate(self, columns: Any) -> pd.DataFrame:
        """For column positions: ``column``, ``geography``, ``state_fips``, ``household_id``,
        ``household_index`` (row in the dataset)."""
        cols = np.atleast_1d(np.asarray(columns, dtype=np.int64))
        bad = (cols < 0) | (cols >= self.n_columns)
        if bad.any():
            raise InvalidProblemError(
                f"column(s) {cols[bad][:5].tolist()} outside 0..{self.n_columns - 1}."
            )
        g, h = np.divmod(cols, self.n_households)
        return pd.DataFrame(
            {
                "column": cols,
                "geography": self.geographies[g],
                "state_fips": self.states[g],
                "household_id": self.household_ids[h],
                "household_index": h,
            }
        )

    def household_columns(self, household_id: int) -> dict[int, int]:
        """``{geography id: column}`` for every placement of one household."""
        h = int(self.household_positions(household_id)[0])
        cols = np.arange(self.n_geographies) * self.n_households + h
        return dict(zip(self.geographies.tolist(), cols.tolist(), strict=True))

    def geography_columns(self, geography: Any) -> slice:
        """The contiguous column range of one geography."""
        g = int(self.geography_positions(geography)[0])
        return slice(g * self.n_households, (g + 1) * self.n_households)

    def blocks(self) -> pd.DataFrame:
        """One row per geography: ``geography``, ``state_fips``, ``start_col``, ``end_col``
        (inclusive), ``n_households``."""
        start = np.arange(self.n_geographies) * self.n_households
        return pd.DataFrame(
            {
                "geography": self.geographies,
                "state_fips": self.states,
                "start_col": start,
                "end_col": start + self.n_households - 1,
                "n_households": self.n_households,
            }
        )

    def reshape(self, weights: Any) -> np.ndarray:
        """A column vector as ``(n_geographies, n_households)`` (a view when possible)."""
        w = np.asarray(weights)
        if w.shape != (self.n_columns,):
            raise InvalidProblemError(
                f"weights have shape {w.shape}, expected ({self.n_columns},) = "
                f"{self.n_geographies} geographies x {self.n_households} households."
            )
        return w.reshape(self.n_geographies, self.n_households)

    def to_frame(self) -> pd.DataFrame:
        """Every column as a row (n_columns rows: use on small matrices)."""
        return self.locate(np.arange(self.n_columns))

    # ------------------------------------------------------------------ design prior
    def design_weights(self, outside_share: float = 0.01) -> np.ndarray:
        """Initial weights spreading each household's design weight over geographies.

        A household of state ``s`` with design weight ``w`` gets ``(1 - outside_share) * w /
        k_s`` in each of the ``k_s`` calibrated geographies of its own state and
        ``outside_share * w / (G - k_s)`` in each of the ``G - k_s`` others, so its weights
        sum to ``w`` across geographies (to ``outside_share * w`` if no geography of its
        state is calibrated). ``outside_share=0`` forbids out-of-state donors for methods
        that keep zero weights at zero (raking).
        """
        if self.household_weight is None or self.home_state is None:
            raise InvalidProblemError(
                "the design prior needs each household's weight and state; build the matrix "
                "from a dataset with 'household_weight' and 'state_fips', or pass "
                "initial_weights explicitly."
            )
        if not 0 <= outside_share <= 1:
            raise InvalidProblemError(f"outside_share must be in [0, 1], got {outside_share}.")
        states = self.states
        uniq, k = np.unique(states, return_counts=True)
        k_home = np.zeros(self.n_households)
        pos = np.searchsorted(uniq, self.home_state)
        found = (pos < uniq.size) & (uniq[np.minimum(pos, uniq.size - 1)] == self.home_state)
        k_home[found] = k[pos[found]]
        g_total = self.n_geographies
        w = self.household_weight
        inside = np.where(k_home > 0, (1 - outside_share) * w / np.maximum(k_home, 1), 0.0)
        n_out = g_total - k_home
        outside = np.where(n_out > 0, outside_share * w / np.maximum(n_out, 1), 0.0)
        same = states[:, None] == self.home_state[None, :]
        return np.where(same, inside[None, :], outside[None, :]).reshape(-1)

    def __repr__(self) -> str:
        return (
            f"ColumnMap({self.n_geographies} {self.level}s x {self.n_households} households = "
            f"{self.n_columns:,} columns)"
        )


def _geo_ids(values: Any) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(values))
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    try:
        out = np.array([int(str(v).strip()) for v in arr.tolist()], dtype=np.int64)
    except ValueError:
        raise InvalidProblemError(
            f"geography ids must be integer codes (GEOIDs / FIPS), got {arr[:5].tolist()}."
        ) from None
    return out
