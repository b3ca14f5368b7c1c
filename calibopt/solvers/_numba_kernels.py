"""The numba-compiled kernels behind :mod:`calibopt.solvers.kernels` (imported lazily).

Every kernel exists twice: a multi-threaded version (``prange`` over chunks of units with
private accumulators) and a serial one for small matrices. Both are cached on disk by numba;
``python -m calibopt.solvers._numba_kernels`` compiles all of them (what the background
warm-up of :mod:`calibopt.solvers._kernel_cache` runs) and prints the seconds taken.

The central kernel is :func:`_evaluate`, one pass over the CSC matrix that, for multipliers
``lambda``, computes per unit ``u = x_i' lambda`` and ``g = clip(F(u))``, and accumulates the
estimates ``X (d g)``, the conjugate sum ``sum d G*(u)`` and, on request, the upper triangle
of the Newton matrix ``X diag(d F'(u)) X'`` restricted to the rows in play, never storing
``u`` or ``d F'(u)``. Distances are coded as :data:`LINEAR`, :data:`RAKING`, :data:`LOGIT`;
a pass may work *relative* to the linear base (see :func:`_relative`).
"""

from __future__ import annotations

import math
import sys
import time
import types

import numba
import numpy as np

LINEAR, RAKING, LOGIT = 0, 1, 2


def _compile(fn):
    """A parallel and a serial compiled version of one kernel (``prange`` = ``range`` serially).

    The serial one compiles a clone with its own qualified name, so the two never share an
    on-disk cache entry.
    """
    par = numba.njit(parallel=True, cache=True, nogil=True)(fn)
    clone = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
    )
    clone.__qualname__ = fn.__qualname__ + "_serial"
    ser = numba.njit(cache=True, nogil=True)(clone)
    return par, ser


@numba.njit(cache=True, inline="always")
def _log_expit(z):  # pragma: no cover - compiled
    if z >= 0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


@numba.njit(cache=True, inline="always")
def _neumaier(total, comp, term):  # pragma: no cover - compiled
    """``total + term`` with its rounding error added to the compensation ``comp``."""
    t = total + term
    if abs(total) >= abs(term):
        comp += (total - t) + term
    else:
        comp += (term - t) + total
    return t, comp


@numba.njit(cache=True, inline="always")
def _free(u, has_lo, has_hi, lo, hi):  # pragma: no cover - compiled
    """Whether a unit is free under a linear distance (``1 + u`` strictly within its bounds),
    the case in which a pass relative to the base only stores ``g = 1 + u``."""
    g = 1.0 + u
    return (not has_lo or g > lo) and (not has_hi or g < hi)


@numba.njit(cache=True, inline="always")
def _relative(d, u, g, dg, conj):  # pragma: no cover - compiled
    """A unit's ``(skip, weight, conjugate, curvature)`` in a pass relative to the base.

    Directly a pass sums ``d g``, ``d G*(u)`` and ``d F'(u)``. Relative (the linear distances
    only), their differences from the base, where every unit is free (``g = 1 + u``, ``G*(u)
    = u + u^2 / 2``, ``F' = 1``), whose sums are ``X d + X D X' lambda``, ``lambda' X d +
    lambda' X D X' lambda / 2`` and ``X D X'``: a free unit adds nothing (``skip``), a unit on
    a bound its difference.
    """
    e = g - (1.0 + u)
    if e == 0.0 and dg == 1.0:
        return True, 0.0, 0.0, 0.0
    return False, d * e, d * (conj - u - 0.5 * u * u), d * (dg - 1.0)


@numba.njit(cache=True, inline="always")
def _terms(dist, u, has_lo, has_hi, lo, hi, relax, relative, d):  # pragma: no cover - compiled
    """A unit's ``(g, initial weight on a bound, skip, weight, conjugate, curvature)`` in a
    pass's sums, directly or relative to the base (:func:`_relative`)."""
    g, dg, conj = _unit(dist, u, has_lo, has_hi, lo, hi, relax)
    b = d if dg == 0.0 else 0.0
    if relative:
        skip, w, dc, v = _relative(d, u, g, dg, conj)
        return g, b, skip, w, dc, v
    return g, b, False, d * g, d * conj, d * dg


@numba.njit(cache=True, inline="always")
def _add_pairs(G, rowpos, indices, data, a0, a1, v):  # pragma: no cover - compiled
    """``G[ra, rb] += v x_a x_b`` for the pairs ``a <= b`` of one unit's entries in play."""
    for a in range(a0, a1):
        ra = rowpos[indices[a]]
        if ra < 0:
            continue
        xa = data[a] * v
        for b in range(a, a1):
            rb = rowpos[indices[b]]
            if rb >= 0:
                G[ra, rb] += xa * data[b]


@numba.njit(cache=True, inline="always")
def _unit(dist, u, has_lo, has_hi, lo, hi, relax):  # pragma: no cover - compiled
    """``(g, F'(u) or 0 on a bound, G*(u))`` for one unit (see distances.py)."""
    if dist == LOGIT:
        span = hi - lo
        A = span / ((1.0 - lo) * (hi - 1.0))
        z = A * u - math.log((hi - 1.0) / (1.0 - lo))
        s = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
        g = lo + span * s
        dg = A * (g - lo) * (hi - g) / span
        a = span * s
        b = span * (1.0 - s) if z < 0 else span / (1.0 + math.exp(z))
        la = math.log(span) + _log_expit(z)
        lb = math.log(span) + _log_expit(-z)
        G = (a * (la - math.log(1.0 - lo)) + b * (lb - math.log(hi - 1.0))) / A
        return g, dg, u * g - G
    if dist == RAKING:
        g = math.exp(u) if u < 709.0 else math.inf
    else:
        g = 1.0 + u
    free = True
    if has_lo and g <= lo:
        g = lo
        free = False
    if has_hi and g >= hi:
        g = hi
        free = False
    if dist == RAKING:
        dg = g
        if free:
            conj = g - 1.0
        else:
            G = 1.0 if g == 0.0 else g * math.log(g) - g + 1.0
            conj = u * g - G
    else:
        dg = 1.0
        gm1 = g - 1.0
        conj = u + gm1 * (u - 0.5 * gm1)
    if not free and not relax:
        dg = 0.0
    return g, dg, conj


def _evaluate(
    indptr,
    indices,
    data,
    lam,
    d,
    lo,
    hi,
    has_lo,
    has_hi,
    dist,
    rowpos,
    gram,
    relative,
    relax,
    g_out,
    xw_acc,
    conj_acc,
    G_out,
    G_acc,
):  # pragma: no cover - compiled
    n = indptr.shape[0] - 1
    nchunks = xw_acc.shape[0]
    m = G_out.shape[0]
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        xw = xw_acc[c]
        xw[:] = 0.0
        G = G_out if c == 0 else G_acc[c - 1]
        if gram:
            for r in range(m):
                G[r, :] = 0.0
        total = 0.0
        comp = 0.0  # Neumaier compensation: the dual's changes near the optimum are tiny
        bound = 0.0
        for i in range(c * size, min(n, (c + 1) * size)):
            a0 = indptr[i]
            a1 = indptr[i + 1]
            u = 0.0
            for a in range(a0, a1):
                u += data[a] * lam[indices[a]]
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
            for a in range(a0, a1):
                xw[indices[a]] += data[a] * w
            if gram and v != 0.0:
                _add_pairs(G, rowpos, indices, data, a0, a1, v)
        conj_acc[c, 0] = total + comp
        conj_acc[c, 1] = bound


TILE = 64


def _symmetrize(G_out, G_acc, base, brows):  # pragma: no cover - compiled
    """``G_out`` += the chunks ``G_acc`` (and, unless ``base`` is empty, the base matrix on
    the rows ``brows``: ``base[brows[r], brows[q]]``) on the upper triangle, then mirrored to
    the lower.

    Works tile by tile (``TILE`` x ``TILE``), pairing tile rows ``I`` and ``T - 1 - I`` so the
    threads share the triangle evenly; the mirror writes of a tile row land in its own tile
    column, so no two threads write the same place.
    """
    m = G_out.shape[0]
    nc = G_acc.shape[0]
    has_base = base.shape[0] > 0
    T = (m + TILE - 1) // TILE
    for k in numba.prange((T + 1) // 2):
        for side in range(2):
            I = k if side == 0 else T - 1 - k
            if side == 1 and I == k:
                continue
            r0 = I * TILE
            r1 = min(m, r0 + TILE)
            for J in range(I, T):
                q0 = J * TILE
                q1 = min(m, q0 + TILE)
                for r in range(r0, r1):
                    for q in range(max(r, q0), q1):
                        x = G_out[r, q]
                        for c in range(nc):
                            x += G_acc[c, r, q]
                        G_out[r, q] = x
                    if has_base:  # (its own loop: the sum above stays vectorised)
                        br = base[brows[r]]
                        for q in range(max(r, q0), q1):
                            G_out[r, q] += br[brows[q]]
                for q in range(q0, q1):
                    for r in range(r0, min(r1, q)):
                        G_out[q, r] = G_out[r, q]


def _gram_upper(indptr, indices, data, v, G_out, G_acc):  # pragma: no cover - compiled
    """The upper triangle of ``X diag(v) X'``: chunk 0 into ``G_out``, chunk ``c`` into
    ``G_acc[c - 1]`` (both zeroed here; :func:`_symmetrize` adds them up)."""
    n = indptr.shape[0] - 1
    nchunks = G_acc.shape[0] + 1
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        G = G_out if c == 0 else G_acc[c - 1]
        G[:, :] = 0.0
        start = c * size
        stop = min(n, start + size)
        for i in range(start, stop):
            vi = v[i]
            if vi == 0.0:
                continue
            a1 = indptr[i + 1]
            for a in range(indptr[i], a1):
                ra = indices[a]
                xa = data[a] * vi
                for b in range(a, a1):
                    G[ra, indices[b]] += xa * data[b]


def _rmatvec(indptr, indices, data, lam, out):  # pragma: no cover - compiled
    n = indptr.shape[0] - 1
    for i in numba.prange(n):
        s = 0.0
        for a in range(indptr[i], indptr[i + 1]):
            s += data[a] * lam[indices[a]]
        out[i] = s


def _matvec(indptr, indices, data, w, p, nchunks, power):  # pragma: no cover - compiled
    n = indptr.shape[0] - 1
    acc = np.zeros((nchunks, p))
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        e = acc[c]
        start = c * size
        stop = min(n, start + size)
        for i in range(start, stop):
            wi = w[i]
            if wi == 0.0:
                continue
            for a in range(indptr[i], indptr[i + 1]):
                x = data[a]
                if power == 2:
                    x = x * x
                elif power == 0:
                    x = abs(x)
                e[indices[a]] += x * wi
    out = acc[0].copy()
    for c in range(1, nchunks):
        out += acc[c]
    return out


def _row_ranges(indptr, indices, data, wlo, whi, p, nchunks):  # pragma: no cover - compiled
    n = indptr.shape[0] - 1
    # finite parts and counts of infinite contributions, per chunk
    acc = np.zeros((nchunks, 4, p))
    size = (n + nchunks - 1) // nchunks
    for c in numba.prange(nchunks):
        A = acc[c]
        start = c * size
        stop = min(n, start + size)
        for i in range(start, stop):
            lo = wlo[i]
            hi = whi[i]
            for a in range(indptr[i], indptr[i + 1]):
                x = data[a]
                j = indices[a]
                mn = x * lo if x > 0 else x * hi
                mx = x * hi if x > 0 else x * lo
                if np.isinf(mn):
                    A[2, j] += 1.0
                else:
                    A[0, j] += mn
                if np.isinf(mx):
                    A[3, j] += 1.0
                else:
                    A[1, j] += mx
    out = acc[0].copy()
    for c in range(1, nchunks):
        out += acc[c]
    return out


@numba.njit(cache=True, inline="always")
def _csc_block(indptr, indices, data, c0, c1, head, out_idx, out_dat, fill):  # pragma: no cover
    """One block of :func:`_csr_to_csc`: every entry in columns ``[c0, c1)``, row by row,
    advances ``head[c - c0]``; with ``fill`` it is also written at the old head."""
    for r in range(indptr.shape[0] - 1):
        a1 = indptr[r + 1]
        for a in range(indptr[r] + np.searchsorted(indices[indptr[r] : a1], c0), a1):
            c = indices[a]
            if c >= c1:
                break
            k = head[c - c0]
            if fill:
                out_idx[k] = r
                out_dat[k] = data[a]
            head[c - c0] = k + 1


def _csr_to_csc(indptr, indices, data, n, nblocks, out_ptr, out_idx, out_dat):  # pragma: no cover
    """Transpose a CSR matrix with sorted indices into preallocated CSC arrays.

    Each block owns a range of output columns and scans every row's sub-range in that range
    (found by binary search), so blocks never share a write and the output's column counters
    and write heads stay in cache; rows are visited in order, so the output indices are sorted.
    ``out_ptr`` must be zero on entry.
    """
    bsize = (n + nblocks - 1) // nblocks
    for b in numba.prange(nblocks):  # counts: the heads are out_ptr[c + 1]
        c0 = b * bsize
        c1 = min(n, c0 + bsize)
        _csc_block(indptr, indices, data, c0, c1, out_ptr[c0 + 1 :], out_idx, out_dat, False)
    for c in range(n):
        out_ptr[c + 1] += out_ptr[c]
    for b in numba.prange(nblocks):
        c0 = b * bsize
        c1 = min(n, c0 + bsize)
        head = out_ptr[c0:c1].copy()
        _csc_block(indptr, indices, data, c0, c1, head, out_idx, out_dat, True)


def _submatrix(J, rows, out):  # pragma: no cover - compiled
    """``out = J[rows][:, rows]`` (a principal submatrix), row by row in parallel."""
    m = rows.shape[0]
    for i in numba.prange(m):
        src = J[rows[i]]
        dst = out[i]
        for j in range(m):
            dst[j] = src[rows[j]]


def _row_absmax(indices, data, p):  # pragma: no cover - compiled
    out = np.zeros(p)
    for a in range(indices.shape[0]):
        x = abs(data[a])
        if x > out[indices[a]]:
            out[indices[a]] = x
    return out


EVALUATE = _compile(_evaluate)
GRAM_UPPER = _compile(_gram_upper)
SYMMETRIZE = _compile(_symmetrize)
SUBMATRIX = _compile(_submatrix)
RMATVEC = _compile(_rmatvec)
MATVEC = _compile(_matvec)
ROW_RANGES = _compile(_row_ranges)
CSR_TO_CSC = numba.njit(parallel=True, cache=True, nogil=True)(_csr_to_csc)
ROW_ABSMAX = numba.njit(cache=True, nogil=True)(_row_absmax)


def warm() -> float:
    """Compile (or load from the cache) every kernel for the common index types; seconds."""
    t0 = time.perf_counter()
    data = np.array([1.0, 2.0, 1.0])
    f = np.ones(2)
    for itype in (np.int32, np.int64):
        indptr = np.array([0, 2, 3], dtype=itype)
        indices = np.array([0, 1, 1], dtype=itype)
        rowpos = np.array([0, 1], dtype=np.int64)
        for k in (0, 1):
            for dist in (LINEAR, RAKING, LOGIT):
                EVALUATE[k](
                    indptr,
                    indices,
                    data,
                    np.zeros(2),
                    f,
                    f * 0.5,
                    f * 2.0,
                    True,
                    True,
                    dist,
                    rowpos,
                    True,
                    dist == LINEAR,
                    False,
                    np.empty(2),
                    np.empty((1, 2)),
                    np.empty((1, 2)),
                    np.empty((2, 2)),
                    np.empty((0, 2, 2)),
                )
            G, acc = np.empty((2, 2)), np.empty((1, 2, 2))
            GRAM_UPPER[k](indptr, indices, data, f, G, acc)
            SYMMETRIZE[k](G, acc, G, rowpos)
            SYMMETRIZE[k](G, acc, np.empty((0, 0)), rowpos)
            SUBMATRIX[k](G, rowpos, np.empty((2, 2)))
            RMATVEC[k](indptr, indices, data, f, np.empty(2))
            MATVEC[k](indptr, indices, data, f, 2, 1, 1)
            ROW_RANGES[k](indptr, indices, data, f * 0.0, f, 2, 1)
            out_ptr = np.zeros(3, dtype=itype)
            CSR_TO_CSC(indptr, indices, data, 2, 1, out_ptr, np.empty(3, dtype=itype), np.empty(3))
        ROW_ABSMAX(indices, data, 2)
    return time.perf_counter() - t0


if __name__ == "__main__":  # pragma: no cover - run by the background warm-up
    seconds = warm()
    sys.stdout.write(f"{seconds:.3f}\n")
