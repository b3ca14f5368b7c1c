"""Minimal conflicting sets: irreducible infeasible subsets (IIS) of targets and weight bounds.

The feasibility system of a calibration is ``lo_j <= X_j w <= hi_j`` (every target band) and
``wlo_i <= w_i <= whi_i`` (every finite bound). An *irreducible infeasible subset* is a set of
bands and bounds that cannot hold together while dropping any one of them makes the rest
feasible. :func:`find_conflicts` returns several of them, pairwise disjoint in their targets:

1. **Candidate by one LP.** The misfit LP ``min t`` (:mod:`calibopt.solvers.misfit`) over the
   active targets is solved by the simplex method. When ``t* > 0``, its basic dual solution
   (band-row duals, reduced costs of the weights) is a vertex of the alternative polyhedron
   ``{lambda >= 0 : M' lambda = 0, sum_rows lambda = 1}`` of the system ``M x <= h``, and the
   support of such a vertex is an IIS (Gleeson & Ryan 1990; the vertices of a cone section
   are its extreme rays, which are exactly the minimal certificates). With ``engine="highs"``
   the candidate is HiGHS's own IIS (``Highs.getIis``) of the feasibility LP instead.
2. **Check.** The candidate -- the rows with non-zero duals, and the bounds the solution
   sits on among the units they touch -- is checked on its own small system
   (:mod:`calibopt.solvers.iis_check`): only its rows, only the columns they touch, only its
   bounds, identical columns merged. It must be infeasible; its own dual support drops the
   bounds the certificate does not use; then each row, and each merged bound (up to 100 of
   them, a spread sample beyond), is dropped in turn and the rest must become feasible. An
   element whose removal leaves it infeasible is removed for good (a deletion filter with
   dual-support shrinking, Chinneck & Dravnieks 1991): floating point can blur a support.
3. **Next.** The set's targets are dropped (their band rows freed) and the LP is re-solved
   from its basis, until the remaining targets are feasible, ``max_sets`` sets were found or
   the time runs out (the sets found so far are returned, flagged incomplete).

Disjoint sets give a guarantee: with ``k`` sets, at least ``k`` targets (or bounds) must
change before the problem becomes feasible.

"Feasible" means the least possible largest relative miss is at most ``accuracy``, calibopt's
own tolerance for a met target (1e-8).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .highs import highs_model
from .iis_check import CheckContext, Settled, settle
from .linear_program import LinearProgram
from .misfit import MisfitInputs, scaled_matrix
from .sifting import SiftedMisfit

__all__ = ["ConflictSearch", "RawConflict", "find_conflicts"]

ENGINES = ("dual", "highs")
_INF = np.inf
SUPPORT_RTOL = 1e-9
"""A dual (reduced cost) counts as non-zero above this share of the largest dual (of the
products that form it); rounding leaves ~1e-16 of it."""


@dataclass
class RawConflict:
    """One irreducible infeasible subset, by positions.

    Attributes
    ----------
    rows : ndarray of int
        Target positions, sorted.
    direction : ndarray of int
        Per row, ``+1`` when the target is too high for the rest of the set (its estimate
        would have to fall short of it) and ``-1`` when it is too low.
    lower, upper : ndarray of int
        Units whose lower (upper) weight bound belongs to the set.
    misfit : float
        The least possible largest relative miss among the set's targets with only the set's
        bounds: how far apart they are.
    irreducible : bool or None
        Verified (True): the set is infeasible and dropping any one of its targets, or any of
        its checked bounds, makes it feasible; False when the time ran out while reducing it
        (an infeasible set, maybe not minimal); None when not checked.
    method : str
        ``"dual vertex"``, ``"highs iis"`` or ``"deletion filter"``.
    seconds : float
        When it was found, from the start of the search.
    bound_classes, bounds_checked : int
        The set's bounds merged over identical columns, and how many of those were checked
        one by one (all up to :data:`BOUND_CHECKS`, a spread sample beyond).
    """

    rows: np.ndarray
    direction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    misfit: float
    irreducible: bool | None
    method: str
    seconds: float
    bound_classes: int = 0
    bounds_checked: int = 0


@dataclass
class ConflictSearch:
    """What :func:`find_conflicts` found.

    Attributes
    ----------
    conflicts : list of RawConflict
    feasible : bool
        The problem as given is feasible (no conflict).
    complete : bool
        The targets left after dropping every set's targets are feasible: every conflict
        intersects some returned set.
    stop_reason : str
        ``"feasible"``, ``"complete"``, ``"max_sets"``, ``"time_limit"`` or ``"solver"``.
    misfit : float
        ``t*`` of the whole problem: the least possible largest relative miss.
    seconds, first_seconds : float
        Total time, and time to the first set (NaN when none).
    lp_solves : int
    notes : list of str
    """

    conflicts: list[RawConflict]
    feasible: bool
    complete: bool
    stop_reason: str
    misfit: float
    seconds: float
    first_seconds: float
    lp_solves: int
    notes: list[str] = field(default_factory=list)


def _dual_candidate(
    ctx: CheckContext, solver: SiftedMisfit, sol: Any, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows in the support of the basic dual solution, with the bounds it may use.

    The rows are those whose dual is not rounding noise. Of their units' bounds, those the
    solution sits on are kept (complementary slackness: a bound not attained has a zero
    reduced cost); the check on the small system then keeps only those in its own dual
    support (:meth:`Subsystem.filter`), which is better conditioned than thresholding tiny
    reduced costs here.
    """
    y = np.where(active, sol.row_dual[: solver.m], 0.0)
    big = float(np.max(np.abs(y), initial=0.0))
    rows = np.flatnonzero(np.abs(y) > SUPPORT_RTOL * max(big, 1e-300))
    direction = np.where(y[rows] > 0, 1, -1)
    touched = np.unique(ctx.X[rows].indices)
    x = sol.x[touched]
    xlo, xhi = ctx.xlo[touched], ctx.xhi[touched]
    fl, fu = np.isfinite(xlo), np.isfinite(xhi)
    lower = touched[fl][x[fl] <= xlo[fl] + 1e-9 * (1.0 + np.abs(xlo[fl]))]
    upper = touched[fu][x[fu] >= xhi[fu] - 1e-9 * (1.0 + np.abs(xhi[fu]))]
    return rows, direction, lower, upper


def _highs_candidate(
    ctx: CheckContext, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """HiGHS's IIS (``getIis``, irreducible strategy) of a feasibility system."""
    import highspy

    A = scaled_matrix(ctx.X, ctx.scale, ctx.col_scale, rows=rows)
    n = A.shape[1]
    clo = np.full(n, -_INF)
    chi = np.full(n, _INF)
    clo[lower] = ctx.xlo[lower]
    chi[upper] = ctx.xhi[upper]
    lp = LinearProgram(np.zeros(n), clo, chi, A, ctx.lo[rows], ctx.hi[rows])
    h = highs_model(
        lp,
        options={
            "primal_feasibility_tolerance": 1e-9,
            "iis_strategy": int(highspy.IisStrategy.kIisStrategyIrreducible),
            "time_limit": float(max(ctx.left(), 1e-3)),
        },
    )
    ctx.solves += 1
    status, iis = h.getIis()
    if status != highspy.HighsStatus.kOk or not iis.valid_ or len(iis.row_index_) == 0:
        return None
    B = highspy.IisBoundStatus
    cols = np.asarray(iis.col_index_, dtype=np.int64)
    cb = np.asarray([int(b) for b in iis.col_bound_], dtype=np.int64)
    low = cols[np.isin(cb, [int(B.kIisBoundStatusLower), int(B.kIisBoundStatusBoxed)])]
    up = cols[np.isin(cb, [int(B.kIisBoundStatusUpper), int(B.kIisBoundStatusBoxed)])]
    return np.sort(rows[np.asarray(iis.row_index_, dtype=np.int64)]), low, up


def _candidate(
    ctx: CheckContext, solver: SiftedMisfit, sol: Any, active: np.ndarray, engine: str, verify: bool
) -> tuple[Settled | None, np.ndarray, str | None]:
    """The next set: settled from the dual support (widened if rounding blurred it)."""
    rows, direction, lower, upper = _dual_candidate(ctx, solver, sol, active)
    if rows.size == 0:
        return None, direction, "the misfit LP returned no dual certificate; search stopped"
    method = "dual vertex"
    if engine == "highs":
        n = solver.n
        cand = _highs_candidate(ctx, np.flatnonzero(active), np.arange(n), np.arange(n))
        if cand is not None:
            rows, lower, upper = cand
            direction = np.where(sol.row_dual[rows] > 0, 1, -1)
            method = "highs iis"
    settled = settle(ctx, rows, lower, upper, method, verify)
    if settled is None:
        # every row with a non-zero dual and every finite bound of the units they touch
        y = np.where(active, sol.row_dual[: solver.m], 0.0)
        rows = np.flatnonzero(y != 0)
        direction = np.where(y[rows] > 0, 1, -1)
        touched = np.unique(ctx.X[rows].indices)
        settled = settle(
            ctx,
            rows,
            touched[np.isfinite(ctx.xlo[touched])],
            touched[np.isfinite(ctx.xhi[touched])],
            "deletion filter",
            verify,
        )
        if settled is None:
            note = (
                f"the dual support ({rows.size} targets) of the misfit LP is not infeasible on "
                f"its own, even with every bound of its units (rounding); search stopped"
            )
            return None, direction, note
    sign = dict(zip(rows.tolist(), direction.tolist()))
    dirs = np.array([sign.get(int(j), 1) for j in settled.rows], dtype=np.int64)
    return settled, dirs, None


def find_conflicts(
    X: sp.spmatrix,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    wlo: np.ndarray,
    whi: np.ndarray,
    scale: np.ndarray,
    *,
    col_scale: np.ndarray | None = None,
    max_sets: int | None = None,
    time_limit: float | None = None,
    accuracy: float = 1e-8,
    engine: str = "dual",
    verify: bool = True,
    callback: Any = None,
) -> ConflictSearch:
    """Find irreducible infeasible subsets, disjoint in their targets (module docstring).

    Parameters
    ----------
    X, band_lo, band_hi, wlo, whi
        The system: ``band_lo <= X w <= band_hi`` and ``wlo <= w <= whi``.
    scale
        ``s_j > 0``: misses are relative to ``s_j``.
    col_scale
        ``c_i > 0`` (default 1): the LPs work in ``w / c``.
    max_sets
        Stop after this many sets (None: all).
    time_limit
        Seconds for the whole search (None: no limit); the sets found so far are returned.
    accuracy
        Largest relative miss that still counts as met.
    engine
        ``"dual"`` (a basic dual solution of the misfit LP) or ``"highs"`` (HiGHS's IIS of
        the feasibility LP) for the candidates; both are verified.
    verify
        Check each set (infeasible, each one-smaller subset feasible) and refine it if needed.
    callback
        Called with each :class:`RawConflict` as it is found.
    """
    t0 = time.perf_counter()
    X = sp.csr_matrix(X)
    m, n = X.shape
    s = np.asarray(scale, dtype=np.float64)
    c = np.ones(n) if col_scale is None else np.asarray(col_scale, dtype=np.float64)
    deadline = t0 + (np.inf if time_limit is None else float(time_limit))
    ctx = CheckContext(
        X,
        np.asarray(band_lo, float) / s,
        np.asarray(band_hi, float) / s,
        np.asarray(wlo, float) / c,
        np.asarray(whi, float) / c,
        s,
        c,
        float(accuracy),
        deadline,
    )
    solver = SiftedMisfit(MisfitInputs(X, band_lo, band_hi, wlo, whi, s, c))
    active = np.ones(m, bool)
    found: list[RawConflict] = []
    notes: list[str] = []
    misfit = float("nan")
    first = float("nan")
    stop = "complete"
    while True:
        if ctx.left() <= 0:
            stop = "time_limit"
            break
        sol = solver.solve(time_limit=None if time_limit is None else ctx.left())
        ctx.solves += 1
        if not sol.optimal:
            stop = "time_limit" if ctx.left() <= 0 else "solver"
            if stop == "solver":
                notes.append(f"the misfit LP stopped: {sol.status}")
            break
        if np.isnan(misfit):
            misfit = sol.value
        if sol.value <= accuracy:
            stop = "feasible" if not found else "complete"
            break
        settled, dirs, note = _candidate(ctx, solver, sol, active, engine, verify)
        if settled is None:
            notes.append(note)
            stop = "solver"
            break
        conflict = RawConflict(
            settled.rows,
            dirs,
            settled.lower,
            settled.upper,
            settled.misfit,
            settled.irreducible,
            settled.method,
            time.perf_counter() - t0,
            settled.bound_classes,
            settled.bounds_checked,
        )
        rows_s, irreducible = settled.rows, settled.irreducible
        found.append(conflict)
        if len(found) == 1:
            first = conflict.seconds
        if callback is not None:
            callback(conflict)
        solver.free_rows(rows_s)
        active[rows_s] = False
        if irreducible is not True and ctx.left() <= 0:
            stop = "time_limit"
            break
        if max_sets is not None and len(found) >= max_sets:
            stop = "max_sets"
            break
    return ConflictSearch(
        conflicts=found,
        feasible=stop == "feasible",
        complete=stop in ("feasible", "complete"),
        stop_reason=stop,
        misfit=misfit,
        seconds=time.perf_counter() - t0,
        first_seconds=first,
        lp_solves=ctx.solves,
        notes=notes,
    )
