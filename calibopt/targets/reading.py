"""Checking and shaping the target rows read from a database (which calibopt may not have
written: orphans, duplicates and odd types are caught here, with a message that says how to
fix the database)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from .constraints import GEO_LEVELS, Constraint, geography_of, normalise_constraints
from .filters import canonical_geo_id

__all__ = ["checked_rows", "constraint_sets", "sorted_targets"]

_KEY = ["variable", "period", "stratum_id", "reform_id"]


def checked_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Overview rows (with ``stratum_exists``) checked and typed: no orphan target, no two
    targets with the same (variable, period, stratum, reform), ``domain_variable`` sorted."""
    orphan = frame["stratum_exists"].isna()
    if orphan.any():
        bad = frame.loc[orphan, ["target_id", "stratum_id"]].head(5).to_dict("records")
        raise InvalidProblemError(
            f"{int(orphan.sum())} target(s) refer to a stratum that does not exist, e.g. "
            f"{bad}; add the stratum or delete the target."
        )
    dup = frame.duplicated(_KEY, keep=False)
    if dup.any():
        bad = frame.loc[dup, ["target_id", *_KEY]].head(6).to_dict("records")
        raise InvalidProblemError(
            f"{int(dup.sum())} duplicate target rows (same variable, period, stratum and "
            f"reform), e.g. {bad}; keep one of each."
        )
    frame = frame.drop(columns="stratum_exists")
    frame["period"] = frame["period"].astype(np.int64)
    frame["value"] = frame["value"].astype(np.float64)
    frame["tolerance"] = pd.to_numeric(frame["tolerance"]).astype(np.float64)
    frame["reform_id"] = frame["reform_id"].astype(np.int64)
    frame["active"] = frame["active"].map(lambda a: True if a is None else bool(a)).astype(bool)
    for col in ("source", "notes"):
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    frame["geographic_id"] = frame["geographic_id"].map(canonical_geo_id)
    frame["domain_variable"] = (
        frame["domain_variable"]
        .fillna("")
        .map(lambda s: ",".join(sorted({v for v in s.split(",") if v})))
    )
    return frame


def constraint_sets(stratum_ids: pd.Series, table: pd.DataFrame) -> list[tuple[Constraint, ...]]:
    """Each stratum's canonical constraint set from its constraint rows, its geography
    checked (a stratum without rows is the nation)."""
    sets: dict[int, list] = {}
    for sid, var, op, val in table[
        ["stratum_id", "constraint_variable", "operation", "value"]
    ].itertuples(index=False):
        sets.setdefault(int(sid), []).append((var, op, val))
    out = {}
    for sid, items in sets.items():
        out[sid] = normalise_constraints(items, where=f"stratum {sid}")
        geography_of(out[sid], where=f"stratum {sid}")
    return [out.get(int(s), ()) for s in stratum_ids]


def sorted_targets(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by geo level, variable, domain, geography and id; index 0..n-1."""
    level = frame["geo_level"].map({lvl: i for i, lvl in enumerate(GEO_LEVELS)})
    geo_num = pd.to_numeric(frame["geographic_id"], errors="coerce").fillna(-1)
    return (
        frame.assign(_level=level, _geo=geo_num)
        .sort_values(["_level", "variable", "domain_variable", "_geo", "target_id"])
        .drop(columns=["_level", "_geo"])
        .reset_index(drop=True)
    )
