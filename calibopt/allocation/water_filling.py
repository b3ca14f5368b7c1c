"""Water-filling: the exact inverse of sums of ``max(f_i, t a_i)``-like terms.

The provisions' levels (:mod:`~calibopt.allocation.provisions`) solve equations whose left-hand
sides are continuous, non-decreasing and piecewise linear in the level, with a breakpoint per
term. :func:`invert_levels` inverts many of them at once, one per group, by sorting the
breakpoints and scanning cumulative sums: O(n log n), no iteration, no tolerance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["invert_levels"]


def invert_levels(
    group: np.ndarray,
    times: np.ndarray,
    dconst: np.ndarray,
    dslope: np.ndarray,
    base: np.ndarray,
    target: np.ndarray,
) -> np.ndarray:
    """Invert continuous non-decreasing piecewise-linear functions, one per group.

    Group ``g``'s function is ``G_g(t) = base_g + sum_{k in g, times_k <= t} (dconst_k +
    dslope_k t)``. Returns, per group, a ``t >= 0`` with ``G_g(t) = target_g`` (``inf`` when
    the target lies above the function's range). Assumes ``target_g >= base_g``.
    """
    ng = base.size
    out = np.zeros(ng)
    if times.size == 0:
        out[target > base] = np.inf
        return out
    order = np.lexsort((times, group))
    g, tt = group[order], times[order]
    # cumulative sums restarting at each group (no global cumsum: subtracting large running
    # totals of other groups would cancel digits)
    frame = pd.DataFrame({"c": dconst[order], "p": dslope[order]})
    cum = frame.groupby(g, sort=False).cumsum()
    C, P = cum["c"].to_numpy(), cum["p"].to_numpy()
    # the function's value just after each distinct event time
    last_of_time = np.r_[(g[1:] != g[:-1]) | (tt[1:] != tt[:-1]), True]
    v = base[g] + C + tt * P
    ok = last_of_time & (v <= target[g])
    idx = np.where(ok, np.arange(g.size), -1)
    best = np.full(ng, -1)
    np.maximum.at(best, g, idx)
    has_events = np.zeros(ng, dtype=bool)
    has_events[g] = True
    out[~has_events & (target > base)] = np.inf
    # groups whose target is below the value at their first event: the level is that time
    first_time = np.full(ng, np.inf)
    np.minimum.at(first_time, g, tt)
    none = has_events & (best < 0)
    out[none] = first_time[none]
    sel = best >= 0
    k = best[sel]
    slope = P[k]
    gap = target[sel] - v[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[sel] = np.where(slope > 0, tt[k] + gap / slope, np.where(gap > 0, np.inf, tt[k]))
    return out
