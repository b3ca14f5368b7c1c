"""Targets as CSV: one row per target, the file ``calibopt targets load`` reads.

Columns (a header row names them; their order is free):

``variable``, ``period``, ``value`` (required)
    The target: variable name, period (an integer, usually a year) and total.
``constraints``
    The stratum in text form, ``"state_fips == 37; age >= 0; age < 5"``; empty = national.
``reform_id`` (default 0), ``active`` (default true), ``source``, ``notes``
    As in the database's ``targets`` table.
``tolerance_fraction``
    The target's relative tolerance as a **fraction** (0.05 = 5%), the unit of
    ``CalibrationProblem(tolerance=...)``; empty = none. (The database stores it as a
    percentage, as the users' schema says; calibopt converts when writing and reading.)
    A column named ``tolerance`` or ``tolerance_percent`` is refused: its unit would be a
    guess.

:func:`write_targets_csv` adds the read-only columns ``target_id``, ``geo_level``,
``geographic_id``, ``domain_variable`` and ``stratum_id``, which loading ignores.
"""

from __future__ import annotations

import os

import pandas as pd

from ..errors import InvalidProblemError
from .constraints import format_constraints

__all__ = ["CSV_COLUMNS", "TOLERANCE_COLUMN", "read_targets_csv", "write_targets_csv"]

TOLERANCE_COLUMN = "tolerance_fraction"
"""The CSV header of the tolerance column: the unit is in the name."""

CSV_COLUMNS = [
    "target_id",
    "variable",
    "period",
    "reform_id",
    "value",
    "active",
    TOLERANCE_COLUMN,
    "source",
    "notes",
    "geo_level",
    "geographic_id",
    "domain_variable",
    "constraints",
    "stratum_id",
]
"""The columns :func:`write_targets_csv` writes, in order."""

_AMBIGUOUS = ("tolerance", "tolerance_percent")


def read_targets_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A targets CSV as the DataFrame :meth:`TargetsDatabase.add_targets` takes (its
    ``tolerance`` column a fraction).

    Raises
    ------
    InvalidProblemError
        The file does not exist or is not CSV text, or it has a tolerance column whose name
        does not say the unit.
    """
    try:
        frame = pd.read_csv(
            path,
            dtype={"constraints": str},
            keep_default_na=False,
            na_values={TOLERANCE_COLUMN: [""], "value": [""]},
        )
    except FileNotFoundError:
        raise InvalidProblemError(f"CSV file {str(path)!r} does not exist.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InvalidProblemError(f"cannot read CSV {str(path)!r}: {exc}") from None
    ambiguous = [c for c in _AMBIGUOUS if c in frame.columns]
    if ambiguous:
        raise InvalidProblemError(
            f"CSV {str(path)!r}: column {ambiguous[0]!r} does not say its unit; name it "
            f"{TOLERANCE_COLUMN!r} and give fractions (0.05 = 5%) (percentages, as the users' "
            f"database stores them: divide by 100)."
        )
    return frame.rename(columns={TOLERANCE_COLUMN: "tolerance"})


def write_targets_csv(
    frame: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False
) -> int:
    """Write targets (as :meth:`TargetsDatabase.targets` returns them) to a CSV that
    :func:`read_targets_csv` reads back; atomically. Returns the number of rows."""
    from ..files import atomic_output

    out = frame.assign(constraints=frame["constraints"].map(format_constraints)).rename(
        columns={"tolerance": TOLERANCE_COLUMN}
    )
    with atomic_output(path, overwrite=overwrite) as tmp:
        out[CSV_COLUMNS].to_csv(tmp, index=False)
    return len(out)
