"""The structure of households for :class:`~calibopt.synthesis.HierarchicalSynthesizer`.

A household has ``n_units`` units (tax units); unit 0 holds the household head. A unit has
one head and ``n_<role>`` members of each other role (spouse, dependants), laid out head
first, then the roles in order. :class:`Layout` holds these positions for a real dataset (to
build training frames) or for generated counts (the skeleton to fill), with the same
arithmetic, so training and generation see the same condition columns.

Person-level conditions name relatives: ``hh_head.<var>`` (the household head's values, for
heads of the other units), ``head.<var>`` (the unit head's) and ``<role>.<var>`` (the first
member of an earlier role, e.g. the spouse's age for a dependant), with ``<role>.present``
and a fill value where the unit has no such member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Layout", "relatives"]


def _starts(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


@dataclass
class Layout:
    """Positions of units and persons (row positions, not ids).

    Attributes
    ----------
    unit_household : ndarray
        For each unit, its household.
    unit_index : ndarray
        For each unit, its position in the household (0 holds the household head).
    person_unit, person_household : ndarray
        For each person, its unit and household.
    role : ndarray
        For each person, its role position in ``roles`` (0 = head).
    member_index : ndarray
        For each person, its position among the members of its role in its unit.
    """

    n_households: int
    unit_household: np.ndarray
    unit_index: np.ndarray
    person_unit: np.ndarray
    person_household: np.ndarray
    role: np.ndarray
    member_index: np.ndarray

    @property
    def n_units(self) -> int:
        return self.unit_household.size

    @property
    def n_persons(self) -> int:
        return self.person_unit.size

    def units_per_household(self) -> np.ndarray:
        return np.bincount(self.unit_household, minlength=self.n_households)

    def role_counts(self, n_roles: int) -> np.ndarray:
        """``(n_units, n_roles)`` members per role."""
        out = np.zeros((self.n_units, n_roles), dtype=np.int64)
        np.add.at(out, (self.person_unit, self.role), 1)
        return out

    def first_member(self, role: int) -> np.ndarray:
        """Per unit, the person row of the first member of ``role`` (-1 when none)."""
        rows = np.flatnonzero((self.role == role) & (self.member_index == 0))
        out = np.full(self.n_units, -1, dtype=np.int64)
        out[self.person_unit[rows]] = rows
        return out

    def household_head(self) -> np.ndarray:
        """Per household, the person row of its head (head of unit 0)."""
        heads = self.first_member(0)
        first_unit = np.flatnonzero(self.unit_index == 0)
        out = np.full(self.n_households, -1, dtype=np.int64)
        out[self.unit_household[first_unit]] = heads[first_unit]
        return out

    @classmethod
    def from_counts(cls, n_units: np.ndarray, role_counts: np.ndarray) -> Layout:
        """The skeleton of generated households: ``n_units`` per household, and per unit the
        members of each non-head role (``role_counts``, ``(n_units, n_roles - 1)``)."""
        n_hh = n_units.size
        unit_household = np.repeat(np.arange(n_hh), n_units)
        unit_index = np.arange(unit_household.size) - _starts(n_units)[unit_household]
        counts = np.column_stack([np.ones(unit_household.size, dtype=np.int64), role_counts])
        sizes = counts.sum(axis=1)
        person_unit = np.repeat(np.arange(unit_household.size), sizes)
        slot = np.arange(person_unit.size) - _starts(sizes)[person_unit]
        bounds = np.cumsum(counts, axis=1)
        role = (slot[:, None] >= bounds[person_unit]).sum(axis=1)
        role_start = np.column_stack([np.zeros(bounds.shape[0], np.int64), bounds[:, :-1]])
        member = slot - role_start[person_unit, role]
        return cls(
            n_hh, unit_household, unit_index, person_unit, unit_household[person_unit], role, member
        )

    @classmethod
    def from_dataset(
        cls,
        unit_household: np.ndarray,
        person_unit: np.ndarray,
        person_household: np.ndarray,
        role: np.ndarray,
        household_head: np.ndarray | None,
        n_households: int,
    ) -> Layout:
        """The layout of real data: unit 0 of a household is the unit of its head (else the
        first unit in table order); members are ranked in table order."""
        n_units = unit_household.size
        has_head = np.zeros(n_units, dtype=bool)
        if household_head is not None:
            has_head[person_unit[household_head]] = True
        order = np.lexsort((np.arange(n_units), ~has_head, unit_household))
        sorted_hh = unit_household[order]
        starts = _starts(np.bincount(unit_household, minlength=n_households))
        unit_index = np.empty(n_units, dtype=np.int64)
        unit_index[order] = np.arange(n_units) - starts[sorted_hh]
        key = person_unit * (int(role.max(initial=0)) + 1) + role
        p_order = np.lexsort((np.arange(key.size), key))
        sk = key[p_order]
        first = np.r_[True, sk[1:] != sk[:-1]]
        run_start = np.maximum.accumulate(np.where(first, np.arange(sk.size), 0))
        member = np.empty(key.size, dtype=np.int64)
        member[p_order] = np.arange(sk.size) - run_start
        return cls(
            n_households, unit_household, unit_index, person_unit, person_household, role, member
        )


def relatives(
    values: Mapping[str, np.ndarray],
    pick: np.ndarray,
    prefix: str,
    fills: Mapping[str, Any],
    flag: bool,
) -> dict[str, Any]:
    """Condition columns ``<prefix>.<var>``: the values of the person at ``pick`` (one row
    each; -1 where there is none, which gets the fill value, and ``<prefix>.present`` False
    when ``flag``)."""
    present = pick >= 0
    safe = np.where(present, pick, 0)
    out: dict[str, Any] = {}
    for var, arr in values.items():
        col = np.asarray(arr)[safe] if len(arr) else np.full(pick.size, fills[var])
        if not present.all():
            col = np.where(present, col, fills[var])
        out[f"{prefix}.{var}"] = col
    if flag:
        out[f"{prefix}.present"] = present
    return out


def person_conditions(base: pd.DataFrame, extra: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The base columns plus the relatives' columns."""
    data = dict(base.items())
    for block in extra:
        data.update(block)
    return pd.DataFrame(data)
