"""Checks of scalar options, shared by the problem and every method.

Each turns a bad value into :class:`~calibopt.errors.InvalidProblemError` naming the option,
the value and what is accepted, instead of a ``TypeError``/``ValueError`` from deep inside.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .errors import InvalidProblemError

__all__ = [
    "broadcast",
    "check_finite_matrix",
    "check_order",
    "choice",
    "float_vector",
    "integer",
    "is_pandas",
    "labels",
    "number",
    "optional_text",
    "pair",
    "sparse_matrix",
]


def number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    strict: bool = False,
    finite: bool = True,
    nan_ok: bool = False,
) -> float:
    """``value`` as a float, optionally ``>= low`` / ``<= high`` (``>``/``<`` if ``strict``).

    Booleans and strings are refused (``"1%"`` is not a number: write ``0.01``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = " (write fractions as numbers, e.g. 0.01 for 1%)" if isinstance(value, str) else ""
        raise InvalidProblemError(f"`{name}` must be a number, got {value!r}{hint}.")
    v = float(value)
    if math.isnan(v) and nan_ok:
        return v
    if math.isnan(v) or (finite and math.isinf(v)):
        raise InvalidProblemError(f"`{name}` must be a finite number, got {value!r}.")
    if low is not None and (v <= low if strict else v < low):
        raise InvalidProblemError(f"`{name}` must be {'>' if strict else '>='} {low:g}, got {v!r}.")
    if high is not None and (v >= high if strict else v > high):
        raise InvalidProblemError(
            f"`{name}` must be {'<' if strict else '<='} {high:g}, got {v!r}."
        )
    return v


def integer(name: str, value: Any, *, low: int | None = None) -> int:
    """``value`` as an int (an integral float such as ``10.0`` is accepted), ``>= low``."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    if ok and not isinstance(value, numbers.Integral):
        ok = math.isfinite(float(value)) and float(value).is_integer()
    if not ok:
        raise InvalidProblemError(f"`{name}` must be an integer, got {value!r}.")
    v = int(value)
    if low is not None and v < low:
        raise InvalidProblemError(f"`{name}` must be an integer >= {low}, got {value!r}.")
    return v


def choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``."""
    if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
        shown = ", ".join(repr(c) for c in choices)
        raise InvalidProblemError(f"`{name}` must be one of {shown}; got {value!r}.")
    return value


def optional_text(name: str, value: Any) -> str | None:
    """None or a non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidProblemError(f"`{name}` must be a non-empty string or None, got {value!r}.")
    return value.strip()


# ---------------------------------------------------------------------------- arrays
def _pandas_types() -> tuple[type, ...]:
    """pandas' Series/Index/DataFrame types if pandas is loaded (it is never imported here)."""
    pd = sys.modules.get("pandas")
    return () if pd is None else (pd.Series, pd.Index, pd.DataFrame)


def is_pandas(value: Any) -> bool:
    """True for a pandas Series, Index or DataFrame (without importing pandas)."""
    types = _pandas_types()
    return bool(types) and isinstance(value, types)


def float_vector(value: Any, name: str, length: int | None = None) -> np.ndarray:
    """``value`` as a contiguous 1-D float64 array, with errors naming ``name``."""
    if is_pandas(value):
        if getattr(value, "ndim", 1) != 1:
            raise InvalidProblemError(f"`{name}` must be one-dimensional, got a DataFrame.")
        value = value.to_numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"`{name}` is not an array of numbers ({exc}).") from None
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise InvalidProblemError(
                f"`{name}` must be numeric, got values such as {arr.ravel()[:3].tolist()}; "
                f"convert it with pd.to_numeric or np.asarray(..., dtype=float)."
            ) from None
    if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        raise InvalidProblemError(
            f"`{name}` must be numeric, got dtype {arr.dtype}; convert it with pd.to_numeric "
            f"or np.asarray(..., dtype=float)."
        )
    if np.iscomplexobj(arr):
        raise InvalidProblemError(f"`{name}` must be real, got complex values.")
    if arr.ndim > 1 and arr.size == max(arr.shape):
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InvalidProblemError(f"`{name}` must be one-dimensional, got shape {arr.shape}.")
    if length is not None and arr.shape[0] != length:
        raise InvalidProblemError(f"`{name}` has length {arr.shape[0]} but {length} was expected.")
    return np.ascontiguousarray(arr, dtype=np.float64)


def broadcast(value: Any, name: str, length: int, default: float) -> np.ndarray:
    """A scalar, None or a vector -> float64 vector of ``length`` (None -> ``default``)."""
    if value is None:
        return np.full(length, default)
    if np.ndim(value) == 0 and not is_pandas(value):
        v = number(name, value, finite=False, nan_ok=True)
        if np.isnan(v):
            raise InvalidProblemError(f"`{name}` is NaN; use None or +/-inf for no bound.")
        return np.full(length, v)
    arr = float_vector(value, name, length)
    bad = np.flatnonzero(np.isnan(arr))
    if bad.size:
        raise InvalidProblemError(
            f"`{name}` has NaN at position(s) {bad[:5].tolist()}; use +/-inf for no bound."
        )
    return arr


def pair(value: Any, name: str) -> tuple[Any, Any]:
    """``(lower, upper)`` from a pair (None -> ``(None, None)``)."""
    if value is None:
        return None, None
    ok = isinstance(value, tuple | list) and len(value) == 2
    ok = ok or (isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == 2)
    if not ok:
        raise InvalidProblemError(
            f"`{name}` must be a pair (lower, upper) of scalars, arrays or None; got {value!r}."
        )
    return value[0], value[1]


def sparse_matrix(X: Any) -> sp.csr_matrix | sp.csc_matrix:
    """X as canonical float64 CSR or CSC (CSC input stays CSC), never densified.

    Sparse input in canonical float64 form is used as is (not copied); other input is
    converted once.
    """
    if is_pandas(X):
        if getattr(X, "ndim", 1) != 2:
            raise InvalidProblemError("`X` must be two-dimensional (targets x units).")
        import pandas as pd  # X is a pandas object, so pandas is loaded

        non_numeric = [
            c
            for c in X.columns
            if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))
        ]
        if non_numeric:
            raise InvalidProblemError(
                f"`X` has non-numeric column(s) {non_numeric[:5]}; encode them first "
                f"(see calibopt.problem_from_margins for categorical margins)."
            )
        X = X.to_numpy(dtype=np.float64)
    if sp.issparse(X):
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.iscomplexobj(X):
            raise InvalidProblemError(f"`X` must be numeric (real), got dtype {X.dtype}.")
        if X.ndim != 2:
            raise InvalidProblemError(f"`X` must be two-dimensional, got shape {X.shape}.")
        out = (
            sp.csc_matrix(X, dtype=np.float64)
            if X.format == "csc"
            else sp.csr_matrix(X, dtype=np.float64)
        )
    else:
        try:
            arr = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise InvalidProblemError(f"`X` is not a matrix of numbers ({exc}).") from None
        if (
            arr.dtype == object
            or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_)
            or np.iscomplexobj(arr)
        ):
            raise InvalidProblemError(
                f"`X` must be numeric (real), got dtype {arr.dtype}; convert non-numeric "
                f"columns first."
            )
        if arr.ndim != 2:
            raise InvalidProblemError(
                f"`X` must be two-dimensional (targets x units), got shape {arr.shape}."
            )
        out = sp.csr_matrix(arr.astype(np.float64, copy=False))
    if not out.has_canonical_format:
        out = out.copy()
        out.sum_duplicates()
    if np.any(out.data == 0):
        out = out.copy()
        out.eliminate_zeros()
    return out


def check_finite_matrix(M: sp.spmatrix) -> None:
    """Raise when the matrix has NaN or infinite entries, naming where."""
    bad = np.flatnonzero(~np.isfinite(M.data))
    if bad.size:
        major = np.searchsorted(M.indptr, bad, side="right") - 1
        minor = M.indices[bad]
        rows, cols = (major, minor) if M.format == "csr" else (minor, major)
        where = ", ".join(f"(row {r}, column {c})" for r, c in zip(rows[:5], cols[:5]))
        raise InvalidProblemError(
            f"`X` has {bad.size} non-finite entr{'y' if bad.size == 1 else 'ies'} "
            f"(NaN or inf) at {where}; impute or drop them before calibrating."
        )


def labels(value: Any, name: str, m: int) -> list[Any]:
    """``value`` as a list of ``m`` labels (a string or a scalar is refused)."""
    if isinstance(value, str | bytes) or np.ndim(value) == 0:
        raise InvalidProblemError(
            f"`{name}` must be a sequence of {m} labels (one per target), got {value!r}."
        )
    items = list(value)
    if any(isinstance(x, list | dict | set | np.ndarray) for x in items):
        raise InvalidProblemError(f"`{name}` must hold one scalar label per target.")
    return items


def check_order(lo: np.ndarray, hi: np.ndarray, name: str) -> None:
    """Raise when some lower bound exceeds its upper bound."""
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        i = bad[0]
        raise InvalidProblemError(
            f"`{name}`: lower > upper for {bad.size} unit(s), first at unit {i} "
            f"({lo[i]:g} > {hi[i]:g}); swap or widen the bounds."
        )
