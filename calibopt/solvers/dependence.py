"""Linearly dependent rows of a Gram matrix ``J = X diag(v) X'``, dense or block by block.

:func:`dependent_rows` finds an independent set of targets and the combinations giving the
others. Up to :data:`BLOCK_MIN` rows it runs one pivoted Cholesky factorisation (LAPACK
``dpstrf``) of the Jacobi-scaled matrix. Beyond, when the matrix is sparse in the way of
local-area problems (a district's rows meet only its own rows, its state's and the nation's),
it works block by block: the *light* rows (few non-zeros in ``J``) split into connected
components (the districts, with any state that has few districts), each factorised alone; the
*heavy* rows (the states with many districts, the nation) are then judged on their Schur
complement ``J_HH - J_HK J_KK^-1 J_KH`` over the kept light rows, a dense matrix of the heavy
rows only. ``rank J = rank J_KK + rank`` of that complement, so the two factorisations find a
basis of the same span as one pivoted Cholesky of the whole matrix, in a fraction of its
``m^3 / 3`` operations; the combinations of the dropped rows come from one sparse LU of
``J_KK``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as la
import scipy.linalg.lapack as lapack
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import scipy.sparse.linalg as spla

__all__ = ["BLOCK_MIN", "dependent_rows"]

BLOCK_MIN = 1_500
"""From this many rows, a sparse ``J`` is factorised block by block (see the module docstring)."""
HEAVY_FACTOR = 4
"""A row is heavy when it has more than this many times the median number of non-zeros."""


def _pstrf(Js: np.ndarray, rank_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, dropped)`` positions from one pivoted Cholesky of the unit-diagonal ``Js``."""
    if Js.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    c, piv, rank, _ = lapack.dpstrf(Js, tol=rank_tol, lower=0)
    order = piv.astype(np.int64) - 1
    # LAPACK accepts a first pivot above zero but below the tolerance: count it as zero
    small = np.flatnonzero(np.diag(c)[:rank] ** 2 <= rank_tol)
    rank = int(small[0]) if small.size else rank
    return order[:rank], order[rank:]


def _scaling(J: np.ndarray) -> np.ndarray:
    """The Jacobi scaling ``s`` (``1 / sqrt(J_jj)``; 0 on rows with a zero diagonal)."""
    diag = np.diag(J).copy()
    zero = diag <= 0
    return np.where(zero, 0.0, 1.0 / np.sqrt(np.where(zero, 1.0, diag)))


def _scaled(J: np.ndarray, s: np.ndarray, a=None, b=None) -> np.ndarray:
    """``S J S`` (unit diagonal; rows with a zero diagonal zeroed), or its block ``a x b``."""
    if a is None:
        Js = J * s[:, None]
        Js *= s[None, :]
        return Js
    return J[np.ix_(a, b)] * s[a][:, None] * s[b][None, :]


def _blocks(J: np.ndarray, s: np.ndarray, rank_tol: float):
    """``(kept, dropped, S J S as CSR)`` block by block, or None without a useful block structure.

    The scaled matrix is never formed densely: only its blocks (a dense copy of ``J`` costs
    as much memory again, and the time to touch it).
    """
    m = J.shape[0]
    rows, cols = np.nonzero(J)
    degree = np.bincount(rows, minlength=m)
    if rows.size > 0.1 * m * m:
        return None
    heavy = degree > HEAVY_FACTOR * max(float(np.median(degree)), 1.0)
    light = np.flatnonzero(~heavy)
    if light.size < m // 2:
        return None
    pos = np.full(m, -1, dtype=np.int64)
    pos[light] = np.arange(light.size)
    inner = (pos[rows] >= 0) & (pos[cols] >= 0)
    graph = sp.csr_matrix(
        (np.ones(int(inner.sum())), (pos[rows[inner]], pos[cols[inner]])),
        shape=(light.size, light.size),
    )
    n_comp, label = csgraph.connected_components(graph, directed=False)
    sizes = np.bincount(label, minlength=n_comp)
    if sizes.max() > m // 4:
        return None
    members = np.split(light[np.argsort(label, kind="stable")], np.cumsum(sizes)[:-1])
    kept: list[np.ndarray] = []
    dropped: list[np.ndarray] = []
    for idx in members:
        k, d = _pstrf(_scaled(J, s, idx, idx), rank_tol)
        kept.append(idx[k])
        dropped.append(idx[d])
    hv = np.flatnonzero(heavy)
    # the heavy rows' Schur complement over the kept light rows: S = J_HH - W'W with
    # W = R^-T J_KH, R the Cholesky factor of J_KK (block diagonal: one block per component)
    schur = _scaled(J, s, hv, hv)
    for idx in kept:
        if idx.size == 0:
            continue
        block = _scaled(J, s, idx, hv)
        touch = np.flatnonzero(np.any(block != 0, axis=0))  # the heavy rows this block meets
        if touch.size == 0:
            continue
        R = la.cholesky(_scaled(J, s, idx, idx), lower=False, check_finite=False)
        W = la.solve_triangular(R, block[:, touch], trans="T", check_finite=False)
        schur[np.ix_(touch, touch)] -= W.T @ W
    schur = 0.5 * (schur + schur.T)
    k, d = _pstrf(schur, rank_tol)
    kept.append(hv[k])
    dropped.append(hv[d])
    sparse = sp.csr_matrix((J[rows, cols] * s[rows] * s[cols], (rows, cols)), shape=(m, m))
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(dropped)), sparse


def dependent_rows(
    J: np.ndarray, rank_tol: float = 1e-11
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A linearly independent set of rows of ``J = X diag(v) X'`` and how the others depend.

    Pivoted Cholesky factorisation (LAPACK ``dpstrf``) of the Jacobi scaling of ``J`` (block
    by block for large sparse ``J``; see the module docstring), pivots below ``rank_tol``
    counted as zero.

    Returns
    -------
    keep, dropped : ndarray of int
        Positions of the kept and the dependent rows.
    C : ndarray, shape (keep.size, dropped.size)
        ``X_dropped = C' X_keep`` on the units with ``v > 0``.
    """
    s = _scaling(J)
    found = _blocks(J, s, rank_tol) if J.shape[0] >= BLOCK_MIN else None
    if found is None:
        Js = _scaled(J, s)
        # sparser rows first: equal pivots then keep a district's rows before its state's and
        # the nation's (as the blocks do), a local system for Newton. (Sums by classes of
        # repeated rows make such ties exact; the first of them, a nation's row kept for one
        # district's, left a 1,231-target problem's Newton stalling.)
        order = np.argsort(np.count_nonzero(J, axis=1), kind="stable")
        keep, dropped = (np.sort(order[v]) for v in _pstrf(Js[np.ix_(order, order)], rank_tol))
    else:
        keep, dropped, sparse = found
    if dropped.size == 0 or keep.size == 0:
        return keep, dropped, np.zeros((keep.size, dropped.size))
    # J_kd = J_kk C, solved in the Jacobi-scaled system (C = S_k Cs S_d^-1) to stay accurate
    # across row scales
    if found is not None:
        rows = sparse[keep]
        B = rows[:, dropped].toarray()
        lu = spla.splu(
            rows[:, keep].tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )  # fmt: skip
        # one right-hand side at a time: SuperLU's multi-column solve is far slower here
        Cs = np.empty(B.shape)
        for j in range(B.shape[1]):
            Cs[:, j] = lu.solve(np.ascontiguousarray(B[:, j]))
    else:
        A, B = Js[np.ix_(keep, keep)], Js[np.ix_(keep, dropped)]
        Cs = np.linalg.solve(A, B)
    C = s[keep][:, None] * Cs / np.where(s[dropped] > 0, s[dropped], 1.0)[None, :]
    return keep, dropped, C
