"""Sparse kernels for the hot paths, all on CSC matrices (targets x units).

* :func:`weighted_gram` — ``X diag(v) X'`` in one pass over the non-zeros, touching only
  pairs of non-zeros that share a unit (``sum_i nnz_i^2 / 2`` multiply-adds), threads with
  private accumulators. SciPy's sparse product takes 10-20x longer on the same input because
  it builds a sparse result, with index bookkeeping, for what is a small dense matrix.
* :func:`rmatvec` — ``u = X' lam`` into a preallocated vector (parallel over units).
* :func:`matvec` — ``X w`` (parallel, private accumulators of length p).
* :func:`weighted_row_sq`, :func:`weighted_row_abs` — ``sum_i X_ji^2 v_i``, ``sum_i |X_ji| v_i``.
* :func:`row_ranges` — per target, the smallest and largest ``X_j w`` over a box of weights.
* :func:`row_absmax` — per target, the largest ``|X_ji|``.
* :func:`row_segments` — runs of consecutive units with few rows, whose Gram pairs the passes
  sum in a small local matrix first, once per class of rows that repeat one another's values.
* :func:`class_entries` — each unit's entries on its segment's class representatives, indexed
  by class: what the passes by segments read instead of X.
* :func:`submatrix` — a principal submatrix ``J[rows][:, rows]`` of a dense matrix (NumPy's
  ``J[np.ix_(rows, rows)]`` takes 0.8 s on a 5,951-row Newton matrix; this, 0.3 s).
* :func:`to_csc` — CSR to CSC with sorted indices, in parallel blocks of columns (SciPy's
  ``tocsc`` is serial and scatters every entry to a random place: 1.4-3.7 s against 0.4-0.5 s
  for the 95.7M non-zeros of the national local-area matrix).

The compiled versions (numba, :mod:`calibopt.solvers._numba_kernels`) run once numba has them
in its on-disk cache; until then (the first minute on a fresh machine, while a background
process compiles them; see :mod:`calibopt.solvers._kernel_cache`) the same functions run on
NumPy/SciPy, so no call ever waits for a compiler. Kernels write into buffers the caller owns
where they can: on machines where fresh pages are expensive (virtual machines), reusing memory
matters as much as the arithmetic. The fused Newton pass lives in
:mod:`calibopt.solvers.evaluate`, and its version by one-hot cells (categorical margins) in
:mod:`calibopt.solvers.onehot`.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from ..problem import use_csc_converter
from ._kernel_cache import numba_ready

__all__ = [
    "NO_ENTRIES",
    "NO_PATTERN",
    "NO_SEGMENTS",
    "Segments",
    "class_entries",
    "class_share",
    "compiled",
    "gram_chunks",
    "gram_pattern",
    "matvec",
    "rmatvec",
    "row_absmax",
    "row_ranges",
    "row_segments",
    "submatrix",
    "symmetrize",
    "threads",
    "to_csc",
    "weighted_gram",
    "weighted_row_abs",
    "weighted_row_sq",
]


SERIAL_NNZ = 200_000
"""Below this many non-zeros the serial kernels run (thread start-up costs more than it saves)."""


def compiled():
    """The compiled kernels module when numba's cache has them (else None: use NumPy)."""
    if not numba_ready():
        return None
    from . import _numba_kernels

    return _numba_kernels


def pick(kernels, nnz: int):
    """The serial or the parallel version of a compiled kernel for a matrix of ``nnz``."""
    return kernels[1] if nnz < SERIAL_NNZ else kernels[0]


def threads(nnz: int) -> int:
    """Threads the compiled kernels use for a matrix of ``nnz`` non-zeros."""
    if nnz < SERIAL_NNZ:
        return 1
    import numba

    return numba.get_num_threads()


def _columns(Xc: sp.csc_matrix) -> np.ndarray:
    """The column (unit) of every stored entry (NumPy paths)."""
    return np.repeat(np.arange(Xc.shape[1]), np.diff(Xc.indptr))


def _gram_numpy(Xc: sp.csc_matrix, v: np.ndarray) -> np.ndarray:
    k = Xc.nnz // max(Xc.shape[1], 1)
    p = Xc.shape[0]
    if Xc.shape[1] and 1 <= k <= 8 and np.array_equal(Xc.indptr, np.arange(Xc.shape[1] + 1) * k):
        # k entries per unit (margins): the Gram is a bincount of the pairs of slots
        idx = Xc.indices.reshape(-1, k).astype(np.int64)
        val = Xc.data.reshape(-1, k)
        G = np.zeros(p * p)
        for a in range(k):
            for b in range(a, k):
                wv = v * val[:, a] * val[:, b]
                lo = np.minimum(idx[:, a], idx[:, b])
                hi = np.maximum(idx[:, a], idx[:, b])
                G += np.bincount(lo * p + hi, weights=wv, minlength=p * p)
        G = G.reshape(p, p)
        diag = np.diag(G).copy()
        G = G + G.T
        G[np.diag_indices(p)] = diag
        return G
    return np.asarray((Xc @ sp.diags(v) @ Xc.T).toarray())


SEGMENT_ROWS = 64
"""Most rows of a segment (:func:`row_segments`): its local matrix (32 KiB) stays in L1."""
SEGMENT_UNITS = 32
"""Fewest units a segment must hold on average for the passes to use segments."""
CLASS_SHARE = 0.75
"""Share of a segment's rows left as classes (weighted by its units) above which
:func:`row_segments` cuts by width alone: too little repeats for the cuts at the classes'
splits to pay (each segment costs its rows squared to add up)."""
NO_SEGMENTS = (np.empty(0, dtype=np.int64),) * 4
"""What :func:`row_segments` returns for a matrix it does not cut."""
Segments = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""``(start, ptr, rows, cls)`` of :func:`row_segments`."""
NO_ENTRIES = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), np.empty(0))
"""What :func:`class_entries` returns without segments."""
NO_PATTERN = (np.empty(0, dtype=np.int64),) * 2
"""What :func:`gram_pattern` returns when a pass should zero and complete every place."""


def row_segments(Xc: sp.csc_matrix) -> Segments:
    """Runs of consecutive units whose entries fall in few rows, for the Gram passes, and the
    classes of rows that repeat one another there.

    A local-area matrix lists its units geography by geography, so a run of units (a
    district's households) touches only its district's, state's and nation's rows: ~40 of
    5,951. A pass then sums each run's pairs in a small dense matrix that stays in cache
    and adds it to the Newton matrix once (1.4x faster on the national matrix than adding
    every pair to the 5,951 x 5,951 matrix, whose rows lie 47 KB apart). On a district's
    units, the state's and the nation's row of a variable hold the district's values: the
    three rows form a class, and a pass forms each class's estimate and pairs once and
    spreads them over its rows (14 classes for a district's 40 rows: a sixth of the pairs).
    The classes are exact (equal values on every unit of the run), so any matrix may have
    them; the runs end where an established class splits (a district's end), unless that
    leaves more than :data:`CLASS_SHARE` of the rows as classes (judged after a sixteenth of
    the units, and at the end), when they end by width alone, each row its own class.

    Returns
    -------
    start, ptr, rows, cls : ndarray
        Segment ``s`` holds units ``start[s]:start[s + 1]``, the sorted rows
        ``rows[ptr[s]:ptr[s + 1]]`` (at most :data:`SEGMENT_ROWS`, unless one unit has more)
        and their classes ``cls[ptr[s]:ptr[s + 1]]`` (``0, 1, ...`` in the order of their
        first rows). All four are empty (no segments) without the compiled kernels, for
        small matrices (under :data:`SERIAL_NNZ` non-zeros or :data:`SEGMENT_ROWS` rows),
        and when the runs would average under :data:`SEGMENT_UNITS` units (the detection
        stops there).
    """
    nb = compiled()
    if nb is None or Xc.nnz < SERIAL_NNZ or Xc.shape[0] <= SEGMENT_ROWS:
        return NO_SEGMENTS
    p, rows, units = Xc.shape[0], SEGMENT_ROWS, SEGMENT_UNITS
    seg = _cut(Xc, lambda part: nb.SEGMENTS(part, Xc.indices, Xc.data, p, rows, units, CLASS_SHARE))
    if seg[0].size == 0 or class_share(seg) > CLASS_SHARE:  # (the classes gave up or do not pay)
        seg = _cut(Xc, lambda part: nb.SEGMENTS_BY_WIDTH(part, Xc.indices, p, rows, units))
    return seg


def _cut(Xc: sp.csc_matrix, kernel: Callable[[np.ndarray], Segments]) -> Segments:
    """A compiled cut of :func:`row_segments` (``kernel`` of a part's ``indptr``), one part of
    the units (by non-zeros) per thread, each cut alone (a run may end at a part's end) and
    joined in order; empty when a part gives up."""
    n, nnz = Xc.shape[1], Xc.nnz
    ends = np.searchsorted(Xc.indptr, np.linspace(0, nnz, threads(nnz) + 1)[1:-1])
    ends = np.unique(np.concatenate([[0], ends, [n]]))

    def cut(k: int) -> Segments:
        return kernel(Xc.indptr[ends[k] : ends[k + 1] + 1])

    with ThreadPoolExecutor(ends.size - 1) as pool:  # (the kernel releases the GIL)
        parts = list(pool.map(cut, range(ends.size - 1)))
    if any(part[0].size == 0 for part in parts):
        return NO_SEGMENTS
    rows_before = np.cumsum([0] + [part[2].size for part in parts])
    start = [part[0][:-1] + ends[k] for k, part in enumerate(parts)]
    ptr = [part[1][:-1] + rows_before[k] for k, part in enumerate(parts)]
    return (
        np.concatenate([*start, [n]]),
        np.concatenate([*ptr, [rows_before[-1]]]),
        np.concatenate([part[2] for part in parts]),
        np.concatenate([part[3] for part in parts]),
    )


def class_entries(
    Xc: sp.csc_matrix, segments: Segments
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's entries in its segment's class representatives, indexed by class, for the
    passes by segments (compiled kernels only).

    The other entries repeat a representative's value (:func:`row_segments`), so a pass needs
    only these: on the national local-area matrix 33.5M of 95.7M entries (400 MB, built in
    about 0.4 s once per solve), which it reads instead of X.

    Returns
    -------
    ptr, cls, val : ndarray
        Unit ``i``'s class numbers ``cls[ptr[i]:ptr[i + 1]]`` (int32, increasing) and values
        ``val[ptr[i]:ptr[i + 1]]``; :data:`NO_ENTRIES` without segments.
    """
    if segments[0].size == 0:
        return NO_ENTRIES
    nb = compiled()
    n, p = Xc.shape[1], Xc.shape[0]
    nparts = threads(Xc.nnz)
    ptr = np.zeros(n + 1, dtype=np.int64)
    args = (Xc.indptr, Xc.indices, Xc.data, *segments, p, nparts)
    kernel = pick(nb.CLASS_ENTRIES, Xc.nnz)
    kernel(*args, ptr, NO_ENTRIES[1], NO_ENTRIES[2])
    np.cumsum(ptr, out=ptr)
    cls, val = np.empty(ptr[-1], dtype=np.int32), np.empty(ptr[-1])
    kernel(*args, ptr, cls, val)
    return ptr, cls, val


def class_share(segments: Segments) -> float:
    """The share of the segments' rows left as classes, each segment weighted by its units."""
    start, ptr, _, cls = segments
    width = np.diff(ptr)
    full = width > 0
    classes = np.zeros(width.size)
    classes[full] = np.maximum.reduceat(cls, ptr[:-1][full]) + 1
    units = np.diff(start)
    return float(units @ classes) / max(float(units @ width), 1.0)


GRAM_MEMORY = 1.2e9
"""Bytes the threads' private copies of a dense Newton/Gram matrix may take together."""


def gram_chunks(nnz: int, m: int) -> int:
    """Threads (each with a private ``m x m`` accumulator) for a Gram pass over ``nnz``."""
    return max(1, min(threads(nnz), 1 + int(GRAM_MEMORY // max(1, 8 * m * m))))


def weighted_gram(
    Xc: sp.csc_matrix,
    v: np.ndarray,
    scratch: Callable[[int], np.ndarray] | None = None,
    segments: Segments | None = None,
    pattern: tuple[np.ndarray, np.ndarray] = NO_PATTERN,
) -> np.ndarray:
    """Dense ``X diag(v) X'`` for a CSC matrix with sorted indices.

    Parameters
    ----------
    Xc
        ``scipy.sparse`` CSC matrix of shape ``(p, n)`` with sorted row indices per column.
    v
        Length-``n`` weights.
    scratch
        ``scratch(size)`` -> a float64 vector of at least ``size`` entries for the threads'
        private accumulators (e.g. :meth:`Evaluator.scratch`, reusing memory that later
        passes need anyway); default: fresh memory.
    segments
        :func:`row_segments` of ``Xc`` when the caller keeps them; default: none.
    pattern
        :func:`gram_pattern` of every row when the caller keeps it: only its places are
        summed, the rest of the matrix is left zero without being written.

    Returns
    -------
    ndarray, shape (p, p)
        The symmetric weighted Gram matrix.
    """
    v = np.ascontiguousarray(v, dtype=np.float64)
    nb = compiled()
    if nb is None:
        return _gram_numpy(Xc, v)
    p = Xc.shape[0]
    nchunks = gram_chunks(Xc.nnz, p)
    size = (nchunks - 1) * p * p
    acc = (np.empty(size) if scratch is None else scratch(size)[:size]).reshape(nchunks - 1, p, p)
    G = np.zeros((p, p)) if pattern[0].size else np.empty((p, p))
    seg = NO_SEGMENTS if segments is None else segments
    pick(nb.GRAM_UPPER, Xc.nnz)(Xc.indptr, Xc.indices, Xc.data, v, *seg, *pattern, G, acc)
    # indices are sorted, so every pair landed in the upper triangle of some chunk
    symmetrize(G, acc, Xc.nnz, pattern=pattern)
    return G


_NO_BASE = np.empty((0, 0))


def symmetrize(
    G: np.ndarray,
    acc: np.ndarray,
    nnz: int,
    base: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    pattern: tuple[np.ndarray, np.ndarray] = NO_PATTERN,
) -> None:
    """Completes a Newton/Gram matrix from a pass's upper triangles (compiled kernels only).

    ``G`` (m x m) += the threads' chunks ``acc`` and, when given, ``base[rows][:, rows]``,
    on the upper triangle, then mirrored to the lower; ``nnz`` (of the pass's matrix) picks
    the serial or the threaded kernel. With a :func:`gram_pattern`, only at its places (the
    rest of ``G`` stays as it is: zero).
    """
    nb = compiled()
    if base is None:
        base, rows = _NO_BASE, np.empty(0, dtype=np.int64)
    if pattern[0].size:
        pick(nb.SYMMETRIZE_PATTERN, nnz)(G, acc, base, rows, *pattern)
    else:
        pick(nb.SYMMETRIZE, nnz)(G, acc, base, rows)


def gram_pattern(
    segments: Segments,
    rowpos: np.ndarray,
    m: int,
    limit: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The places a pass can reach in a Newton matrix on ``m`` rows (compiled kernels only).

    Every pair of rows that share a :func:`row_segments` segment, placed by ``rowpos`` (a
    row's place, -1 out of play; empty: every row in its own place), and the diagonal: a
    superset of the non-zeros of ``X diag(v) X'`` for any ``v``. A pass given it zeroes and
    completes only these places (on the national local-area matrix, 0.5M of 35M).

    Returns
    -------
    ptr, cols : ndarray
        The upper triangle as CSR (``cols[ptr[r]:ptr[r + 1]]`` sorted, from ``r``), or
        :data:`NO_PATTERN` without segments or beyond ``limit`` places.
    """
    if segments[0].size == 0 or m == 0:
        return NO_PATTERN
    return compiled().GRAM_PATTERN(segments[1], segments[2], rowpos, m, limit)


def rmatvec(Xc: sp.csc_matrix, lam: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``X' lam`` for CSC ``X`` (p x n), written into ``out`` (length n) when given."""
    if out is None:
        out = np.empty(Xc.shape[1])
    lam = np.ascontiguousarray(lam, dtype=np.float64)
    nb = compiled()
    if nb is None:
        out[...] = Xc.T @ lam
        return out
    pick(nb.RMATVEC, Xc.nnz)(Xc.indptr, Xc.indices, Xc.data, lam, out)
    return out


def _accumulate(Xc: sp.csc_matrix, w: np.ndarray, power: int) -> np.ndarray:
    w = np.ascontiguousarray(w, dtype=np.float64)
    nb = compiled()
    if nb is None:
        data = Xc.data if power == 1 else (Xc.data**2 if power == 2 else np.abs(Xc.data))
        return np.bincount(Xc.indices, weights=data * w[_columns(Xc)], minlength=Xc.shape[0])
    p = Xc.shape[0]
    nchunks = max(1, min(threads(Xc.nnz), int(1e8 // max(1, 8 * p))))
    return pick(nb.MATVEC, Xc.nnz)(Xc.indptr, Xc.indices, Xc.data, w, p, nchunks, power)


def matvec(Xc: sp.csc_matrix, w: np.ndarray) -> np.ndarray:
    """``X w`` for CSC ``X`` (p x n)."""
    if compiled() is None:
        return np.asarray(Xc @ np.asarray(w, dtype=np.float64))
    return _accumulate(Xc, w, 1)


def weighted_row_sq(Xc: sp.csc_matrix, v: np.ndarray) -> np.ndarray:
    """``sum_i X_ji^2 v_i`` per row ``j``: the diagonal of ``X diag(v) X'``."""
    return _accumulate(Xc, v, 2)


def weighted_row_abs(Xc: sp.csc_matrix, v: np.ndarray) -> np.ndarray:
    """``sum_i |X_ji| v_i`` per row ``j`` (the gross activity for ``v = |w|``)."""
    return _accumulate(Xc, v, 0)


def row_absmax(Xc: sp.csc_matrix) -> np.ndarray:
    """``max_i |X_ji|`` per row ``j`` (0 for an empty row)."""
    nb = compiled()
    if nb is None:
        out = np.zeros(Xc.shape[0])
        np.maximum.at(out, Xc.indices, np.abs(Xc.data))
        return out
    return nb.ROW_ABSMAX(Xc.indices, Xc.data, Xc.shape[0])


def submatrix(J: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The principal submatrix ``J[rows][:, rows]`` of a dense square matrix (a new array)."""
    nb = compiled()
    if nb is None or rows.size < 64:
        return J[np.ix_(rows, rows)]
    out = np.empty((rows.size, rows.size))
    nb.SUBMATRIX[0](np.ascontiguousarray(J), rows.astype(np.int64, copy=False), out)
    return out


CSC_BLOCK = 16_384
"""Columns per block of :func:`to_csc` (its counters and write heads stay in cache)."""


def to_csc(M: sp.spmatrix) -> sp.csc_matrix:
    """``M`` as a CSC matrix with sorted indices (in parallel for a large sorted CSR matrix).

    Parameters
    ----------
    M
        Any ``scipy.sparse`` matrix.

    Returns
    -------
    scipy.sparse.csc_matrix
        The same matrix, CSC, indices sorted within each column.
    """
    nb = compiled()
    fast = (
        nb is not None
        and M.format == "csr"
        and M.nnz >= SERIAL_NNZ
        and M.data.dtype == np.float64
        and M.indices.dtype == M.indptr.dtype
        and M.has_sorted_indices
    )
    if not fast:
        C = M.tocsc()
        if not C.has_sorted_indices:
            C = C.copy()
            C.sort_indices()
        return C
    p, n = M.shape
    # a block costs a binary search per row: keep that far below the non-zeros it moves
    nblocks = max(1, min(-(-n // CSC_BLOCK), M.nnz // (8 * max(p, 1))))
    itype = M.indices.dtype
    ptr = np.zeros(n + 1, dtype=itype)
    idx = np.empty(M.nnz, dtype=itype)
    dat = np.empty(M.nnz)
    nb.CSR_TO_CSC(M.indptr, M.indices, M.data, n, nblocks, ptr, idx, dat)
    C = sp.csc_matrix((dat, idx, ptr), shape=M.shape, copy=False)
    C.has_sorted_indices = True
    return C


use_csc_converter(to_csc)


def row_ranges(
    Xc: sp.csc_matrix, wlo: np.ndarray, whi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest ``X_j w`` over ``wlo <= w <= whi``, per target ``j``."""
    p = Xc.shape[0]
    wlo = np.ascontiguousarray(wlo, dtype=np.float64)
    whi = np.ascontiguousarray(whi, dtype=np.float64)
    nb = compiled()
    if nb is None:
        cols = _columns(Xc)
        x = Xc.data
        with np.errstate(invalid="ignore"):
            mn = np.where(x > 0, x * wlo[cols], x * whi[cols])
            mx = np.where(x > 0, x * whi[cols], x * wlo[cols])
        acc = np.empty((4, p))
        for k, vals in enumerate((mn, mx)):
            inf = np.isinf(vals)
            acc[k] = np.bincount(Xc.indices, weights=np.where(inf, 0.0, vals), minlength=p)
            acc[k + 2] = np.bincount(Xc.indices, weights=inf.astype(float), minlength=p)
    else:
        nchunks = max(1, min(threads(Xc.nnz), int(1e8 // max(1, 32 * p))))
        acc = pick(nb.ROW_RANGES, Xc.nnz)(Xc.indptr, Xc.indices, Xc.data, wlo, whi, p, nchunks)
    mins = np.where(acc[2] > 0, -np.inf, acc[0])
    maxs = np.where(acc[3] > 0, np.inf, acc[1])
    return mins, maxs
