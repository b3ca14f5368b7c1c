"""Choosing targets: :class:`TargetFilter` and the canonical text of a geographic id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..errors import InvalidProblemError
from .constraints import GEO_LEVELS

__all__ = ["TargetFilter", "canonical_geo_id"]

_FIELDS = ("variables", "domain_variables", "geo_levels", "geographic_ids")


def _as_tuple(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | int | np.integer):
        value = [value]
    try:
        items = tuple("" if v is None else str(v) for v in value)
    except TypeError:
        raise InvalidProblemError(f"TargetFilter.{name} must be a list, got {value!r}.") from None
    return items


def canonical_geo_id(value: Any) -> str:
    """'US', or an integer code as text ('37', '3701'); '037' and 37.0 become '37'."""
    text = str(value).strip()
    if text.upper() == "US":
        return "US"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


@dataclass(frozen=True)
class TargetFilter:
    """Which targets to use. Fields combine with AND; values within a field with OR.

    Parameters
    ----------
    variables
        Target variables (``"snap"``, ``"person_count"``, ...).
    domain_variables
        A target matches when one of its domain (non-geographic constraint) variables is
        listed; ``""`` matches targets without a domain.
    geo_levels
        ``"national"``, ``"state"``, ``"district"``.
    geographic_ids
        ``"US"``, state FIPS codes, district GEOIDs (ints or strings).

    ``None`` means "no restriction". :meth:`from_mapping` reads the dict form
    ``{"variables": [...], "domain_variables": [...], ...}``.
    """

    variables: tuple[str, ...] | None = None
    domain_variables: tuple[str, ...] | None = None
    geo_levels: tuple[str, ...] | None = None
    geographic_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in _FIELDS:
            object.__setattr__(self, name, _as_tuple(getattr(self, name), name))
        if self.geo_levels is not None:
            bad = sorted(set(self.geo_levels) - set(GEO_LEVELS))
            if bad:
                raise InvalidProblemError(
                    f"TargetFilter.geo_levels {bad} not among {list(GEO_LEVELS)}."
                )
        if self.geographic_ids is not None:
            object.__setattr__(
                self, "geographic_ids", tuple(canonical_geo_id(g) for g in self.geographic_ids)
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | TargetFilter | None) -> TargetFilter:
        """A filter from a dict (unknown keys are an error), a filter, or None (everything)."""
        if mapping is None:
            return cls()
        if isinstance(mapping, TargetFilter):
            return mapping
        if not isinstance(mapping, Mapping):
            raise InvalidProblemError(
                f"target filter must be a TargetFilter or a dict, got {type(mapping).__name__}."
            )
        unknown = sorted(set(mapping) - set(_FIELDS))
        if unknown:
            raise InvalidProblemError(
                f"target filter has unknown key(s) {unknown}; use {sorted(_FIELDS)}."
            )
        return cls(**dict(mapping))

    def where(self, ov: sa.Subquery) -> list[sa.ColumnElement[bool]]:
        """SQL conditions (bound parameters) on an overview subquery."""
        conds = []
        if self.variables is not None:
            conds.append(ov.c.variable.in_(self.variables))
        if self.geo_levels is not None:
            conds.append(ov.c.geo_level.in_(self.geo_levels))
        if self.geographic_ids is not None:
            conds.append(ov.c.geographic_id.in_(self.geographic_ids))
        return conds

    def matches_domain(self, domain: pd.Series) -> np.ndarray:
        """Mask of targets whose domain label matches ``domain_variables``."""
        if self.domain_variables is None:
            return np.ones(len(domain), dtype=bool)
        wanted = set(self.domain_variables)
        return np.array(
            [(d == "" and "" in wanted) or bool(set(d.split(",")) & wanted - {""}) for d in domain],
            dtype=bool,
        )
