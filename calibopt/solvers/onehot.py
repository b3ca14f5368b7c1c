"""The one-hot structure of categorical margins, found in X and used by the Newton pass.

A categorical margin gives a **block** of rows in which every unit has at most one entry, all
entries of a row equal (a one-hot indicator, scaled). Across blocks a unit's one-hot entries
are then one **cell** of the cross-classification, and the dual's pieces need only per-cell
sums: a unit's ``u = x_i' lambda`` is its cell's ``F`` plus its other entries, the one-hot
rows' estimates are ``sum_cells v W_cell`` and the Newton matrix between two one-hot rows is a
bincount of ``d F'(u)`` by cell (a margin's Gram with another is its cross-tabulation). Per
unit the pass reads a cell index instead of one entry per margin; of the Newton matrix it
accumulates the cell's curvature, one per-cell sum per other entry and the pairs of other
entries, instead of every pair of entries. With uniform bounds a unit without other entries
only copies its cell's g-weight (units the solver could have merged cost no arithmetic).

:func:`find_cells` detects the blocks once per solve: rows whose entries are all equal,
coloured greedily so no two rows of a block share a unit, proposed from a sample of units
and verified on every unit by the pass that codes the cells (a failed check proposes them
again from every unit); blocks are kept while the possible cells stay under a quarter of the
units and if they hold a third of the non-zeros. :class:`CellEvaluator` is the
:class:`~calibopt.solvers.evaluate.Evaluator` that uses them, with the same results to
rounding. Without numba's kernels, or without enough structure, the plain evaluator runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .distances import Distance
from .evaluate import Evaluation, Evaluator, _code, uniform
from .kernels import compiled, gram_chunks, pick, symmetrize, threads

__all__ = ["CellEvaluator", "Cells", "find_cells", "make_evaluator"]

MIN_UNITS = 20_000
"""Fewer units than this: the plain pass (detection would cost more than it saves)."""
MAX_CANDIDATES = 512
"""At most this many constant rows (the most frequent) are considered for blocks."""
MAX_BLOCKS = 16
"""At most this many one-hot blocks."""
CELL_SHARE = 0.25
"""The possible cells (product of the blocks' levels + 1) stay under this share of the units."""
MIN_ONEHOT_SHARE = 1 / 3
"""The blocks must hold at least this share of the non-zeros."""
CELL_MEMORY = 1 << 27
"""Bytes for the threads' per-cell sums of the other rows (``cells x rows x threads``)."""


SAMPLE = 20_000
"""Blocks are proposed from about this many units and verified on all of them."""
RUN = 256
"""The sample is runs of this many consecutive units, evenly spaced (memory read in order)."""


@dataclass
class Cells:
    """One-hot blocks of a CSC matrix and each unit's cell (see the module docstring).

    Attributes
    ----------
    code
        Cell of each unit (int32).
    cell_rows, cell_vals
        ``(cells, blocks)``: each cell's row in each block (-1: none) and that row's value.
    rest_ptr, rest_idx, rest_val
        The entries outside the blocks (CSC arrays, the same row numbering); ``rest_ptr`` is
        ``[0]`` when no unit has any.
    rest_rows
        Rows outside the blocks.
    blocks
        The rows of each block.
    pure
        Whether every unit has the same g-bounds: units without other entries are then
        summed per cell (:attr:`dpure`).
    dpure
        Per cell, the initial weight of its units without other entries (zeros unless
        :attr:`pure`).
    """

    code: np.ndarray
    cell_rows: np.ndarray
    cell_vals: np.ndarray
    rest_ptr: np.ndarray
    rest_idx: np.ndarray
    rest_val: np.ndarray
    rest_rows: np.ndarray
    blocks: list[np.ndarray]
    pure: bool
    dpure: np.ndarray

    @property
    def ncells(self) -> int:
        """Number of (occupied) cells."""
        return self.cell_rows.shape[0]


def _blocks(Xc: sp.csc_matrix, nc, sample: bool):
    """Rows whose entries are all equal (among a sample of units, or all), coloured greedily
    (the most frequent first) into blocks of disjoint supports; with the rows' values and
    counts. None when no row qualifies."""
    p, n = Xc.shape
    nruns = max(1, SAMPLE // RUN) if sample else -(-n // RUN)
    starts = np.linspace(0, max(0, n - RUN), nruns).astype(np.int64) if sample else None
    if starts is None:
        starts = np.arange(0, n, RUN, dtype=np.int64)
    work = min(Xc.nnz, int(Xc.nnz * nruns * RUN / n))
    nchunks = threads(work)
    mins, maxs = np.empty((nchunks, p)), np.empty((nchunks, p))
    counts = np.empty((nchunks, p), dtype=np.int64)
    pick(nc.ROW_MINMAX, work)(Xc.indptr, Xc.indices, Xc.data, starts, RUN, mins, maxs, counts)
    mn, mx, ct = mins.min(axis=0), maxs.max(axis=0), counts.sum(axis=0)
    cand_rows = np.flatnonzero((ct > 0) & (mn == mx) & (mn != 0))
    if cand_rows.size < 1:
        return None
    cand_rows = cand_rows[np.argsort(-ct[cand_rows], kind="stable")][:MAX_CANDIDATES]
    cand = np.full(p, -1, dtype=np.int64)
    cand[cand_rows] = np.arange(cand_rows.size)
    conf = np.empty((nchunks, cand_rows.size, cand_rows.size), dtype=np.uint8)
    pick(nc.CONFLICTS, work)(Xc.indptr, Xc.indices, starts, RUN, cand, conf)
    conflict = conf.any(axis=0)
    members: list[list[int]] = []
    for j in range(cand_rows.size):
        for mem in members:
            if not conflict[j, mem].any():
                mem.append(j)
                break
        else:
            if len(members) < MAX_BLOCKS:
                members.append([j])
    return [np.sort(cand_rows[m]) for m in members], mn, ct


def find_cells(Xc: sp.csc_matrix, d: np.ndarray, uniform_bounds: bool) -> Cells | None:
    """The one-hot blocks and cells of ``Xc`` (targets x units, CSC), or None when too few.

    Blocks are proposed from a sample of units and verified on all of them in the pass that
    codes the cells; if the sample misled (a row not constant, or two rows of a block on one
    unit), they are proposed again from every unit.

    Parameters
    ----------
    Xc
        CSC matrix with sorted indices.
    d
        Initial weights.
    uniform_bounds
        Whether every unit has the same g-bounds (units without other entries are then
        summed per cell).
    """
    p, n = Xc.shape
    if compiled() is None or n < MIN_UNITS or Xc.nnz == 0:
        return None
    from . import _numba_cells as nc

    found = _coded(Xc, nc, sample=True)
    if found is not None and not found[0]:
        found = _coded(Xc, nc, sample=False)  # the sample misled: propose from every unit
    if found is None or not found[0]:
        return None
    _, keep, val, stride, seen, code, nrest = found
    rest_rows = np.flatnonzero(~np.isin(np.arange(p), np.concatenate(keep)))
    nrest_total = int(nrest.sum())
    if Xc.nnz - nrest_total < MIN_ONEHOT_SHARE * Xc.nnz:
        return None
    present = seen[:, :-1].any(axis=0)
    index = (np.cumsum(present) - 1).astype(np.int32)
    sums = np.empty((threads(n), int(present.sum())))
    pick(nc.REMAP, n)(code, nrest, np.ascontiguousarray(d, dtype=np.float64), index,
                      uniform_bounds, sums)  # fmt: skip
    dpure = sums.sum(axis=0) if uniform_bounds else np.zeros(sums.shape[1])
    rptr = np.zeros(n + 1 if nrest_total else 1, dtype=np.int64)  # [0]: no other entries
    ridx = np.empty(nrest_total, dtype=Xc.indices.dtype)
    rdat = np.empty(nrest_total)
    if nrest_total:
        np.cumsum(nrest, out=rptr[1:])
        blk = _block_of(p, keep)
        pick(nc.REST_FILL, Xc.nnz)(Xc.indptr, Xc.indices, Xc.data, blk, rptr, ridx, rdat)
    cells = np.flatnonzero(present)
    cell_rows = np.full((cells.size, len(keep)), -1, dtype=np.int64)
    for b, rows in enumerate(keep):
        lev = (cells // stride[b]) % (rows.size + 1)
        on = lev > 0
        cell_rows[on, b] = rows[lev[on] - 1]
    cell_vals = np.where(cell_rows >= 0, val[np.maximum(cell_rows, 0)], 0.0)
    return Cells(code=code, cell_rows=cell_rows, cell_vals=cell_vals, rest_ptr=rptr,
                 rest_idx=ridx, rest_val=rdat, rest_rows=rest_rows, blocks=keep,
                 pure=uniform_bounds, dpure=dpure)  # fmt: skip


def _block_of(p: int, keep: list[np.ndarray]) -> np.ndarray:
    blk = np.full(p, -1, dtype=np.int64)
    for b, rows in enumerate(keep):
        blk[rows] = b
    return blk


def _coded(Xc: sp.csc_matrix, nc, sample: bool):
    """Blocks proposed from a sample of units (or all), then each unit's dense cell code, its
    count of other entries and the codes seen; the first item says whether the blocks hold on
    every unit."""
    p, n = Xc.shape
    found = _blocks(Xc, nc, sample)
    if found is None:
        return None
    blocks, val, ct = found
    # the blocks covering most entries, while the possible cells stay few
    keep, product = [], 1
    for rows in sorted(blocks, key=lambda r: -int(ct[r].sum())):
        if product * (rows.size + 1) <= CELL_SHARE * n:
            keep.append(rows)
            product *= rows.size + 1
    if not keep or sum(int(ct[r].sum()) for r in keep) < MIN_ONEHOT_SHARE * ct.sum():
        return None  # (on the sample's counts: no full pass for a matrix without the structure)
    rest = p - sum(r.size for r in keep)
    if product * rest * gram_chunks(Xc.nnz, rest) * 8 > CELL_MEMORY:
        return None
    blk = _block_of(p, keep)
    level = np.zeros(p, dtype=np.int64)
    stride = np.empty(len(keep), dtype=np.int64)
    s = 1
    for b, rows in enumerate(keep):
        level[rows] = np.arange(1, rows.size + 1)
        stride[b] = s
        s *= rows.size + 1
    code = np.empty(n, dtype=np.int32)
    nrest = np.empty(n, dtype=np.int32)
    seen = np.empty((threads(Xc.nnz), product + 1), dtype=np.uint8)
    inblock = blk >= 0
    bit = np.where(inblock, np.left_shift(1, np.maximum(blk, 0)), 0).astype(np.int64)
    lvl = np.where(inblock, level * stride[np.maximum(blk, 0)], 0).astype(np.int64)
    pick(nc.CODES, Xc.nnz)(Xc.indptr, Xc.indices, Xc.data, bit, lvl, val, code, nrest,
                           seen)  # fmt: skip
    return not seen[:, -1].any(), keep, val, stride, seen, code, nrest


class CellEvaluator(Evaluator):
    """:class:`~calibopt.solvers.evaluate.Evaluator` whose compiled pass uses one-hot cells.

    Parameters
    ----------
    Xc, d, lo, hi, dist
        As for :class:`~calibopt.solvers.evaluate.Evaluator`.
    cells
        From :func:`find_cells` on ``Xc``.
    """

    def __init__(self, Xc, d, lo, hi, dist: Distance, cells: Cells) -> None:
        super().__init__(Xc, d, lo, hi, dist)
        self.cells = cells
        self.pure = cells.pure
        self.lo0 = float(lo[0]) if lo is not None and lo.size else 0.0
        self.hi0 = float(hi[0]) if hi is not None and hi.size else 0.0
        nc = cells.ncells
        self._cellbuf = [np.empty(nc) for _ in range(4)]  # F, g, dg, conjugate per cell
        self._restpos = np.empty(0, dtype=np.int64)
        self._rest_in_play = np.empty(0, dtype=np.int64)
        self._sums: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        self._set_rest()

    def set_rows(self, rows: np.ndarray) -> None:
        super().set_rows(rows)
        self._set_rest()

    def _set_rest(self) -> None:
        rest = self.cells.rest_rows
        play = rest[self._rowpos[rest] >= 0]
        if play.size == self._rest_in_play.size and np.array_equal(play, self._rest_in_play):
            return
        self._rest_in_play = play
        self._restpos = np.full(self.Xc.shape[0], -1, dtype=np.int64)
        self._restpos[play] = np.arange(play.size)

    def _buffers(self, nchunks: int, gram: bool):
        key = (nchunks, self._rest_in_play.size if gram else -1)
        if key not in self._sums:
            nc = self.cells.ncells
            W = np.empty((nchunks, nc))
            if gram:
                H = np.empty((nchunks, nc))
                Z = np.empty((nchunks, nc, self._rest_in_play.size))
            else:
                H, Z = np.empty((nchunks, 0)), np.empty((nchunks, 0, 0))
            if len(self._sums) >= 4:  # rows in play changed often: keep memory bounded
                self._sums.clear()
            self._sums[key] = (W, H, Z)
        return self._sums[key]

    def weighted_gram(self, v: np.ndarray, sums: np.ndarray | None = None) -> np.ndarray:
        """``X diag(v) X'`` (and ``X v``) on every row, from the cells (see the base class)."""
        if self.fused() is None:
            return super().weighted_gram(v, sums)
        from . import _numba_cells as nc

        cells = self.cells
        p = self.Xc.shape[0]
        work = self.Xc.nnz
        nchunks = gram_chunks(work, p)
        size = (nchunks - 1) * p * p
        G, acc = np.empty((p, p)), self.scratch(size)[:size].reshape(nchunks - 1, p, p)
        nr = cells.rest_rows.size
        H = np.empty((nchunks, cells.ncells))
        Z = np.empty((nchunks, cells.ncells, nr))
        restpos = np.full(p, -1, dtype=np.int64)
        restpos[cells.rest_rows] = np.arange(nr)
        v = np.ascontiguousarray(v, dtype=np.float64)
        pick(nc.GRAM_CELLS, work)(cells.code, cells.rest_ptr, cells.rest_idx, cells.rest_val,
                                  v, restpos, G, acc, H, Z)  # fmt: skip
        xv = np.zeros(p) if sums is None else sums  # X v: the other rows' per-cell sums,
        xv[...] = 0.0
        xv[cells.rest_rows] = Z.sum(axis=(0, 1))  # then the cells' (CELLS_FINISH)
        nc.CELLS_FINISH(
            cells.cell_rows, cells.cell_vals, cells.dpure, self._cellbuf[1], self._cellbuf[2],
            self._cellbuf[3], False, H, H, Z, cells.rest_rows, np.arange(p, dtype=np.int64),
            True, False, self._cellbuf[0], xv, G,
        )  # fmt: skip
        symmetrize(G, acc, work)
        return G

    def __call__(
        self, lam: np.ndarray, slot: int, *, gram: bool = False, relax: bool = False
    ) -> Evaluation:
        if self.fused() is None:
            return super().__call__(lam, slot, gram=gram, relax=relax)
        from . import _numba_cells as nc

        lam = np.ascontiguousarray(lam, dtype=np.float64)
        relative, zero = self._start(lam, slot, gram, relax)
        if zero is not None:
            return zero
        cells = self.cells
        code = _code(self.dist)
        has_lo, has_hi = self.lo is not None, self.hi is not None
        F, gcell, dgcell, ccell = self._cellbuf
        pick(nc.CELL_UNITS, cells.ncells * 64)(
            cells.cell_rows, cells.cell_vals, lam, code, has_lo, has_hi, self.lo0, self.hi0,
            relax, F, gcell, dgcell, ccell,
        )  # fmt: skip
        work = self.Xc.nnz  # the plain pass's size decides serial vs threads
        nchunks, J, acc, xw_acc, conj_acc = self._accumulators(slot, gram)
        W, H, Z = self._buffers(nchunks, gram)
        dummy = np.empty(0)
        g = self._g[slot]
        pick(nc.EVALUATE_CELLS, work)(
            cells.code, cells.rest_ptr, cells.rest_idx, cells.rest_val, F, gcell, lam, self.d,
            dummy if self.lo is None else self.lo, dummy if self.hi is None else self.hi,
            has_lo, has_hi, self.lo0, self.hi0, self.pure, code, self._rowpos, self._restpos,
            gram, relative, relax,
            g, xw_acc, conj_acc, J, acc, W, H, Z,
        )  # fmt: skip
        xw = xw_acc[0] if nchunks == 1 else xw_acc.sum(axis=0)
        conj_pure, bound_pure = nc.CELLS_FINISH(
            cells.cell_rows, cells.cell_vals, cells.dpure, gcell, dgcell, ccell, self.pure,
            W, H, Z, self._rest_in_play, self._rowpos, gram, relative, F, xw, J,
        )  # fmt: skip
        conj_acc[0] += (conj_pure, bound_pure)
        conj = self._finish(relative, gram, lam, J, acc, xw, conj_acc, relax)
        return Evaluation(g=g, xw=xw, conj=conj, J=J if gram else None)


def make_evaluator(Xc: sp.csc_matrix, d: np.ndarray, lo, hi, dist: Distance) -> Evaluator:
    """A :class:`CellEvaluator` when ``Xc`` has enough one-hot structure and the compiled
    kernels run for this distance, else the plain :class:`Evaluator`."""
    if compiled() is None or _code(dist) is None:
        return Evaluator(Xc, d, lo, hi, dist)
    cells = find_cells(Xc, d, uniform(lo) and uniform(hi))
    if cells is None:
        return Evaluator(Xc, d, lo, hi, dist)
    return CellEvaluator(Xc, d, lo, hi, dist, cells)
