"""Newton's method on the calibration dual (the algorithm of R ``survey``'s ``grake``).

For a distance ``G`` with link ``F = (G')^-1`` (see :mod:`calibopt.distances`), the weights are
``w_i = d_i F(x_i' lambda)`` and ``lambda`` maximises the concave dual

    phi(lambda) = lambda' T - sum_i d_i G*(x_i' lambda) - sum_j h_j(lambda_j),

where the last sum belongs to rows with slacks (tolerance bands, penalty mode; see
:class:`Slacks`). Its gradient is the residual ``r = T - X w + e*(lambda)`` and its negative
Hessian ``J = X diag(d F'(u)) X' + P``, ``P`` the slacks' curvature.

Each iteration solves ``J delta = r`` and takes the full step when it increases ``phi``
(Armijo), which near the solution gives quadratic convergence and, from ``lambda = 0``, R's
own iterates. Otherwise it halves the step a few times, then adds a Levenberg-Marquardt term
``mu diag(J)`` (growing ``mu`` turns the step towards the scaled gradient), so every
accepted step increases ``phi`` (or, where the change of ``phi`` is below its float rounding,
lowers the residual). With bounds, ``F' = 0`` for units on a bound: a row whose units all sit
on bounds gets a small Levenberg term (``LM_WEAK``), and a step that made no progress is
followed by one that counts the bound units with their unclipped curvature (the semi-smooth
Newton matrix can be singular along the direction that frees them). Newton stops as stalled
when its best
residual improves less than 2x over ``STALL_WINDOW`` iterations (degenerate problems: more
binding bands and bounds than free units), and callers may then hand the same model to an
interior-point solver.

Every trial point costs one pass over X (:mod:`calibopt.solvers.evaluate`): the weights, the
estimates, the dual's conjugate sum and, for the full Newton step that is usually accepted,
the next Newton matrix, all in the same pass; a step predicted to be the last (``crit^2 <
epsilon``, or the first step of a quadratic distance) skips the matrix. The system is dense
``p x p`` (Cholesky, pseudo-inverse when singular, or sparse LU when the matrix is large and
sparse, as in local-area problems; :mod:`calibopt.solvers.linalg`) for up to ``dense_limit``
targets, and matrix-free conjugate gradients beyond. Convergence is R's rule made
scale-invariant: ``max_j |r_j| / s_j < epsilon`` with ``s_j = |T_j|`` (R divides by
``1 + |T_j|``, the same for totals well above 1) or, for a zero total, the row's gross activity
``sum_i |X_ji| d_i``. A distance without ``G`` globalises on the residual norm instead of the
dual. The solver can work on a subset of the rows of X (the
others get ``lambda_j = 0``), which the removal of redundant targets uses without copying the
matrix. Work vectors and the Newton-matrix accumulators are allocated once per solve (two
alternating slots: the current point and the trial) and reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from .distances import Distance
from .evaluate import Evaluation
from .kernels import weighted_row_abs
from .linalg import solve_symmetric_psd
from .newton_parts import NewtonOutcome, Slacks
from .newton_system import NewtonSystem
from .onehot import make_evaluator

__all__ = [
    "DENSE_LIMIT",
    "REDUNDANCY_LIMIT",
    "DualNewton",
    "NewtonOutcome",
    "Slacks",
    "solve_symmetric_psd",
]

DENSE_LIMIT = 12_000
"""Largest number of targets whose Newton matrix is formed (CG, matrix-free, beyond)."""
REDUNDANCY_LIMIT = 12_000
"""Up to this many targets, redundant targets are found (pivoted Cholesky) and dropped."""
HALVINGS = 10
"""Step halvings tried before the Levenberg-Marquardt term grows."""
LM_START = 1e-6
"""First Levenberg-Marquardt term tried when the Newton step fails (relative to diag(J))."""
LM_ATTEMPTS = 12
"""Levenberg-Marquardt increases (x10 each) before a step is declared impossible."""
PRECISION_FLOOR = 1e-9
"""Below this scaled residual a step that cannot improve counts as converged (rounding)."""
STALL_WINDOW = 8
"""Newton stops as stalled when the residual falls less than 2x over this many iterations."""


class DualNewton(NewtonSystem):
    """Newton's method on the dual of ``min sum d G(g)`` s.t. ``X (d g) = T``, ``lo <= g <= hi``.

    Parameters
    ----------
    Xc
        CSC matrix, targets x units, sorted indices.
    d
        Initial weights (all > 0; callers drop units with ``d = 0`` beforehand).
    lo, hi
        Bounds on ``g`` per unit (``-inf``/``inf`` where there is none).
    distance
        A :class:`~calibopt.distances.Distance`.
    dense_limit
        Use the dense Newton system up to this many targets, conjugate gradients beyond.
    """

    def __init__(
        self,
        Xc: sp.csc_matrix,
        d: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        distance: Distance,
        dense_limit: int = DENSE_LIMIT,
    ) -> None:
        self.Xc = Xc
        self.d = d
        self.dsum = float(d.sum())
        self.dist = distance
        if distance.intrinsic_bounds:
            self.lo, self.hi = lo, hi
        else:
            # a side that can never bind is passed as None, which skips the clipping work
            self.lo = lo if np.any(lo > distance.domain_lower) else None
            self.hi = hi if np.any(np.isfinite(hi)) else None
        self.dense_limit = dense_limit
        self.evaluator = make_evaluator(Xc, d, self.lo, self.hi, distance)
        self._ref: np.ndarray | None = None
        self._gross: np.ndarray | None = None
        self._solvers: list[str] = []
        # where a sparse Newton matrix's non-zeros lie (linalg), shared with the evaluator
        self._pattern: dict = self.evaluator.places
        self._iteration = 0
        self._mu = 0.0
        self.epsilon = 1e-10
        self.last: Evaluation | None = None

    # ------------------------------------------------------------------ pieces
    def g_at(self, lam: np.ndarray) -> np.ndarray:
        """The g-weights for multipliers ``lam`` (full length, one per row of X)."""
        return self.evaluator(lam, 0).g.copy()

    def _dual(self, lam_r, T, ev: Evaluation, slacks) -> float:
        with np.errstate(over="ignore", invalid="ignore"):
            val = float(lam_r @ T) - ev.conj
            if slacks is not None:
                val -= slacks.h(lam_r)
        return val if np.isfinite(val) else -np.inf

    # ------------------------------------------------------------------ driver
    def row_scale(self, T: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Scale of each row's residual: ``|T_j|``, or the row's gross activity at the initial
        weights (``sum_i |X_ji| d_i``) where ``T_j = 0``; scale-invariant, unlike R's
        ``1 + |T_j|`` (the same for totals well above 1)."""
        scale = np.abs(T).astype(np.float64)
        zero = scale == 0
        if zero.any():
            if self._gross is None:
                self._gross = weighted_row_abs(self.Xc, self.d)
            scale[zero] = self._gross[rows[zero]]
        return np.where(scale > 0, scale, 1.0)

    @staticmethod
    def _residual(T, rows, lam, ev: Evaluation, slacks) -> np.ndarray:
        r = T - ev.xw[rows]
        if slacks is not None:
            r += slacks.e(lam)
        return r

    def _merit(self, lam_r, T, rows, ev, slacks, scale) -> float:
        """The dual objective, or ``-|r / scale|^2 / 2`` for distances without ``G``."""
        if self.dist.has_objective:
            return self._dual(lam_r, T, ev, slacks)
        r = self._residual(T, rows, lam_r, ev, slacks) / scale
        return -0.5 * float(r @ r)

    def _line_search(self, solve, r, lam, lam_full, phi, T, rows, slacks, scale, crit, slot):
        """Globalised step from ``lam``: ``(accepted, lam_try, phi_try, evaluation)``.

        A step is taken when it increases the merit (Armijo) or, when the change is within its
        float rounding (near the optimum), when it lowers the residual; first the full Newton
        step, then halvings, then a growing Levenberg-Marquardt term ``mu`` (the step turns
        towards the scaled gradient). The full step's evaluation also forms the next Newton
        matrix when the fused kernel runs (the same pass over X; a full step is the rule).
        """
        noise = 1e-13 * (abs(phi) + self.dsum)
        mu = self._mu
        accepted = False
        lam_try, phi_try, ev = lam, phi, None
        armijo = self.dist.has_objective
        # the next Newton matrix is formed in the trial pass unless this step should be the
        # last (quadratic convergence predicts crit^2; a quadratic distance is exact in one
        # step unless its set of units on bounds changes)
        # (a quadratic distance that needed a second step has units crossing bounds: it is
        # likely to need a third)
        speculate = (
            rows.size <= self.dense_limit
            and (not self.dist.quadratic or self._iteration > 1)
            and crit * crit > self.epsilon
            and self.evaluator.fused() is not None
        )
        for attempt in range(LM_ATTEMPTS):
            delta, how = solve(r, mu)
            if how not in self._solvers:
                self._solvers.append(how)
            slope = float(r @ delta)
            if np.isfinite(slope) and slope > 0:
                step = 1.0
                for _ in range(HALVINGS if attempt < LM_ATTEMPTS - 1 else 60):
                    lam_try = lam + step * delta
                    lam_full[rows] = lam_try
                    ev = self.evaluator(lam_full, slot, gram=speculate)
                    speculate = False
                    phi_try = self._merit(lam_try, T, rows, ev, slacks, scale)
                    gain = 1e-4 * step * slope if armijo else 0.0
                    if phi_try >= phi + gain and phi_try > phi:
                        accepted = True
                    elif phi_try >= phi - noise:
                        r_try = self._residual(T, rows, lam_try, ev, slacks)
                        accepted = float(np.max(np.abs(r_try) / scale)) < crit
                    if accepted:
                        break
                    step *= 0.5
            if accepted:
                break
            mu = max(10.0 * mu, LM_START)
        self._mu = mu / 10.0 if mu > 10.0 * LM_START else 0.0
        return accepted, lam_try, phi_try, ev

    def _stop(self, history, crit, it, max_iter, epsilon) -> tuple[bool, str] | None:
        """``(converged, message)`` when a stopping rule holds, else None."""
        if crit < epsilon:
            return True, f"converged: max |T - Xw|/scale = {crit:.3g} < {epsilon:g}"
        if it >= max_iter:
            return False, (
                f"stopped at the iteration cap ({max_iter}); max |T - Xw|/scale = {crit:.3g} "
                f"(wanted < {epsilon:g})"
            )
        if len(history) > STALL_WINDOW and min(history[-STALL_WINDOW:]) > 0.5 * min(
            history[:-STALL_WINDOW]
        ):
            return False, (
                f"stalled: the residual fell less than 2x over the last {STALL_WINDOW} "
                f"iterations (max |T - Xw|/scale = {crit:.3g}, wanted < {epsilon:g})"
            )
        return None

    def solve(
        self,
        T: np.ndarray,
        rows: np.ndarray | None = None,
        lam0: np.ndarray | None = None,
        *,
        epsilon: float = 1e-10,
        max_iter: int = 100,
        slacks: Slacks | None = None,
        J0: np.ndarray | None = None,
        callback: Callable[[int, float], None] | None = None,
        lam_fixed: np.ndarray | None = None,
    ) -> NewtonOutcome:
        """Run Newton until ``max_j |r_j| / s_j < epsilon`` (``s_j`` from :meth:`row_scale`).

        Parameters
        ----------
        T
            Target totals for ``rows``.
        rows
            Rows of X that are constraints (default all); the others get ``lambda = 0`` (or
            ``lam_fixed``).
        lam0
            Starting multipliers for ``rows`` (default 0).
        slacks
            Optional :class:`Slacks` for ``rows`` (tolerance bands, penalty mode).
        J0
            The Newton matrix at ``lam0`` if the caller already has it (saves one Gram).
        callback
            Called as ``callback(iteration, criterion)``.
        lam_fixed
            Multipliers of the rows outside ``rows``, held fixed (one per row of X; default 0).

        Returns
        -------
        NewtonOutcome
            ``lam`` has one entry per row of ``rows``.
        """
        t0 = time.perf_counter()
        self.epsilon = epsilon
        p = self.Xc.shape[0]
        rows = np.arange(p) if rows is None else np.asarray(rows)
        self.evaluator.set_rows(rows)
        self.evaluator.composed = rows.size > self.dense_limit
        lam_full = np.zeros(p) if lam_fixed is None else np.array(lam_fixed, dtype=np.float64)
        if lam0 is not None:
            lam_full[rows] = lam0
        lam = lam_full[rows].copy()
        scale = self.row_scale(T, rows)
        slot = 0
        dense = rows.size <= self.dense_limit
        ev = self.evaluator(
            lam_full, slot, gram=dense and J0 is None and self.evaluator.fused() is not None
        )
        phi = self._merit(lam, T, rows, ev, slacks, scale)
        history: list[float] = []
        self._solvers = []
        it = 0
        relax = False
        self._mu = 0.0
        while True:
            r = self._residual(T, rows, lam, ev, slacks)
            crit = float(np.max(np.abs(r) / scale, initial=0.0))
            history.append(crit)
            if callback is not None:
                callback(it, crit)
            # a stalled semi-smooth step (the units whose bounds bind leave the Newton matrix
            # singular along the direction that would free them) is followed by one step that
            # counts them with their unclipped curvature: still an ascent direction
            relax = (
                len(history) > 1
                and crit >= (1 - 1e-3) * history[-2]
                and not relax
                and crit > PRECISION_FLOOR
            )
            stop = self._stop(history, crit, it, max_iter, epsilon)
            if stop is not None:
                converged, message = stop
                break
            it += 1
            self._iteration = it
            cg_tol = min(0.1, max(1e-12, np.sqrt(crit)))
            pdiag = None if slacks is None else slacks.curvature(lam)
            solve = self._system(
                rows, lam_full, slot, ev, pdiag, cg_tol, J0 if it == 1 else None, crit, relax
            )
            accepted, lam_try, phi_try, ev_try = self._line_search(
                solve, r, lam, lam_full, phi, T, rows, slacks, scale, crit, 1 - slot
            )
            if not accepted:
                lam_full[rows] = lam
                converged = crit < PRECISION_FLOOR
                message = (
                    f"converged to floating-point precision: max |T - Xw|/scale = {crit:.3g} "
                    f"(asked < {epsilon:g}; no step improves it further)"
                    if converged
                    else f"no step increases the dual at iteration {it} (max |T - Xw|/scale = "
                    f"{crit:.3g}); the targets may be unreachable within the distance's domain "
                    f"and bounds"
                )
                break
            lam, phi, ev, slot = lam_try, phi_try, ev_try, 1 - slot
        if "pseudo-inverse" in self._solvers and converged:
            message += "; the Newton system was singular at some iterate (pseudo-inverse used)"
        self.last = ev
        return NewtonOutcome(
            lam=lam,
            g=ev.g.copy(),
            converged=converged,
            iterations=it,
            max_residual=history[-1],
            message=message,
            history=history,
            seconds=time.perf_counter() - t0,
            linear_solvers=list(self._solvers),
        )
