"""The distance methods' view of a problem: free units, g-bounds, a well-scaled matrix.

Units that no program can tell apart (the same column of X and the same g-bounds: in
categorical margins, everyone in the same cell of the cross-classification) get the same ``g``
at the optimum of every distance (``G`` is strictly convex and the program is symmetric in
them), so with ``collapse=True`` they are merged into one column with their summed ``d``:
raking a million units to 69 margin cells becomes a problem over the (at most) 10,000
non-empty cells, solved exactly, and the weights are expanded back per unit. The check is one
vectorised pass over matrices with the same number of indicator entries per unit (what
:func:`calibopt.problem_from_margins` builds from categorical margins).

Shared by the Newton path (:mod:`calibopt.formulations.distance`) and the cvxpy model
(:mod:`calibopt.formulations.distance_cvxpy`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..solvers.distances import Distance
from ..solvers.feasibility import lp_certificate
from ..solvers.kernels import row_absmax

__all__ = ["Prepared", "penalty_scale", "prepare"]

_EXTREME = 1e100
"""Rows whose largest entry is outside [1/_EXTREME, _EXTREME] are rescaled (by powers of 2)."""


@dataclass
class Prepared:
    """The problem restricted to units with ``d > 0``, with g-bounds checked for the distance.

    ``Xc`` rows may be multiplied by powers of two (``row_factor``, exact in floating point)
    when their entries are so small or large that ``X D X'`` would under- or overflow; targets
    and bands of the engine are then multiplied by the same factors.
    """

    dist: Distance
    pos: np.ndarray  # mask of units with d > 0
    d: np.ndarray
    glo: np.ndarray
    ghi: np.ndarray
    Xc: sp.csc_matrix  # targets x free units (rows possibly rescaled), or x cells
    row_factor: np.ndarray | None = None
    labels: np.ndarray | None = None  # free unit -> its cell (column of Xc) when collapsed
    d_units: np.ndarray | None = None  # the free units' own d when collapsed

    def weight_domain(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on w implied by the g-bounds and the distance's natural domain."""
        lo = np.maximum(self.glo, self.dist.domain_lower) * self.d
        return lo, self.ghi * self.d

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """Target-space values in the engine's row scaling."""
        return values if self.row_factor is None else values * self.row_factor

    def unscale_multipliers(self, lam: np.ndarray) -> np.ndarray:
        """Multipliers of the engine's rows as multipliers of the original rows."""
        return lam if self.row_factor is None else lam * self.row_factor

    def full(self, values: np.ndarray, fill: float) -> np.ndarray:
        """Per-free-unit values as a vector over all units."""
        out = np.full(self.pos.shape[0], fill)
        out[self.pos] = values
        return out

    def weights(self, g: np.ndarray) -> np.ndarray:
        """The weights ``w = d g`` over all units from one ``g`` per column of :attr:`Xc`."""
        if self.labels is None:
            return self.full(self.d * g, 0.0)
        return self.full(self.d_units * g[self.labels], 0.0)

    def certify(
        self, problem: CalibrationProblem, stop_early: bool = False, time_limit: float = np.inf
    ) -> float:
        """The phase-1 LP over every target band and weight bound (:func:`lp_certificate`):
        raises :class:`~calibopt.errors.InfeasibleError` when it proves no weights exist."""
        wlo, whi = self.weight_domain()
        band_lo, band_hi = (self.scaled(v) for v in problem.target_bands())
        return lp_certificate(
            self.Xc, band_lo, band_hi, wlo, whi, problem.target_names, stop_early=stop_early,
            time_limit=time_limit,
        )  # fmt: skip

    def objective(self, g: np.ndarray) -> float:
        """``sum_i d_i G(g_i)`` (NaN for a distance given without ``G``)."""
        return float(self.d @ self.dist.G(g, self.glo, self.ghi))


def penalty_scale(b: np.ndarray, gross: np.ndarray) -> np.ndarray:
    """Scale of each target's miss in penalty mode: ``|b_j|``, or the gross activity at 0."""
    s = np.where(b != 0, np.abs(b), gross)
    return np.where(s > 0, s, 1.0)


def _row_factors(Xc: sp.csc_matrix) -> np.ndarray | None:
    """Powers of two bringing every row's largest entry near 1, or None when not needed."""
    if Xc.nnz == 0:
        return None
    rowmax = row_absmax(Xc)
    live = rowmax > 0
    if np.all((rowmax[live] >= 1.0 / _EXTREME) & (rowmax[live] <= _EXTREME)):
        return None
    exponent = np.zeros(Xc.shape[0])
    exponent[live] = -np.round(np.log2(rowmax[live]))
    return np.exp2(exponent)


MAX_CELLS = 4_000_000
"""Largest cross-classification (product of the levels' ranges) collapsed through a table."""


def cells(Xc: sp.csc_matrix, glo: np.ndarray, ghi: np.ndarray):
    """``(labels, X_cells)`` merging identical indicator columns, or None when not worth it.

    Applies when every unit has the same number ``k`` of stored entries, all equal to 1, the
    g-bounds are the same for every unit, and the cells (the mixed-radix code of the ``k``
    row indices) are fewer than half the units.
    """
    m, n = Xc.shape
    if n < 1000 or Xc.nnz % n:
        return None
    k = Xc.nnz // n
    if k == 0 or k > 16 or not np.array_equal(Xc.indptr, np.arange(n + 1) * k):
        return None
    if not (np.all(Xc.data == 1.0) and np.all(glo == glo[0]) and np.all(ghi == ghi[0])):
        return None
    slots = Xc.indices.reshape(n, k)
    cols = [np.ascontiguousarray(slots[:, s]) for s in range(k)]
    low = [int(c.min()) for c in cols]
    radix = [int(c.max()) - lo + 1 for c, lo in zip(cols, low)]
    if float(np.prod(np.asarray(radix, dtype=np.float64))) > min(MAX_CELLS, 4.0 * n):
        return None
    code = cols[0].astype(np.int64)
    code -= low[0]
    stride = radix[0]
    tmp = np.empty(n, dtype=np.int64)
    for s in range(1, k):
        np.subtract(cols[s], low[s], out=tmp)
        tmp *= stride
        code += tmp
        stride *= radix[s]
    present = np.flatnonzero(np.bincount(code, minlength=stride))
    if present.size * 2 > n:
        return None
    table = np.full(stride, -1, dtype=np.int64)
    table[present] = np.arange(present.size)
    labels = table[code]
    first = np.empty(present.size, dtype=np.int64)
    first[labels[::-1]] = np.arange(n - 1, -1, -1)  # the first unit of each cell
    sub = slots[first]
    Xcells = sp.csc_matrix(
        (np.ones(sub.size), sub.ravel(), np.arange(present.size + 1) * k), shape=(m, present.size)
    )
    return labels, Xcells


def prepare(
    problem: CalibrationProblem, dist: Distance, method: str, collapse: bool = False
) -> Prepared:
    """Validate the problem for a distance method and restrict it to the units that move.

    With ``collapse``, indistinguishable units are merged (see the module docstring).
    """
    d_all = problem.initial_weights
    pos = d_all > 0
    if not pos.any():
        raise InvalidProblemError(
            "every initial weight is 0; distance methods scale the design weights, so give "
            "positive `initial_weights` (or use a sparse method such as 'l0-mip')."
        )
    problem.require_consistent_bounds(method, multiplicative=True)
    every = bool(pos.all())
    glo, ghi = problem.g_bounds()
    if not every:
        glo, ghi = glo[pos], ghi[pos]
    if dist.needs_bounds and not (np.isfinite(glo).any() or np.isfinite(ghi).any()):
        raise InvalidProblemError(
            f"method {method!r} needs finite bounds on g: give ratio_bounds=(L, U) (e.g. "
            f"(0.5, 2)) or absolute bounds; without bounds use method='linear'."
        )
    dist.check_bounds(glo, ghi)
    Xc = problem.csc if every else problem.csc[:, np.flatnonzero(pos)]
    if not Xc.has_sorted_indices:
        Xc = Xc.copy()
        Xc.sort_indices()
    d = d_all if every else d_all[pos]
    labels = d_units = None
    merged = cells(Xc, glo, ghi) if collapse else None
    if merged is not None:
        labels, Xc = merged
        d_units = d
        d = np.bincount(labels, weights=d_units, minlength=Xc.shape[1])
        glo, ghi = np.full(Xc.shape[1], glo[0]), np.full(Xc.shape[1], ghi[0])
    factor = _row_factors(Xc)
    if factor is not None:
        Xc = sp.csc_matrix((Xc.data * factor[Xc.indices], Xc.indices, Xc.indptr), shape=Xc.shape)
    return Prepared(
        dist=dist,
        pos=pos,
        d=d,
        glo=glo,
        ghi=ghi,
        Xc=Xc,
        row_factor=factor,
        labels=labels,
        d_units=d_units,
    )
