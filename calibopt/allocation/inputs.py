"""The LEA estimates table every allocator reads, and its validation.

One row per LEA (school district), indexed by (state FIPS code, district id), with

=====================================  ============================================================
column                                 meaning
=====================================  ============================================================
``{prefix}_children_eligible``         formula children (5-17 in poverty) for estimate kind
                                       ``prefix`` (``true``, ``est``, ``dp``, ...)
``{prefix}_children_total``            children aged 5-17 for that estimate kind
``sppe``                               state per-pupil expenditure (same for all LEAs of a state)
``cv``                                 coefficient of variation of the formula-child estimate
                                       (uncertainty-aware thresholds)
``prior_{grant}``                      last year's allocation per grant type (hold harmless)
``official_{grant}``                   this year's official allocation (the default appropriation
                                       per grant type is its sum)
``per_capita_income``                  state per capita income, 3-year average (EFIG effort)
``equity_factor``                      state EFIG equity factor; or ``expenditure`` and
                                       ``enrollment`` per LEA to compute it
``concentration_years_ineligible``     consecutive past years an LEA missed concentration
                                       eligibility (hold harmless lasts 4 years, 6332(c)(2))
=====================================  ============================================================

A frame with ``state`` and ``district`` columns instead of the index is accepted too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = [
    "CONCENTRATION_YEARS",
    "CV",
    "ENROLLMENT",
    "EQUITY",
    "EXPENDITURE",
    "INDEX_NAMES",
    "PCI",
    "SPPE",
    "eligible_column",
    "lea_indexed",
    "official_column",
    "prior_column",
    "total_column",
    "validate_estimates",
]

INDEX_NAMES = ("state", "district")
SPPE = "sppe"
CV = "cv"
PCI = "per_capita_income"
EQUITY = "equity_factor"
EXPENDITURE = "expenditure"
ENROLLMENT = "enrollment"
CONCENTRATION_YEARS = "concentration_years_ineligible"


def eligible_column(prefix: str) -> str:
    """Column of formula children for estimate kind ``prefix``."""
    return f"{prefix}_children_eligible"


def total_column(prefix: str) -> str:
    """Column of 5-17 children for estimate kind ``prefix``."""
    return f"{prefix}_children_total"


def prior_column(grant: str) -> str:
    """Column of last year's allocation for ``grant``."""
    return f"prior_{grant}"


def official_column(grant: str) -> str:
    """Column of this year's official allocation for ``grant``."""
    return f"official_{grant}"


def validate_estimates(
    estimates: pd.DataFrame,
    prefixes: Sequence[str],
    required: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> pd.DataFrame:
    """Check an LEA estimates table and return a copy indexed by (state, district).

    Parameters
    ----------
    estimates
        The table (see the module docstring for its columns).
    prefixes
        Estimate kinds to check (``eligible``/``total`` columns for each).
    required
        Further columns that must be present (e.g. ``prior_basic`` with hold harmless).
    optional
        Columns checked for values (numeric, finite, >= 0) only when present.

    Raises
    ------
    InvalidProblemError
        Naming every missing column, or the first bad value of a column (its LEA).
    """
    if not isinstance(estimates, pd.DataFrame):
        raise InvalidProblemError(
            f"`estimates` must be a pandas DataFrame, got {type(estimates).__name__}."
        )
    if isinstance(prefixes, str):
        raise InvalidProblemError(
            f"`prefixes` must be a sequence of names such as ({prefixes!r},), not a string."
        )
    df = lea_indexed(estimates, "estimates")
    if df.index.has_duplicates:
        dup = df.index[df.index.duplicated()][0]
        raise InvalidProblemError(f"`estimates` lists LEA {dup!r} more than once.")
    if len(df) == 0:
        raise InvalidProblemError("`estimates` has no LEAs.")
    needed = [c for p in prefixes for c in (eligible_column(p), total_column(p))]
    needed += [SPPE, *required]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise InvalidProblemError(
            f"`estimates` lacks column(s) {missing}; it has {list(df.columns)[:20]}."
        )
    for col in [*dict.fromkeys(needed), *(c for c in optional if c in df.columns)]:
        values = df[col]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise InvalidProblemError(f"column {col!r} must be numeric, got dtype {values.dtype}.")
        arr = values.to_numpy(dtype=float)
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            where = df.index[np.flatnonzero(bad)[0]]
            raise InvalidProblemError(
                f"column {col!r} must be finite and non-negative; LEA {where!r} has "
                f"{arr[bad][0]} ({int(bad.sum())} bad value(s))."
            )
    return df.copy()


def lea_indexed(frame: pd.DataFrame, name: str = "frame") -> pd.DataFrame:
    """``frame`` indexed by (state, district): its 2-level index, or its two columns."""
    df = frame
    if not isinstance(df.index, pd.MultiIndex):
        if set(INDEX_NAMES) <= set(df.columns):
            df = df.set_index(list(INDEX_NAMES))
        else:
            raise InvalidProblemError(
                f"`{name}` must be indexed by (state FIPS code, district id) or have "
                f"'state' and 'district' columns."
            )
    if df.index.nlevels != 2:
        raise InvalidProblemError(
            f"`{name}` must have a 2-level index (state, district), got {df.index.nlevels}."
        )
    return df.rename_axis(list(INDEX_NAMES))
