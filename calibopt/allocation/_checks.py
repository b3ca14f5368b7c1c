"""Input checks shared by the allocation modules (errors name the argument and the entry)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["nonnegative_scalar", "nonnegative_vector"]


def nonnegative_vector(
    value: Any, name: str, n: int | None = None, allow_scalar: bool = False
) -> np.ndarray:
    """``value`` as a 1-D float array of finite, non-negative entries (``n`` of them if set).

    ``allow_scalar`` broadcasts a scalar to length ``n``.
    """
    if isinstance(value, pd.Series | pd.Index):
        value = value.to_numpy()
    if allow_scalar and np.ndim(value) == 0:
        if n is None:
            raise InvalidProblemError(f"`{name}` cannot be a scalar here.")
        value = np.full(n, value)
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"`{name}` must be numeric.") from None
    if n is not None and arr.size != n:
        raise InvalidProblemError(f"`{name}` has {arr.size} entries but {n} were expected.")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        raise InvalidProblemError(
            f"`{name}` must be finite and non-negative; entry {int(bad[0])} is {arr[bad[0]]} "
            f"({bad.size} bad value(s))."
        )
    return arr


def nonnegative_scalar(value: Any, name: str) -> float:
    """``value`` as a finite, non-negative float."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"`{name}` must be a number, got {value!r}.") from None
    if not np.isfinite(v) or v < 0:
        raise InvalidProblemError(f"`{name}` must be finite and non-negative, got {v}.")
    return v
