"""Exact targets around the dual Newton method.

:func:`newton_exact` — equality targets; linearly redundant rows are found (pivoted Cholesky of
the Newton matrix) and left out of the system, contradictory ones raise. Tolerance bands are
:func:`calibopt.solvers.bands.newton_bands`.
"""

from __future__ import annotations

import numpy as np

from .evaluate import uniform
from .feasibility import reduce_redundant_targets
from .newton import REDUNDANCY_LIMIT, DualNewton, NewtonOutcome

__all__ = ["newton_exact"]


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
        all_free = bool(movable.all())
        base = all_free and engine.evaluator.uses_base
        xd = np.empty(p) if base else None
        Jfree = engine.evaluator.weighted_gram(free, sums=xd)
        if all_free:  # X D X': saves a pass over X
            engine.set_reference_curvature(np.diag(Jfree).copy())
        if base:  # (and is the linear passes' base, with X d)
            engine.evaluator.set_base(Jfree, xd)
        keep, drop = reduce_redundant_targets(Jfree, T, names)
        if drop.size:
            rows = keep
            dropped = [names[j] for j in drop]
        # at lambda = 0, g = F(0) = 1 for every distance: unless some unit starts on a
        # bound, the Newton matrix is this Gram times F'(0) (1 for the built-in distances)
        if np.all((glo < 1.0) & (ghi > 1.0)):
            lo, hi, n0 = engine.lo, engine.hi, engine.d.size
            if uniform(lo) and uniform(hi):  # one unit tells (no pages for n of them)
                lo, hi, n0 = lo if lo is None else lo[:1], hi if hi is None else hi[:1], 1
            u0 = np.zeros(n0)
            c = engine.dist.dF(u0, engine.dist.F(u0, lo, hi), lo, hi)
            if np.all(c == c[0]):
                J0 = Jfree if c[0] == 1.0 else c[0] * Jfree
    out = engine.solve(T[rows], rows, epsilon=epsilon, max_iter=max_iter, J0=J0)
    lam[rows] = out.lam
    return out, lam, dropped
