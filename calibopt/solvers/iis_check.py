"""Checking a candidate conflicting set on its own small system, and reducing it if needed.

A candidate (rows, lower and upper bounds of some units) is checked on the misfit LP of only
its rows, only the columns they touch and only its bounds, identical columns merged (exact:
a merged column's bound is the sum of its members', and dropping one member's bound frees the
merged one). :meth:`Subsystem.filter` is a deletion filter with dual-support shrinking
(Chinneck & Dravnieks 1991): every row is tested, the merged bounds up to
:data:`BOUND_CHECKS` of them (a spread sample beyond). Used by :mod:`calibopt.solvers.iis`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from .misfit import highs_misfit, misfit_model, solve_misfit

__all__ = ["BOUND_CHECKS", "CheckContext", "Settled", "Subsystem", "merge_columns", "settle"]

_INF = np.inf
BOUND_CHECKS = 100
"""Most merged bounds whose removal is checked one by one (a spread sample beyond)."""


@dataclass
class CheckContext:
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


class Subsystem:
    """The misfit LP of some rows with only some bounds, identical columns merged.

    Elements are the rows and the merged bounds (``("L", c)``, ``("U", c)``); dropping one
    frees it. ``value()`` re-solves from the current basis.
    """

    def __init__(
        self, ctx: CheckContext, rows: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> None:
        self.ctx, self.rows = ctx, np.asarray(rows)
        rows_x = ctx.X[self.rows]
        self.cols = cols = np.unique(rows_x.indices)  # the units these rows touch
        Xr = sp.csc_matrix(rows_x[:, cols])
        Xr.sort_indices()
        flag_l = np.isin(cols, lower)
        flag_u = np.isin(cols, upper)
        labels, reps, big = merge_columns(Xr, flag_l, flag_u)
        # class column, in the scaled rows, normalised to a largest entry of 1; its variable
        # is y_c = sum_i mult_i x_i over the class (x = w / col_scale)
        Ac = sp.csc_matrix(sp.diags(1.0 / ctx.scale[self.rows]) @ Xr[:, reps])
        Ac.sort_indices()
        top = np.ones(reps.size)
        nz = np.diff(Ac.indptr) > 0
        if Ac.nnz:
            top[nz] = np.maximum.reduceat(np.abs(Ac.data), Ac.indptr[:-1][nz])
        Ac = sp.csc_matrix(Ac @ sp.diags(1.0 / top))
        cls = np.maximum(labels, 0)
        mult = big * ctx.col_scale[cols] * top[cls] / big[reps][cls]
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
        np.add.at(lo_c, labels[live & flag_l], (mult * ctx.xlo[cols])[live & flag_l])
        np.add.at(hi_c, labels[live & flag_u], (mult * ctx.xhi[cols])[live & flag_u])
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
        low = self.cols[np.isin(self.labels, cls_l)]
        up = self.cols[np.isin(self.labels, cls_u)]
        return rows, low[np.isfinite(self.ctx.xlo[low])], up[np.isfinite(self.ctx.xhi[up])]


def merge_columns(
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


@dataclass
class Settled:
    rows: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    misfit: float
    irreducible: bool | None
    method: str
    bound_classes: int = 0
    bounds_checked: int = 0


def settle(
    ctx: CheckContext,
    rows: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    method: str,
    verify: bool,
) -> Settled | None:
    """Verify a candidate on its own small system; reduce it by the filter if it is not an IIS.

    Returns None when the candidate is feasible on its own (a dual support blurred by
    rounding).
    """
    sub = Subsystem(ctx, rows, lower, upper)
    infeasible = sub.infeasible()
    n_bounds = sum(el[0] != "R" for el in sub.elements)
    if infeasible is None:
        return Settled(rows, lower, upper, float("nan"), None, method, n_bounds)
    if not infeasible:
        return None
    misfit = sub.last.value
    if not verify:
        return Settled(rows, lower, upper, misfit, None, method, n_bounds)
    kept, done = sub.filter()
    if done and len(kept) == len(sub.elements):
        return Settled(rows, lower, upper, misfit, True, method, n_bounds, sub.bounds_checked)
    r, lo_u, up_u = sub.to_units(kept)
    n_kept = sum(el[0] != "R" for el in kept)
    # the dual vertex named the rows; the small system's own duals named the bounds
    how = method if r.size == rows.size else "deletion filter"
    if not done:
        return Settled(r, lo_u, up_u, misfit, False, how, n_kept)
    final = Subsystem(ctx, r, lo_u, up_u)
    final.infeasible()
    return Settled(r, lo_u, up_u, final.last.value, True, how, n_kept, sub.bounds_checked)
