"""The aggregation hierarchy of a targets table: which totals must add up to which.

A national target is the sum of the same target (same variable, period, reform and domain
constraints) in every state, and a state target the sum of it in the state's districts (a
district GEOID // 100 is its state's FIPS code). :func:`target_hierarchy` reads these families
off a targets table (``CalibrationMatrix.targets``, ``SyntheticCountry.targets`` or the
database's overview) for :func:`calibopt.conflicts.reconcile`. Nothing here solves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from ..errors import InvalidProblemError
from .constraints import domain_of, geography_of

__all__ = ["target_hierarchy"]


def _names(frame: pd.DataFrame) -> pd.Series:
    if "name" in frame:
        return frame["name"].astype(str)
    return pd.Series(frame.index.astype(str), index=frame.index)


def target_hierarchy(
    targets: Any,
    *,
    X: Any = None,
    districts: Mapping[int, Iterable[int]] | None = None,
    states: Iterable[int] | None = None,
) -> dict[str, list[str]]:
    """``{parent name: [child names]}``: national = sum of states, state = sum of districts.

    Parameters
    ----------
    targets
        One row per target with ``constraints`` (tuples ``(variable, op, value)``, the
        geographic one included) or ``geo_level`` and ``geographic_id``; ``variable``;
        optionally ``period`` and ``reform_id``; and ``name`` (else the index is the name).
        A :class:`~calibopt.matrix.CalibrationMatrix` gives its targets table and ``X``.
    X
        The matrix whose rows are the targets (in the table's order). With it, a family is
        kept when the parent's row equals the sum of its children's rows (exactly, for every
        weight vector), whichever children are present: a child missing from the table
        because its value is 0 everywhere (a state without the tax) does not break it.
    districts
        ``{state FIPS: district GEOIDs}`` of the geography. Default: the districts that have
        any target in the table. A family is kept only when every child exists, so a
        district missing from the table for one variable leaves that state's family out
        rather than making a wrong sum.
    states
        The states of the nation (default: those with any target in the table).

    Returns
    -------
    dict
        Parent target name -> its children's names (each family complete).
    """
    if hasattr(targets, "targets") and hasattr(targets, "X"):
        X = targets.X if X is None else X
        targets = targets.targets
    need = {"variable"}
    if not need <= set(targets.columns):
        raise InvalidProblemError(f"the targets table needs the columns {sorted(need)}.")
    frame = targets.copy()
    frame["_name"] = _names(frame)
    if "constraints" in frame:
        geo = [geography_of(c, where=str(n)) for c, n in zip(frame["constraints"], frame["_name"])]
        frame["_level"] = [g[0] for g in geo]
        frame["_geo"] = [g[1] for g in geo]
        frame["_domain"] = [domain_of(c) for c in frame["constraints"]]
    elif {"geo_level", "geographic_id"} <= set(frame.columns):
        frame["_level"] = frame["geo_level"]
        frame["_geo"] = frame["geographic_id"].astype(str)
        frame["_domain"] = frame.get("domain_variable", "")
    else:
        raise InvalidProblemError(
            "the targets table needs `constraints` or `geo_level` and `geographic_id`."
        )
    keys = ["variable", "_domain"] + [c for c in ("period", "reform_id") if c in frame]
    district_ids = frame.loc[frame["_level"] == "district", "_geo"].astype(int)
    if districts is None:
        by_state: dict[int, set[int]] = {}
        for g in district_ids.unique():
            by_state.setdefault(int(g) // 100, set()).add(int(g))
    else:
        by_state = {int(s): {int(g) for g in gs} for s, gs in districts.items()}
    if states is None:
        all_states = set(frame.loc[frame["_level"] == "state", "_geo"].astype(int)) | set(by_state)
    else:
        all_states = {int(s) for s in states}
    rows = None
    if X is not None:
        import scipy.sparse as sp

        rows = sp.csr_matrix(X)
        if rows.shape[0] != len(frame):
            raise InvalidProblemError(
                f"`X` has {rows.shape[0]} rows but the table {len(frame)} targets."
            )
    position = {n: j for j, n in enumerate(frame["_name"])}

    def adds_up(parent: str, kids: list[str]) -> bool:
        assert rows is not None
        diff = rows[position[parent]] - rows[[position[k] for k in kids]].sum(axis=0)
        gross = abs(rows[position[parent]]).sum()
        return bool(abs(diff).sum() <= 1e-12 * max(gross, 1e-300))

    def family(parent: str | None, want: set[int], have: dict[int, str]) -> list[str] | None:
        if parent is None or not have:
            return None
        if rows is not None:
            kids = [have[g] for g in sorted(have)]
            return kids if adds_up(parent, kids) else None
        if want and want <= set(have):
            return [have[g] for g in sorted(want)]
        return None

    out: dict[str, list[str]] = {}
    for _, fam in frame.groupby(keys, sort=False, dropna=False):
        level = dict(zip(zip(fam["_level"], fam["_geo"].astype(str)), fam["_name"]))
        state_names = {int(g): n for (lv, g), n in level.items() if lv == "state"}
        district_names = {int(g): n for (lv, g), n in level.items() if lv == "district"}
        national = level.get(("national", "US"))
        kids = family(national, all_states, state_names)
        if kids is not None:
            out[str(national)] = kids
        for s, name in state_names.items():
            mine = {g: n for g, n in district_names.items() if g // 100 == s}
            kids = family(name, by_state.get(s, set()), mine)
            if kids is not None:
                out[name] = kids
        if not state_names and district_names:
            every = set().union(*by_state.values()) if by_state else set()
            kids = family(national, every, district_names)
            if kids is not None:
                out[str(national)] = kids
    return out


def hierarchy_rules(hierarchy: Any) -> list[tuple[str, list[str]]]:
    """``hierarchy`` (a mapping parent -> children, a DataFrame with ``parent`` and ``child``
    columns, or pairs) as a list of ``(parent, children)``."""
    if isinstance(hierarchy, pd.DataFrame):
        if not {"parent", "child"} <= set(hierarchy.columns):
            raise InvalidProblemError("a hierarchy table needs `parent` and `child` columns.")
        grouped = hierarchy.groupby("parent", sort=False)["child"]
        return [(str(p), [str(c) for c in kids]) for p, kids in grouped]
    items = hierarchy.items() if isinstance(hierarchy, Mapping) else hierarchy
    rules = []
    for item in items:
        try:
            parent, kids = item
        except (TypeError, ValueError):
            raise InvalidProblemError(
                "`hierarchy` must map each parent to its children, e.g. "
                "{'US/x': ['1/x', '2/x']}, or be a table with `parent` and `child` columns."
            ) from None
        if isinstance(kids, str) or not isinstance(kids, Iterable):
            raise InvalidProblemError(f"the children of {parent!r} must be a list of names.")
        rules.append((str(parent), [str(c) for c in kids]))
    return rules
