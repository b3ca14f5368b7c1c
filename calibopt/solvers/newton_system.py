"""The Newton system of :class:`~calibopt.solvers.newton.DualNewton` at one iterate.

The matrix ``X diag(d F'(u)) X'`` on the rows in play (from the fused evaluation, or composed),
a Levenberg term on rows whose units all sit on bounds, the slacks' curvature, and its
factorisation (:mod:`calibopt.solvers.linalg`: dense Cholesky, sparse LU, or matrix-free
conjugate gradients beyond ``dense_limit`` targets).
"""

from __future__ import annotations

import numpy as np

from .evaluate import Evaluation
from .kernels import submatrix, weighted_row_sq
from .linalg import factor_symmetric_psd, matrix_free, solve_symmetric_psd

__all__ = ["LM_SCALE", "LM_WEAK", "NewtonSystem"]

LM_WEAK = 1e-10
"""A row keeping less than this share of its unclipped curvature gets a Levenberg term."""
LM_SCALE = 1e-3
"""Size of that Levenberg term relative to the unclipped curvature (times the residual)."""


class NewtonSystem:
    """The Newton-system half of :class:`~calibopt.solvers.newton.DualNewton` (a mixin: it
    uses the engine's ``Xc``, ``d``, ``lo``, ``hi``, ``dist``, ``evaluator``, ``dense_limit``,
    ``_ref`` and ``_pattern``)."""

    def reference_curvature(self) -> np.ndarray:
        """``diag(X D X')``: each row's curvature with every unit free (computed once)."""
        if self._ref is None:
            self._ref = weighted_row_sq(self.Xc, self.d)
        return self._ref

    def set_reference_curvature(self, ref: np.ndarray) -> None:
        """Give :meth:`reference_curvature` when the caller has it (``diag(X D X')``)."""
        self._ref = ref

    def _levenberg(self, rows, diagJ, crit) -> np.ndarray | None:
        """``mu diag(X D X')_jj`` on rows left with little curvature (``LM_WEAK``).

        ``mu = LM_SCALE * min(1, crit)``: enough to give a row whose units all sit on bounds a
        finite step, small enough not to slow rows that keep a little curvature.
        """
        if (self.lo is None and self.hi is None) or self.dist.intrinsic_bounds:
            return None
        ref = self.reference_curvature()[rows]
        weak = diagJ < LM_WEAK * ref
        if not weak.any():
            return None
        return np.where(weak, LM_SCALE * min(1.0, crit) * ref, 0.0)

    def _matrix(self, lam_full, slot, ev: Evaluation, J0, relax) -> np.ndarray:
        """The Newton matrix on the evaluator's rows at ``ev`` (a buffer the caller may edit)."""
        rows = self.evaluator.rows
        if relax:
            # units on a bound count with their unclipped curvature (see solve())
            if ev.u is not None:
                return self.evaluator.gram(ev.u, ev.g, relax=True)
            return self.evaluator(lam_full, slot, gram=True, relax=True).J
        if J0 is not None:
            return submatrix(J0, rows) if rows.size < J0.shape[0] else J0.copy()
        if ev.J is None:
            ev.J = (
                self.evaluator.gram(ev.u, ev.g)
                if ev.u is not None
                else self.evaluator(lam_full, slot, gram=True).J
            )
        return ev.J

    def _system(self, rows, lam_full, slot, ev, pdiag, cg_tol, J0, crit, relax=False, strict=True):
        """The Newton system at ``ev`` as ``solve(r, mu) -> (delta, how)``.

        ``mu > 0`` adds the Levenberg-Marquardt term ``mu diag(J)`` (``diag(X D X')`` on rows
        without curvature), which turns the step towards the scaled gradient as ``mu`` grows.
        The matrix with ``mu = 0`` is factorised once, however many right-hand sides follow;
        ``strict=False`` keeps a Cholesky factor with tiny pivots (interior-point systems).
        """
        if rows.size > self.dense_limit:
            ref = self.reference_curvature()[rows]
            return self._cg_system(rows, ev, pdiag, cg_tol, crit, ref, relax)
        J = self._matrix(lam_full, slot, ev, J0, relax)
        lm = self._levenberg(rows, np.diag(J), crit)
        if lm is not None:
            J[np.diag_indices_from(J)] += lm
        if pdiag is not None:
            J[np.diag_indices_from(J)] += pdiag
        base = np.diag(J).copy()
        scale = base
        if not np.all(base > 0):
            scale = np.where(base > 0, base, self.reference_curvature()[rows])

        factored: list = []

        def solve(r, mu):
            if mu == 0:
                if not factored:
                    factored.append(
                        factor_symmetric_psd(
                            J, strict=strict, cache=self._pattern, pattern=self.evaluator.pattern
                        )
                    )
                apply, how = factored[0]
                return apply(r), how
            Jm = J.copy()
            Jm[np.diag_indices_from(Jm)] += mu * scale
            return solve_symmetric_psd(Jm, r)

        return solve

    def _cg_system(self, rows, ev, pdiag, cg_tol, crit, ref, relax):
        """Matrix-free CG on ``(J + mu diag) delta = r`` with a Jacobi preconditioner."""
        v = np.empty(self.Xc.shape[1])
        with np.errstate(over="ignore", invalid="ignore"):
            if relax:
                self.dist._dF(ev.u, ev.g, self.lo, self.hi, v)
            else:
                self.dist.dF(ev.u, ev.g, self.lo, self.hi, out=v)
        np.multiply(v, self.d, out=v)
        diag = weighted_row_sq(self.Xc, v)[rows]
        lm = self._levenberg(rows, diag, crit)
        if lm is not None:
            pdiag = lm if pdiag is None else pdiag + lm
        if pdiag is not None:
            diag = diag + pdiag
        scale = np.where(diag > 0, diag, ref)
        return matrix_free(self.Xc, v, rows, diag, pdiag, scale, cg_tol)
