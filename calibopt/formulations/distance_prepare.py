"""The distance methods' view of a problem: free units, g-bounds, a well-scaled matrix.

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
    Xc: sp.csc_matrix  # targets x free units (rows possibly rescaled)
    row_factor: np.ndarray | None = None

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

    def certify(self, problem: CalibrationProblem) -> None:
        """Raise :class:`~calibopt.InfeasibleError` (an LP certificate naming the targets) when
        no weights within the bounds and the distance's domain meet every band."""
        wlo, whi = self.weight_domain()
        band_lo, band_hi = problem.target_bands()
        lp_certificate(
            sp.csr_matrix(self.Xc),
            self.scaled(band_lo),
            self.scaled(band_hi),
            wlo,
            whi,
            problem.target_names,
        )

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
    rowmax = np.zeros(Xc.shape[0])
    np.maximum.at(rowmax, Xc.indices, np.abs(Xc.data))
    live = rowmax > 0
    if np.all((rowmax[live] >= 1.0 / _EXTREME) & (rowmax[live] <= _EXTREME)):
        return None
    exponent = np.zeros(Xc.shape[0])
    exponent[live] = -np.round(np.log2(rowmax[live]))
    return np.exp2(exponent)


def prepare(problem: CalibrationProblem, dist: Distance, method: str) -> Prepared:
    """Validate the problem for a distance method and restrict it to the units that move."""
    d_all = problem.initial_weights
    pos = d_all > 0
    if not pos.any():
        raise InvalidProblemError(
            "every initial weight is 0; distance methods scale the design weights, so give "
            "positive `initial_weights` (or use a sparse method such as 'l0-mip')."
        )
    problem.require_consistent_bounds(method, multiplicative=True)
    glo, ghi = problem.g_bounds()
    glo, ghi = glo[pos], ghi[pos]
    if dist.needs_bounds and not (np.isfinite(glo).any() or np.isfinite(ghi).any()):
        raise InvalidProblemError(
            f"method {method!r} needs finite bounds on g: give ratio_bounds=(L, U) (e.g. "
            f"(0.5, 2)) or absolute bounds; without bounds use method='linear'."
        )
    dist.check_bounds(glo, ghi)
    Xc = problem.csc if pos.all() else problem.csc[:, np.flatnonzero(pos)]
    if not Xc.has_sorted_indices:
        Xc = Xc.copy()
        Xc.sort_indices()
    factor = _row_factors(Xc)
    if factor is not None:
        Xc = sp.csc_matrix((Xc.data * factor[Xc.indices], Xc.indices, Xc.indptr), shape=Xc.shape)
    return Prepared(dist=dist, pos=pos, d=d_all[pos], glo=glo, ghi=ghi, Xc=Xc, row_factor=factor)
