"""Reconciliation of totals: the least weighted change that satisfies linear aggregation rules.

Given values ``b`` (one per total), aggregation rules ``C x = g`` (e.g. a parent minus the sum
of its children equals 0) and precisions ``p_j > 0`` (``inf``: the value is fixed), find::

    minimise    sum_j p_j (x_j - b_j)^2
    subject to  C x = g,            (optionally) lo <= x <= hi

Without bounds this is the generalised least-squares projection of forecast reconciliation
(the WLS / MinT family: Wickramasuriya, Athanasopoulos & Hyndman 2019, with a diagonal
covariance ``1 / p``). In the standardised change ``u = sqrt(p) (x - b)`` it is the
minimum-norm solution of ``C diag(p)^-1/2 u = g - C b``, computed by LSQR (Paige & Saunders
1982), which handles redundant rules (a national total that equals the sum of districts both
directly and through the states) without forming normal equations; two rounds of iterative
refinement bring the rules to rounding level. With bounds it is a convex QP (Clarabel through
cvxpy); the variables the QP leaves on a bound are then fixed there and the rest re-projected
exactly, so the rules hold to rounding level in both cases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr

from ..errors import InfeasibleError, SolverError

__all__ = ["ReconcileOutcome", "reconcile_values"]


@dataclass
class ReconcileOutcome:
    """The reconciled values and how they were found.

    Attributes
    ----------
    x : ndarray
        Reconciled values.
    residual : float
        ``max |C x - g|`` relative to ``max(1, max |C| |x|)`` row by row.
    at_lower, at_upper : ndarray of bool
        Values held at a bound (bounded variant).
    method : str
    seconds : float
    """

    x: np.ndarray
    residual: float
    at_lower: np.ndarray
    at_upper: np.ndarray
    method: str
    seconds: float


def _relative_residual(C: sp.csr_matrix, x: np.ndarray, g: np.ndarray) -> float:
    r = C @ x - g
    ref = np.maximum(abs(C) @ np.abs(x), np.maximum(np.abs(g), 1e-300))
    return float(np.max(np.abs(r) / ref, initial=0.0))


def _project(
    C: sp.csr_matrix, g: np.ndarray, b: np.ndarray, root_v: np.ndarray, free: np.ndarray
) -> np.ndarray:
    """``x`` closest to ``b`` (metric ``1 / v`` on the free entries) with ``C x = g``; entries
    not free keep ``b``. Raises when the rules cannot hold with the fixed entries."""
    x = b.astype(np.float64, copy=True)
    if not free.any():
        return x
    B = sp.csr_matrix(C[:, free] @ sp.diags(root_v[free]))
    # rows scaled to unit norm: LSQR's stopping rules are relative
    norms = np.sqrt(np.asarray(B.multiply(B).sum(axis=1)).ravel())
    live = norms > 0
    scale = np.where(live, 1.0 / np.where(live, norms, 1.0), 0.0)
    Bs = sp.diags(scale) @ B
    for _ in range(3):  # solve, then refine twice on the residual
        r = g - C @ x
        if not np.any(r[live]):
            break
        u = lsqr(Bs, scale * r, atol=1e-16, btol=1e-16, iter_lim=20 * B.shape[1] + 100)[0]
        x[free] += root_v[free] * u
    if np.any(~live):
        bad = np.flatnonzero(~live & (np.abs(g - C @ x) > 1e-9 * (abs(C) @ np.abs(x) + 1)))
        if bad.size:
            raise InfeasibleError(
                f"{bad.size} aggregation rule(s) involve fixed values only and do not hold "
                f"(first: rule {int(bad[0])}); free one of their values.",
            )
    return x


def reconcile_values(
    b: np.ndarray,
    C: sp.spmatrix,
    g: np.ndarray | None = None,
    precision: np.ndarray | None = None,
    *,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    tol: float = 1e-10,
) -> ReconcileOutcome:
    """Reconcile ``b`` to ``C x = g`` (module docstring).

    Parameters
    ----------
    b
        Values (length ``k``).
    C, g
        Rules ``C x = g`` (``g`` default 0), ``C`` of shape ``(r, k)``.
    precision
        ``p_j > 0`` (default 1); ``inf`` keeps ``b_j`` fixed.
    lower, upper
        Optional bounds on ``x`` (infinite entries: none).
    tol
        Largest relative residual of the rules accepted.

    Raises
    ------
    InfeasibleError
        When the fixed values (or the bounds) make the rules impossible.
    """
    t0 = time.perf_counter()
    b = np.asarray(b, dtype=np.float64)
    k = b.size
    C = sp.csr_matrix(C, dtype=np.float64)
    g = np.zeros(C.shape[0]) if g is None else np.asarray(g, dtype=np.float64)
    p = np.ones(k) if precision is None else np.asarray(precision, dtype=np.float64)
    free = np.isfinite(p)
    root_v = np.where(free, 1.0 / np.sqrt(np.where(free, p, 1.0)), 0.0)
    lo = np.full(k, -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    hi = np.full(k, np.inf) if upper is None else np.asarray(upper, dtype=np.float64)
    at_lo = np.zeros(k, bool)
    at_hi = np.zeros(k, bool)
    x = _project(C, g, b, root_v, free)
    method = "wls projection (lsqr)"
    bounded = np.isfinite(lo) | np.isfinite(hi)
    if bounded.any() and np.any((x < lo) | (x > hi)):
        x, at_lo, at_hi = _bounded(C, g, b, p, root_v, free, lo, hi)
        method = "qp (clarabel) + exact projection on the free values"
    residual = _relative_residual(C, x, g)
    if residual > tol:
        raise SolverError(
            f"the reconciled values miss the aggregation rules by {residual:.3g} (relative); "
            f"the rules may be inconsistent with the fixed values or the bounds."
        )
    return ReconcileOutcome(x, residual, at_lo, at_hi, method, time.perf_counter() - t0)


def _bounded(C, g, b, p, root_v, free, lo, hi):
    """The bounded QP, then an exact projection with the QP's bound-holding values fixed."""
    import cvxpy as cp

    idx = np.flatnonzero(free)
    fixed = ~free
    # standardised change u = sqrt(p) (x - b) on the free values; rules row-normalised
    B = sp.csr_matrix(C[:, idx] @ sp.diags(root_v[idx]))
    rhs = g - C @ b
    norms = np.sqrt(np.asarray(B.multiply(B).sum(axis=1)).ravel())
    live = norms > 0
    s = np.where(live, 1.0 / np.where(live, norms, 1.0), 0.0)
    u = cp.Variable(idx.size)
    ulo = (lo[idx] - b[idx]) / root_v[idx]
    uhi = (hi[idx] - b[idx]) / root_v[idx]
    cons = [sp.diags(s[live]) @ B[live] @ u == (s * rhs)[live]]
    fl, fh = np.isfinite(ulo), np.isfinite(uhi)
    if fl.any():
        cons.append(u[np.flatnonzero(fl)] >= ulo[fl])
    if fh.any():
        cons.append(u[np.flatnonzero(fh)] <= uhi[fh])
    if np.any(fixed & ((b < lo) | (b > hi))):
        raise InfeasibleError("a fixed value lies outside its bounds.")
    prob = cp.Problem(cp.Minimize(cp.sum_squares(u)), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    if prob.status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleError(
            "no values within the bounds satisfy the aggregation rules; widen the bounds."
        )
    if u.value is None:
        raise SolverError(f"the reconciliation QP failed ({prob.status}).")
    x = b.copy()
    x[idx] += root_v[idx] * u.value
    at_lo = np.zeros(b.size, bool)
    at_hi = np.zeros(b.size, bool)
    for _ in range(b.size + 1):
        span = np.maximum(np.abs(x), 1.0)
        at_lo |= free & np.isfinite(lo) & (x <= lo + 1e-9 * span)
        at_hi |= free & np.isfinite(hi) & (x >= hi - 1e-9 * span)
        base = np.where(at_lo, lo, np.where(at_hi, hi, x))
        x = _project(C, g, np.where(at_lo | at_hi, base, b), root_v, free & ~(at_lo | at_hi))
        if not np.any((x < lo - 1e-12 * np.abs(lo)) | (x > hi + 1e-12 * np.abs(hi))):
            break
    return x, at_lo, at_hi
