"""Checking and aligning the inputs of the provisions solvers (per-LEA vectors, state labels
and state minimums), shared by :mod:`~calibopt.allocation.provisions` and
:mod:`~calibopt.allocation.recursive`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from ._checks import nonnegative_scalar, nonnegative_vector

__all__ = [
    "aligned_vector",
    "like_input",
    "minimums_by_state",
    "parse_provisions",
    "state_codes",
    "tiebreak_ranks",
]


def aligned_vector(value: Any, template: Any, name: str, n: int) -> np.ndarray:
    """A per-LEA vector, aligned on ``template``'s index when both are Series."""
    if value is None:
        return np.zeros(n)
    if isinstance(value, pd.Series) and isinstance(template, pd.Series):
        if not value.index.equals(template.index):
            missing = template.index.difference(value.index)
            if len(missing):
                raise InvalidProblemError(
                    f"`{name}` has no entry for {len(missing)} LEA(s) of `authorizations`, e.g. "
                    f"{missing[0]!r}."
                )
            value = value.reindex(template.index)
    return nonnegative_vector(value, name, n, allow_scalar=True)


def parse_provisions(
    authorizations: Any, appropriation: Any, floors: Any, states: Any, state_minimums: Any
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, pd.Index, np.ndarray]:
    """Validated (a, A, f, state codes, state labels, minimum per state)."""
    a = nonnegative_vector(authorizations, "authorizations")
    A = nonnegative_scalar(appropriation, "appropriation")
    f = aligned_vector(floors, authorizations, "floors", a.size)
    if state_minimums is not None and states is None:
        raise InvalidProblemError("`state_minimums` needs `states` (one state label per LEA).")
    codes, uniques = state_codes(states, a.size)
    return a, A, f, codes, uniques, minimums_by_state(state_minimums, codes, uniques)


def tiebreak_ranks(template: Any, n: int) -> np.ndarray:
    """Rank of each entry for breaking rounding ties: label order for Series, else position."""
    if isinstance(template, pd.Series):
        try:
            return np.argsort(np.argsort(template.index.to_numpy(), kind="stable"), kind="stable")
        except TypeError:  # unorderable labels
            pass
    return np.arange(n)


def state_codes(states: Any, n: int) -> tuple[np.ndarray, pd.Index]:
    if states is None:
        return np.zeros(n, dtype=np.int64), pd.Index([None])
    labels = states.to_numpy() if isinstance(states, pd.Series | pd.Index) else np.asarray(states)
    if labels.shape != (n,):
        raise InvalidProblemError(
            f"`states` must have one label per LEA ({n}), got {labels.shape}."
        )
    if pd.isna(labels).any():
        raise InvalidProblemError("`states` has missing labels.")
    try:
        codes, uniques = pd.factorize(labels, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(labels)
    return codes.astype(np.int64), pd.Index(uniques)


def minimums_by_state(value: Any, codes: np.ndarray, uniques: pd.Index) -> np.ndarray:
    k = len(uniques)
    if value is None:
        return np.zeros(k)
    if isinstance(value, Mapping | pd.Series):
        ser = pd.Series(dict(value)) if isinstance(value, Mapping) else value
        unknown = ser.index.difference(uniques)
        if len(unknown):
            raise InvalidProblemError(
                f"`state_minimums` names state(s) with no LEA: {list(unknown[:5])}."
            )
        return nonnegative_vector(ser.reindex(uniques).fillna(0.0).to_numpy(), "state_minimums", k)
    if np.ndim(value) == 0:
        return np.full(k, nonnegative_scalar(value, "state_minimums"))
    per_lea = nonnegative_vector(value, "state_minimums", codes.size)
    out = np.zeros(k)
    out[codes] = per_lea
    if not np.array_equal(out[codes], per_lea):
        raise InvalidProblemError(
            "`state_minimums` given per LEA must be constant within each state."
        )
    return out


def like_input(template: Any, values: np.ndarray, name: str = "allocation") -> Any:
    if isinstance(template, pd.Series):
        return pd.Series(values, index=template.index, name=template.name or name)
    return values
