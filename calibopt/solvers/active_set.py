"""Exact targets and tolerance bands around the dual Newton method.

* :func:`newton_exact` — equality targets; linearly redundant rows are found (pivoted
  Cholesky of the Newton matrix) and left out of the system, contradictory ones raise.
* :func:`newton_bands` — tolerance bands ``lo_j <= X_j w <= hi_j`` by a primal-dual active-set
  loop: a band target is inactive (multiplier 0) while its estimate lies inside the band; when
  outside, it becomes an equality at the violated end; an active target whose multiplier has
  the wrong sign (pulling its estimate into the band's interior) is released. If a set of
  states repeats, the loop changes one target at a time, which cannot cycle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .feasibility import reduce_redundant_targets
from .kernels import matvec, weighted_gram
from .newton import REDUNDANCY_LIMIT, DualNewton, NewtonOutcome

__all__ = ["newton_bands", "newton_exact"]


def newton_exact(
    engine: DualNewton,
    T: np.ndarray,
    names: list[str],
    glo: np.ndarray,
    ghi: np.ndarray,
    *,
    epsilon: float,
    max_iter: int,
) -> tuple[NewtonOutcome, np.ndarray, list[str]]:
    """Newton on ``X w = T``; returns the outcome, multipliers (one per row) and dropped names."""
    p = T.size
    lam = np.zeros(p)
    dropped: list[str] = []
    rows = np.arange(p)
    J0 = None
    if p <= min(engine.dense_limit, REDUNDANCY_LIMIT):
        movable = glo < ghi
        free = np.where(movable, engine.d, 0.0)
        Jfree = weighted_gram(engine.Xc, free)
        if movable.all():
            engine.set_reference_curvature(np.diag(Jfree).copy())  # saves a pass over X
        keep, drop = reduce_redundant_targets(Jfree, T, names)
        if drop.size:
            rows = keep
            dropped = [names[j] for j in drop]
        # at lambda = 0, g = F(0) = 1 for every distance: unless some unit starts on a
        # bound, the Newton matrix is this Gram times F'(0) (1 for the built-in distances)
        if np.all((glo < 1.0) & (ghi > 1.0)):
            u0 = np.zeros(engine.d.size)
            c = engine.dist.dF(u0, engine.dist.F(u0, engine.lo, engine.hi), engine.lo, engine.hi)
            if np.all(c == c[0]):
                J0 = Jfree if c[0] == 1.0 else c[0] * Jfree
    out = engine.solve(T[rows], rows, epsilon=epsilon, max_iter=max_iter, J0=J0)
    lam[rows] = out.lam
    return out, lam, dropped


def newton_bands(
    engine: DualNewton,
    T: np.ndarray,
    band_lower: np.ndarray,
    band_upper: np.ndarray,
    *,
    epsilon: float,
    max_iter: int,
    max_outer: int = 100,
) -> tuple[NewtonOutcome, np.ndarray, dict[str, Any]]:
    """Newton with tolerance bands (see the module docstring)."""
    p = T.size
    exact = band_lower == band_upper
    state = np.zeros(p, dtype=np.int8)  # 0 inactive, +1 upper, -1 lower
    lam = np.zeros(p)
    scale = engine.row_scale(T, np.arange(p))
    seen: set[bytes] = set()
    cautious = False
    total_iter = 0
    out: NewtonOutcome | None = None
    for outer in range(max_outer):
        active = exact | (state != 0)
        rows = np.flatnonzero(active)
        if rows.size:
            ends = np.where(
                state[rows] > 0,
                band_upper[rows],
                np.where(state[rows] < 0, band_lower[rows], T[rows]),
            )
            out = engine.solve(ends, rows, lam[rows], epsilon=epsilon, max_iter=max_iter)
            total_iter += out.iterations
            lam[:] = 0.0
            lam[rows] = out.lam
            g = out.g
            if not out.converged:
                out.message = f"round {outer + 1} of the active-set loop: {out.message}"
                out.iterations = total_iter
                return out, lam, {"rounds": outer + 1}
        else:
            g = engine.g_at(np.zeros(p))
            out = NewtonOutcome(
                lam=np.zeros(0),
                g=g,
                converged=True,
                iterations=0,
                max_residual=0.0,
                message="converged: no band target binds",
            )
        last = engine.last
        est = last.xw if rows.size and last is not None else matvec(engine.Xc, engine.d * g)
        slack = epsilon * scale
        above = (~active) & (est > band_upper + slack)
        below = (~active) & (est < band_lower - slack)
        wrong = (~exact) & (((state > 0) & (lam > 0)) | ((state < 0) & (lam < 0)))
        if not (above.any() or below.any() or wrong.any()):
            n_at = int((state != 0).sum())
            out.message += (
                f"; active-set loop settled after {outer + 1} round(s) with {n_at} band "
                f"target(s) at an end of their band"
            )
            out.iterations = total_iter
            return out, lam, {"active_band_targets": n_at, "rounds": outer + 1}
        key = state.tobytes()
        cautious |= key in seen
        seen.add(key)
        if cautious:
            viol = np.where(above, est - band_upper, 0.0) + np.where(below, band_lower - est, 0.0)
            if viol.any():
                j = int(np.argmax(viol / scale))
                state[j] = 1 if above[j] else -1
            else:
                state[int(np.argmax(np.abs(lam) * wrong))] = 0
        else:
            state[above] = 1
            state[below] = -1
            state[wrong] = 0
    assert out is not None
    out.converged = False
    out.iterations = total_iter
    out.message = f"active-set loop did not settle in {max_outer} rounds; {out.message}"
    return out, lam, {"rounds": max_outer}
