"""Candes-Wakin-Boyd reweighted-L1 iterations over the sparse domain (the LP relaxation of L0).

Iteration ``k`` solves the linear program

    min  sum_i v_i |w_i|   s.t.   lo <= X w <= hi,   hull_lower <= w <= hull_upper

with ``v_i = 1 / s_i`` first (``s_i`` the record's big-M, so the first LP is exactly the LP
relaxation of the big-M L0 model) and then ``v_i = 1 / (|w_i| + eps s_i)`` (Candes, Wakin &
Boyd 2008, with ``eps`` relative to each record's scale). HiGHS re-solves each LP from the
previous basis (only the costs change); a cvxpy solver name runs the same LPs through cvxpy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleError, SolverError
from ..problem import CalibrationProblem
from ..validate import integer, number
from .cvx import cvxpy_model
from .domain import SparseDomain
from .highs import highs_model, solve_highs
from .linear_program import LinearProgram

__all__ = ["BandLP", "ReweightedL1", "column_scale", "reweighted_l1"]


def column_scale(problem: CalibrationProblem, domain: SparseDomain) -> np.ndarray:
    """A magnitude per record: its big-M where finite, else the largest ``|band_j / X_ji|``."""
    M = domain.big_m
    scale = M.copy()
    free = ~np.isfinite(scale)
    if free.any():
        coo = problem.X.tocoo()
        band = np.maximum(np.abs(domain.band_lower), np.abs(domain.band_upper))
        ratio = band[coo.row] / np.abs(coo.data)
        alt = np.zeros(problem.n_units)
        np.maximum.at(alt, coo.col, ratio)
        scale[free] = alt[free]
    # records fixed at 0 (bounds [0, 0]) get any positive scale
    return np.where((scale > 0) & ~domain.fixed_zero, scale, 1.0)


@dataclass
class ReweightedL1:
    """Outcome of the reweighted-L1 iterations.

    Attributes
    ----------
    weights : ndarray
        The sparsest iterate found (exact zeros off its support).
    supports : list of ndarray
        The support (positions of the non-zero weights) of every iterate, in order.
    support_sizes : list of int
        Support size after each LP.
    iterations : int
    lp_seconds : float
    stopped : str
        Why the loop ended (``"converged"``, ``"max_iter"``, ``"interrupted"``).
    """

    weights: np.ndarray
    supports: list[np.ndarray]
    support_sizes: list[int]
    iterations: int
    lp_seconds: float
    stopped: str
    history: list[dict[str, Any]] = field(default_factory=list)


class BandLP:
    """``min sum_i v_i |w_i|`` over the sparse hull and the target bands, with changeable costs.

    Columns are in units of each record's scale (``w = scale * x``, ``x`` mostly in [0, 1]),
    rows in units of their band, so the LP is well scaled whatever the totals' magnitudes;
    records that may be negative are split as ``w = p - q``. Solved by HiGHS directly
    (warm-started re-solves: only the costs change) or by a cvxpy solver.
    """

    def __init__(self, problem: CalibrationProblem, domain: SparseDomain, solver: str | None):
        self.scale = column_scale(problem, domain)
        n = problem.n_units
        lo = domain.hull_lower
        hi = domain.hull_upper
        self.n = n
        self.neg = np.flatnonzero(lo < 0)
        Xc = problem.csc
        A = sp.hstack([Xc, -Xc[:, self.neg]], format="csc") if self.neg.size else Xc
        self.cscale = np.concatenate([self.scale, self.scale[self.neg]])
        r = np.maximum(np.abs(domain.band_lower), np.abs(domain.band_upper))
        r = 1.0 / np.where(np.isfinite(r) & (r > 0), r, 1.0)
        self.lp = LinearProgram(
            cost=self.costs(1.0 / self.scale),
            col_lower=np.concatenate([np.maximum(lo, 0.0), np.zeros(self.neg.size)]) / self.cscale,
            col_upper=np.concatenate([np.maximum(hi, 0.0), -lo[self.neg]]) / self.cscale,
            A=sp.csc_matrix(sp.diags(r) @ A @ sp.diags(self.cscale)),
            row_lower=domain.band_lower * r,
            row_upper=domain.band_upper * r,
        )
        self.solver = solver
        self._h = None
        self._cvx = None

    def costs(self, v: np.ndarray) -> np.ndarray:
        """Model costs for per-record weights ``v`` of ``|w_i|``."""
        return np.concatenate([v, v[self.neg]]) * self.cscale

    def solve(self, v: np.ndarray) -> tuple[np.ndarray, float]:
        """Minimise ``sum v_i |w_i|`` over the bands; return ``w`` and the seconds taken."""
        cost = self.costs(v)
        t0 = time.perf_counter()
        if self.solver is None or self.solver.lower() == "highs-direct":
            x = self._solve_highs(cost)
        else:
            x = self._solve_cvxpy(cost)
        x = x * self.cscale
        w = x[: self.n].copy()
        if self.neg.size:
            w[self.neg] -= x[self.n :]
        return w, time.perf_counter() - t0

    def _solve_highs(self, cost: np.ndarray) -> np.ndarray:
        if self._h is None:
            # the dependent-equation search of presolve costs seconds on exact targets and
            # buys nothing for re-solves that only change costs
            self._h = highs_model(self.lp.with_cost(cost), options={"presolve": "off"})
        else:
            idx = np.arange(cost.size, dtype=np.int32)
            self._h.changeColsCost(cost.size, idx, cost)
        out = solve_highs(self._h)
        if out.infeasible:
            raise InfeasibleError(
                "no weights meet every target band within the bounds (the LP relaxation is "
                "infeasible); widen the tolerance or the bounds."
            )
        if not out.has_solution:
            raise SolverError(f"HiGHS did not solve the weighted-L1 LP: {out.status}.")
        return np.clip(out.x, self.lp.col_lower, self.lp.col_upper)

    def _solve_cvxpy(self, cost: np.ndarray) -> np.ndarray:
        import cvxpy as cp

        if self._cvx is None:
            self._cvx = cvxpy_model(self.lp, parametric_cost=True)
        prob, x, _, c = self._cvx
        c.value = cost
        try:
            prob.solve(solver=self.solver)
        except (cp.error.SolverError, ValueError, KeyError) as exc:
            raise SolverError(f"cvxpy solver {self.solver!r} failed on the L1 LP: {exc}") from exc
        if prob.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            raise InfeasibleError(
                f"{self.solver} reports the weighted-L1 LP infeasible: no weights meet every "
                f"target band within the bounds."
            )
        if x.value is None:
            raise SolverError(f"cvxpy solver {self.solver!r} returned no solution ({prob.status}).")
        return np.clip(np.asarray(x.value), self.lp.col_lower, self.lp.col_upper)


def reweighted_l1(
    problem: CalibrationProblem,
    domain: SparseDomain,
    *,
    eps: float = 1e-3,
    max_iter: int = 10,
    solver: str | None = None,
    threshold: float | None = None,
    callback: Any = None,
) -> ReweightedL1:
    """Run the reweighted-L1 iterations; return the sparsest iterate.

    Parameters
    ----------
    eps
        Relative smoothing: ``v_i = 1 / (|w_i| + eps s_i)`` with ``s_i`` the record's scale.
    max_iter
        Number of weighted-L1 LPs (the first is the plain LP relaxation).
    solver
        None (HiGHS, direct, warm-started) or a cvxpy solver name (``"CLARABEL"``, ...).
    threshold
        A weight counts as zero below ``threshold * s_i``; default 1e-9 with HiGHS's simplex
        (whose zeros are exact) and 1e-6 with cvxpy solvers (interior points never give exact
        zeros).
    callback
        Called with ``(iteration, support_size)`` after each LP.
    """
    eps = number("eps", eps, low=0.0, strict=True)
    max_iter = integer("max_iter", max_iter, low=1)
    if threshold is None:
        threshold = 1e-9 if solver is None else 1e-6
    lp = BandLP(problem, domain, solver)
    scale = lp.scale
    v = 1.0 / scale
    best_w = None
    best_k = None
    sizes: list[int] = []
    supports: list[np.ndarray] = []
    history = []
    seconds = 0.0
    stopped = "max_iter"
    prev_support = None
    it = 0
    try:
        for it in range(1, int(max_iter) + 1):
            w, dt = lp.solve(v)
            seconds += dt
            keep = np.abs(w) > threshold * scale
            w = np.where(keep, w, 0.0)
            k = int(keep.sum())
            sizes.append(k)
            supports.append(np.flatnonzero(keep))
            history.append({"iteration": it, "support": k, "seconds": dt})
            if best_k is None or k < best_k:
                best_w, best_k = w, k
            if callback is not None:
                callback(it, k)
            if prev_support is not None and np.array_equal(keep, prev_support):
                stopped = "converged"
                break
            prev_support = keep
            v = 1.0 / (np.abs(w) + eps * scale)
    except KeyboardInterrupt:
        stopped = "interrupted"
        if best_w is None:
            raise
    assert best_w is not None
    return ReweightedL1(
        weights=best_w,
        supports=supports,
        support_sizes=sizes,
        iterations=it,
        lp_seconds=seconds,
        stopped=stopped,
        history=history,
    )
