"""Dense, sparse and matrix-free solves of the symmetric positive semi-definite Newton system."""

from __future__ import annotations

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = [
    "SPARSE_DENSITY",
    "SPARSE_MIN",
    "SPARSE_RIDGE",
    "matrix_free",
    "solve_symmetric_psd",
]

SPARSE_MIN = 1_000
"""From this many targets, a Newton matrix with few non-zeros is factorised as sparse."""
SPARSE_DENSITY = 0.05
"""Largest share of non-zeros for the sparse factorisation."""
SPARSE_RIDGE = 1e-11
"""Ridge on the unit (Jacobi-scaled) diagonal of the sparse factorisation."""


def solve_symmetric_psd(J: np.ndarray, r: np.ndarray, rcond: float = 256 * np.finfo(float).eps):
    """Solve ``J x = r`` for symmetric PSD ``J`` (the Newton system), Jacobi-scaled.

    * Rows with a zero diagonal (targets with no free unit) get ``x_j = 0``.
    * Large and sparse ``J`` (local-area problems: district rows only meet their own state's
      and the nation's) is factorised by sparse LU (SuperLU, symmetric minimum-degree
      ordering) with a ridge of ``SPARSE_RIDGE`` on the unit diagonal, which keeps it
      non-singular when targets are linearly redundant: the solution then approximates the
      minimum-norm one, and Newton's iterations remove the difference.
    * Otherwise dense Cholesky; when ``J`` is singular, the minimum-norm least-squares
      solution (eigenvalues below ``rcond * max eigenvalue`` dropped, like ``MASS::ginv``).

    Returns
    -------
    x : ndarray
    how : str
        ``"cholesky"``, ``"pseudo-inverse"`` or ``"sparse-lu"``.
    """
    diag = np.diag(J).copy()
    live = diag > 0
    x = np.zeros_like(r)
    if not live.any():
        return x, "pseudo-inverse"
    idx = np.flatnonzero(live)
    s = 1.0 / np.sqrt(diag[idx])
    Js = J[np.ix_(idx, idx)] if idx.size < J.shape[0] else J.copy()
    Js *= s[:, None]
    Js *= s[None, :]
    rs = r[idx] * s
    m = idx.size
    if m >= SPARSE_MIN and np.count_nonzero(Js) <= SPARSE_DENSITY * m * m:
        A = sp.csc_matrix(Js)
        A = A + SPARSE_RIDGE * sp.identity(m, format="csc")
        lu = spla.splu(
            A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
        )
        x[idx] = lu.solve(rs) * s
        return x, "sparse-lu"
    try:
        c, low = la.cho_factor(Js, lower=False, check_finite=False)
        # reject numerically singular factors (tiny pivots relative to the unit diagonal)
        if np.min(np.abs(np.diag(c))) ** 2 < 1e3 * rcond:
            raise la.LinAlgError("near singular")
        y = la.cho_solve((c, low), rs, check_finite=False)
        how = "cholesky"
    except la.LinAlgError:
        evals, evecs = la.eigh(Js, check_finite=False)
        keep = evals > rcond * max(evals.max(), 0.0)
        y = evecs[:, keep] @ ((evecs[:, keep].T @ rs) / evals[keep])
        how = "pseudo-inverse"
    x[idx] = y * s
    return x, how


def matrix_free(Xc, v, rows, diag, pdiag, scale, cg_tol):
    """``solve(r, mu) -> (delta, how)`` for ``(X_rows diag(v) X_rows' + P + mu diag(scale))
    delta = r`` by conjugate gradients (Jacobi preconditioner ``diag + mu scale``), never
    forming the matrix: two passes over X per product."""
    from .kernels import matvec, rmatvec

    full = np.zeros(Xc.shape[0])
    ubuf = np.empty(Xc.shape[1])
    m = rows.size

    def solve(r, mu):
        d_mu = diag + mu * scale
        live = d_mu > 0
        inv = np.where(live, 1.0 / np.where(live, d_mu, 1.0), 0.0)

        def op(x):
            full[rows] = x
            rmatvec(Xc, full, ubuf)
            np.multiply(ubuf, v, out=ubuf)
            out = matvec(Xc, ubuf)[rows]
            if pdiag is not None:
                out += pdiag * x
            if mu:
                out += mu * scale * x
            return out

        A = spla.LinearOperator((m, m), matvec=op, dtype=np.float64)
        M = spla.LinearOperator((m, m), matvec=lambda x: inv * x, dtype=np.float64)
        x, info = spla.cg(
            A, np.where(live, r, 0.0), rtol=cg_tol, atol=0.0, maxiter=max(100, 2 * m), M=M
        )
        return x, "cg" if info == 0 else "cg-unconverged"

    return solve
