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
    "misfit_inputs",
    "misfit_model",
    "scaled_matrix",
    "solution_misses",
    "solve_misfit",
]

OBJECTIVES = ("max", "sum")

HIGHS_OPTIONS: dict[str, Any] = {
    "solver": "simplex",
    "simplex_strategy": 4,
    "primal_feasibility_tolerance": 1e-9,
    "dual_feasibility_tolerance": 1e-9,
    "small_matrix_value": 1e-12,
}
"""HiGHS settings of the misfit LP: the primal simplex method (a basic solution, whose duals
are a vertex; freeing a row or adding a column keeps the basis primal feasible, so re-solves
start where the last one ended), feasibility tolerances of 1e-9 on rows in relative units, and
no matrix entry dropped as negligible above 1e-12, the smallest threshold HiGHS accepts (it
drops entries below 1e-9 by default, which would silently change a row whose coefficients are
small next to its variables)."""


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
        return solution_misses(x, self.n_units, self.n_targets, self.objective)


def solution_misses(x: np.ndarray, n: int, m: int, objective: str) -> np.ndarray:
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
    caps: np.ndarray | None = None,
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
    caps
        ``objective="max"``: per target, a fixed largest miss ``|e_j| <= cap_j`` (inf: none);
        a capped target leaves ``t`` (its link rows are free) -- a level already settled by
        the lexicographic passes of ``least-misfit``.
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
    cap = np.full(m, np.inf) if caps is None else np.asarray(caps, dtype=np.float64)
    if objective == "max":
        slack_hi = np.minimum(slack_hi, cap)
        link_lo = np.full(m, -np.inf)
        link_hi = np.where(np.isfinite(cap), np.inf, 0.0)
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
            row_lower=np.concatenate([lo, link_lo, link_lo]),
            row_upper=np.concatenate([hi, link_hi, link_hi]),
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
