"""Target groups: geographic level x variable (x domain), the unit of loss normalisation.

A group collects the targets of one kind at one level, e.g. all state SNAP totals
(``"state/snap[snap]"``) or all district person counts by age band
(``"district/person_count[age]"``). Gradient and sparse methods weight each group equally,
so the 436 district targets of a kind do not drown the single national one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..targets.constraints import GEO_LEVELS

__all__ = ["group_label", "group_table", "target_groups"]


def group_label(geo_level: str, variable: str, domain_variable: str = "") -> str:
    """``"<level>/<variable>"``, plus ``"[<domain variables>]"`` when the targets have a domain."""
    label = f"{geo_level}/{variable}"
    return f"{label}[{domain_variable}]" if domain_variable else label


def target_groups(targets: pd.DataFrame) -> np.ndarray:
    """The group label of every target row (columns ``geo_level``, ``variable``,
    ``domain_variable``)."""
    return np.array(
        [
            group_label(lvl, var, dom)
            for lvl, var, dom in zip(
                targets["geo_level"], targets["variable"], targets["domain_variable"], strict=True
            )
        ],
        dtype=object,
    )


def group_table(targets: pd.DataFrame) -> pd.DataFrame:
    """One row per group, in level order: ``group_id``, ``group``, ``geo_level``,
    ``variable``, ``domain_variable``, ``n_targets``, ``total`` (sum of target values),
    ``first_row``."""
    if "group" not in targets:
        targets = targets.assign(group=target_groups(targets))
    frame = targets.assign(_row=np.arange(len(targets)))
    table = (
        frame.groupby("group", sort=False)
        .agg(
            geo_level=("geo_level", "first"),
            variable=("variable", "first"),
            domain_variable=("domain_variable", "first"),
            n_targets=("_row", "size"),
            total=("value", "sum"),
            first_row=("_row", "min"),
        )
        .reset_index()
    )
    rank = table["geo_level"].map({lvl: i for i, lvl in enumerate(GEO_LEVELS)}).fillna(9)
    table = table.assign(_rank=rank).sort_values(["_rank", "first_row"]).drop(columns="_rank")
    table.insert(0, "group_id", np.arange(len(table)))
    return table.reset_index(drop=True)
