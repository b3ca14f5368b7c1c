"""Dense, sparse and matrix-free solves of the symmetric positive semi-definite Newton system."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = [
    "SPARSE_DENSITY",
    "SPARSE_MIN",
    "SPARSE_RIDGE",
    "factor_symmetric_psd",
    "matrix_free",
    "solve_symmetric_psd",
    "symmetric_places",
]

SPARSE_MIN = 1_000
"""From this many targets, a Newton matrix with few non-zeros is factorised as sparse."""
SPARSE_DENSITY = 0.05
"""Largest share of non-zeros for the sparse factorisation."""
SPARSE_RIDGE = 1e-11
"""Ridge on the unit (Jacobi-scaled) diagonal of the sparse factorisation."""
SERIAL_BLAS = 2_000
"""Dense factorisations below this size run on one BLAS thread: on a shared or busy machine
two threads wait for each other (a 600 x 600 Cholesky took 3 ms on one thread, up to 1 s on two
under load), and the gain from a second thread is a millisecond."""

_controller: list = []


def _blas(m: int):
    """A context limiting BLAS to one thread for an ``m x m`` factorisation (else a no-op)."""
    if m >= SERIAL_BLAS:
        return contextlib.nullcontext()
    if not _controller:
        from threadpoolctl import ThreadpoolController

        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api="blas")


def factor_symmetric_psd(
    J: np.ndarray,
    rcond: float = 256 * np.finfo(float).eps,
    *,
    strict: bool = True,
    cache: dict | None = None,
    pattern: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """Factorise the symmetric PSD ``J`` (the Newton system) once, Jacobi-scaled.

    * Rows with a zero diagonal (targets with no free unit) get ``x_j = 0``.
    * Large and sparse ``J`` (local-area problems: district rows only meet their own state's
      and the nation's) is factorised by sparse LU (SuperLU, symmetric minimum-degree
      ordering) with a ridge of ``SPARSE_RIDGE`` on the unit diagonal, which keeps it
      non-singular when targets are linearly redundant: the solution then approximates the
      minimum-norm one, and Newton's iterations remove the difference.
    * Otherwise dense Cholesky; when ``J`` is singular, the minimum-norm least-squares
      solution (eigenvalues below ``rcond * max eigenvalue`` dropped, like ``MASS::ginv``).
      With ``strict=False`` a Cholesky factor with tiny pivots is kept (interior-point
      systems, ill-conditioned by design, whose directions stay accurate).

    ``cache`` (a dict kept by the caller across iterations) remembers the positions of the
    non-zeros of a sparse ``J``, so later matrices with the same pattern are gathered from those
    positions instead of scanning all ``m^2`` entries (any superset of the non-zeros gives the
    same matrix; a count of the non-zeros checks that it is one). ``pattern`` (the upper
    triangle as CSR ``(ptr, cols)``, e.g. :attr:`Evaluator.pattern
    <calibopt.solvers.evaluate.Evaluator.pattern>`) says where ``J`` can be non-zero: a
    sparse ``J`` is then gathered from those places alone, without scanning the rest.

    Returns
    -------
    solve : callable
        ``solve(r) -> x`` for right-hand sides of length ``J.shape[0]``.
    how : str
        ``"cholesky"``, ``"pseudo-inverse"`` or ``"sparse-lu"``.
    """
    diag = np.diag(J).copy()
    live = diag > 0
    n = J.shape[0]
    if not live.any():
        return (lambda r: np.zeros_like(r)), "pseudo-inverse"
    idx = np.flatnonzero(live)
    s = 1.0 / np.sqrt(diag[idx])
    m = idx.size

    def lift(y: np.ndarray) -> np.ndarray:
        x = np.zeros(n)
        x[idx] = y * s
        return x

    A = _sparse_scaled(J, idx, s, cache, pattern) if m >= SPARSE_MIN else None
    if A is not None:
        lu = spla.splu(
            A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True}
        )
        return (lambda r: lift(lu.solve(r[idx] * s))), "sparse-lu"
    Js = J[np.ix_(idx, idx)] if idx.size < n else J.copy()
    Js *= s[:, None]
    Js *= s[None, :]
    try:
        with _blas(m):
            c, low = la.cho_factor(Js, lower=False, overwrite_a=True, check_finite=False)
        # reject numerically singular factors (tiny pivots relative to the unit diagonal)
        if strict and np.min(np.abs(np.diag(c))) ** 2 < 1e3 * rcond:
            raise la.LinAlgError("near singular")
        return (lambda r: lift(la.cho_solve((c, low), r[idx] * s, check_finite=False))), (
            "cholesky"
        )
    except la.LinAlgError:
        Js = J[np.ix_(idx, idx)] * s[:, None] * s[None, :]
        with _blas(m):
            evals, evecs = la.eigh(Js, check_finite=False)
        keep = evals > rcond * max(evals.max(), 0.0)
        V, ev = evecs[:, keep], evals[keep]
        return (lambda r: lift(V @ ((V.T @ (r[idx] * s)) / ev))), "pseudo-inverse"


def _sparse_scaled(J: np.ndarray, idx: np.ndarray, s: np.ndarray, cache: dict | None, pattern):
    """``S J[idx, idx] S + SPARSE_RIDGE I`` as CSC when ``J`` has few non-zeros, else None.

    Rows outside ``idx`` (a zero diagonal: no free unit) are zero rows of the PSD ``J``.
    """
    m = idx.size
    if pattern is not None and pattern[0].size == J.shape[0] + 1 and m == J.shape[0]:
        indptr, indices, flat, row, diag = symmetric_places(pattern, cache)
        vals = np.take(J.reshape(-1), flat)
        vals *= s[row]
        vals *= s[indices]
        vals[diag] += SPARSE_RIDGE
        return sp.csc_matrix((vals, indices, indptr), shape=(m, m))
    nnz = np.count_nonzero(J)
    if nnz > SPARSE_DENSITY * m * m:
        return None
    rc = None if cache is None else cache.get(J.shape)
    if rc is not None and rc[0].size >= nnz:
        vals = J[rc]
        if np.count_nonzero(vals) != nnz:
            rc = None  # a non-zero outside the remembered pattern
    if rc is None or rc[0].size < nnz:
        rc = np.nonzero(J)
        vals = J[rc]
        if cache is not None:
            cache.clear()
            cache[J.shape] = rc
    pos = np.full(J.shape[0], -1, dtype=np.int64)
    pos[idx] = np.arange(m)
    r, c = pos[rc[0]], pos[rc[1]]
    ok = (r >= 0) & (c >= 0)
    if not ok.all():
        r, c, vals = r[ok], c[ok], vals[ok]
    A = sp.csc_matrix((vals * s[r] * s[c], (r, c)), shape=(m, m))
    return A + SPARSE_RIDGE * sp.identity(m, format="csc")


def symmetric_places(pattern: tuple[np.ndarray, np.ndarray], cache: dict | None):
    """A symmetric matrix's places from its upper triangle ``pattern`` (CSR), kept in
    ``cache`` (when given) while the pattern is the same.

    Returns
    -------
    indptr, indices : ndarray
        The places as CSR (sorted; of a symmetric matrix, its CSC too).
    flat : ndarray
        Each place's position in the dense ``m x m`` matrix (C order), to gather its values.
    row : ndarray
        Each place's row.
    diag : ndarray
        The places of the diagonal.
    """
    key = "symmetric places"
    kept = None if cache is None else cache.get(key)
    if kept is not None and kept[0] is pattern[0]:
        return kept[1]
    ptr, cols = pattern
    m = ptr.size - 1
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(ptr))
    off = rows != cols
    r = np.concatenate([rows, cols[off]])
    c = np.concatenate([cols, rows[off]])
    S = sp.csr_matrix((r * m + c, (r, c)), shape=(m, m))  # (no duplicates: summing keeps them)
    S.sort_indices()
    flat = S.data.astype(np.int64)
    row = np.repeat(np.arange(m, dtype=np.int64), np.diff(S.indptr))
    places = (S.indptr, S.indices, flat, row, np.flatnonzero(S.indices == row))
    if cache is not None:
        cache[key] = (ptr, places)
    return places


def solve_symmetric_psd(J: np.ndarray, r: np.ndarray, rcond: float = 256 * np.finfo(float).eps):
    """Solve ``J x = r`` for symmetric PSD ``J`` (:func:`factor_symmetric_psd` once).

    Returns
    -------
    x : ndarray
    how : str
        ``"cholesky"``, ``"pseudo-inverse"`` or ``"sparse-lu"``.
    """
    solve, how = factor_symmetric_psd(J, rcond)
    return solve(r), how


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
