"""The numba kernels of the one-hot cell pass (:mod:`calibopt.solvers.onehot`), imported lazily.

Detection (:func:`_row_minmax`, :func:`_conflicts`, :func:`_codes`, :func:`_rest_fill`) reads
the CSC matrix a few times once per solve; the pass itself (:func:`_evaluate_cells`, then
:func:`_cell_units` before and :func:`_cells_finish` after it; :func:`_gram_cells` for
``X diag(v) X'`` and ``X v``) replaces the one-hot rows of a unit by one cell index. Like
:mod:`calibopt.solvers._numba_kernels`, every kernel is compiled parallel and serial, cached
on disk, and compiled in the background warm-up (:func:`warm` compiles both modules; the
cache stamp digests both sources).
"""

from __future__ import annotations

import sys
import time

import numba
import numpy as np

from ._numba_kernels import (
    LINEAR,
    LOGIT,
    RAKING,
    _add_pairs,
    _compile,
    _free,
    _neumaier,
    _relative,
    _room,
    _terms,
    _unit,
)
from ._numba_kernels import warm as _warm_core


def _row_minmax(indptr, indices, data, starts, run, mins, maxs, counts):  # pragma: no cover
    """Per chunk of units (the first axis of the outputs), each row's least and largest value
    and its count of entries, over the units ``starts[s] .. starts[s] + run - 1``."""
    n = indptr.shape[0] - 1
    nruns = starts.shape[0]
    nchunks = mins.shape[0]
    size = (nruns + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        mn = mins[c]
        mx = maxs[c]
        ct = counts[c]
        mn[:] = np.inf
        mx[:] = -np.inf
        ct[:] = 0
        for s in range(c * size, min(nruns, (c + 1) * size)):
            for a in range(indptr[starts[s]], indptr[min(n, starts[s] + run)]):
                r = indices[a]
                x = data[a]
                if x < mn[r]:
                    mn[r] = x
                if x > mx[r]:
                    mx[r] = x
                ct[r] += 1


def _conflicts(indptr, indices, starts, run, cand, conf):  # pragma: no cover - compiled
    """``conf[chunk, a, b] = 1`` when candidate rows ``a`` and ``b`` share a unit (among the
    units of :func:`_row_minmax`)."""
    n = indptr.shape[0] - 1
    nruns = starts.shape[0]
    nchunks = conf.shape[0]
    size = (nruns + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        cf = conf[c]
        cf[:, :] = 0
        for s in range(c * size, min(nruns, (c + 1) * size)):
            for i in range(starts[s], min(n, starts[s] + run)):
                a1 = indptr[i + 1]
                for a in range(indptr[i], a1):
                    ca = cand[indices[a]]
                    if ca < 0:
                        continue
                    for b in range(a + 1, a1):
                        cb = cand[indices[b]]
                        if cb >= 0:
                            cf[ca, cb] = 1
                            cf[cb, ca] = 1


def _codes(indptr, indices, data, bit, lvl, val, code, nrest, seen):  # pragma: no cover
    """Each unit's dense cell code (the sum of ``lvl`` over its one-hot rows: a row's level
    times its block's stride) and its count of other entries (``bit = 0``: the row's block
    bit, or 0 outside the blocks), and per chunk of units the codes seen (``seen[chunk, code]
    = 1``); ``code = -1`` where the blocks do not hold (two entries of one block, or an entry
    unlike its row's value), flagged in the last column of ``seen``."""
    n = indptr.shape[0] - 1
    nchunks = seen.shape[0]
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        sc = seen[c]
        sc[:] = 0
        for i in range(c * size, min(n, (c + 1) * size)):
            k = 0
            other = 0
            mask = 0
            for a in range(indptr[i], indptr[i + 1]):
                r = indices[a]
                bt = bit[r]
                if bt == 0:
                    other += 1
                    continue
                if (mask & bt) != 0 or data[a] != val[r]:
                    k = -1
                    break
                mask |= bt
                k += lvl[r]
            code[i] = k
            nrest[i] = other
            sc[k] = 1  # (k = -1: the last entry says a unit failed)


def _remap(code, nrest, d, index, pure, sums):  # pragma: no cover - compiled
    """``code = index[code]`` in place and, with ``pure``, per chunk the initial weight of each
    cell's units without other entries."""
    n = code.shape[0]
    nchunks = sums.shape[0]
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        sm = sums[c]
        sm[:] = 0.0
        for i in range(c * size, min(n, (c + 1) * size)):
            k = index[code[i]]
            code[i] = k
            if pure and nrest[i] == 0:
                sm[k] += d[i]


def _rest_fill(indptr, indices, data, blk, rptr, ridx, rdat):  # pragma: no cover - compiled
    """The entries outside the one-hot blocks, as a CSC matrix ``(rptr, ridx, rdat)``."""
    n = indptr.shape[0] - 1
    for i in numba.prange(n):
        q = rptr[i]
        for a in range(indptr[i], indptr[i + 1]):
            if blk[indices[a]] < 0:
                ridx[q] = indices[a]
                rdat[q] = data[a]
                q += 1


def _cell_units(
    cell_rows, cell_vals, lam, dist, has_lo, has_hi, lo0, hi0, relax, F, gcell, dgcell, ccell
):  # pragma: no cover - compiled
    """Per cell: ``F = sum_b v_b lam_{r_b}`` and, at ``u = F`` and the uniform bounds, the
    g-weight, curvature and conjugate of a unit of the cell without other entries."""
    ncells, nb = cell_rows.shape
    for k in numba.prange(ncells):
        u = 0.0
        for b in range(nb):
            r = cell_rows[k, b]
            if r >= 0:
                u += cell_vals[k, b] * lam[r]
        F[k] = u
        g, dg, conj = _unit(dist, u, has_lo, has_hi, lo0, hi0, relax)
        gcell[k] = g
        dgcell[k] = dg
        ccell[k] = conj


def _evaluate_cells(
    code,
    rptr,
    ridx,
    rdat,
    F,
    gcell,
    lam,
    d,
    lo,
    hi,
    has_lo,
    has_hi,
    lo0,
    hi0,
    pure_cells,
    dist,
    rowpos,
    restpos,
    gram,
    relative,
    relax,
    g_out,
    xw_acc,
    conj_acc,
    G_out,
    G_acc,
    W_acc,
    H_acc,
    Z_acc,
):  # pragma: no cover - compiled
    """One pass over the units: ``u_i = F[cell_i] + (other entries) . lam``; the one-hot rows'
    estimates and curvature go to per-cell sums (``W``, ``H``, and ``Z`` per other row in
    play), the other entries as in :func:`~calibopt.solvers._numba_kernels._evaluate`.

    With ``pure_cells`` (uniform bounds) a unit without other entries only copies its cell's
    g-weight: its sums come from the cell's total initial weight in :func:`_cells_finish`.
    ``relative`` sums the differences from the linear base
    (:func:`~calibopt.solvers._numba_kernels._relative`); ``conj_acc[c]`` gets the chunk's
    conjugate sum and initial weight on a bound.
    """
    n = code.shape[0]
    rest = rptr.shape[0] > 1  # (a single 0: no unit has other entries)
    nchunks = xw_acc.shape[0]
    m = G_out.shape[0]
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        xw = xw_acc[c]
        xw[:] = 0.0
        W = W_acc[c]
        W[:] = 0.0
        G = G_out if c == 0 else G_acc[c - 1]
        H = H_acc[c]
        Z = Z_acc[c]
        if gram:
            for r in range(m):
                G[r, :] = 0.0
            H[:] = 0.0
            Z[:, :] = 0.0
        total = 0.0
        comp = 0.0
        bound = 0.0
        pos, xs = _room(np.empty(0, dtype=np.int64), np.empty(0), 64)
        for i in range(c * size, min(n, (c + 1) * size)):
            k = code[i]
            a0 = rptr[i] if rest else 0
            a1 = rptr[i + 1] if rest else 0
            if pure_cells and a0 == a1:
                g_out[i] = gcell[k]
                continue
            u = F[k]
            for a in range(a0, a1):
                u += rdat[a] * lam[ridx[a]]
            li = lo0
            hi_i = hi0
            if not pure_cells:  # uniform bounds: no per-unit reads
                li = lo[i] if has_lo else 0.0
                hi_i = hi[i] if has_hi else 0.0
            if relative and _free(u, has_lo, has_hi, li, hi_i):
                g_out[i] = 1.0 + u
                continue
            g, b, skip, w, dc, v = _terms(dist, u, has_lo, has_hi, li, hi_i, relax, relative, d[i])
            g_out[i] = g
            bound += b
            if skip:
                continue
            total, comp = _neumaier(total, comp, dc)
            W[k] += w
            for a in range(a0, a1):
                xw[ridx[a]] += rdat[a] * w
            if gram and v != 0.0:
                H[k] += v
                for a in range(a0, a1):
                    j = restpos[ridx[a]]
                    if j >= 0:
                        Z[k, j] += rdat[a] * v
                pos, xs = _room(pos, xs, a1 - a0)
                _add_pairs(G, rowpos, ridx, rdat, a0, a1, v, pos, xs)
        conj_acc[c, 0] = total + comp
        conj_acc[c, 1] = bound


def _gram_cells(code, rptr, ridx, rdat, v, restpos, G_out, G_acc, H_acc, Z_acc):  # pragma: no cover
    """``X diag(v) X'`` on every row: per cell the sums ``H`` (and ``Z`` per other row), the
    other rows' pairs per unit (upper triangle; :func:`_cells_finish` adds the cells)."""
    n = code.shape[0]
    rest = rptr.shape[0] > 1
    nchunks = H_acc.shape[0]
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        G = G_out if c == 0 else G_acc[c - 1]
        G[:, :] = 0.0
        H = H_acc[c]
        H[:] = 0.0
        Z = Z_acc[c]
        Z[:, :] = 0.0
        for i in range(c * size, min(n, (c + 1) * size)):
            vi = v[i]
            if vi == 0.0:
                continue
            k = code[i]
            H[k] += vi
            if not rest:
                continue
            a1 = rptr[i + 1]
            for a in range(rptr[i], a1):
                ra = ridx[a]
                xa = rdat[a] * vi
                Z[k, restpos[ra]] += xa
                for b in range(a, a1):
                    G[ra, ridx[b]] += xa * rdat[b]


def _cells_finish(
    cell_rows,
    cell_vals,
    dpure,
    gcell,
    dgcell,
    ccell,
    pure_cells,
    W_acc,
    H_acc,
    Z_acc,
    rest_rows,
    rowpos,
    gram,
    relative,
    F,
    xw,
    G,
):  # pragma: no cover - compiled
    """Adds the cells' sums to the estimates ``xw`` and the upper triangle of ``G`` (``gram``
    and ``relative`` as in :func:`_evaluate_cells`); returns the pure units' conjugate sum and
    initial weight on a bound (serial: a few operations per cell)."""
    ncells, nb = cell_rows.shape
    nchunks = W_acc.shape[0]
    R = rest_rows.shape[0]
    total = 0.0
    comp = 0.0
    bound = 0.0
    for k in range(ncells):
        Wk = 0.0
        Hk = 0.0
        for c in range(nchunks):
            Wk += W_acc[c, k]
            if gram:
                Hk += H_acc[c, k]
        if pure_cells and dpure[k] > 0.0:
            if dgcell[k] == 0.0:
                bound += dpure[k]
            dk = dpure[k]
            skip, w, dc, v = False, dk * gcell[k], dk * ccell[k], dk * dgcell[k]
            if relative:
                skip, w, dc, v = _relative(dk, F[k], gcell[k], dgcell[k], ccell[k])
            if not skip:
                Wk += w
                Hk += v
                total, comp = _neumaier(total, comp, dc)
        for b in range(nb):
            r = cell_rows[k, b]
            if r >= 0:
                xw[r] += cell_vals[k, b] * Wk
        if not gram:
            continue
        for b in range(nb):
            r = cell_rows[k, b]
            if r < 0:
                continue
            p = rowpos[r]
            if p < 0:
                continue
            vb = cell_vals[k, b]
            if Hk != 0.0:
                for b2 in range(b, nb):
                    r2 = cell_rows[k, b2]
                    if r2 < 0:
                        continue
                    q = rowpos[r2]
                    if q < 0:
                        continue
                    x = vb * cell_vals[k, b2] * Hk
                    if p <= q:
                        G[p, q] += x
                    else:
                        G[q, p] += x
            for j in range(R):
                z = 0.0
                for c in range(nchunks):
                    z += Z_acc[c, k, j]
                if z == 0.0:
                    continue
                q = rowpos[rest_rows[j]]
                if p <= q:
                    G[p, q] += vb * z
                else:
                    G[q, p] += vb * z
    return total + comp, bound


ROW_MINMAX = _compile(_row_minmax)
CONFLICTS = _compile(_conflicts)
CODES = _compile(_codes)
REST_FILL = _compile(_rest_fill)
CELL_UNITS = _compile(_cell_units)
REMAP = _compile(_remap)
EVALUATE_CELLS = _compile(_evaluate_cells)
GRAM_CELLS = _compile(_gram_cells)
CELLS_FINISH = numba.njit(cache=True, nogil=True)(_cells_finish)


def warm() -> float:
    """Compile (or load) the core kernels and these, for the common index types; seconds."""
    t0 = time.perf_counter()
    _warm_core()
    data = np.array([1.0, 2.0, 1.0])
    f = np.ones(2)
    rowpos = np.array([0, 1], dtype=np.int64)
    cell_rows = np.array([[0], [-1]], dtype=np.int64)
    cell_vals = np.ones((2, 1))
    for itype in (np.int32, np.int64):
        indptr = np.array([0, 2, 3], dtype=itype)
        indices = np.array([0, 1, 1], dtype=itype)
        blk = np.array([0, -1], dtype=np.int64)
        for k in (0, 1):
            starts = np.zeros(1, dtype=np.int64)
            ROW_MINMAX[k](indptr, indices, data, starts, 2, np.empty((1, 2)), np.empty((1, 2)),
                          np.empty((1, 2), dtype=np.int64))  # fmt: skip
            CONFLICTS[k](indptr, indices, starts, 2, rowpos, np.empty((1, 2, 2), dtype=np.uint8))
            CODES[k](indptr, indices, data, rowpos, rowpos, f, np.empty(2, dtype=np.int32),
                     np.empty(2, dtype=np.int32), np.empty((1, 4), dtype=np.uint8))  # fmt: skip
            REST_FILL[k](indptr, indices, data, blk, np.array([0, 1, 2], dtype=np.int64),
                         np.empty(2, dtype=itype), np.empty(2))  # fmt: skip
    code = np.array([0, 1], dtype=np.int32)
    for k in (0, 1):
        REMAP[k](code.copy(), code, f, np.arange(2, dtype=np.int32), True, np.empty((1, 2)))
    rptr = np.array([0, 1, 2], dtype=np.int64)
    ridx = np.array([1, 1], dtype=np.int32)
    for k in (0, 1):
        for dist in (LINEAR, RAKING, LOGIT):
            F, gc, dgc, cc = np.empty(2), np.empty(2), np.empty(2), np.empty(2)
            CELL_UNITS[k](cell_rows, cell_vals, f, dist, True, True, 0.5, 2.0, False,
                          F, gc, dgc, cc)  # fmt: skip
            W, H, Z = np.empty((1, 2)), np.empty((1, 2)), np.empty((1, 2, 1))
            G = np.empty((2, 2))
            EVALUATE_CELLS[k](code, rptr, ridx, data[:2], F, gc, f, f, f * 0.5, f * 2.0,
                              True, True, 0.5, 2.0, True, dist, rowpos, rowpos, True,
                              dist == LINEAR, False, np.empty(2), np.empty((1, 2)),
                              np.empty((1, 2)), G, np.empty((0, 2, 2)), W, H, Z)  # fmt: skip
        GRAM_CELLS[k](code, rptr, ridx, data[:2], f, rowpos, G, np.empty((0, 2, 2)), H, Z)
    for relative in (False, True):
        CELLS_FINISH(cell_rows, cell_vals, f, f, f, f, True, W, H, Z,
                     np.array([1], dtype=np.int64), rowpos, True, relative, f, np.zeros(2),
                     G)  # fmt: skip
    return time.perf_counter() - t0


if __name__ == "__main__":  # pragma: no cover - run by the background warm-up
    seconds = warm()
    sys.stdout.write(f"{seconds:.3f}\n")
