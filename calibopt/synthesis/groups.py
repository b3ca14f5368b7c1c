"""Segment operations shared by the hierarchy rules: factorised group codes over a person
frame and the column helpers the rules use to read, test and write values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["Groups"]


class Groups:
    """Group codes of the id columns of one frame (computed once per column)."""

    def __init__(self, frame: pd.DataFrame, household_id: str) -> None:
        self.frame = frame
        self.household_id = household_id
        self._codes: dict[str, tuple[np.ndarray, int]] = {}

    def codes(self, column: str) -> tuple[np.ndarray, int]:
        """``(code of each row, number of groups)`` for an id column."""
        if column not in self._codes:
            if column not in self.frame.columns:
                raise InvalidProblemError(
                    f"the data lack the id column {column!r} (columns: "
                    f"{list(self.frame.columns)[:12]})."
                )
            codes, uniques = pd.factorize(self.frame[column], sort=False)
            if (codes < 0).any():
                raise InvalidProblemError(f"{column!r} has missing ids.")
            self._codes[column] = (codes.astype(np.int64), len(uniques))
        return self._codes[column]

    def unit(self, within: str | None) -> str:
        """The group column of a relationship rule (tax unit if present, else household)."""
        if within is not None:
            return within
        return "tax_unit_id" if "tax_unit_id" in self.frame.columns else self.household_id


def _column(frame: pd.DataFrame, name: str, rule: str) -> pd.Series:
    if name not in frame.columns:
        raise InvalidProblemError(f"{rule} needs the column {name!r}, which the data lack.")
    return frame[name]


def _numeric(frame: pd.DataFrame, name: str, rule: str) -> np.ndarray:
    col = _column(frame, name, rule)
    if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
        raise InvalidProblemError(
            f"{rule}: {name!r} must be numeric, got dtype {col.dtype} (use how='mode' or "
            f"'head' for categories)."
        )
    return col.to_numpy(dtype=np.float64)


def _is(frame: pd.DataFrame, column: str, value: Any, rule: str) -> np.ndarray:
    """Rows where ``column == value`` (fast on categoricals)."""
    col = _column(frame, column, rule)
    if isinstance(col.dtype, pd.CategoricalDtype):
        if value not in col.cat.categories:
            return np.zeros(len(col), dtype=bool)
        return col.cat.codes.to_numpy() == col.cat.categories.get_loc(value)
    return col.to_numpy() == value


def _put(frame: pd.DataFrame, column: str, values: np.ndarray) -> None:
    """Write values back in the column's dtype (integers rounded)."""
    dtype = frame[column].dtype
    if isinstance(dtype, pd.CategoricalDtype):
        frame[column] = pd.Categorical(values, categories=dtype.categories, ordered=dtype.ordered)
    elif isinstance(dtype, np.dtype) and dtype.kind in "iu":
        frame[column] = np.rint(values).astype(dtype)
    else:
        frame[column] = pd.Series(values, index=frame.index).astype(dtype)


def _first_where(mask: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Per group, the first row where ``mask`` holds (-1 when none)."""
    rows = np.flatnonzero(mask)
    out = np.full(n, -1, dtype=np.int64)
    out[codes[rows[::-1]]] = rows[::-1]  # the last write wins: the first row
    return out


def _varies(codes: np.ndarray, n: int, col: pd.Series) -> np.ndarray:
    """Per group, whether ``col`` takes more than one value (missing values count as one
    value): a row differing from its group's first row, in one pass (no sort)."""
    first = _first_where(np.ones(codes.size, dtype=bool), codes, n)[codes]
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        values = col.cat.codes.to_numpy()
        diff = values != values[first]
    elif isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        values = col.to_numpy()
        ref = values[first]
        diff = values != ref
        if dtype.kind == "f":
            diff &= ~(np.isnan(values) & np.isnan(ref))
    else:
        values = pd.factorize(col)[0]
        diff = values != values[first]
    out = np.zeros(n, dtype=bool)
    out[codes[diff]] = True
    return out
