"""Hierarchy rules: what must hold inside a household or tax unit, checked and repaired.

Each rule works on a person-level frame (one row per person, group ids as columns) with
vectorised segment operations (factorised group codes, ``bincount``, ``lexsort``): no Python
loop per household. ``check`` counts violations; ``repair`` changes the fewest values that
make the rule hold and returns how many rows it changed.

* :class:`Shared`: a variable identical within a household (mean / median / mode / the
  head's value);
* :class:`OneHead`: a tax unit has exactly one head (the oldest member is kept or made head;
  extra heads become the spouse if there is none, else dependants);
* :class:`SpouseAgeGap`: a spouse at most ``max_years`` older or younger than the head;
* :class:`ChildAgeGap`: a dependant at least ``min_years`` younger than the youngest parent;
* :class:`SumTo`: group parts (tax-unit incomes) sum to the household total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from .groups import Groups, _column, _first_where, _is, _numeric, _put, _varies

__all__ = ["ChildAgeGap", "OneHead", "Shared", "SpouseAgeGap", "SumTo"]

_HOW = ("auto", "mean", "median", "mode", "head")


@dataclass(frozen=True)
class Shared:
    """``variable`` is identical for every person of a household (``within``).

    ``how``: ``"mean"`` or ``"median"`` (numbers; integers are rounded), ``"mode"`` (the most
    frequent value, the smallest on ties), ``"head"`` (the value of the group's head: the
    first row with ``role == head``, else the first row), ``"auto"`` (mean for numbers, mode
    otherwise).
    """

    variable: str
    how: str = "auto"
    within: str | None = None
    role: str = "role"
    head: Any = "head"

    def __post_init__(self) -> None:
        if self.how not in _HOW:
            raise InvalidProblemError(f"Shared({self.variable!r}): how must be one of {_HOW}.")

    @property
    def label(self) -> str:
        return f"shared {self.variable} ({self.how})"

    def _group(self, g: Groups) -> tuple[np.ndarray, int]:
        return g.codes(self.within or g.household_id)

    def check(self, frame: pd.DataFrame, g: Groups) -> int:
        codes, n = self._group(g)
        return int(_varies(codes, n, _column(frame, self.variable, self.label)).sum())

    def target_values(self, frame: pd.DataFrame, g: Groups) -> np.ndarray:
        """The shared value of each row's group."""
        codes, n = self._group(g)
        col = _column(frame, self.variable, self.label)
        numeric = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(
            col.dtype
        )
        how = ("mean" if numeric else "mode") if self.how == "auto" else self.how
        if how in ("mean", "median") and not numeric:
            raise InvalidProblemError(
                f"{self.label}: {self.variable!r} is not numeric (dtype {col.dtype}); use "
                f"how='mode' or how='head' for categories."
            )
        if how == "mean":
            x = col.to_numpy(dtype=np.float64)
            return (np.bincount(codes, x, n) / np.bincount(codes, minlength=n))[codes]
        if how == "median":
            x = col.to_numpy(dtype=np.float64)
            order = np.lexsort((x, codes))
            size = np.bincount(codes, minlength=n)
            start = np.concatenate([[0], np.cumsum(size)[:-1]])
            lo = x[order[start + (size - 1) // 2]]
            hi = x[order[start + size // 2]]
            return ((lo + hi) / 2)[codes]
        if how == "head":
            head = (
                _is(frame, self.role, self.head, self.label)
                if self.role in frame.columns
                else np.zeros(len(frame), dtype=bool)
            )
            pick = _first_where(head, codes, n)
            first = _first_where(np.ones(len(frame), dtype=bool), codes, n)
            return col.to_numpy()[np.where(pick >= 0, pick, first)[codes]]
        values, uniques = pd.factorize(col, sort=True)
        k = max(len(uniques), 1)
        keys, counts = np.unique(codes * k + values, return_counts=True)
        grp, val = np.divmod(keys, k)
        order = np.lexsort((val, -counts, grp))
        best = np.empty(n, dtype=np.int64)
        best[grp[order][::-1]] = val[order][::-1]
        return np.asarray(uniques)[best][codes]

    def repair(self, frame: pd.DataFrame, g: Groups, rng: np.random.Generator) -> int:
        new = self.target_values(frame, g)
        old = frame[self.variable].to_numpy()
        _put(frame, self.variable, new)
        return int((frame[self.variable].to_numpy() != old).sum())


@dataclass(frozen=True)
class _Relationship:
    """Columns shared by the relationship rules (a unit's head, spouse and dependants)."""

    within: str | None = None
    role: str = "role"
    age: str = "age"
    head: Any = "head"
    spouse: Any = "spouse"
    dependant: Any = "dependant"

    def _roles(self, frame: pd.DataFrame, label: str) -> tuple[np.ndarray, ...]:
        return tuple(
            _is(frame, self.role, r, label) for r in (self.head, self.spouse, self.dependant)
        )

    def _head_age(self, frame: pd.DataFrame, g: Groups, label: str) -> tuple[np.ndarray, ...]:
        codes, n = g.codes(g.unit(self.within))
        head, spouse, dep = self._roles(frame, label)
        age = _numeric(frame, self.age, label)
        pick = _first_where(head, codes, n)
        head_age = np.where(pick >= 0, age[np.maximum(pick, 0)], np.nan)[codes]
        return codes, n, head, spouse, dep, age, head_age


def _check_fix(fix: str, label: str) -> None:
    if fix not in ("clip", "draw"):
        raise InvalidProblemError(f"{label}: fix must be 'clip' or 'draw', got {fix!r}.")


@dataclass(frozen=True)
class OneHead(_Relationship):
    """Every unit (tax unit) has exactly one member with ``role == head``."""

    @property
    def label(self) -> str:
        return "one head per unit"

    def check(self, frame: pd.DataFrame, g: Groups) -> int:
        codes, n = g.codes(g.unit(self.within))
        head = _is(frame, self.role, self.head, self.label)
        return int((np.bincount(codes, weights=head, minlength=n) != 1).sum())

    def repair(self, frame: pd.DataFrame, g: Groups, rng: np.random.Generator) -> int:
        codes, n = g.codes(g.unit(self.within))
        head, spouse, _ = self._roles(frame, self.label)
        age = (
            _numeric(frame, self.age, self.label)
            if self.age in frame.columns
            else np.zeros(len(frame))
        )
        rows = np.arange(len(frame))
        # per unit, in order: heads first, oldest first, then row order
        order = np.lexsort((rows, -age, ~head, codes))
        sc = codes[order]
        is_first = np.r_[True, sc[1:] != sc[:-1]]
        keep = np.zeros(len(frame), dtype=bool)
        keep[order[is_first]] = True
        demoted = head & ~keep
        new_role = frame[self.role].to_numpy(dtype=object).copy()
        new_role[keep] = self.head
        spouse_left = np.bincount(codes, weights=spouse & ~keep, minlength=n) > 0
        first_demoted = _first_where(demoted, codes, n)
        to_spouse = np.zeros(len(frame), dtype=bool)
        ok = (first_demoted >= 0) & ~spouse_left
        to_spouse[first_demoted[ok]] = True
        new_role[demoted] = self.dependant
        new_role[to_spouse] = self.spouse
        changed = int((new_role != frame[self.role].to_numpy(dtype=object)).sum())
        _put(frame, self.role, new_role)
        return changed


@dataclass(frozen=True)
class SpouseAgeGap(_Relationship):
    """A spouse is at most ``max_years`` older or younger than the unit's head.

    ``fix="clip"`` moves the spouse's age to the nearest allowed age (deterministic);
    ``"draw"`` draws it uniformly in ``head age +- max_years`` (seeded).
    """

    max_years: float = 20.0
    fix: str = "clip"

    @property
    def label(self) -> str:
        return f"spouse age within {self.max_years:g} years of the head"

    def _bad(self, frame: pd.DataFrame, g: Groups) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, _, _, spouse, _, age, head_age = self._head_age(frame, g, self.label)
        with np.errstate(invalid="ignore"):
            bad = spouse & (np.abs(age - head_age) > self.max_years)
        return bad, age, head_age

    def check(self, frame: pd.DataFrame, g: Groups) -> int:
        return int(self._bad(frame, g)[0].sum())

    def repair(self, frame: pd.DataFrame, g: Groups, rng: np.random.Generator) -> int:
        _check_fix(self.fix, self.label)
        bad, age, head_age = self._bad(frame, g)
        lo, hi = head_age[bad] - self.max_years, head_age[bad] + self.max_years
        if self.fix == "clip":
            new = np.clip(age[bad], lo, hi)
        else:
            new = np.floor(lo + rng.random(lo.size) * (hi - lo + 1))
            new = np.minimum(new, hi)
        age = age.copy()
        age[bad] = new
        _put(frame, self.age, age)
        return int(bad.sum())


@dataclass(frozen=True)
class ChildAgeGap(_Relationship):
    """A dependant is at least ``min_years`` younger than the youngest parent (head or spouse)
    of its unit. Where the youngest parent is younger than ``min_years`` the dependant gets age
    0 and that parent age ``min_years``."""

    min_years: float = 15.0
    fix: str = "clip"

    @property
    def label(self) -> str:
        return f"dependant at least {self.min_years:g} years younger than each parent"

    def _state(self, frame: pd.DataFrame, g: Groups) -> tuple[np.ndarray, ...]:
        codes, n, head, spouse, dep, age, _ = self._head_age(frame, g, self.label)
        parent = head | spouse
        youngest = np.full(n, np.inf)
        np.minimum.at(youngest, codes[parent], age[parent])
        limit = youngest[codes] - self.min_years
        bad = dep & np.isfinite(limit) & (age > limit)
        return bad, age, limit, parent, codes

    def check(self, frame: pd.DataFrame, g: Groups) -> int:
        return int(self._state(frame, g)[0].sum())

    def repair(self, frame: pd.DataFrame, g: Groups, rng: np.random.Generator) -> int:
        _check_fix(self.fix, self.label)
        bad, age, limit, parent, codes = self._state(frame, g)
        cap = np.maximum(limit[bad], 0.0)
        new = cap if self.fix == "clip" else np.floor(rng.random(cap.size) * (cap + 1))
        age = age.copy()
        age[bad] = np.minimum(new, cap)
        # parents too young for any dependant: raise them to min_years
        young_unit = np.zeros(int(codes.max()) + 1 if codes.size else 0, dtype=bool)
        young_unit[codes[bad & (limit < 0)]] = True
        lift = parent & young_unit[codes] & (age < self.min_years)
        age[lift] = self.min_years
        _put(frame, self.age, age)
        return int(bad.sum() + lift.sum())


@dataclass(frozen=True)
class SumTo:
    """The parts (one value per ``part_id`` group, e.g. tax-unit incomes; per person when
    ``part_id`` is None) sum to ``total`` within each household.

    ``adjust="total"`` sets the total to the sum of the parts; ``"parts"`` scales the parts
    to the total (equal shares where the parts sum to zero).
    """

    total: str
    parts: str
    part_id: str | None = "tax_unit_id"
    within: str | None = None
    adjust: str = "total"
    rtol: float = 1e-9

    @property
    def label(self) -> str:
        return f"{self.parts} sums to {self.total}"

    def _state(self, frame: pd.DataFrame, g: Groups) -> tuple[np.ndarray, ...]:
        hh, n = g.codes(self.within or g.household_id)
        if self.part_id is None:
            first = np.arange(len(frame))
        else:
            pc, pn = g.codes(self.part_id)
            first = _first_where(np.ones(len(frame), dtype=bool), pc, pn)
        part = _numeric(frame, self.parts, self.label)
        total = _numeric(frame, self.total, self.label)
        sums = np.bincount(hh[first], weights=part[first], minlength=n)
        return hh, n, first, part, total, sums

    def check(self, frame: pd.DataFrame, g: Groups) -> int:
        hh, n, _, _, total, sums = self._state(frame, g)
        tol = self.rtol * np.maximum(np.abs(total), 1.0)
        bad = np.abs(sums[hh] - total) > tol
        return int(np.bincount(hh, weights=bad, minlength=n).astype(bool).sum())

    def repair(self, frame: pd.DataFrame, g: Groups, rng: np.random.Generator) -> int:
        if self.adjust not in ("total", "parts"):
            raise InvalidProblemError(f"{self.label}: adjust must be 'total' or 'parts'.")
        hh, n, first, part, total, sums = self._state(frame, g)
        if self.adjust == "total":
            old = frame[self.total].to_numpy()
            _put(frame, self.total, sums[hh])
            return int((frame[self.total].to_numpy() != old).sum())
        n_parts = np.bincount(hh[first], minlength=n)
        hh_total = np.zeros(n)
        hh_total[hh] = total
        factor = np.divide(hh_total, sums, out=np.zeros(n), where=sums != 0)
        share = np.where(sums[hh] != 0, part * factor[hh], hh_total[hh] / n_parts[hh])
        old = frame[self.parts].to_numpy()
        _put(frame, self.parts, share)
        return int((frame[self.parts].to_numpy() != old).sum())
