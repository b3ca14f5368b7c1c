"""Money to the cent: dollar amounts as integer cents, and the rounding of an exact allocation
to whole cents that keeps the total, the floors and the state minimums.

With ``cents=True`` (default) the appropriation is rounded to the nearest cent, floors and
minimums are rounded *up* to whole cents (an LEA is owed at least its floor), the exact
solution is computed in float64, and then rounded by largest remainders in two stages:
state totals first (states at their minimum get exactly it, the other states never drop below
their minimum or their floors), then LEAs within each state (never below their floor). The
result sums to the appropriation to the cent. Ties between equal remainders go to the earlier
label (Series) or position (arrays). Raising the appropriation never lowers the exact
allocation of any LEA; after rounding, an LEA can move by at most one cent against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidProblemError, SolverError

__all__ = ["round_to_cents", "to_cents"]


def to_cents(amounts: Any, how: str = "nearest") -> np.ndarray:
    """Dollar amounts -> integer cents (``how``: ``"nearest"``, ``"up"`` or ``"down"``).

    Products such as 0.85 x $1,000.10 carry float noise below 1e-4 cent; it is removed first
    so that ``"up"`` does not add a cent to an amount that is whole in decimal.
    """
    c = np.round(np.asarray(amounts, dtype=float) * 100.0, 4)
    if how == "nearest":
        c = np.floor(c + 0.5)
    elif how == "up":
        c = np.ceil(c)
    elif how == "down":
        c = np.floor(c)
    else:
        raise InvalidProblemError(f"`how` must be 'nearest', 'up' or 'down', got {how!r}.")
    return c.astype(np.int64)


def round_to_cents(
    x: np.ndarray,
    f_c: np.ndarray,
    m_c: np.ndarray,
    A_c: int,
    at_floor: np.ndarray,
    bound: np.ndarray,
    codes: np.ndarray,
    tiebreak: np.ndarray,
) -> np.ndarray:
    """Largest-remainder rounding to cents: state totals first, then LEAs within states.

    Every LEA keeps at least its floor, states at their minimum get exactly it, the other
    states at least their minimum, and the total is ``A_c`` cents.
    """
    k = m_c.size
    free = ~at_floor
    x_c = x * 100.0
    base = np.where(free, np.maximum(np.floor(x_c).astype(np.int64), f_c), f_c)
    rem = np.where(free, x_c - base, 0.0)
    lo = np.bincount(codes, base, minlength=k).astype(np.int64)
    cap = lo + np.bincount(codes, free, minlength=k).astype(np.int64)
    want = lo + np.bincount(codes, rem, minlength=k)
    low = np.maximum(np.maximum(m_c, np.bincount(codes, f_c, minlength=k)), lo)
    T = np.where(bound, m_c, np.clip(np.floor(want).astype(np.int64), low, cap))
    if np.any(bound & ((m_c < lo) | (m_c > cap))):
        raise SolverError(
            "cent rounding: a state at its minimum cannot reach it exactly; "
            "please report this with your data."
        )
    frac = want - T
    adjustable = ~bound
    for _ in range(k + 2):
        d = A_c - int(T.sum())
        if d == 0:
            break
        if d > 0:
            cand = np.flatnonzero(adjustable & (T < cap))
            order = cand[np.lexsort((cand, -frac[cand]))][:d]
            T[order] += 1
        else:
            cand = np.flatnonzero(adjustable & (T > low))
            order = cand[np.lexsort((cand, frac[cand]))][:-d]
            T[order] -= 1
        if order.size == 0:
            break
        frac = want - T
    if int(T.sum()) != A_c:
        raise SolverError(
            "cent rounding could not match the appropriation; please report this with your data."
        )
    # stage 2: within each state, the T_s - lo_s largest remainders get one more cent
    out = base.copy()
    idx = np.flatnonzero(free)
    if idx.size:
        order = idx[np.lexsort((tiebreak[idx], -rem[idx], codes[idx]))]
        g = codes[order]
        start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        rank = np.arange(order.size) - np.repeat(start, np.diff(np.r_[start, order.size]))
        out[order[rank < (T - lo)[g]]] += 1
    return out
