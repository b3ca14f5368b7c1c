"""Checking targets before they are written: one validated record per row of a DataFrame.

Every problem is an :class:`~calibopt.errors.InvalidProblemError` naming the row and the
column, raised before anything touches the database.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from .constraints import format_constraints, geography_of, normalise_constraints
from .schema import INT_RANGE

__all__ = ["checked_integer", "target_rows"]


def target_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Validated target records from a DataFrame (see :meth:`TargetsDatabase.add_targets`).

    Each record has ``row``, ``variable``, ``period``, ``value``, ``constraints`` (canonical
    tuple), ``reform_id``, ``active``, ``tolerance`` (a fraction or None), ``source``,
    ``notes``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidProblemError(f"targets must be a DataFrame, got {type(frame).__name__}.")
    missing = sorted({"variable", "period", "value"} - set(frame.columns))
    if missing:
        raise InvalidProblemError(
            f"targets lack column(s) {missing}; needed: variable, period, value, and "
            f"constraints (text like 'state_fips == 37; age < 5', empty for national)."
        )
    n = len(frame)

    def column(name: str, default: Any) -> list[Any]:
        return frame[name].tolist() if name in frame.columns else [default] * n

    rows = [
        _record(i, *fields)
        for i, fields in enumerate(
            zip(
                frame["variable"].tolist(),
                frame["period"].tolist(),
                frame["value"].tolist(),
                column("constraints", ""),
                column("reform_id", 0),
                column("active", True),
                column("tolerance", None),
                column("source", None),
                column("notes", None),
                strict=True,
            )
        )
    ]
    _refuse_duplicates(rows)
    return rows


def _record(
    i: int,
    var: Any,
    period: Any,
    value: Any,
    constraints: Any,
    reform: Any,
    active: Any,
    tolerance: Any,
    source: Any,
    notes: Any,
) -> dict[str, Any]:
    if not isinstance(var, str) or not var.strip():
        raise InvalidProblemError(f"target row {i}: `variable` must be a non-empty string.")
    where = f"target row {i} ({var})"
    number = _number(value, where, "value")
    if number is None:
        raise InvalidProblemError(f"{where}: `value` is missing.")
    tol = _number(tolerance, where, "tolerance")
    if tol is not None and not 0 <= tol <= 1:
        raise InvalidProblemError(
            f"{where}: tolerance {tolerance!r} is not a fraction in [0, 1]; tolerances are "
            f"relative errors as fractions (0.05 = 5%), as in CalibrationProblem"
            f"{' (a percentage? divide it by 100)' if tol > 1 else ''}."
        )
    cons = normalise_constraints(constraints, where)
    geography_of(cons, where)
    return {
        "row": i,
        "variable": var.strip(),
        "period": checked_integer(period, f"{where}: column `period`"),
        "value": number,
        "constraints": cons,
        "reform_id": checked_integer(reform, f"{where}: column `reform_id`"),
        "active": _boolean(active, where),
        "tolerance": tol,
        "source": _text(source),
        "notes": _text(notes),
    }


def _refuse_duplicates(rows: list[dict[str, Any]]) -> None:
    seen: dict[tuple, int] = {}
    for r in rows:
        key = (r["variable"], r["period"], r["constraints"], r["reform_id"])
        if key in seen:
            raise InvalidProblemError(
                f"duplicate targets: rows {seen[key]} and {r['row']} both give {r['variable']} "
                f"for period {r['period']}, reform {r['reform_id']} and constraints "
                f"'{format_constraints(r['constraints']) or '(national)'}'; keep one."
            )
        seen[key] = r["row"]


def checked_integer(value: Any, where: str) -> int:
    """``value`` as an int that every backend's INTEGER column holds, or a clear error.

    ``where`` names the argument, or the row and column (it starts the message).
    """
    if isinstance(value, int | np.integer):
        number = int(value)
    else:
        try:
            real = float(value)
        except (TypeError, ValueError, OverflowError):
            real = float("nan")
        if not np.isfinite(real) or not real.is_integer():
            raise InvalidProblemError(f"{where} must be an integer, got {value!r}.")
        number = int(real)
    lo, hi = INT_RANGE
    if not lo <= number <= hi:
        raise InvalidProblemError(
            f"{where}: {value!r} is out of range; an integer column holds {lo} to {hi} "
            f"(a period is a year such as 2024)."
        )
    return number


def _number(value: Any, where: str, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidProblemError(f"{where}: {name} {value!r} is not a number.") from None
    if np.isnan(number):
        return None
    if not np.isfinite(number):
        raise InvalidProblemError(f"{where}: {name} must be finite, got {value!r}.")
    return number


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes", "t"):
        return True
    if text in ("false", "0", "0.0", "no", "f"):
        return False
    raise InvalidProblemError(f"{where}: active must be true/false, got {value!r}.")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text or None
