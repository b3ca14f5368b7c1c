"""The phase-1 LP over all targets, by column generation: it scales with the non-zeros of X.

The program (every target together; ``c_j = max(|band_j|, 1)``)::

    min  sum_j (s+_j + s-_j) / c_j
    s.t. X w - e + s+ - s- = 0,   wlo <= w <= whi,   e_j in [lo_j, hi_j],   s+, s- >= 0

has as many columns as units (millions in local-area problems) but only as many rows as
targets, so an optimal basis uses at most that many units. Column generation solves it on a
*restricted* set of units (HiGHS dual simplex, warm-started as units are added), every other
unit held at ``v_i = clip(0, wlo_i, whi_i)``; one pass over X (``z = X' y``) prices all units
against the row duals ``y`` and the ones whose reduced cost says they should move join. When
none does, the restricted optimum is the full one.

Whatever the master did, the answer is checked independently: for any ``y`` with
``|y_j| <= 1 / c_j`` weak duality gives the lower bound (one more pass over X)

    L(y) = sum_i min(-z_i wlo_i, -z_i whi_i) + sum_j min(y_j lo_j, y_j hi_j) <= shortfall,

so ``L(y) > 0`` *proves* that no weights meet the targets (a Farkas certificate, verified on
every unit), and a master solution with zero shortfall is a feasible point. When no unit
outside the master prices in but ``L(y)`` is ``-inf`` (a unit with no upper bound whose
reduced cost has the wrong sign within HiGHS's dual tolerance), the bound is the master's
optimum as HiGHS proves it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .highs import new_highs
from .kernels import matvec, rmatvec

__all__ = ["PhaseOne", "dual_bound", "phase_one"]

ALL_COLUMNS = 50_000
"""Up to this many units the master holds every unit from the start (one solve)."""
FEASIBLE = 1e-12
"""A master shortfall at or below this ends the search: its weights meet every band."""
GAP = 1e-6
"""Relative gap between the master's shortfall and the dual bound that counts as optimal."""
MAX_ROUNDS = 200
"""Column-generation rounds before giving up (the bound so far is still valid)."""


@dataclass
class PhaseOne:
    """The phase-1 LP's outcome.

    Attributes
    ----------
    shortfall : float
        Optimal scaled shortfall of the restricted master (an upper bound on the full LP's);
        ``inf`` when ``time_limit`` ran out before a master was solved.
    bound : float
        ``L(y)``: a lower bound on the full LP's optimum, verified on every unit (or the
        master's optimum when every unit that could price in is in the master and ``L(y)``
        is ``-inf``; see the module docstring).
    y : ndarray
        Row duals (the certificate when ``bound > 0``).
    w : ndarray
        The master's weights on every unit (units outside the master at ``v``).
    rounds, columns : int
        Column-generation rounds and units in the final master.
    Xc : csc_matrix
        The matrix as used (CSC, sorted).
    optimal : bool
        No unit prices in (the master's optimum is the full LP's).
    seconds : float
    """

    shortfall: float
    bound: float
    y: np.ndarray
    w: np.ndarray
    rounds: int
    columns: int
    optimal: bool
    seconds: float
    Xc: sp.csc_matrix


def dual_bound(
    Xc: sp.csc_matrix,
    y: np.ndarray,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    wlo: np.ndarray,
    whi: np.ndarray,
    c_scale: np.ndarray,
) -> float:
    """``L(y)`` of the module docstring (``-inf`` where an unbounded unit has ``z_i != 0``)."""
    y = np.clip(y, -1.0 / c_scale, 1.0 / c_scale)
    z = rmatvec(Xc, y)
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.where(z > 0, -z * whi, np.where(z < 0, -z * wlo, 0.0))
        b = np.where(y > 0, y * band_lo, np.where(y < 0, y * band_hi, 0.0))
    total = float(np.sum(a)) + float(np.sum(b))
    return total if np.isfinite(total) else -np.inf


def _bound(z, y, v, gain, band_lo, band_hi) -> float:
    """``L(y)`` from ``z = X' y`` and the gains (``L = -z'v - sum gain + band part``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        b = np.where(y > 0, y * band_lo, np.where(y < 0, y * band_hi, 0.0))
        total = -float(z @ v) - float(np.sum(gain)) + float(np.sum(b))
    return total if np.isfinite(total) else -np.inf


def _highs():
    import highspy

    return highspy


def _master_optimal(h) -> bool:
    """HiGHS proved the master LP optimal (within its 1e-9 feasibility tolerances)."""
    return h.getModelStatus() == _highs().HighsModelStatus.kOptimal


def _master(m: int, c_scale, band_lo, band_hi, rhs):
    """The master LP with its slack and band columns only (units are added later).

    Row ``j`` is divided by ``c_j`` (the shortfall in units of the band: costs 1, duals in
    [-1, 1]), which HiGHS's absolute tolerances need when totals run to billions.
    """
    highspy = _highs()
    inf = highspy.kHighsInf
    h = new_highs()
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("dual_feasibility_tolerance", 1e-9)
    eye = np.arange(m, dtype=np.int32)
    starts = np.arange(m, dtype=np.int32)
    ones = np.ones(m)

    def fin(v):
        return np.where(np.isposinf(v), inf, np.where(np.isneginf(v), -inf, v))

    r = rhs / c_scale
    h.addRows(m, fin(r), fin(r), 0, np.zeros(0, np.int32), np.zeros(0, np.int32), [])
    h.addCols(m, ones, np.zeros(m), np.full(m, inf), m, starts, eye, ones)  # s+
    h.addCols(m, ones, np.zeros(m), np.full(m, inf), m, starts, eye, -ones)  # s-
    e_lo, e_hi = fin(band_lo / c_scale), fin(band_hi / c_scale)
    h.addCols(m, np.zeros(m), e_lo, e_hi, m, starts, eye, -ones)  # e / c
    return h, fin


def _add_units(h, fin, Xc, cols, lo, hi, c_scale, s_scale) -> None:
    """Units ``cols`` as master columns, in units of ``s_i`` (rows divided by ``c_j``)."""
    sub = Xc[:, cols]
    sub.sort_indices()
    counts = np.diff(sub.indptr)
    data = sub.data / c_scale[sub.indices] * np.repeat(s_scale[cols], counts)
    h.addCols(
        cols.size,
        np.zeros(cols.size),
        fin(lo[cols] / s_scale[cols]),
        fin(hi[cols] / s_scale[cols]),
        sub.nnz,
        sub.indptr[:-1].astype(np.int32),
        sub.indices.astype(np.int32),
        data.astype(np.float64),
    )


def phase_one(
    Xc: sp.csc_matrix,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    wlo: np.ndarray,
    whi: np.ndarray,
    *,
    batch: int | None = None,
    max_rounds: int = MAX_ROUNDS,
    stop_above: float = np.inf,
    time_limit: float = np.inf,
) -> PhaseOne:
    """Solve the phase-1 LP of the module docstring by column generation.

    Parameters
    ----------
    Xc
        The matrix (targets x units), CSC.
    band_lo, band_hi
        The band each target's estimate must reach.
    wlo, whi
        Bounds on the weights (``-inf``/``inf`` allowed).
    batch
        Units added per round (default ``max(1000, 4 * n_targets)``, the most violated).
    max_rounds
        Rounds before stopping; the bound returned stays valid.
    stop_above
        Stop as soon as the dual bound exceeds this (infeasibility is then proven; the
        shortfall reported is the master's, an upper bound).
    time_limit
        Seconds after which the search stops (HiGHS is given the time left for each master
        solve); the bound returned stays valid, and ``optimal`` is False.
    """
    t0 = time.perf_counter()
    Xc = Xc if sp.issparse(Xc) and Xc.format == "csc" else sp.csc_matrix(Xc)
    if not Xc.has_sorted_indices:
        Xc = Xc.copy()
        Xc.sort_indices()
    m, n = Xc.shape
    c_scale = np.maximum(np.maximum(np.abs(band_lo), np.abs(band_hi)), 1.0)
    c_scale = np.where(np.isfinite(c_scale), c_scale, 1.0)
    v = np.clip(0.0, wlo, whi)
    lo, hi = wlo - v, whi - v  # shifted: every unit outside the master sits at 0
    span = np.maximum(np.abs(lo), np.abs(hi))
    s_scale = np.where(np.isfinite(span) & (span > 0), span, 1.0)  # master columns in [-1, 1]
    rhs = -matvec(Xc, v) if np.any(v) else np.zeros(m)
    h, fin = _master(m, c_scale, band_lo, band_hi, rhs)
    inside = np.zeros(n, dtype=bool)
    added: list[np.ndarray] = []  # units in the master, in the order of its columns
    batch = max(1000, 4 * m) if batch is None else batch
    first = np.arange(n) if n <= ALL_COLUMNS else np.zeros(0, dtype=np.int64)
    order = first
    rounds = 0
    optimal = False
    y = np.zeros(m)
    bound = -np.inf
    while rounds < max_rounds:
        left = time_limit - (time.perf_counter() - t0)
        if left <= 0:
            break  # (before adding units: the master's solution stays that of its columns)
        if order.size:
            _add_units(h, fin, Xc, order, lo, hi, c_scale, s_scale)
            inside[order] = True
            added.append(order)
        if np.isfinite(left):  # (HiGHS's clock runs on across the rounds' solves)
            h.setOptionValue("time_limit", float(h.getRunTime() + left))
        h.run()
        rounds += 1
        if np.isfinite(left) and not _master_optimal(h):
            break  # the master unsolved (out of time, or HiGHS gave up): its duals prove nothing
        bound = -np.inf  # of this round's duals (computed below, or after the loop)
        y = np.asarray(h.getSolution().row_dual, dtype=np.float64) / c_scale
        shortfall = float(h.getInfo().objective_function_value)
        if shortfall <= FEASIBLE:
            optimal = True  # a feasible point: nothing to price
            break
        y = np.clip(y, -1.0 / c_scale, 1.0 / c_scale)
        z = rmatvec(Xc, y)
        # how far unit i could lower the Lagrangian from its value in the master (at v)
        with np.errstate(invalid="ignore"):
            gain = np.maximum(np.where(z > 0, z * hi, 0.0), np.where(z < 0, z * lo, 0.0))
        bound = _bound(z, y, v, gain, band_lo, band_hi)
        if bound > stop_above or shortfall - bound <= GAP * max(1.0, shortfall):
            optimal = shortfall - bound <= GAP * max(1.0, shortfall)
            break
        gain[inside] = 0.0
        cand = np.flatnonzero(gain > 0)
        if cand.size == 0:
            # no unit outside the master prices in: the master's optimum is the full LP's.
            # L(y) can still be -inf, when a unit without an upper bound has a reduced cost
            # within HiGHS's dual tolerance of the wrong sign; HiGHS's proof of the master's
            # optimality then stands in for it.
            if _master_optimal(h):
                optimal, bound = True, max(bound, shortfall)
            break
        if cand.size > batch:
            cand = cand[np.argpartition(-gain[cand], batch)[:batch]]
        order = np.sort(cand)
    w = v.copy()
    shortfall = np.inf  # unknown: the time ran out before a master was solved
    if rounds and (not np.isfinite(time_limit) or _master_optimal(h)):
        x = np.asarray(h.getSolution().col_value, dtype=np.float64)
        if added:
            units = np.concatenate(added)
            w[units] += x[3 * m :] * s_scale[units]
        shortfall = float(h.getInfo().objective_function_value)
    if not np.isfinite(bound):
        bound = dual_bound(Xc, y, band_lo, band_hi, wlo, whi, c_scale)
    return PhaseOne(
        shortfall=shortfall,
        bound=bound,
        y=y,
        w=w,
        rounds=rounds,
        columns=int(inside.sum()),
        optimal=optimal,
        seconds=time.perf_counter() - t0,
        Xc=Xc,
    )
