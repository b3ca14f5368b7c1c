"""The dual at given multipliers, in one pass over X: weights, estimates, conjugate, Newton matrix.

Newton's method (:mod:`calibopt.solvers.newton`) needs, at each trial point ``lambda``: the
g-weights ``g = clip(F(X' lambda))``, the estimates ``X (d g)`` (its residual), the conjugate
sum ``sum_i d_i G*(u_i)`` (its dual objective) and, at accepted points, the Newton matrix
``X diag(d F'(u)) X'`` on the rows in play. For the built-in distances the compiled kernel
computes all four in **one pass** over the non-zeros (``u`` and ``F'`` are never stored), with
threads and buffers allocated once per solve. For the linear distances a pass works
*relative to the base* where every unit is free (``g = 1 + u``): there the estimates are
``X d + X D X' lambda``, the conjugate sum ``lambda' X d + lambda' X D X' lambda / 2`` and the
Newton matrix ``X D X'``, from ``X D X'`` kept once per solve, so the pass only forms ``u``
and ``g`` per unit and adds the differences of the units on a bound (while those hold at
most :data:`BASE_SHARE` of the initial weight; beyond that the free units are the fewer,
and the pass sums theirs directly); at ``lambda = 0`` with every unit free the base is the
evaluation, without a pass. A local-area matrix's units come area by area, so the pass sums
a run of units (a segment, :func:`~calibopt.solvers.kernels.row_segments`) in a small local
matrix first, once per class of rows that repeat one another on it; only pairs of rows
sharing a segment can then be non-zero in the Newton matrix (:attr:`Evaluator.pattern`: 0.38M
of the national matrix's 35M places), and only those are zeroed before a pass, completed
after it and gathered for the sparse LU. Custom distances,
and every distance until numba has its kernels cached (:mod:`calibopt.solvers._kernel_cache`),
compose the same quantities from the separate kernels and the distance's own NumPy functions.
When X holds categorical margins,
:class:`calibopt.solvers.onehot.CellEvaluator` runs the same pass by one-hot cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .distances import Distance, Linear, Logit, Raking, Truncated
from .kernels import (
    NO_ENTRIES,
    NO_PATTERN,
    NO_SEGMENTS,
    Segments,
    class_entries,
    compiled,
    gram_chunks,
    gram_pattern,
    matvec,
    pick,
    rmatvec,
    row_segments,
    symmetrize,
    threads,
    weighted_gram,
)
from .linalg import SPARSE_DENSITY, SPARSE_MIN, symmetric_places

__all__ = ["BASE_MEMORY", "BASE_SHARE", "Evaluation", "Evaluator", "uniform"]

BASE_MEMORY = 1 << 29
"""Largest base ``X D X'`` (bytes, all rows) a linear evaluator keeps: 8,192 targets. Beyond
it the passes sum every unit directly (the base would add a third dense matrix to the two
Newton-matrix slots)."""

BASE_SHARE = 0.5
"""A linear distance's pass works relative to the base (every unit free) while, at the last
pass, the units on a bound held at most this share of the initial weight: it then sums the
fewer units, and the differences cost little precision (with a share ``s`` the sums'
rounding grows by at most ``(1 + s) / (1 - s)``, 3x here)."""


@dataclass
class Evaluation:
    """The dual's pieces at one ``lambda`` (buffers owned by the :class:`Evaluator`)."""

    g: np.ndarray
    xw: np.ndarray
    conj: float
    J: np.ndarray | None = None
    u: np.ndarray | None = None


def uniform(x: np.ndarray | None) -> bool:
    """Whether a per-unit vector (or None) holds one value."""
    if x is None:
        return True
    if x.size and x.strides[0] == 0:
        return True
    return bool(x.size == 0 or (x.min() == x.max()))


def _code(dist: Distance) -> int | None:
    from . import _numba_kernels as nb

    kind = type(dist)
    if kind in (Linear, Truncated):
        return nb.LINEAR
    if kind is Raking:
        return nb.RAKING
    if kind is Logit:
        return nb.LOGIT
    return None


class Evaluator:
    """Evaluates the dual of one problem at many ``lambda`` (two alternating buffer slots).

    Parameters
    ----------
    Xc
        CSC matrix (targets x units), sorted indices.
    d
        Initial weights.
    lo, hi
        g-bounds per unit, or None where that side never binds.
    dist
        The distance.
    """

    def __init__(self, Xc: sp.csc_matrix, d: np.ndarray, lo, hi, dist: Distance) -> None:
        self.Xc, self.d, self.lo, self.hi, self.dist = Xc, d, lo, hi, dist
        n = Xc.shape[1]
        self._g = (np.empty(n), np.empty(n))
        self._u = (np.empty(n), np.empty(n))
        self._J: list[np.ndarray | None] = [None, None]
        self._scratch = np.empty(0)
        self.dsum = float(d.sum())
        self._base: np.ndarray | None = None
        self._base_xd: np.ndarray | None = None
        self._base_product: np.ndarray | sp.csr_matrix | None = None
        self._free_at_zero: bool | None = None
        self.bound_share = 0.0
        """Share of the initial weight on a bound at the last pass (compiled passes only)."""
        self.rows = np.arange(Xc.shape[0])
        self._rowpos = np.arange(Xc.shape[0], dtype=np.int64)
        self._pairpos = np.empty(0, dtype=np.int64)
        """The kernels' map of a row to its place in the Newton matrix: empty while every row is
        in play (each in its own place), else :attr:`_rowpos`."""
        self._segments: Segments | None = None
        self._entries: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pattern: tuple[np.ndarray, np.ndarray] | None = None
        self._full_pattern: tuple[np.ndarray, np.ndarray] | None = None
        self.places: dict = {}
        """Kept places of its sparse matrices (the ``cache`` of
        :func:`~calibopt.solvers.linalg.symmetric_places` and of the Newton system's sparse LU):
        the base product and the LU share the symmetric places of :attr:`full_pattern`."""
        self.fused_passes = 0
        self.composed = False
        """True: always compose (the matrix-free path needs ``u``)."""

    def set_rows(self, rows: np.ndarray) -> None:
        """The rows whose Newton matrix is wanted (in increasing order)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == self.rows.size and np.array_equal(rows, self.rows):
            return
        self.rows = rows
        self._rowpos = np.full(self.Xc.shape[0], -1, dtype=np.int64)
        self._rowpos[rows] = np.arange(rows.size)
        every = rows.size == self.Xc.shape[0]
        self._pairpos = np.empty(0, dtype=np.int64) if every else self._rowpos
        self._J = [None, None]
        self._pattern = None

    def scratch(self, size: int) -> np.ndarray:
        """A float64 work vector of at least ``size`` entries, kept for later passes.

        Its contents are dead between calls (the threads' private Newton-matrix accumulators
        live here): one allocation serves every pass, whatever the rows in play, and callers
        such as :func:`~calibopt.solvers.kernels.weighted_gram` may borrow it.
        """
        if self._scratch.size < size:
            self._scratch = np.empty(size)
        return self._scratch

    def weighted_gram(self, v: np.ndarray, sums: np.ndarray | None = None) -> np.ndarray:
        """``X diag(v) X'`` on every row (e.g. the Gram of the free units' initial weights),
        its threads' accumulators in :meth:`scratch`; with ``sums`` (length p), also ``X v``
        written into it."""
        if sums is not None:
            sums[...] = matvec(self.Xc, v)
        return weighted_gram(self.Xc, v, self.scratch, self.segments, self.full_pattern)

    @property
    def segments(self) -> Segments:
        """:func:`~calibopt.solvers.kernels.row_segments` of X, found at the first use."""
        if self._segments is None:
            self._segments = row_segments(self.Xc)
        return self._segments

    @property
    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:func:`~calibopt.solvers.kernels.class_entries` of X, built at the first pass by
        segments (what those passes read instead of X)."""
        if self._entries is None:
            self._entries = class_entries(self.Xc, self.segments)
        return self._entries

    @property
    def pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """The places of the Newton matrix on :attr:`rows` that a pass can reach
        (:func:`~calibopt.solvers.kernels.gram_pattern`), found at the first use: a compiled
        pass zeroes and completes only these. :data:`~calibopt.solvers.kernels.NO_PATTERN`
        (every place) below :data:`~calibopt.solvers.linalg.SPARSE_MIN` rows or beyond
        :data:`~calibopt.solvers.linalg.SPARSE_DENSITY` of the places, where the Newton
        matrix is factorised as dense."""
        if self._pairpos.size == 0:
            return self.full_pattern
        if self._pattern is None:
            self._pattern = self._find_pattern(self._pairpos, self.rows.size)
        return self._pattern

    @property
    def full_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """:attr:`pattern` with every row in play (what :meth:`weighted_gram` sums)."""
        if self._full_pattern is None:
            self._full_pattern = self._find_pattern(self._pairpos[:0], self.Xc.shape[0])
        return self._full_pattern

    def _find_pattern(self, rowpos: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        if m < SPARSE_MIN or compiled() is None:
            return NO_PATTERN
        return gram_pattern(self.segments, rowpos, m, int(SPARSE_DENSITY * m * (m + 1) / 2))

    @property
    def uses_base(self) -> bool:
        """Whether the compiled passes work relative to the linear base (see the module)."""
        nb = compiled()
        p = self.Xc.shape[0]
        return nb is not None and _code(self.dist) == nb.LINEAR and 8 * p * p <= BASE_MEMORY

    def set_base(self, base: np.ndarray, sums: np.ndarray) -> None:
        """Give the base ``X diag(d) X'`` and ``X d`` (every row) when the caller has them;
        they must not change while this evaluator runs."""
        self._base, self._base_xd = base, sums
        self._base_product = None

    def _times_base(self, lam: np.ndarray) -> np.ndarray:
        """``X D X' lambda`` (every row): from the base's places in :attr:`full_pattern` as
        sparse (one read of 0.5M places instead of the dense 5,951 x 5,951 base on the
        national matrix), else from the dense base."""
        if self._base_product is None:
            self._base_product = self._base
            pattern = self.full_pattern
            if pattern[0].size:
                indptr, indices, flat, _, _ = symmetric_places(pattern, self.places)
                vals = np.take(self._base.reshape(-1), flat)
                self._base_product = sp.csr_matrix((vals, indices, indptr), self._base.shape)
        return self._base_product @ lam

    def _relative(self, gram: bool, relax: bool) -> bool:
        """Whether the compiled pass works relative to the linear base: for the linear
        distances while few units sit on a bound (the base ``X D X'`` is formed when first a
        Newton matrix is wanted; relaxed, every unit counts as free in it)."""
        if not self.uses_base:
            return False
        if self.bound_share > BASE_SHARE and not relax:
            return False
        if self._base is None:
            if not gram:
                return False
            xd = np.empty(self.Xc.shape[0])
            self.set_base(self.weighted_gram(self.d, sums=xd), xd)
        return True

    def _start(self, lam, slot: int, gram: bool, relax: bool):
        """``(relative, evaluation)`` before a compiled pass: whether it works relative to the
        base and, at ``lambda = 0`` with every unit free there, the base itself as the
        evaluation (no pass needed; else None)."""
        relative = self._relative(gram, relax)
        return relative, self._at_zero(lam, slot, gram) if relative else None

    def _at_zero(self, lam, slot: int, gram: bool) -> Evaluation | None:
        """Relative to the base at ``lambda = 0`` with every unit free there (``g = F(0) = 1``
        within the bounds): the base itself, without a pass over X; else None."""
        if lam.any():
            return None
        if self._free_at_zero is None:
            lo, hi = self.lo, self.hi
            self._free_at_zero = bool(
                (lo is None or (lo[:1] if uniform(lo) else lo).max(initial=-np.inf) < 1.0)
                and (hi is None or (hi[:1] if uniform(hi) else hi).min(initial=np.inf) > 1.0)
            )  # fmt: skip
        if not self._free_at_zero:
            return None
        g = np.broadcast_to(1.0, self._g[slot].shape)  # (read-only: no n-long write)
        J = None
        if gram:
            _, J, _, _, _ = self._accumulators(slot, True)
            pattern = self.pattern
            if pattern[0].size:  # (the rest is zero: nothing writes there)
                J[np.repeat(np.arange(J.shape[0]), np.diff(pattern[0])), pattern[1]] = 0.0
            else:
                J.fill(0.0)
            empty = np.empty((0, *J.shape))
            symmetrize(J, empty, self.Xc.nnz, self._base, self.rows, pattern)
        self.bound_share = 0.0
        return Evaluation(g=g, xw=self._base_xd.copy(), conj=0.0, J=J)

    def _finish(self, relative: bool, gram: bool, lam, J, acc, xw, conj_acc, relax):
        """After a compiled pass: completes ``J`` and, relative to the base, the estimates
        ``xw`` (in place); records :attr:`bound_share` and returns the conjugate sum."""
        if gram:
            base = self._base if relative else None
            symmetrize(J, acc, self.Xc.nnz, base, self.rows, self.pattern)
        conj = float(conj_acc[:, 0].sum())
        if relative:
            Kl = self._times_base(lam)
            xw += self._base_xd
            xw += Kl
            conj += float(lam @ self._base_xd) + 0.5 * float(lam @ Kl)
        if not relax:  # (relaxed, no unit counts as on a bound)
            self.bound_share = float(conj_acc[:, 1].sum()) / self.dsum if self.dsum else 0.0
        self.fused_passes += 1
        return conj

    def fused(self):
        """The compiled kernels and the distance's code, or None (compose in NumPy)."""
        nb = None if self.composed else compiled()
        if nb is None:
            return None
        code = _code(self.dist)
        return None if code is None else (nb, code)

    def __call__(
        self, lam: np.ndarray, slot: int, *, gram: bool = False, relax: bool = False
    ) -> Evaluation:
        """The pieces at full-length multipliers ``lam`` into buffer ``slot`` (0 or 1).

        ``gram`` adds the Newton matrix on :attr:`rows`; ``relax`` counts units on a bound
        with their unclipped curvature in it.
        """
        lam = np.ascontiguousarray(lam, dtype=np.float64)
        nb_code = self.fused()
        if nb_code is None:
            return self._composed(lam, slot, gram, relax)
        nb, code = nb_code
        Xc = self.Xc
        relative, zero = self._start(lam, slot, gram, relax)
        if zero is not None:
            return zero
        nchunks, J, acc, xw_acc, conj_acc = self._accumulators(slot, gram)
        dummy = np.empty(0)
        g = self._g[slot]
        # by segments; relative to the base the free units only form g, and placing their
        # entries would cost more than it saves
        seg = NO_SEGMENTS if relative else self.segments
        entries = self.entries if seg[0].size else NO_ENTRIES
        pattern = self.pattern if gram else NO_PATTERN
        pick(nb.EVALUATE, Xc.nnz)(
            Xc.indptr, Xc.indices, Xc.data, lam, self.d,
            dummy if self.lo is None else self.lo, dummy if self.hi is None else self.hi,
            self.lo is not None, self.hi is not None, code, self._pairpos, *seg, *entries,
            *pattern,
            gram, relative, relax, g, xw_acc, conj_acc, J, acc,
        )  # fmt: skip
        xw = xw_acc[0] if nchunks == 1 else xw_acc.sum(axis=0)
        conj = self._finish(relative, gram, lam, J, acc, xw, conj_acc, relax)
        return Evaluation(g=g, xw=xw, conj=conj, J=J if gram else None)

    def _accumulators(self, slot: int, gram: bool):
        """Threads of a pass over X and their private sums: ``(nchunks, J, J's chunks,
        estimates' chunks, conjugates' chunks)`` (``J`` on :attr:`rows`, kept per slot; the
        conjugates' chunks also hold the initial weight on a bound)."""
        nnz, m = self.Xc.nnz, self.rows.size
        nchunks = threads(nnz)
        if gram:
            nchunks = gram_chunks(nnz, m)
            if self._J[slot] is None:  # (zero where the pattern never reaches)
                self._J[slot] = np.zeros((m, m))
            size = (nchunks - 1) * m * m
            J, acc = self._J[slot], self.scratch(size)[:size].reshape(nchunks - 1, m, m)
        else:
            J, acc = np.empty((0, 0)), np.empty((0, 0, 0))
        return nchunks, J, acc, np.empty((nchunks, self.Xc.shape[0])), np.empty((nchunks, 2))

    def _composed(self, lam, slot, gram, relax) -> Evaluation:
        dist, lo, hi = self.dist, self.lo, self.hi
        u = rmatvec(self.Xc, lam, self._u[slot])
        g = dist.F(u, lo, hi, out=self._g[slot])
        with np.errstate(over="ignore", invalid="ignore"):
            conj = dist.conjugate_sum(self.d, u, g, lo, hi)
        xw = matvec(self.Xc, self.d * g)
        J = self.gram(u, g, relax) if gram else None
        return Evaluation(g=g, xw=xw, conj=conj, J=J, u=u)

    def gram(self, u: np.ndarray, g: np.ndarray, relax: bool = False) -> np.ndarray:
        """The Newton matrix on :attr:`rows` at ``(u, g)`` (composed path)."""
        v = np.empty_like(u)
        if relax:
            with np.errstate(over="ignore", invalid="ignore"):
                self.dist._dF(u, g, self.lo, self.hi, v)
        else:
            self.dist.dF(u, g, self.lo, self.hi, out=v)
        np.multiply(v, self.d, out=v)
        J = weighted_gram(self.Xc, v)
        m = self.rows.size
        return J[np.ix_(self.rows, self.rows)] if m < J.shape[0] else J
