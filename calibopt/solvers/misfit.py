"""The misfit LP: the least amount by which targets must miss their bands within the bounds.

With scaled weights ``x_i = w_i / c_i`` (``c_i`` a column scale, e.g. the design weight), the
relative scale ``s_j`` of each target (``|b_j|``, or the row's gross activity for a zero
target) and ``A = diag(1 / s) X diag(c)``, the program is::

    objective="max":  min  t
                      s.t. lo_j / s_j <= A_j x + e_j <= hi_j / s_j      (band rows, every j)
                           -omega_j t <= e_j <= omega_j t                (link rows)
                           wlo_i / c_i <= x_i <= whi_i / c_i,  t >= 0

    objective="sum":  min  sum_j k_j (p_j + q_j)
                      s.t. lo_j / s_j <= A_j x + p_j - q_j <= hi_j / s_j,  p, q >= 0

``e_j`` (``p_j - q_j``) is target ``j``'s miss outside its band, relative to ``s_j``; a *hard*
target has ``e_j = 0``. The optimum ``t*`` of the first program is the least possible largest
relative miss (weighted by ``1 / omega_j``); 0 exactly when the targets are feasible.

The same program certifies infeasibility: at a basic optimal solution with ``t* > 0`` the
duals of the band rows and the reduced costs of ``x`` form a vertex of the alternative
polyhedron, whose support is an irreducible infeasible subset (Gleeson & Ryan 1990; see
:mod:`calibopt.solvers.iis`). Both the ``least-misfit`` method and the conflict search use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..fit import target_scale
from ..problem import CalibrationProblem
from .highs import highs_model, solve_highs
from .linear_program import LinearProgram

__all__ = [
    "MisfitInputs",
    "MisfitModel",
    "MisfitSolution",
    "SiftedMisfit",
    "misfit_inputs",
    "misfit_model",
    "scaled_matrix",
    "solve_misfit",
]

OBJECTIVES = ("max", "sum")

HIGHS_OPTIONS: dict[str, Any] = {
    "solver": "simplex",
    "simplex_strategy": 4,
    "primal_feasibility_tolerance": 1e-9,
    "dual_feasibility_tolerance": 1e-9,
    "small_matrix_value": 1e-14,
}
"""HiGHS settings of the misfit LP: the primal simplex method (a basic solution, whose duals
are a vertex; freeing a row or adding a column keeps the basis primal feasible, so re-solves
start where the last one ended), feasibility tolerances of 1e-9 on rows in relative units, and
no matrix entry dropped as negligible above 1e-14 (HiGHS drops entries below 1e-9 by default,
which would silently change a row whose coefficients are small next to its variables)."""


def scaled_matrix(
    X: sp.spmatrix, scale: np.ndarray, col_scale: np.ndarray, rows: np.ndarray | None = None
) -> sp.csc_matrix:
    """``diag(1 / scale) X diag(col_scale)`` (optionally only some rows), CSC, sorted."""
    Xr = X if rows is None else sp.csr_matrix(X)[rows]
    A = sp.csc_matrix(Xr, dtype=np.float64, copy=True)
    A.sort_indices()
    s = scale if rows is None else scale[rows]
    A.data *= np.repeat(col_scale, np.diff(A.indptr)) / s[A.indices]
    return A


@dataclass
class MisfitModel:
    """The misfit LP of some targets, and how to read its solutions.

    Attributes
    ----------
    lp : LinearProgram
        Columns ``x`` (``n_units``), then ``e`` (``max``) or ``p, q`` (``sum``), then ``t``
        (``max``); rows: the ``m`` band rows first.
    n_units, n_targets : int
    col_scale, scale : ndarray
        ``c`` and ``s`` of the module docstring.
    objective : str
    """

    lp: LinearProgram
    n_units: int
    n_targets: int
    col_scale: np.ndarray
    scale: np.ndarray
    objective: str

    def weights(self, x: np.ndarray) -> np.ndarray:
        """Weights ``w = c * x`` from a solution."""
        return x[: self.n_units] * self.col_scale

    def misses(self, x: np.ndarray) -> np.ndarray:
        """Per target, the relative miss ``e_j`` of a solution (signed)."""
        return _misses(x, self.n_units, self.n_targets, self.objective)


def _misses(x: np.ndarray, n: int, m: int, objective: str) -> np.ndarray:
    """The misses in a solution laid out as weights (``n``), then ``e`` or ``p, q``."""
    if objective == "max":
        return x[n : n + m].copy()
    return x[n : n + m] - x[n + m : n + 2 * m]


@dataclass
class MisfitInputs:
    """A problem's system for the misfit LP: bands, weight bounds, miss and column scales."""

    X: sp.spmatrix
    band_lo: np.ndarray
    band_hi: np.ndarray
    wlo: np.ndarray
    whi: np.ndarray
    scale: np.ndarray
    col_scale: np.ndarray


def misfit_inputs(problem: CalibrationProblem, *, sparse: bool = False) -> MisfitInputs:
    """The system of ``problem``: its bands, its effective weight bounds (with ``sparse``, the
    hull ``[min(lo, 0), max(hi, 0)]`` of the sparse methods, units without an admissible
    weight at 0), the miss scale ``s_j`` of :func:`calibopt.fit.target_scale` at the design
    weights, and the design weights (1 where 0) as column scale."""
    lo, hi = problem.weight_bounds()
    if sparse:
        empty = lo > hi
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        lo[empty] = hi[empty] = 0.0
    band_lo, band_hi = problem.target_bands()
    d = problem.initial_weights
    s = target_scale(problem, d)
    return MisfitInputs(
        problem.X,
        band_lo,
        band_hi,
        lo,
        hi,
        np.where(s > 0, s, 1.0),
        np.where(d > 0, d, 1.0),
    )


def misfit_model(
    X: sp.spmatrix,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    wlo: np.ndarray,
    whi: np.ndarray,
    scale: np.ndarray,
    *,
    col_scale: np.ndarray | None = None,
    objective: str = "max",
    weights: np.ndarray | None = None,
    hard: np.ndarray | None = None,
) -> MisfitModel:
    """Build the misfit LP (see the module docstring).

    Parameters
    ----------
    X
        Targets x units, any sparse format.
    band_lo, band_hi
        The band of each target (``b -/+ tol |b|``).
    wlo, whi
        Weight bounds (infinite entries are absent bounds).
    scale
        ``s_j > 0``: a miss is measured in units of ``s_j``.
    col_scale
        ``c_i > 0`` (default 1): the LP works in ``w / c``, for conditioning.
    objective
        ``"max"`` (the largest weighted relative miss) or ``"sum"`` (the weighted total).
    weights
        Per target importance ``k_j > 0`` (default 1): ``max`` bounds ``|e_j| <= t / k_j``,
        ``sum`` minimises ``sum k_j |e_j|``.
    hard
        Boolean mask of targets that must stay within their band (``e_j = 0``).
    """
    m, n = X.shape
    c = np.ones(n) if col_scale is None else np.asarray(col_scale, dtype=np.float64)
    k = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    fixed = np.zeros(m, bool) if hard is None else np.asarray(hard, dtype=bool)
    s = np.asarray(scale, dtype=np.float64)
    A = scaled_matrix(X, s, c)
    eye = sp.identity(m, format="csc")
    lo = np.asarray(band_lo, dtype=np.float64) / s
    hi = np.asarray(band_hi, dtype=np.float64) / s
    xlo = np.asarray(wlo, dtype=np.float64) / c
    xhi = np.asarray(whi, dtype=np.float64) / c
    slack_hi = np.where(fixed, 0.0, np.inf)
    if objective == "max":
        omega = sp.csc_matrix(-(1.0 / k).reshape(-1, 1))
        zero_n = sp.csc_matrix((m, n))
        A_full = sp.vstack(
            [
                sp.hstack([A, eye, sp.csc_matrix((m, 1))]),
                sp.hstack([zero_n, eye, omega]),
                sp.hstack([zero_n, -eye, omega]),
            ],
            format="csc",
        )
        lp = LinearProgram(
            cost=np.concatenate([np.zeros(n + m), [1.0]]),
            col_lower=np.concatenate([xlo, -slack_hi, [0.0]]),
            col_upper=np.concatenate([xhi, slack_hi, [np.inf]]),
            A=A_full,
            row_lower=np.concatenate([lo, np.full(2 * m, -np.inf)]),
            row_upper=np.concatenate([hi, np.zeros(2 * m)]),
        )
    elif objective == "sum":
        lp = LinearProgram(
            cost=np.concatenate([np.zeros(n), k, k]),
            col_lower=np.concatenate([xlo, np.zeros(2 * m)]),
            col_upper=np.concatenate([xhi, slack_hi, slack_hi]),
            A=sp.hstack([A, eye, -eye], format="csc"),
            row_lower=lo,
            row_upper=hi,
        )
    else:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return MisfitModel(lp, n, m, c, s, objective)


@dataclass
class MisfitSolution:
    """One solve of a misfit LP (HiGHS).

    Attributes
    ----------
    optimal : bool
    status : str
    value : float
        The optimum (``t*`` or the weighted total), NaN without one.
    x, row_dual, col_dual : ndarray or None
        Primal values, row duals and reduced costs (HiGHS's signs: for a minimisation a
        positive row dual means the row sits at its lower bound).
    seconds : float
    iterations : int
    """

    optimal: bool
    status: str
    value: float
    x: np.ndarray | None
    row_dual: np.ndarray | None
    col_dual: np.ndarray | None
    seconds: float
    iterations: int


def highs_misfit(
    model: MisfitModel | LinearProgram, *, time_limit: float | None = None, **options: Any
) -> Any:
    """A HiGHS instance holding the misfit LP (settings :data:`HIGHS_OPTIONS`)."""
    lp = model.lp if isinstance(model, MisfitModel) else model
    opts = dict(HIGHS_OPTIONS)
    opts.update(options)
    if time_limit is not None:
        opts["time_limit"] = float(max(time_limit, 1e-3))
    return highs_model(lp, options=opts)


def solve_misfit(h: Any, *, time_limit: float | None = None) -> MisfitSolution:
    """Solve (or re-solve from the current basis) a model from :func:`highs_misfit`."""
    if time_limit is not None:
        h.setOptionValue("time_limit", float(max(time_limit, 1e-3)))
    t0 = time.perf_counter()
    out = solve_highs(h)
    seconds = time.perf_counter() - t0
    if not (out.optimal and out.x is not None):
        return MisfitSolution(
            False, out.status, float("nan"), out.x, None, None, seconds, out.iterations
        )
    sol = h.getSolution()
    row_dual = np.asarray(sol.row_dual, dtype=np.float64) if sol.dual_valid else None
    col_dual = np.asarray(sol.col_dual, dtype=np.float64) if sol.dual_valid else None
    return MisfitSolution(
        True, out.status, out.objective, out.x, row_dual, col_dual, seconds, out.iterations
    )


SIFT_MIN_UNITS = 50_000
"""From this many units (and more than 20 per target) the misfit LP is solved by sifting."""


class SiftedMisfit:
    """The misfit LP over many units, solved by sifting (column generation on the weights).

    Only a working set of weight columns is in the HiGHS model; every other weight is parked
    at a finite bound (its contribution moved into the band rows). After each solve, the
    reduced cost ``-A_i' y`` of every parked weight is priced from the band-row duals ``y``
    (one sparse product); the most improving ones join the working set and the model is
    re-solved from its basis, until none improves. The final basis is optimal for the whole
    LP, so its dual solution is a basic one (a vertex), as without sifting.

    ``system`` is the data of :func:`misfit_inputs`; the other parameters are those of
    :func:`misfit_model`; ``sift=None`` sifts when there are at least :data:`SIFT_MIN_UNITS`
    units and more than 20 per target.
    """

    def __init__(
        self,
        system: MisfitInputs,
        *,
        objective: str = "max",
        weights: np.ndarray | None = None,
        hard: np.ndarray | None = None,
        sift: bool | None = None,
        seed: int = 0,
    ) -> None:
        m, n = system.X.shape
        self.m, self.n = m, n
        self.c = np.asarray(system.col_scale, dtype=np.float64)
        self.s = np.asarray(system.scale, dtype=np.float64)
        self.A = scaled_matrix(system.X, self.s, self.c)
        self.AT = self.A.T.tocsr()
        self.lo = np.asarray(system.band_lo, dtype=np.float64) / self.s
        self.hi = np.asarray(system.band_hi, dtype=np.float64) / self.s
        self.xlo = np.asarray(system.wlo, dtype=np.float64) / self.c
        self.xhi = np.asarray(system.whi, dtype=np.float64) / self.c
        self.objective = objective
        self.k, self.hard = weights, hard
        self.row_on = np.ones(m, bool)
        # a parked weight sits at its lower bound if finite, else its upper; free ones never park
        self.park = np.where(
            np.isfinite(self.xlo), self.xlo, np.where(np.isfinite(self.xhi), self.xhi, np.nan)
        )
        free = np.isnan(self.park)
        if sift is None:
            sift = n >= SIFT_MIN_UNITS and n > 20 * m
        if sift:
            rng = np.random.default_rng(seed)
            size = min(n, 4 * m + 500)
            start = np.zeros(n, bool)
            start[rng.choice(n, size=size, replace=False)] = True
            # the largest entry of each row, so that every row can move
            big = np.abs(self.AT).argmax(axis=0)
            start[np.asarray(big).ravel()] = True
            start |= free
        else:
            start = np.ones(n, bool)
        self.working = np.flatnonzero(start)
        self.in_set = start
        self.offset = self.A @ np.where(start, 0.0, np.nan_to_num(self.park))
        self.model = misfit_model(
            self.A[:, self.working],
            self.lo - self.offset,
            self.hi - self.offset,
            self.xlo[self.working],
            self.xhi[self.working],
            np.ones(m),
            objective=objective,
            weights=weights,
            hard=hard,
        )
        self.h = highs_misfit(self.model)
        k0 = self.working.size
        self.n_extra = self.model.lp.n_cols - k0
        self.hcol = np.arange(k0)  # HiGHS column of each working weight
        self.extra = np.arange(k0, k0 + self.n_extra)
        self.rounds = 0
        self.priced = 0

    # ------------------------------------------------------------------ rows
    def _row_bounds(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on = self.row_on[rows]
        lo = np.where(on, self.lo[rows] - self.offset[rows], -np.inf)
        hi = np.where(on, self.hi[rows] - self.offset[rows], np.inf)
        return lo, hi

    def free_rows(self, rows: np.ndarray) -> None:
        """Drop targets: their band rows become free."""
        rows = np.asarray(rows, dtype=np.int32)
        self.row_on[rows] = False
        lo, hi = self._row_bounds(rows)
        self.h.changeRowsBounds(rows.size, rows, lo, hi)

    def weights(self, x: np.ndarray) -> np.ndarray:
        """Weights ``w = c * x`` from a solution of :meth:`solve`."""
        return x[: self.n] * self.c

    def misses(self, x: np.ndarray) -> np.ndarray:
        """Per target, the relative miss of a solution of :meth:`solve` (signed)."""
        return _misses(x, self.n, self.m, self.objective)

    # ------------------------------------------------------------------ solving
    def _rebuild(self, **options: Any) -> None:
        """A fresh HiGHS model of the current working set (freed rows stay free)."""
        lo, hi = self._row_bounds(np.arange(self.m))
        self.model = misfit_model(
            self.A[:, self.working],
            lo,
            hi,
            self.xlo[self.working],
            self.xhi[self.working],
            np.ones(self.m),
            objective=self.objective,
            weights=self.k,
            hard=self.hard,
        )
        self.h = highs_misfit(self.model, **options)
        k0 = self.working.size
        self.hcol = np.arange(k0)
        self.extra = np.arange(k0, k0 + self.n_extra)

    def _add(self, cols: np.ndarray) -> None:
        sub = self.A[:, cols]
        self.h.addCols(
            cols.size,
            np.zeros(cols.size),
            self.xlo[cols],
            self.xhi[cols],
            sub.nnz,
            sub.indptr[:-1].astype(np.int32),
            sub.indices.astype(np.int32),
            sub.data,
        )
        self.in_set[cols] = True
        first = self.hcol.size + self.n_extra
        self.hcol = np.concatenate([self.hcol, np.arange(first, first + cols.size)])
        self.working = np.concatenate([self.working, cols])
        contrib = sub @ self.park[cols]
        rows = np.flatnonzero(contrib)
        self.offset[rows] -= contrib[rows]
        lo, hi = self._row_bounds(rows)
        self.h.changeRowsBounds(rows.size, rows.astype(np.int32), lo, hi)

    def reduced_costs(self, y: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """``-A_i' y`` for some weight columns (all by default)."""
        if cols is None:
            return -(self.AT @ y)
        return -(self.AT[cols] @ y)

    def solve(self, time_limit: float | None = None) -> MisfitSolution:
        """Solve to optimality over every weight (sifting rounds as needed).

        The solution's ``x`` holds every weight (scaled), then the model's other columns;
        ``row_dual`` the band rows then the other rows; ``col_dual`` is None (use
        :meth:`reduced_costs`).
        """
        t0 = time.perf_counter()
        deadline = t0 + (np.inf if time_limit is None else time_limit)
        iterations = 0
        rebuilt = False
        while True:
            sol = solve_misfit(
                self.h, time_limit=None if time_limit is None else deadline - time.perf_counter()
            )
            iterations += sol.iterations
            self.rounds += 1
            if not sol.optimal and time.perf_counter() < deadline and not rebuilt:
                # HiGHS's primal simplex can misreport a warm start: rebuild, use the dual
                self._rebuild(simplex_strategy=1)
                rebuilt = True
                continue
            if not sol.optimal:
                return MisfitSolution(
                    False,
                    sol.status,
                    float("nan"),
                    None,
                    None,
                    None,
                    time.perf_counter() - t0,
                    iterations,
                )
            if self.in_set.all():
                break
            y = sol.row_dual[: self.m]
            out = np.flatnonzero(~self.in_set)
            z = self.reduced_costs(y, out)
            self.priced += 1
            at_lower = self.park[out] == self.xlo[out]
            gain = np.where(at_lower, -z, z)
            tol = 1e-9 * max(1.0, float(np.max(np.abs(y), initial=0.0)))
            improving = np.flatnonzero(gain > tol)
            if improving.size == 0:
                break
            k = min(improving.size, max(2 * self.m, self.working.size // 2))
            best = improving[np.argsort(-gain[improving], kind="stable")[:k]]
            self._add(np.sort(out[best]))
        x = np.where(self.in_set, 0.0, self.park)
        x[self.working] = sol.x[self.hcol]
        full = np.concatenate([x, sol.x[self.extra]])
        return MisfitSolution(
            True,
            sol.status,
            sol.value,
            full,
            sol.row_dual,
            None,
            time.perf_counter() - t0,
            iterations,
        )
