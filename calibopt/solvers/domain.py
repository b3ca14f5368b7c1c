"""The domain of a sparse calibration: kept-record bounds, target bands, implied bounds.

Sparse methods (``l0-mip``, ``reweighted-l1``, ``cross-category``) choose which records to keep.
A dropped record has weight exactly 0; the problem's bounds (absolute and ratio) apply to the
*kept* records. So record ``i`` has the semi-continuous domain

    w_i = 0   or   l_i <= w_i <= u_i,

whose convex hull is ``[min(l_i, 0), max(u_i, 0)]`` (``l, u`` from
``problem.weight_bounds()``: non-negative weights by default, as for every method).

:func:`sparse_domain` also tightens the hull by propagating the target bands
``lo_j <= X_j w <= hi_j`` (activity-based bound tightening, as MIP presolvers do): a record
whose weight can never exceed ``hi_j / X_ji`` under row ``j`` gets that as its big-M. This is
the *tightest implied bound* the ``l0-mip`` model uses instead of a blind constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleError
from ..problem import CalibrationProblem

__all__ = ["SparseDomain", "project_semicontinuous", "propagate_bounds", "sparse_domain"]


@dataclass
class SparseDomain:
    """Bounds of a sparse calibration problem.

    Attributes
    ----------
    lower, upper : ndarray
        Bounds on a kept record's weight (``w_i = 0`` or ``lower_i <= w_i <= upper_i``).
    hull_lower, hull_upper : ndarray
        Bounds on ``w_i`` over both cases, tightened by the target bands (finite where the rows
        imply a bound). Records that can never be non-zero have ``hull_lower = hull_upper = 0``.
    band_lower, band_upper : ndarray
        The target bands ``b -/+ tolerance |b|``.
    fixed_zero : ndarray of bool
        Records forced to 0 (empty columns, or kept bounds incompatible with the bands).
    rounds : int
        Propagation rounds run.
    """

    lower: np.ndarray
    upper: np.ndarray
    hull_lower: np.ndarray
    hull_upper: np.ndarray
    band_lower: np.ndarray
    band_upper: np.ndarray
    fixed_zero: np.ndarray
    rounds: int = 0

    @property
    def big_m(self) -> np.ndarray:
        """Largest ``|w_i|`` any solution can have (the tightest big-M per record)."""
        return np.maximum(self.hull_upper, -self.hull_lower)


def _row_activity(
    rows: np.ndarray, vals: np.ndarray, lo: np.ndarray, hi: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-entry min/max contributions and per-row finite sums and infinite counts."""
    with np.errstate(invalid="ignore"):
        a = vals * lo
        b = vals * hi
    a = np.where(np.isnan(a), 0.0, a)  # 0 * inf
    b = np.where(np.isnan(b), 0.0, b)
    cmin = np.minimum(a, b)
    cmax = np.maximum(a, b)
    inf_min = np.isneginf(cmin)
    inf_max = np.isposinf(cmax)
    sum_min = np.bincount(rows, weights=np.where(inf_min, 0.0, cmin), minlength=m)
    sum_max = np.bincount(rows, weights=np.where(inf_max, 0.0, cmax), minlength=m)
    n_inf_min = np.bincount(rows, weights=inf_min, minlength=m)
    n_inf_max = np.bincount(rows, weights=inf_max, minlength=m)
    return cmin, cmax, sum_min, sum_max, n_inf_min, n_inf_max


def propagate_bounds(
    X: sp.csr_matrix,
    band_lower: np.ndarray,
    band_upper: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    max_rounds: int = 10,
    rtol: float = 1e-9,
    names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Tighten variable bounds ``lo <= w <= hi`` implied by ``band_lower <= X w <= band_upper``.

    For an entry ``X_ji > 0``: ``X_ji w_i <= band_upper_j - (min activity of the other
    entries of row j)``, and symmetric cases. Repeated until no bound moves by more than
    ``rtol`` (relative) or ``max_rounds``. Vectorised over the non-zeros.

    Returns
    -------
    lo, hi : ndarray
        Tightened bounds.
    rounds : int
        Rounds run.

    Raises
    ------
    InfeasibleError
        When a row cannot reach its band under the bounds (naming the target).
    """
    coo = X.tocoo()
    rows, cols, vals = coo.row, coo.col, coo.data
    m, n = X.shape
    lo = lo.astype(np.float64, copy=True)
    hi = hi.astype(np.float64, copy=True)
    rounds = 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007
        cmin, cmax, smin, smax, kmin, kmax = _row_activity(rows, vals, lo[cols], hi[cols], m)
        _check_rows(smin, smax, kmin, kmax, band_lower, band_upper, names)
        # activity of the other entries of the row, per entry
        other_min = np.where(
            kmin[rows] - np.isneginf(cmin) > 0,
            -np.inf,
            smin[rows] - np.where(np.isneginf(cmin), 0, cmin),
        )
        other_max = np.where(
            kmax[rows] - np.isposinf(cmax) > 0,
            np.inf,
            smax[rows] - np.where(np.isposinf(cmax), 0, cmax),
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            up = band_upper[rows] - other_min  # X_ji w_i <= up
            dn = band_lower[rows] - other_max  # X_ji w_i >= dn
            pos = vals > 0
            new_hi_e = np.where(pos, up / vals, dn / vals)
            new_lo_e = np.where(pos, dn / vals, up / vals)
        new_hi_e = np.where(np.isnan(new_hi_e), np.inf, new_hi_e)
        new_lo_e = np.where(np.isnan(new_lo_e), -np.inf, new_lo_e)
        new_hi = np.full(n, np.inf)
        new_lo = np.full(n, -np.inf)
        np.minimum.at(new_hi, cols, new_hi_e)
        np.maximum.at(new_lo, cols, new_lo_e)
        # only accept tightenings (never loosen), with a small safety margin against rounding
        scale = np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
        cand_hi = np.minimum(hi, new_hi + 1e-12 * np.abs(new_hi))
        cand_lo = np.maximum(lo, new_lo - 1e-12 * np.abs(new_lo))
        with np.errstate(invalid="ignore"):
            changed_hi = np.where(
                np.isfinite(hi), hi - cand_hi > rtol * scale, np.isfinite(cand_hi)
            )
            changed_lo = np.where(
                np.isfinite(lo), cand_lo - lo > rtol * scale, np.isfinite(cand_lo)
            )
        lo, hi = cand_lo, cand_hi
        if not (changed_hi.any() or changed_lo.any()):
            break
    return lo, hi, rounds


def _check_rows(
    smin: np.ndarray,
    smax: np.ndarray,
    kmin: np.ndarray,
    kmax: np.ndarray,
    band_lower: np.ndarray,
    band_upper: np.ndarray,
    names: list[str] | None,
) -> None:
    maxact = np.where(kmax > 0, np.inf, smax)
    minact = np.where(kmin > 0, -np.inf, smin)
    slack = 1e-9 * np.maximum(1.0, np.maximum(np.abs(band_lower), np.abs(band_upper)))
    short = np.flatnonzero(maxact < band_lower - slack)
    over = np.flatnonzero(minact > band_upper + slack)
    if short.size or over.size:
        j = int(short[0]) if short.size else int(over[0])
        bad = np.concatenate([short, over])
        label = names[j] if names is not None else f"row {j}"
        lab_all = [names[k] if names is not None else f"row {k}" for k in bad[:10]]
        if short.size:
            why = (
                f"the largest total the weight bounds allow for target {label!r} is "
                f"{maxact[j]:.6g}, below its band's lower end {band_lower[j]:.6g}"
            )
        else:
            why = (
                f"the smallest total the weight bounds allow for target {label!r} is "
                f"{minact[j]:.6g}, above its band's upper end {band_upper[j]:.6g}"
            )
        raise InfeasibleError(
            f"no weights meet the targets: {why}. Widen the bounds or the tolerance, or check "
            f"the target.",
            targets=lab_all,
        )


def sparse_domain(problem: CalibrationProblem, *, tighten: bool = True) -> SparseDomain:
    """Kept-record bounds, target bands and (if ``tighten``) implied hull bounds of a problem.

    Raises
    ------
    InfeasibleError
        When a target's band cannot be reached under the bounds.
    """
    lower, upper = problem.weight_bounds()
    band_lower, band_upper = problem.target_bands()
    hull_lower = np.minimum(lower, 0.0)
    hull_upper = np.maximum(upper, 0.0)
    # records outside every row can only add to the count, and records whose absolute and
    # ratio bounds do not intersect can never be kept: fix them to 0
    fixed = (np.diff(problem.csc.indptr) == 0) | (lower > upper)
    # kept bounds that exclude 0 but whose hull is empty cannot occur (lower <= upper)
    hull_lower[fixed] = 0.0
    hull_upper[fixed] = 0.0
    rounds = 0
    if tighten:
        for _ in range(5):
            hull_lower, hull_upper, r = propagate_bounds(
                problem.X,
                band_lower,
                band_upper,
                hull_lower,
                hull_upper,
                names=problem.target_names,
            )
            rounds += r
            # a record whose kept interval lies outside its implied hull can never be kept
            dead = ~fixed & ((lower > hull_upper) | (upper < hull_lower))
            if not dead.any():
                break
            fixed |= dead
            hull_lower[dead] = 0.0
            hull_upper[dead] = 0.0
    else:
        propagate_bounds(
            problem.X,
            band_lower,
            band_upper,
            hull_lower,
            hull_upper,
            max_rounds=1,
            names=problem.target_names,
        )
    return SparseDomain(
        lower=lower,
        upper=upper,
        hull_lower=hull_lower,
        hull_upper=hull_upper,
        band_lower=band_lower,
        band_upper=band_upper,
        fixed_zero=fixed,
        rounds=rounds,
    )


def project_semicontinuous(w: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The nearest weights in ``{0} U [lower, upper]`` per record (0 where the box is empty)."""
    with np.errstate(invalid="ignore"):
        inside = np.clip(w, lower, upper)
    inside = np.where(lower <= upper, inside, 0.0)
    return np.where(np.abs(inside - w) <= np.abs(w), inside, 0.0)
