"""Writing strata: the nation -> state -> district -> domain tree, one stratum per constraint set.

A domain stratum ("district 3701 and snap > 0") is a child of its geographic stratum and
repeats its constraints; a district's parent is its state (GEOID // 100 = FIPS), a state's
parent the nation (no constraints). A stratum is identified by ``definition_hash``
(SHA-256 of the parent id and the sorted constraints), so writing the same set twice finds
the stratum already there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from .constraints import DISTRICT, STATE, Constraint, domain_of, geography_of
from .schema import strata, stratum_constraints, targets

__all__ = ["CHUNK", "chunks", "ensure_strata", "existing_targets"]

CHUNK = 5_000
"""Ids per ``IN (...)`` list (well under every backend's parameter limit)."""

ConstraintSet = tuple[Constraint, ...]


def chunks(items: Iterable[Any], size: int = CHUNK) -> list[Sequence[Any]]:
    """``items`` in lists of at most ``size``."""
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


def stratum_hash(parent: int | None, constraints: Sequence[Constraint]) -> str:
    """The ``definition_hash`` of a stratum."""
    text = f"{'' if parent is None else parent}|" + "|".join(
        f"{v}\x1f{op}\x1f{val}" for v, op, val in sorted(constraints)
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parent_constraints(constraints: ConstraintSet) -> ConstraintSet | None:
    """The parent's constraint set: domain -> its geography; district -> state -> nation."""
    if domain_of(constraints):
        return tuple(c for c in constraints if c[0] in (DISTRICT, STATE))
    level, geo_id = geography_of(constraints)
    if level == "district":
        return ((STATE, "==", str(int(geo_id) // 100)),)
    if level == "state":
        return ()
    return None


def _with_ancestors(sets: Iterable[ConstraintSet]) -> dict[ConstraintSet, ConstraintSet | None]:
    """``{constraint set: its parent's}`` for the sets and all their ancestors."""
    todo: dict[ConstraintSet, ConstraintSet | None] = {}
    stack = list(sets)
    while stack:
        cs = stack.pop()
        if cs in todo:
            continue
        parent = parent_constraints(cs)
        todo[cs] = parent
        if parent is not None:
            stack.append(parent)
    return todo


def _by_depth(tree: dict[ConstraintSet, ConstraintSet | None]) -> list[list[ConstraintSet]]:
    """The sets grouped by depth in the tree (roots first), each group sorted."""
    levels: dict[int, list[ConstraintSet]] = {}
    for cs in tree:
        d, p = 0, tree[cs]
        while p is not None:
            d, p = d + 1, tree[p]
        levels.setdefault(d, []).append(cs)
    return [sorted(levels[d]) for d in sorted(levels)]


def _known_hashes(conn: sa.Connection, hashes: list[str]) -> dict[str, int]:
    known: dict[str, int] = {}
    for chunk in chunks(hashes):
        res = conn.execute(
            sa.select(strata.c.definition_hash, strata.c.stratum_id).where(
                strata.c.definition_hash.in_(chunk)
            )
        )
        known.update({h: int(i) for h, i in res})
    return known


def _insert_strata(
    conn: sa.Connection, new: list[tuple[ConstraintSet, int | None, str]]
) -> dict[str, int]:
    """Insert strata ``(constraints, parent id, hash)`` and their constraint rows."""
    res = conn.execute(
        sa.insert(strata).returning(
            strata.c.stratum_id, strata.c.definition_hash, sort_by_parameter_order=True
        ),
        [{"definition_hash": h, "parent_stratum_id": p} for _, p, h in new],
    )
    ids = {h: int(i) for i, h in res}
    rows = [
        {"stratum_id": ids[h], "constraint_variable": v, "operation": op, "value": val}
        for cs, _, h in new
        for v, op, val in cs
    ]
    if rows:
        conn.execute(sa.insert(stratum_constraints), rows)
    return ids


def ensure_strata(conn: sa.Connection, sets: Iterable[ConstraintSet]) -> dict[ConstraintSet, int]:
    """Stratum ids for constraint sets, inserting missing strata and their ancestors."""
    tree = _with_ancestors(sets)
    ids: dict[ConstraintSet, int] = {}
    for level in _by_depth(tree):
        parents = [None if tree[cs] is None else ids[tree[cs]] for cs in level]
        hashes = [stratum_hash(p, cs) for p, cs in zip(parents, level, strict=True)]
        known = _known_hashes(conn, hashes)
        new = [
            (cs, p, h) for cs, p, h in zip(level, parents, hashes, strict=True) if h not in known
        ]
        if new:
            known.update(_insert_strata(conn, new))
        ids.update({cs: known[h] for cs, h in zip(level, hashes, strict=True)})
    return ids


def existing_targets(conn: sa.Connection, keys: list[tuple]) -> dict[tuple, int]:
    """``{(variable, period, stratum_id, reform_id): target_id}`` of keys already stored."""
    found = {}
    wanted = set(keys)
    t = targets
    for chunk in chunks(sorted({k[2] for k in keys})):
        result = conn.execute(
            sa.select(t.c.variable, t.c.period, t.c.stratum_id, t.c.reform_id, t.c.target_id).where(
                t.c.stratum_id.in_(chunk)
            )
        )
        found.update({tuple(r[:4]): int(r[4]) for r in result if tuple(r[:4]) in wanted})
    return found
