"""Allocators: from LEA estimates to dollars per LEA and grant type.

* :class:`~calibopt.allocation.SonnenbergAllocator` follows the Department of Education's
  procedure as described by W. Sonnenberg, *Allocating Grants for Title I* (NCES, January
  2016): per grant type an authorization per LEA (formula children x expenditure factor,
  weighted children for targeted grants), eligibility thresholds, then normalisation to the
  appropriation with the hold-harmless floors and the state minimum, solved exactly by
  :func:`~calibopt.allocation.solve_provisions`. EFIG is allocated to states first (effort and
  equity factors, state minimum) and then within each state by the weighting schedule its
  equity factor selects.
* :class:`~calibopt.allocation.AbowdAllocator` is the simple model of Abowd & Schmutte (2019,
  "An economic analysis of privacy protection and statistical accuracy as social choices",
  American Economic Review 109(1); arXiv:1808.06303): grant = expenditure factor x formula
  children, one grant type ``("total",)``, optionally scaled to an appropriation.

Both return an :class:`Allocation`. Results do not depend on the row order of the input (it is
sorted by (state, district) internally; rounding ties go to the earlier LEA in that order).

This module holds what both share: the :class:`Allocation` result, the option checks and the
expenditure factor; :mod:`~calibopt.allocation.sonnenberg` (with
:mod:`~calibopt.allocation.efig` for EFIG's two stages) and :mod:`~calibopt.allocation.abowd`
hold the allocators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from . import formulas, inputs, statute
from .provisions import ProvisionsResult

__all__ = [
    "Allocation",
    "BaseAllocator",
    "Thresholder",
    "appropriations_for",
    "check_grant_types",
    "check_prefixes",
]


class Thresholder(Protocol):
    """``thresholder(grants, eligible, total, rule, cv=None) -> (grants, eligible mask)``."""

    def __call__(
        self, grants: Any, eligible: Any, total: Any, rule: Any, cv: Any = None
    ) -> Any: ...


@dataclass
class Allocation:
    """Allocations per LEA and grant type for one or more estimate kinds.

    Attributes
    ----------
    table : DataFrame
        Indexed like the input estimates (same row order). For each prefix ``p`` and grant
        type ``g``: ``p_auth_g`` (authorization after thresholds), ``p_eligible_g``,
        ``p_grant_g`` (allocation in dollars, whole cents) and ``p_grant_total``.
    appropriations : dict
        Appropriation per grant type.
    prefixes, grant_types : tuple of str
    states : DataFrame
        Per state: ``p_grant_g`` totals (and EFIG's state-level authorization).
    diagnostics : DataFrame
        One row per (prefix, grant): appropriation, allocated total, eligible LEAs, LEAs at
        their hold-harmless floor, states at the minimum, the level ``t`` and the ratable
        reduction factor applied to the floors (1 when they fit).
    """

    table: pd.DataFrame
    appropriations: dict[str, float]
    prefixes: tuple[str, ...]
    grant_types: tuple[str, ...]
    states: pd.DataFrame
    diagnostics: pd.DataFrame
    provisions: dict[tuple[str, str], ProvisionsResult] = field(default_factory=dict, repr=False)

    def grants(self, prefix: str, grant: str = "total") -> pd.Series:
        """Dollars per LEA for one estimate kind and grant type (``"total"``: all types)."""
        col = f"{prefix}_grant_{grant}"
        if col not in self.table.columns:
            raise InvalidProblemError(
                f"no column {col!r}; prefixes {self.prefixes}, grant types "
                f"{(*self.grant_types, 'total')}."
            )
        return self.table[col]


def check_grant_types(grant_types: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(grant_types, str):
        raise InvalidProblemError(
            f"`grant_types` must be a tuple of names such as ({grant_types!r},), not the string "
            f"{grant_types!r} (a string would be read one letter at a time)."
        )
    gt = tuple(grant_types)
    unknown = [g for g in gt if g not in allowed]
    if unknown or not gt:
        raise InvalidProblemError(f"unknown grant type(s) {unknown}; choose from {tuple(allowed)}.")
    return gt


def check_prefixes(prefixes: Any) -> tuple[str, ...]:
    if isinstance(prefixes, str):
        raise InvalidProblemError(
            f"`prefixes` must be a sequence of names such as ({prefixes!r},), not a string."
        )
    out = tuple(prefixes)
    if not out:
        raise InvalidProblemError("`prefixes` is empty.")
    return out


def appropriations_for(
    df: pd.DataFrame,
    grant_types: Sequence[str],
    appropriations: Mapping[str, float] | None,
    total: float | None,
) -> dict[str, float]:
    if appropriations is not None:
        if not isinstance(appropriations, Mapping):
            raise InvalidProblemError(
                "`appropriations` must be a mapping grant type -> amount, e.g. "
                "{'basic': 6.4e9, 'targeted': 4.4e9}."
            )
        missing = [g for g in grant_types if g not in appropriations]
        if missing:
            raise InvalidProblemError(f"`appropriations` lacks grant type(s) {missing}.")
        out = {g: float(appropriations[g]) for g in grant_types}
    else:
        cols = [inputs.official_column(g) for g in grant_types]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InvalidProblemError(
                f"give `appropriations` (grant type -> amount) or official allocation "
                f"column(s) {missing} whose sums are the appropriations."
            )
        out = {g: float(df[c].sum()) for g, c in zip(grant_types, cols)}
    bad = {g: v for g, v in out.items() if not np.isfinite(v) or v < 0}
    if bad:
        raise InvalidProblemError(f"appropriations must be finite and >= 0, got {bad}.")
    if total is not None:
        s = sum(out.values())
        if s <= 0:
            raise InvalidProblemError("cannot scale appropriations that sum to 0 to a total.")
        out = {g: v * float(total) / s for g, v in out.items()}
    return out


class BaseAllocator:
    """What both allocators share: the expenditure-factor options and the final table."""

    grant_types: tuple[str, ...]

    def __init__(
        self,
        *,
        congress_cap: str = statute.CONGRESS_CAP,
        sppe_bounds: Sequence[str] = statute.ADJUSTED_SPPE_BOUNDS,
        us_average_sppe: float | None = None,
        cents: bool = True,
    ) -> None:
        self.congress_cap = congress_cap
        self.sppe_bounds = tuple(sppe_bounds)
        self.us_average_sppe = us_average_sppe
        self.cents = cents

    def _adjusted(self, df: pd.DataFrame, bounds: Sequence[str]) -> pd.Series:
        return formulas.adjusted_sppe(
            df[inputs.SPPE], cap=self.congress_cap, bounds=bounds, us_average=self.us_average_sppe
        )

    def _total(self, table: pd.DataFrame, prefix: str, grant_types: tuple[str, ...]) -> pd.Series:
        """Sum of the grant columns; whole cents stay whole cents (no float noise)."""
        total = table[[f"{prefix}_grant_{g}" for g in grant_types]].sum(axis=1)
        return total.round(2) if self.cents else total

    def _finish(
        self,
        original: pd.DataFrame,
        work: pd.DataFrame,
        cols: dict[str, np.ndarray],
        prefixes: tuple[str, ...],
        grant_types: tuple[str, ...],
    ) -> pd.DataFrame:
        table = pd.DataFrame(cols, index=work.index)
        for p in prefixes:
            table[f"{p}_grant_total"] = self._total(table, p, grant_types)
        table = table.reindex(original.index)
        return table
