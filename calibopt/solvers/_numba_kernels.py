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
def _room(pos, xs, k):  # pragma: no cover - compiled
    """Pair buffers of at least ``k`` entries: ``pos, xs`` while they suffice, else new ones."""
    if k <= pos.shape[0]:
        return pos, xs
    return np.empty(2 * k, dtype=np.int64), np.empty(2 * k)


PLACED, IN_PLAY = 0, 1
"""How :func:`_evaluate_units` indexes a unit's multipliers and estimates: a literal at each
call site, so that every caller compiles one branch only (a run-time test inside the units'
loop cost 35% of the national Gram pass). ``PLACED``: by the entries' places (a segment's
classes, see :func:`_segments`); ``IN_PLAY``: by row, the places used for the pairs only."""


@numba.njit(cache=True, inline="always")
def _gather(place, indices, data, a0, a1, pos, xs):  # pragma: no cover - compiled
    """A unit's entries that have a place (``place[row] >= 0``): ``pos[:k], xs[:k]`` (buffers
    of at least ``a1 - a0``, see :func:`_room`); returns ``k``."""
    k = 0
    for a in range(a0, a1):
        r = place[indices[a]]
        if r >= 0:
            pos[k] = r
            xs[k] = data[a]
            k += 1
    return k


@numba.njit(cache=True, inline="always")
def _pairs(G, pos, xs, a0, a1, v):  # pragma: no cover - compiled
    """``G[pos_a, pos_b] += v x_a x_b`` for the pairs ``a0 <= a <= b < a1`` of placed entries.

    Placed first (gathered by :func:`_gather`, or a segment's class entries), the pair loop
    reads neither a row map nor the matrix and has no branch: on the national local-area
    matrix that made the Gram pass 1.7x faster than looking each pair's place up.
    """
    for a in range(a0, a1):
        ra = pos[a]
        xa = xs[a] * v
        for b in range(a, a1):
            G[ra, pos[b]] += xa * xs[b]


@numba.njit(cache=True, inline="always")
def _add_pairs(G, rowpos, indices, data, a0, a1, v, pos, xs):  # pragma: no cover - compiled
    """``G[ra, rb] += v x_a x_b`` for the pairs ``a <= b`` of one unit's entries in play
    (``rowpos``: a row's place in ``G``, -1 out of play)."""
    _pairs(G, pos, xs, 0, _gather(rowpos, indices, data, a0, a1, pos, xs), v)


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


@numba.njit(cache=True, inline="always")
def _evaluate_units(
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
    place,
    gram,
    relative,
    relax,
    g_out,
    xw,
    G,
    i0,
    i1,
    total,
    comp,
    bound,
    pos,
    xs,
    mode,
):  # pragma: no cover - compiled
    """Units ``i0:i1`` of :func:`_evaluate` (``mode``, a literal: ``PLACED``, the entries'
    indices are already places, e.g. a segment's class entries, and index ``lam``, ``xw`` and
    the pairs in ``G``; ``IN_PLAY``, they are rows, and ``place`` places them in ``G``). The
    sums go on from ``total`` (the conjugate sum), ``comp`` (its compensation) and ``bound``
    (initial weight on a bound); returns them and the buffers."""
    for i in range(i0, i1):
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
        if not gram or v == 0.0:
            continue
        if mode == PLACED:
            _pairs(G, indices, data, a0, a1, v)
        else:
            pos, xs = _room(pos, xs, a1 - a0)
            _pairs(G, pos, xs, 0, _gather(place, indices, data, a0, a1, pos, xs), v)
    return total, comp, bound, pos, xs


@numba.njit(cache=True, inline="always")
def _spans(seg_start, n, c, nchunks):  # pragma: no cover - compiled
    """The segments of chunk ``c``: those that start among its units."""
    size = (n + nchunks - 1) // nchunks
    last = seg_start.shape[0] - 1
    s0 = np.searchsorted(seg_start[:last], c * size)
    s1 = np.searchsorted(seg_start[:last], min(n, (c + 1) * size))
    return s0, s1


@numba.njit(cache=True, inline="always")
def _width(seg_ptr):  # pragma: no cover - compiled
    """Most rows of a segment (0 without segments)."""
    width = 0
    for s in range(seg_ptr.shape[0] - 1):
        width = max(width, seg_ptr[s + 1] - seg_ptr[s])
    return width


@numba.njit(cache=True, inline="always")
def _place_classes(seg_rows, seg_cls, r0, p, loc, on):  # pragma: no cover - compiled
    """Places the representatives of the classes of the segment's rows ``seg_rows[r0:r0 +
    p]`` (each class's first row) at the classes' numbers in ``loc`` (``on``; else back to
    -1; ``loc`` empty: only counts them); the other rows stay at -1 (a unit's entries there
    repeat a representative's). Returns the number of classes."""
    nc = 0
    for k in range(p):
        if seg_cls[r0 + k] == nc:  # (numbered in the order of their first rows)
            if loc.shape[0]:
                loc[seg_rows[r0 + k]] = nc if on else -1
            nc += 1
    return nc


@numba.njit(cache=True, inline="always")
def _zero_upper(L, nc):  # pragma: no cover - compiled
    for k in range(nc):
        for q in range(k, nc):
            L[k, q] = 0.0


@numba.njit(cache=True, inline="always")
def _close_segment(seg_rows, seg_cls, r0, p, L, G, rowpos):  # pragma: no cover - compiled
    """Adds the classes' upper triangle ``L`` into ``G`` at every pair of the segment's rows
    in play (in ``rowpos``'s places, or each in its own when ``rowpos`` is empty: rows in
    increasing order, so the pairs stay in the upper triangle)."""
    every = rowpos.shape[0] == 0
    for k in range(p):
        rk = seg_rows[r0 + k]
        pk = rk if every else rowpos[rk]
        if pk < 0:
            continue
        ck = seg_cls[r0 + k]
        for q in range(k, p):
            rq = seg_rows[r0 + q]
            pq = rq if every else rowpos[rq]
            if pq >= 0:
                cq = seg_cls[r0 + q]
                G[pk, pq] += L[ck, cq] if ck <= cq else L[cq, ck]


@numba.njit(cache=True, inline="always")
def _zero(G, m, pat_ptr, pat_cols):  # pragma: no cover - compiled
    """Zeroes ``G`` (``m x m``), only at the pattern's places when one is given."""
    if pat_ptr.shape[0] == 0:
        for r in range(m):
            G[r, :] = 0.0
        return
    for r in range(m):
        for t in range(pat_ptr[r], pat_ptr[r + 1]):
            G[r, pat_cols[t]] = 0.0


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
    seg_start,
    seg_ptr,
    seg_rows,
    seg_cls,
    ent_ptr,
    ent_cls,
    ent_val,
    pat_ptr,
    pat_cols,
    gram,
    relative,
    relax,
    g_out,
    xw_acc,
    conj_acc,
    G_out,
    G_acc,
):  # pragma: no cover - compiled
    """See the module. ``rowpos`` maps a row to its place in the Newton matrix (-1: out of
    play), empty when every row is in play in its own place; ``seg_*`` (empty: none) are
    the segments of :func:`_segments`, ``ent_*`` their units' class entries
    (:func:`_class_entries`): each segment sums its units by the classes of its rows (a
    class's multipliers added up, its estimate and its pairs formed once), then spreads the
    sums over the rows. ``pat_ptr, pat_cols`` (empty: none) are :func:`_gram_pattern`'s
    places of the Newton matrix that a pass can reach: only those are zeroed (the rest of
    ``G_out`` must be zero already, and the rest of ``G_acc`` is never read)."""
    n = indptr.shape[0] - 1
    nchunks = xw_acc.shape[0]
    m = G_out.shape[0]
    p_all = xw_acc.shape[1]
    size = (n + nchunks - 1) // nchunks
    width = _width(seg_ptr)
    every = rowpos.shape[0] == 0
    for c in numba.prange(nchunks):
        xw = xw_acc[c]
        xw[:] = 0.0
        G = G_out if c == 0 else G_acc[c - 1]
        if gram:
            _zero(G, m, pat_ptr, pat_cols)
        total = 0.0
        comp = 0.0  # Neumaier compensation: the dual's changes near the optimum are tiny
        bound = 0.0
        pos, xs = _room(np.empty(0, dtype=np.int64), np.empty(0), 64)
        if width == 0:  # (the segments' own variables below: sharing costs 40%)
            total, comp, bound, pos, xs = _evaluate_units(
                indptr, indices, data, lam, d, lo, hi, has_lo, has_hi, dist,
                np.arange(p_all) if every else rowpos, gram, relative, relax, g_out, xw, G,
                c * size, min(n, (c + 1) * size), total, comp, bound, pos, xs, IN_PLAY,
            )  # fmt: skip
            conj_acc[c, 0] = total + comp
            conj_acc[c, 1] = bound
            continue
        L = np.empty((width, width))
        lam_s = np.empty(width)
        xw_s = np.empty(width)
        s0, s1 = _spans(seg_start, n, c, nchunks)
        for s in range(s0, s1):  # each with its own multipliers and estimates, by class
            r0, p = seg_ptr[s], seg_ptr[s + 1] - seg_ptr[s]
            nc = _place_classes(seg_rows, seg_cls, r0, p, seg_cls[:0], False)
            if gram:
                _zero_upper(L, nc)
            lam_s[:nc] = 0.0
            xw_s[:nc] = 0.0
            for k in range(p):
                lam_s[seg_cls[r0 + k]] += lam[seg_rows[r0 + k]]
            total, comp, bound, pos, xs = _evaluate_units(
                ent_ptr, ent_cls, ent_val, lam_s, d, lo, hi, has_lo, has_hi, dist, rowpos,
                gram, relative, relax, g_out, xw_s, L, seg_start[s], seg_start[s + 1], total,
                comp, bound, pos, xs, PLACED,
            )  # fmt: skip
            for k in range(p):
                xw[seg_rows[r0 + k]] += xw_s[seg_cls[r0 + k]]
            if gram:
                _close_segment(seg_rows, seg_cls, r0, p, L, G, rowpos)
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


def _symmetrize_pattern(G_out, G_acc, base, brows, pat_ptr, pat_cols):  # pragma: no cover
    """:func:`_symmetrize` at the places of a pattern only (:func:`_gram_pattern`): the
    upper places are summed, then mirrored; the chunks ``G_acc`` are read nowhere else."""
    m = G_out.shape[0]
    nc = G_acc.shape[0]
    has_base = base.shape[0] > 0
    for r in numba.prange(m):
        for t in range(pat_ptr[r], pat_ptr[r + 1]):
            q = pat_cols[t]
            x = G_out[r, q]
            for c in range(nc):
                x += G_acc[c, r, q]
            if has_base:
                x += base[brows[r], brows[q]]
            G_out[r, q] = x
            G_out[q, r] = x


def _gram_pattern(seg_ptr, seg_rows, rowpos, m, limit):  # pragma: no cover - compiled
    """The places of the Newton matrix on ``m`` rows in play that a pass can reach: every
    pair of rows sharing a segment (:func:`_segments`; a unit's rows lie in its segment's),
    placed by ``rowpos`` (-1: out of play; empty: every row in its own place), and the
    diagonal. Returns the upper triangle as CSR ``(ptr, cols)``, or empty arrays when it
    would hold more than ``limit`` places.
    """
    mark = np.zeros((m, m), dtype=np.bool_)
    for r in range(m):
        mark[r, r] = True
    every = rowpos.shape[0] == 0
    buf = np.empty(m, dtype=np.int64)
    for s in range(seg_ptr.shape[0] - 1):
        k = 0
        for a in range(seg_ptr[s], seg_ptr[s + 1]):  # sorted rows; the places keep the order
            q = seg_rows[a] if every else rowpos[seg_rows[a]]
            if q >= 0:
                buf[k] = q
                k += 1
        for a in range(k):
            row = mark[buf[a]]
            for b in range(a, k):
                row[buf[b]] = True
    ptr = np.zeros(m + 1, dtype=np.int64)
    for r in range(m):
        ptr[r + 1] = ptr[r] + np.count_nonzero(mark[r, r:])
    if ptr[m] > limit:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    cols = np.empty(ptr[m], dtype=np.int64)
    for r in range(m):
        t = ptr[r]
        for q in range(r, m):
            if mark[r, q]:
                cols[t] = q
                t += 1
    return ptr, cols


def _gram_upper(
    indptr,
    indices,
    data,
    v,
    seg_start,
    seg_ptr,
    seg_rows,
    seg_cls,
    pat_ptr,
    pat_cols,
    G_out,
    G_acc,
):  # pragma: no cover - compiled
    """The upper triangle of ``X diag(v) X'``: chunk 0 into ``G_out``, chunk ``c`` into
    ``G_acc[c - 1]`` (both zeroed here; :func:`_symmetrize` adds them up); ``seg_*`` and
    ``pat_*`` as in :func:`_evaluate`."""
    n = indptr.shape[0] - 1
    p_all = G_out.shape[0]
    nchunks = G_acc.shape[0] + 1
    size = (n + nchunks - 1) // nchunks
    width = _width(seg_ptr)
    for c in numba.prange(nchunks):
        G = G_out if c == 0 else G_acc[c - 1]
        _zero(G, p_all, pat_ptr, pat_cols)
        pos, xs = _room(np.empty(0, dtype=np.int64), np.empty(0), 64)
        if width == 0:
            place = np.arange(p_all)
            for i in range(c * size, min(n, (c + 1) * size)):
                if v[i] != 0.0:
                    a0, a1 = indptr[i], indptr[i + 1]
                    pos, xs = _room(pos, xs, a1 - a0)
                    k = _gather(place, indices, data, a0, a1, pos, xs)
                    _pairs(G, pos, xs, 0, k, v[i])
            continue
        loc = np.full(p_all, -1, dtype=np.int64)
        L = np.empty((width, width))
        own_places = np.empty(0, dtype=np.int64)  # (every row in play, in its own place)
        s0, s1 = _spans(seg_start, n, c, nchunks)
        for s in range(s0, s1):
            r0, p = seg_ptr[s], seg_ptr[s + 1] - seg_ptr[s]
            _zero_upper(L, _place_classes(seg_rows, seg_cls, r0, p, loc, True))
            for i in range(seg_start[s], seg_start[s + 1]):
                if v[i] != 0.0:
                    a0, a1 = indptr[i], indptr[i + 1]
                    pos, xs = _room(pos, xs, a1 - a0)
                    k = _gather(loc, indices, data, a0, a1, pos, xs)
                    _pairs(L, pos, xs, 0, k, v[i])
            _close_segment(seg_rows, seg_cls, r0, p, L, G, own_places)
            _place_classes(seg_rows, seg_cls, r0, p, loc, False)


def _class_entries(
    indptr, indices, data, seg_start, seg_ptr, seg_rows, seg_cls, p, nparts, ptr, cls, val
):  # pragma: no cover - compiled
    """Each unit's entries in its segment's class representatives (:func:`_segments`), with
    the class as index: ``cls[ptr[i]:ptr[i + 1]], val[ptr[i]:ptr[i + 1]]`` for unit ``i``, in
    row order. With ``cls`` empty, only counts them into ``ptr[i + 1]`` (``ptr`` zeroed; the
    caller sums it up and calls again with room for them). ``nparts`` parts of the segments
    run in parallel."""
    ns = seg_start.shape[0] - 1
    count = cls.shape[0] == 0
    per = (ns + nparts - 1) // nparts
    for c in numba.prange(nparts):
        loc = np.full(p, -1, dtype=np.int64)
        for s in range(c * per, min(ns, (c + 1) * per)):
            r0, q = seg_ptr[s], seg_ptr[s + 1] - seg_ptr[s]
            _place_classes(seg_rows, seg_cls, r0, q, loc, True)
            for i in range(seg_start[s], seg_start[s + 1]):
                t = 0 if count else ptr[i]
                for a in range(indptr[i], indptr[i + 1]):
                    r = loc[indices[a]]
                    if r >= 0:
                        if not count:
                            cls[t] = r
                            val[t] = data[a]
                        t += 1
                if count:
                    ptr[i + 1] = t
            _place_classes(seg_rows, seg_cls, r0, q, loc, False)


@numba.njit(cache=True, inline="always")
def _number_classes(rows, cls, b, used, class_of, renumber, nc):  # pragma: no cover - compiled
    """Closes a segment: sorts its rows ``rows[b:b + used]`` and writes their classes
    (``class_of``, ``nc`` numbers used; reset to -1 here) into ``cls[b:b + used]``,
    renumbered ``0, 1, ...`` in the order of each class's first row; returns their number."""
    seg = rows[b : b + used]
    seg.sort()
    renumber[:nc] = -1
    k = 0
    for t in range(used):
        c = class_of[seg[t]]
        if renumber[c] < 0:
            renumber[c] = k
            k += 1
        cls[b + t] = renumber[c]
        class_of[seg[t]] = -1
    return k


@numba.njit(cache=True, inline="always")
def _next_segment(start, ptr, ns, i, used):  # pragma: no cover - compiled
    """Opens segment ``ns + 1`` at unit ``i`` after ``used`` rows of segment ``ns``; returns
    its number (``start``, ``ptr`` hold one more place than the most segments allowed)."""
    ns += 1
    start[ns] = i
    ptr[ns] = ptr[ns - 1] + used
    return ns


@numba.njit(cache=True, inline="always")
def _grown(a, keep, size):  # pragma: no cover - compiled
    """``a`` grown to ``size`` entries, its first ``keep`` kept."""
    out = np.empty(size, dtype=a.dtype)
    out[:keep] = a[:keep]
    return out


def _segments(indptr, indices, data, p, width, min_units, share):  # pragma: no cover
    """Runs of consecutive units whose entries fall in at most ``width`` rows, and the
    classes of each run's rows: rows of one class hold equal values on every unit of the run.

    Returns ``(start, ptr, rows, cls)``: segment ``s`` holds units ``start[s]:start[s + 1]``,
    the sorted rows ``rows[ptr[s]:ptr[s + 1]]`` and their classes ``cls[ptr[s]:ptr[s + 1]]``,
    numbered ``0, 1, ...`` in the order of their first rows (the representatives). All four
    are empty as soon as the segments would average under ``min_units`` units, judged after
    a sixteenth of the units and at the end (a unit alone with more rows is a segment).

    The classes are refined unit by unit: the rows a unit brings form classes by their values
    on it (zero on the run's units before), and a class whose rows the unit does not all
    hold with one value splits by value. A unit also opens the next segment when the run
    holds ``min_units`` units and the unit would split a class that has held for
    ``min_units`` units: in a local-area matrix, where the state's and the nation's rows
    repeat a district's values on the district's units, the segments are then the districts,
    each with a class per variable. It gives up (all four empty) when, after a sixteenth of
    the units, the closed segments keep more than ``share`` of their rows as classes
    (weighted by their units): :func:`_segments_by_width` then cuts faster.
    """
    n = indptr.shape[0] - 1
    most = n // max(1, min_units) + 1
    widest = 1
    for i in range(n):
        widest = max(widest, indptr[i + 1] - indptr[i])
    start = np.empty(most + 1, dtype=np.int64)
    ptr = np.empty(most + 1, dtype=np.int64)
    rows = np.empty(max(16, 4 * width), dtype=np.int64)
    cls = np.empty(rows.shape[0], dtype=np.int64)
    class_of = np.full(p, -1, dtype=np.int64)  # a row's class in the open segment (-1: none)
    cap = 2 * (width + widest) + 2  # (a segment forms at most twice as many as it has rows)
    size = np.zeros(cap, dtype=np.int64)  # a class's rows
    born = np.zeros(cap, dtype=np.int64)  # the unit that formed it
    seen = np.full(cap, -1, dtype=np.int64)  # the last unit with its rows
    hits = np.zeros(cap, dtype=np.int64)  # its rows among that unit's entries
    value = np.zeros(cap)  # the first of their values
    split = np.zeros(cap, dtype=np.bool_)  # whether the unit splits it
    renumber = np.empty(cap, dtype=np.int64)
    parent = np.empty(widest, dtype=np.int64)  # the unit's new classes: the class they split
    at = np.empty(widest)  # (-1: the rows it brings), their value and their number
    number = np.empty(widest, dtype=np.int64)
    none = np.empty(0, dtype=np.int64)
    ns = 0
    start[0] = 0
    ptr[0] = 0
    used = 0  # rows of the open segment: rows[ptr[ns]:ptr[ns] + used]
    nc = 0  # class numbers it used
    kept = 0  # the closed segments' classes and rows, times their units
    held_rows = 0
    i = 0
    while i < n:
        if i == n // 16 and (ns * min_units > i or kept > share * held_rows):
            return none, none, none, none  # a sixteenth read already says no
        a0, a1 = indptr[i], indptr[i + 1]
        fresh = 0
        held = 0  # the unit's rows of the segment, and the rows of their classes
        reach = 0
        mixed = False
        for a in range(a0, a1):
            c = class_of[indices[a]]
            if c < 0:
                fresh += 1
                continue
            held += 1
            if seen[c] != i:
                seen[c] = i
                hits[c] = 1
                value[c] = data[a]
                reach += size[c]
            else:
                hits[c] += 1
                if data[a] != value[c]:
                    split[c] = True
                    mixed = True
        old = False
        if held == reach and not mixed:  # (no class splits: the common case)
            if fresh == 0 and used <= width:
                i += 1
                continue
        else:
            for a in range(a0, a1):
                c = class_of[indices[a]]
                if c >= 0:
                    if seen[c] == i:  # (once per class)
                        seen[c] = -1
                        split[c] = split[c] or hits[c] != size[c]
                        old = old or (split[c] and i - born[c] >= min_units)
        if used > 0 and (
            used + fresh > width or (old and i - start[ns] >= min_units)
        ):  # unit i opens the next segment
            for a in range(a0, a1):
                if class_of[indices[a]] >= 0:
                    split[class_of[indices[a]]] = False
            classes = _number_classes(rows, cls, ptr[ns], used, class_of, renumber, nc)
            kept += classes * (i - start[ns])
            held_rows += used * (i - start[ns])
            ns = _next_segment(start, ptr, ns, i, used)
            if ns >= most:
                return none, none, none, none
            used = 0
            nc = 0
            continue
        if ptr[ns] + used + fresh > rows.shape[0]:
            rows = _grown(rows, ptr[ns] + used, 2 * (ptr[ns] + used + fresh))
            cls = _grown(cls, ptr[ns], rows.shape[0])
        k = 0
        for a in range(a0, a1):
            r = indices[a]
            of = class_of[r]
            if of >= 0:
                if not split[of]:
                    continue
                size[of] -= 1
            else:
                rows[ptr[ns] + used] = r
                used += 1
            x = data[a]
            t = 0
            while t < k and not (parent[t] == of and at[t] == x):
                t += 1
            if t == k:
                parent[k], at[k], number[k] = of, x, nc
                size[nc], born[nc] = 0, i
                nc += 1
                k += 1
            class_of[r] = number[t]
            size[number[t]] += 1
        for t in range(k):
            if parent[t] >= 0:
                split[parent[t]] = False
        i += 1
    _number_classes(rows, cls, ptr[ns], used, class_of, renumber, nc)
    ns += 1
    start[ns] = n
    ptr[ns] = ptr[ns - 1] + used
    end = ptr[ns]
    return start[: ns + 1].copy(), ptr[: ns + 1].copy(), rows[:end].copy(), cls[:end].copy()


def _segments_by_width(indptr, indices, p, width, min_units):  # pragma: no cover
    """Runs of consecutive units whose entries fall in at most ``width`` rows, each row a
    class of its own: :func:`_segments` without the classes (one read of the row indices).

    Returns ``(start, ptr, rows, cls)`` as :func:`_segments` does (``cls`` numbering each
    segment's rows ``0, 1, ...``); all four empty as soon as the segments would average under
    ``min_units`` units, judged after a sixteenth of the units and at the end (a unit alone
    with more rows is a segment).
    """
    n = indptr.shape[0] - 1
    most = n // max(1, min_units) + 1
    start = np.empty(most + 1, dtype=np.int64)
    ptr = np.empty(most + 1, dtype=np.int64)
    rows = np.empty(max(16, 4 * width), dtype=np.int64)
    mark = np.full(p, -1, dtype=np.int64)
    none = np.empty(0, dtype=np.int64)
    ns = 0
    start[0] = 0
    ptr[0] = 0
    used = 0  # rows of the open segment: rows[ptr[ns]:ptr[ns] + used]
    for i in range(n):
        if i == n // 16 and ns * min_units > i:  # a sixteenth read already says no
            return none, none, none, none
        need = ptr[ns] + used + indptr[i + 1] - indptr[i]
        if need > rows.shape[0]:
            grown = np.empty(2 * need, dtype=np.int64)
            grown[: ptr[ns] + used] = rows[: ptr[ns] + used]
            rows = grown
        before = used
        for a in range(indptr[i], indptr[i + 1]):  # (one read of the unit in the common case)
            r = indices[a]
            if mark[r] != ns:
                mark[r] = ns
                rows[ptr[ns] + used] = r
                used += 1
        if before == 0 or used <= width:
            continue
        used = before  # unit i opens the next segment
        rows[ptr[ns] : ptr[ns] + used].sort()
        ns = _next_segment(start, ptr, ns, i, used)
        if ns >= most:
            return none, none, none, none
        used = 0
        for a in range(indptr[i], indptr[i + 1]):
            r = indices[a]
            if mark[r] != ns:
                mark[r] = ns
                rows[ptr[ns] + used] = r
                used += 1
    rows[ptr[ns] : ptr[ns] + used].sort()
    ns += 1
    start[ns] = n
    ptr[ns] = ptr[ns - 1] + used
    cls = np.empty(ptr[ns], dtype=np.int64)
    for s in range(ns):
        for t in range(ptr[s], ptr[s + 1]):
            cls[t] = t - ptr[s]
    return start[: ns + 1].copy(), ptr[: ns + 1].copy(), rows[: ptr[ns]].copy(), cls


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
SEGMENTS = numba.njit(cache=True, nogil=True)(_segments)
SEGMENTS_BY_WIDTH = numba.njit(cache=True, nogil=True)(_segments_by_width)
SYMMETRIZE = _compile(_symmetrize)
SYMMETRIZE_PATTERN = _compile(_symmetrize_pattern)
GRAM_PATTERN = numba.njit(cache=True, nogil=True)(_gram_pattern)
SUBMATRIX = _compile(_submatrix)
RMATVEC = _compile(_rmatvec)
MATVEC = _compile(_matvec)
ROW_RANGES = _compile(_row_ranges)
CSR_TO_CSC = numba.njit(parallel=True, cache=True, nogil=True)(_csr_to_csc)
CLASS_ENTRIES = _compile(_class_entries)
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
        seg = SEGMENTS(indptr, indices, data, 2, 64, 1, 0.75)
        SEGMENTS_BY_WIDTH(indptr, indices, 2, 64, 1)
        ent_ptr = np.zeros(3, dtype=np.int64)
        ent = (ent_ptr, np.empty(3, dtype=np.int32), np.empty(3))
        for k in (0, 1):
            CLASS_ENTRIES[k](indptr, indices, data, *seg, 2, 1, ent_ptr, ent[1][:0], ent[2][:0])
            CLASS_ENTRIES[k](indptr, indices, data, *seg, 2, 1, *ent)
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
                    *seg,
                    *ent,
                    *GRAM_PATTERN(seg[1], seg[2], rowpos, 2, 3),
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
            pat = GRAM_PATTERN(seg[1], seg[2], rowpos, 2, 3)
            GRAM_UPPER[k](indptr, indices, data, f, *seg, *pat, G, acc)
            SYMMETRIZE[k](G, acc, G, rowpos)
            SYMMETRIZE[k](G, acc, np.empty((0, 0)), rowpos)
            SYMMETRIZE_PATTERN[k](G, acc, G, rowpos, *pat)
            SYMMETRIZE_PATTERN[k](G, acc, np.empty((0, 0)), rowpos, *pat)
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
