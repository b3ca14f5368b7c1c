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
2. **Check.** The candidate is verified on its own small system -- only its rows, only the
   columns they touch, only its bounds, identical columns merged (which is exact: a merged
   column's bound is the sum of its members' bounds, and dropping one member's bound frees
   the merged one): it must be infeasible and each one-smaller subset feasible. Floating
   point can blur a dual support; then HiGHS's IIS facility is tried on the candidate's small
   system, and a deletion filter (Chinneck & Dravnieks 1991) settles it.
3. **Next.** The set's targets are dropped (their band rows freed) and the LP is re-solved
   from its basis, until the remaining targets are feasible, ``max_sets`` sets were found or
   the time runs out (the sets found so far are returned, flagged incomplete).

Disjoint sets give a guarantee: with ``k`` sets, at least ``k`` targets (or bounds) must
change before the problem becomes feasible.

"Feasible" means every miss is at most ``accuracy`` (relative, summed over a set's targets by
the checks and maxed by the LP), calibopt's own tolerance for a met target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from .highs import highs_model
from .linear_program import LinearProgram
from .misfit import (
    MisfitInputs,
    SiftedMisfit,
    highs_misfit,
    misfit_model,
    scaled_matrix,
    solve_misfit,
)

__all__ = ["ConflictSearch", "RawConflict", "find_conflicts"]

ENGINES = ("dual", "highs")
_INF = np.inf
SUPPORT_RTOL = 1e-9
"""A dual (reduced cost) counts as non-zero above this share of the largest dual (of the
products that form it); rounding leaves ~1e-16 of it."""
BOUND_CHECKS = 100
"""Most merged bounds whose removal is checked one by one (a spread sample beyond)."""


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


@dataclass
class _Context:
    """The scaled system shared by every LP of one search."""

    X: sp.csr_matrix
    lo: np.ndarray  # scaled bands (lo / s, hi / s)
    hi: np.ndarray
    xlo: np.ndarray  # scaled bounds (wlo / c, whi / c)
    xhi: np.ndarray
    scale: np.ndarray
    col_scale: np.ndarray
    accuracy: float
    deadline: float
    solves: int = 0

    def left(self) -> float:
        return self.deadline - time.perf_counter()


class _Subsystem:
    """The misfit LP of some rows with only some bounds, identical columns merged.

    Elements are the rows and the merged bounds (``("L", c)``, ``("U", c)``); dropping one
    frees it. ``value()`` re-solves from the current basis.
    """

    def __init__(
        self, ctx: _Context, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> None:
        self.ctx, self.rows = ctx, np.asarray(rows)
        Xr = sp.csc_matrix(ctx.X[self.rows])
        Xr.sort_indices()
        n = Xr.shape[1]
        flag_l = np.zeros(n, bool)
        flag_u = np.zeros(n, bool)
        flag_l[lower] = True
        flag_u[upper] = True
        labels, reps, big = _merge_columns(Xr, flag_l, flag_u)
        # class column, in the scaled rows, normalised to a largest entry of 1; its variable
        # is y_c = sum_i mult_i x_i over the class (x = w / col_scale)
        Ac = sp.csc_matrix(sp.diags(1.0 / ctx.scale[self.rows]) @ Xr[:, reps])
        Ac.sort_indices()
        top = np.ones(reps.size)
        nz = np.diff(Ac.indptr) > 0
        if Ac.nnz:
            top[nz] = np.maximum.reduceat(np.abs(Ac.data), Ac.indptr[:-1][nz])
        Ac = sp.csc_matrix(Ac @ sp.diags(1.0 / top))
        mult = big * ctx.col_scale * top[np.maximum(labels, 0)] / big[reps][np.maximum(labels, 0)]
        self.labels = labels
        k = reps.size
        live = labels >= 0
        lo_c = np.full(k, -_INF)
        hi_c = np.full(k, _INF)
        has_l = np.zeros(k, bool)
        has_u = np.zeros(k, bool)
        has_l[labels[live & flag_l]] = True
        has_u[labels[live & flag_u]] = True
        lo_c[has_l] = 0.0
        hi_c[has_u] = 0.0
        np.add.at(lo_c, labels[live & flag_l], (mult * ctx.xlo)[live & flag_l])
        np.add.at(hi_c, labels[live & flag_u], (mult * ctx.xhi)[live & flag_u])
        self.col_lo, self.col_hi = lo_c, hi_c
        self.cur_lo, self.cur_hi = lo_c.copy(), hi_c.copy()
        self.row_on = np.ones(self.rows.size, bool)
        self.model = misfit_model(
            Ac, ctx.lo[self.rows], ctx.hi[self.rows], lo_c, hi_c, np.ones(self.rows.size)
        )
        self.h = highs_misfit(self.model, time_limit=max(ctx.left(), 1e-3))
        self.elements = [("R", j) for j in range(self.rows.size)]
        self.elements += [("L", c) for c in np.flatnonzero(has_l)]
        self.elements += [("U", c) for c in np.flatnonzero(has_u)]
        self.last: Any = None
        self.base: Any = None
        self.bounds_checked = 0

    def set(self, element: tuple[str, int], on: bool) -> None:
        """Restore (``on``) or free one element."""
        kind, i = element
        if kind == "R":
            self.row_on[i] = on
            self._apply_row(int(i))
            return
        if kind == "L":
            self.cur_lo[i] = self.col_lo[i] if on else -_INF
        else:
            self.cur_hi[i] = self.col_hi[i] if on else _INF
        self.h.changeColBounds(int(i), float(self.cur_lo[i]), float(self.cur_hi[i]))

    def _apply_row(self, i: int) -> None:
        j = self.rows[i]
        lo, hi = (self.ctx.lo[j], self.ctx.hi[j]) if self.row_on[i] else (-_INF, _INF)
        self.h.changeRowBounds(i, float(lo), float(hi))

    def value(self) -> float:
        """``t*`` of the current system (NaN when the time ran out).

        HiGHS's primal simplex can misreport a status on a warm start; the system is then
        rebuilt and solved by the dual simplex method.
        """
        for attempt in range(2):
            self.ctx.solves += 1
            sol = solve_misfit(self.h, time_limit=max(self.ctx.left(), 1e-3))
            if sol.optimal or self.ctx.left() <= 0:
                break
            if attempt == 0:
                self.h = highs_misfit(
                    self.model, time_limit=max(self.ctx.left(), 1e-3), simplex_strategy=1
                )
                for i in np.flatnonzero(~self.row_on):
                    self._apply_row(int(i))
                for c in np.flatnonzero(
                    (self.cur_lo != self.col_lo) | (self.cur_hi != self.col_hi)
                ):
                    self.h.changeColBounds(int(c), float(self.cur_lo[c]), float(self.cur_hi[c]))
        self.last = sol
        return sol.value if sol.optimal else float("nan")

    def infeasible(self) -> bool | None:
        """Whether the current system is infeasible (None when the time ran out)."""
        v = self.value()
        return None if np.isnan(v) else bool(v > self.ctx.accuracy)

    def keep_basis(self) -> None:
        """Remember the current (optimal, infeasible-system) basis as the base of tests."""
        self.base = self.h.getBasis()

    def back_to_base(self) -> None:
        """Return to the remembered basis: with every tested element restored it is optimal,
        and relaxing one element from it keeps it primal feasible (a warm primal start)."""
        if self.base is not None:
            self.h.setBasis(self.base)

    def support(self, on: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The elements of ``on`` in the support of the last (infeasible) solution's duals."""
        sol = self.last
        if sol is None or sol.row_dual is None:
            return on
        k = self.rows.size
        y = sol.row_dual[:k]
        z = sol.col_dual[: self.col_lo.size]
        tiny_y = 1e-12 * max(float(np.max(np.abs(y), initial=0.0)), 1e-300)
        A = self.model.lp.A[:k, : self.col_lo.size]
        ref = np.abs(A).T @ np.abs(y)
        keep = []
        for el in on:
            kind, i = el
            if kind == "R":
                used = abs(y[i]) > tiny_y
            elif kind == "L":
                used = z[i] > 1e-12 * max(ref[i], 1e-300)
            else:
                used = z[i] < -1e-12 * max(ref[i], 1e-300)
            if used:
                keep.append(el)
        return keep

    def _shrink(self, on: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """Free the elements outside the dual support when the rest stays infeasible."""
        keep = self.support(on)
        if len(keep) == len(on):
            return on
        keep_set = set(keep)
        dropped = [el for el in on if el not in keep_set]
        for el in dropped:
            self.set(el, False)
        if self.infeasible():
            self.keep_basis()
            return keep
        for el in dropped:
            self.set(el, True)
        self.back_to_base()
        self.infeasible()  # restore self.last to the full system
        return on

    def filter(self, bound_checks: int = BOUND_CHECKS) -> tuple[list[tuple[str, int]], bool | None]:
        """Deletion filter with dual-support shrinking (Chinneck's sensitivity filter).

        Starts from an infeasible system (``value()`` just solved). Every row left is tested;
        the merged bounds are tested one by one up to ``bound_checks`` of them, else on a
        spread sample of that size (``self.bounds_checked`` says how many were). Returns the
        elements kept (an IIS when every element was tested) and True, or the elements still
        on and None when the time ran out.
        """
        self.keep_basis()
        on = self._shrink(list(self.elements))
        rows = [el for el in on if el[0] == "R"]
        bounds = [el for el in on if el[0] != "R"]
        if len(bounds) > bound_checks:
            pick = np.unique(np.linspace(0, len(bounds) - 1, bound_checks).round().astype(int))
            sample = [bounds[i] for i in pick]
        else:
            sample = list(bounds)
        todo = rows + sample
        necessary: set[tuple[str, int]] = set()
        alive = set(on)
        while todo:
            trial = todo.pop(0)
            if trial not in alive:
                continue
            self.set(trial, False)
            still = self.infeasible()
            if still is None:
                self.set(trial, True)
                return [el for el in on if el in alive], None
            if still:
                alive.discard(trial)
                self.keep_basis()
                kept = self._shrink([el for el in on if el in alive])
                alive = set(kept)
            else:
                self.set(trial, True)
                self.back_to_base()
                necessary.add(trial)
        self.bounds_checked = sum(el[0] != "R" for el in necessary)
        return [el for el in on if el in alive], True

    def to_units(self, kept: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows (positions in X) and units of the kept elements."""
        rows = np.sort(self.rows[[i for kind, i in kept if kind == "R"]])
        cls_l = np.array([i for kind, i in kept if kind == "L"], dtype=np.int64)
        cls_u = np.array([i for kind, i in kept if kind == "U"], dtype=np.int64)
        low = np.flatnonzero(np.isin(self.labels, cls_l) & np.isfinite(self.ctx.xlo))
        up = np.flatnonzero(np.isin(self.labels, cls_u) & np.isfinite(self.ctx.xhi))
        return rows, low, up


def _merge_columns(
    A: sp.csc_matrix, flag_l: np.ndarray, flag_u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes of columns equal up to a positive factor, with equal bound flags.

    Columns are compared after division by their largest magnitude (exact for columns whose
    entries are one value times fixed ratios, e.g. one variable in nested geographies),
    through two random projections, their non-zero count and the flags.

    Returns ``labels`` (-1 for empty columns), the first column of each class and each
    column's factor ``big_i = max |A_i|`` (so ``A_i = big_i a_class``).
    """
    n = A.shape[1]
    counts = np.diff(A.indptr)
    live = counts > 0
    mult = np.ones(n)
    absd = np.abs(A.data)
    starts = A.indptr[:-1][live]
    mult[live] = np.maximum.reduceat(absd, starts) if starts.size else 1.0
    rng = np.random.default_rng(1990)
    r1 = rng.standard_normal(A.shape[0])
    r2 = rng.standard_normal(A.shape[0])
    norm = A.data / np.repeat(mult, counts)
    h1 = np.zeros(n)
    h2 = np.zeros(n)
    if starts.size:
        h1[live] = np.add.reduceat(norm * r1[A.indices], starts)
        h2[live] = np.add.reduceat(norm * r2[A.indices], starts)
    labels = np.full(n, -1, dtype=np.int64)
    idx = np.flatnonzero(live)
    if idx.size == 0:
        return labels, np.zeros(0, dtype=np.int64), mult
    order = np.lexsort((flag_u[idx], flag_l[idx], h2[idx], h1[idx], counts[idx]))
    keys = np.stack([counts[idx], h1[idx], h2[idx], flag_l[idx], flag_u[idx]])[:, order]
    new_class = np.r_[True, np.any(keys[:, 1:] != keys[:, :-1], axis=0)]
    codes = np.empty(idx.size, dtype=np.int64)
    codes[order] = np.cumsum(new_class) - 1
    labels[idx] = codes
    _, first = np.unique(codes, return_index=True)
    return labels, idx[first], mult


def _dual_candidate(
    ctx: _Context, solver: SiftedMisfit, sol: Any, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows in the support of the basic dual solution, with the bounds it may use.

    The rows are those whose dual is not rounding noise. Of their units' bounds, those the
    solution sits on are kept (complementary slackness: a bound not attained has a zero
    reduced cost); the check on the small system then keeps only those in its own dual
    support (:meth:`_Subsystem.filter`), which is better conditioned than thresholding tiny
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
    ctx: _Context, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray
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


@dataclass
class _Settled:
    rows: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    misfit: float
    irreducible: bool | None
    method: str
    bound_classes: int = 0
    bounds_checked: int = 0


def _settle(
    ctx: _Context,
    rows: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    method: str,
    verify: bool,
) -> _Settled | None:
    """Verify a candidate on its own small system; reduce it by the filter if it is not an IIS.

    Returns None when the candidate is feasible on its own (a dual support blurred by
    rounding).
    """
    sub = _Subsystem(ctx, rows, lower, upper)
    infeasible = sub.infeasible()
    n_bounds = sum(el[0] != "R" for el in sub.elements)
    if infeasible is None:
        return _Settled(rows, lower, upper, float("nan"), None, method, n_bounds)
    if not infeasible:
        return None
    misfit = sub.last.value
    if not verify:
        return _Settled(rows, lower, upper, misfit, None, method, n_bounds)
    kept, done = sub.filter()
    if done and len(kept) == len(sub.elements):
        return _Settled(rows, lower, upper, misfit, True, method, n_bounds, sub.bounds_checked)
    r, lo_u, up_u = sub.to_units(kept)
    n_kept = sum(el[0] != "R" for el in kept)
    # the dual vertex named the rows; the small system's own duals named the bounds
    how = method if r.size == rows.size else "deletion filter"
    if not done:
        return _Settled(r, lo_u, up_u, misfit, False, how, n_kept)
    final = _Subsystem(ctx, r, lo_u, up_u)
    final.infeasible()
    return _Settled(r, lo_u, up_u, final.last.value, True, how, n_kept, sub.bounds_checked)


def _candidate(
    ctx: _Context, solver: SiftedMisfit, sol: Any, active: np.ndarray, engine: str, verify: bool
) -> tuple[_Settled | None, np.ndarray, str | None]:
    """The next set: settled from the dual support (widened if rounding blurred it)."""
    rows, direction, lower, upper = _dual_candidate(ctx, solver, sol, active)
    method = "dual vertex"
    if engine == "highs":
        n = solver.n
        cand = _highs_candidate(ctx, np.flatnonzero(active), np.arange(n), np.arange(n))
        if cand is not None:
            rows, lower, upper = cand
            direction = np.where(sol.row_dual[rows] > 0, 1, -1)
            method = "highs iis"
    settled = _settle(ctx, rows, lower, upper, method, verify)
    if settled is None:
        # every row with a non-zero dual and every finite bound of the units they touch
        y = np.where(active, sol.row_dual[: solver.m], 0.0)
        rows = np.flatnonzero(y != 0)
        direction = np.where(y[rows] > 0, 1, -1)
        touched = np.unique(ctx.X[rows].indices)
        settled = _settle(
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
    ctx = _Context(
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
