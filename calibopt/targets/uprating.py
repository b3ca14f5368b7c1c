"""Uprating: serving a period from the latest earlier target times chained growth factors.

``uprating_factors`` holds ``(variable, from_period, to_period, factor)``: a target of
``from_period`` times ``factor`` serves ``to_period``. Factors chain forward in time
(2022 -> 2023 -> 2024), a direct factor preferred to a chain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["UPRATING_COLUMNS", "chain_factor", "factor_graph", "uprate"]

UPRATING_COLUMNS = ["variable", "from_period", "to_period", "factor"]

Graph = dict[str, dict[int, list[tuple[int, float]]]]


def factor_graph(frame: pd.DataFrame) -> Graph:
    """``{variable: {from_period: [(to_period, factor), ...]}}`` of an uprating table."""
    graph: Graph = {}
    for var, src, dst, f in frame[UPRATING_COLUMNS].itertuples(index=False):
        graph.setdefault(var, {}).setdefault(int(src), []).append((int(dst), float(f)))
    return graph


def chain_factor(edges: dict[int, list[tuple[int, float]]], src: int, dst: int) -> float | None:
    """Product of factors along a path src -> dst moving forward in time (direct first)."""
    best: dict[int, float] = {src: 1.0}
    frontier = [src]
    while frontier:
        nxt = []
        for node in frontier:
            for to, f in sorted(edges.get(node, []), key=lambda e: -e[0]):
                if src < to <= dst and to not in best:
                    best[to] = best[node] * f
                    nxt.append(to)
        frontier = nxt
        if dst in best:
            return best[dst]
    return None


def uprate(
    frame: pd.DataFrame, period: int | None, factors: Callable[[], pd.DataFrame]
) -> pd.DataFrame:
    """The targets serving ``period``, with ``original_value`` and ``uprating_factor``.

    For each (variable, stratum, reform) the latest target at or before ``period`` is kept
    (``frame`` holds only those periods) and multiplied by the chained factor from its period
    to ``period``; ``factors`` returns the uprating table, read only when some target needs
    it. ``period=None`` keeps every row with factor 1.

    Raises
    ------
    InvalidProblemError
        A target needs a factor the table lacks (the message lists them).
    """
    frame = frame.assign(original_value=frame["value"], uprating_factor=1.0)
    if period is None or frame.empty:
        return frame
    latest = (
        frame.sort_values("period")
        .groupby(["variable", "stratum_id", "reform_id"], sort=False)
        .tail(1)
    )
    old = latest["period"].to_numpy() != int(period)
    if not old.any():
        return latest
    graph = factor_graph(factors())
    missing = []
    values = latest["uprating_factor"].to_numpy(dtype=float).copy()
    for pos in np.flatnonzero(old):
        var = latest["variable"].iat[pos]
        src = int(latest["period"].iat[pos])
        f = chain_factor(graph.get(var, {}), src, int(period))
        if f is None:
            missing.append((var, src, int(period)))
        else:
            values[pos] = f
    if missing:
        uniq = sorted(set(missing))
        raise InvalidProblemError(
            f"{len(missing)} target(s) for period {period} come from earlier periods "
            f"without an uprating factor: (variable, from, to) {uniq[:8]}; add them with "
            f"TargetsDatabase.add_uprating(variable, from_period, to_period, factor)."
        )
    latest = latest.assign(uprating_factor=values)
    return latest.assign(value=latest["original_value"] * latest["uprating_factor"])
