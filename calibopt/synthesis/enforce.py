""":func:`enforce_hierarchy` and :func:`check_hierarchy`: make hierarchy rules hold, and count.

Both take person-level data (one row per person with ``household_id`` and, for tax-unit
rules, ``tax_unit_id``) or a :class:`~calibopt.datasets.Dataset` (flattened, repaired, and
split back). The rules are those of :mod:`calibopt.synthesis.rules`; they run in a fixed
order (shared variables, one head, spouse ages, dependant ages, sums) and the sequence is
repeated until nothing changes (a repair can break a rule checked earlier: a dependant's
parent raised to ``min_years`` may move away from the head), at most ``max_passes`` times.

>>> import pandas as pd
>>> from calibopt.synthesis import enforce_hierarchy, SpouseAgeGap
>>> people = pd.DataFrame({"household_id": [1, 1, 2], "tax_unit_id": [1, 1, 2],
...                        "role": ["head", "spouse", "head"], "age": [30, 75, 40],
...                        "income": [10.0, 20.0, 5.0]})
>>> fixed, report = enforce_hierarchy(people, shared={"income": "mean"},
...                                   rules=[SpouseAgeGap(max_years=20)])
>>> fixed["age"].tolist(), fixed["income"].tolist()
([30, 50, 40], [15.0, 15.0, 5.0])
>>> report[["rule", "violations_before", "rows_changed", "violations_after"]].values.tolist()
[['shared income (mean)', 1, 2, 0], ['spouse age within 20 years of the head', 1, 1, 0]]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import Dataset
from ..errors import InvalidProblemError
from ..validate import integer
from .groups import Groups, _varies
from .rules import ChildAgeGap, OneHead, Shared, SpouseAgeGap, SumTo
from .synthesizer import as_generator
from .tables import flatten, group_variables, unflatten

__all__ = ["check_hierarchy", "enforce_hierarchy"]

_ORDER = (Shared, OneHead, SpouseAgeGap, ChildAgeGap, SumTo)


def _rules(shared: Any, rules: Iterable[Any]) -> list[Any]:
    """Shared rules from ``shared`` plus ``rules``, in the fixed order."""
    out: list[Any] = []
    if shared is not None:
        items = shared.items() if isinstance(shared, Mapping) else ((v, "auto") for v in shared)
        if isinstance(shared, str):
            items = [(shared, "auto")]
        out += [Shared(var, how) for var, how in items]
    for rule in rules:
        if not isinstance(rule, _ORDER):
            raise InvalidProblemError(
                f"unknown rule {rule!r}: use Shared, OneHead, SpouseAgeGap, ChildAgeGap or "
                f"SumTo from calibopt.synthesis."
            )
        out.append(rule)
    return sorted(out, key=lambda r: _ORDER.index(type(r)))


def _person_frame(data: Any, rules: list[Any], household_id: str) -> pd.DataFrame:
    """The person-level frame to work on (a copy), checked."""
    if isinstance(data, Dataset):
        needed = {
            getattr(r, n) for r in rules for n in ("variable", "total", "parts") if hasattr(r, n)
        }
        return flatten(data, [v for v in needed if data.variables.get(v, "person") != "person"])
    if not isinstance(data, pd.DataFrame):
        raise InvalidProblemError(
            f"`data` must be a person-level DataFrame or a Dataset, got {type(data).__name__}."
        )
    if len(data) == 0:
        raise InvalidProblemError("`data` is empty: there is nothing to check.")
    if household_id not in data.columns:
        raise InvalidProblemError(
            f"`data` lacks the household id column {household_id!r} (columns: "
            f"{list(data.columns)[:12]}); pass household_id=... to name it."
        )
    return data.reset_index(drop=True).copy()


def _check_nesting(frame: pd.DataFrame, rules: list[Any], groups: Groups) -> None:
    """A unit (tax unit) must not span two households."""
    household_id = groups.household_id
    units = {getattr(r, "part_id", None) for r in rules} | {
        getattr(r, "within", None) for r in rules
    }
    if "tax_unit_id" in frame.columns:
        units.add("tax_unit_id")
    for unit in units - {None, household_id}:
        if unit not in frame.columns:
            continue
        if frame[unit].hasnans or frame[household_id].hasnans:  # missing ids are skipped
            spans = frame.groupby(unit, sort=False)[household_id].nunique()
            bad, example = int((spans > 1).sum()), spans.index[(spans > 1).to_numpy()][:1]
        else:  # one pass on the (cached) group codes
            codes, n = groups.codes(unit)
            hh, _ = groups.codes(household_id)
            spans = _varies(codes, n, pd.Series(hh, copy=False))
            rows = spans[codes]  # the first such row is in the first such unit
            bad, example = int(spans.sum()), frame[unit].iloc[[int(np.argmax(rows))]]
        if bad:
            raise InvalidProblemError(
                f"{bad} {unit} group(s) span several households, e.g. "
                f"{unit} {example[0]}; fix the ids first."
            )


def check_hierarchy(
    data: Any,
    *,
    household_id: str = "household_id",
    shared: Any = None,
    rules: Iterable[Any] = (),
) -> pd.DataFrame:
    """Count the violations of each rule (nothing is changed).

    Returns
    -------
    DataFrame
        One row per rule: ``rule``, ``violations`` (groups or persons breaking it).
    """
    todo = _rules(shared, rules)
    frame = _person_frame(data, todo, household_id)
    groups = Groups(frame, household_id)
    _check_nesting(frame, todo, groups)
    return pd.DataFrame(
        {"rule": [r.label for r in todo], "violations": [r.check(frame, groups) for r in todo]}
    )


def enforce_hierarchy(
    data: Any,
    *,
    household_id: str = "household_id",
    shared: Any = None,
    rules: Iterable[Any] = (),
    seed: Any = 0,
    max_passes: int = 4,
) -> tuple[Any, pd.DataFrame]:
    """Repair hierarchical data so that every rule holds; report what changed.

    Parameters
    ----------
    data
        Person-level DataFrame (one row per person) or a
        :class:`~calibopt.datasets.Dataset`.
    household_id
        The household id column.
    shared
        Variables identical within a household: a list (mean for numbers, mode otherwise) or
        ``{variable: "mean" | "median" | "mode" | "head"}``.
    rules
        Rule objects: :class:`OneHead`, :class:`SpouseAgeGap`, :class:`ChildAgeGap`,
        :class:`SumTo` (and :class:`Shared`).
    seed
        Seed of the ``fix="draw"`` repairs (same seed, same output).
    max_passes
        Passes over the rules while any of them still changes something.

    Returns
    -------
    (repaired data, report)
        The repaired copy (same type as ``data``) and a DataFrame with one row per rule:
        ``rule``, ``violations_before``, ``rows_changed`` (over all passes),
        ``violations_after``.

    Raises
    ------
    InvalidProblemError
        Missing id or rule columns, a tax unit spanning two households, a mean or median rule
        on a non-numeric variable, an empty table, an unknown rule.
    """
    todo = _rules(shared, rules)
    frame = _person_frame(data, todo, household_id)
    groups = Groups(frame, household_id)
    _check_nesting(frame, todo, groups)
    rng = as_generator(seed)
    before = [r.check(frame, groups) for r in todo]
    changed = np.zeros(len(todo), dtype=np.int64)
    for _ in range(integer("max_passes", max_passes, low=1)):
        checks, counts = [], []
        for r in todo:
            checks.append(r.check(frame, groups))
            counts.append(r.repair(frame, groups, rng) if checks[-1] else 0)
        changed += counts
        if not any(counts):
            break
    # a pass that found nothing to repair changed nothing: its checks are the final state
    after = checks if not any(checks) else [r.check(frame, groups) for r in todo]
    report = pd.DataFrame(
        {
            "rule": [r.label for r in todo],
            "violations_before": before,
            "rows_changed": changed,
            "violations_after": after,
        }
    )
    if isinstance(data, Dataset):
        return unflatten(frame, group_variables(data), like=data), report
    return frame, report
