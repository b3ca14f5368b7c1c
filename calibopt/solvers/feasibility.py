"""Feasibility checks that turn impossible problems into clear :class:`InfeasibleError` messages.

Three checks, from cheap to thorough:

1. :func:`check_target_ranges` — each target alone: the totals reachable within the weight
   bounds form an interval ``[min_j, max_j]``; a target band outside it is infeasible
   (this catches a zero row with a non-zero total and bounds that are too tight).
2. :func:`reduce_redundant_targets` — linearly dependent targets (a complete set of category
   indicators plus an intercept): keep an independent subset, and raise when the dependent
   totals contradict the kept ones.
3. :func:`lp_certificate` — all targets together: a phase-1 LP (HiGHS, by column generation
   over the units, :mod:`calibopt.solvers.phase_one`) minimises the scaled shortfall; its duals,
   checked on every unit, prove infeasibility and name the targets involved.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleError
from .dependence import dependent_rows
from .kernels import matvec, row_ranges
from .phase_one import phase_one

INFEASIBLE = 1e-9
"""A proven lower bound on the scaled shortfall above this means infeasible."""

__all__ = [
    "check_target_ranges",
    "dependent_rows",
    "inconsistent",
    "lp_certificate",
    "reduce_redundant_targets",
]


def _fmt(names: list[str], idx) -> str:
    idx = list(idx)
    shown = ", ".join(repr(names[j]) for j in idx[:8])
    return shown + (f" and {len(idx) - 8} more" if len(idx) > 8 else "")


def check_target_ranges(
    Xc: sp.csc_matrix,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    wlo: np.ndarray,
    whi: np.ndarray,
    names: list[str],
    open_lower: bool = False,
    domain: str = "",
) -> None:
    """Raise :class:`InfeasibleError` for targets whose band misses their reachable range.

    Parameters
    ----------
    Xc
        The matrix (targets x units), CSC.
    band_lo, band_hi
        Interval each target's estimate must reach (``b -/+ tol |b|``).
    wlo, whi
        Bounds on the weights (including the distance's domain, e.g. ``w >= 0`` for raking).
    open_lower
        True when ``wlo`` itself cannot be attained (raking needs ``w > 0``): a target reachable
        only with every weight at its lower end is then infeasible too.
    """
    mins, maxs = row_ranges(Xc, wlo, whi)
    tiny = 1e-12 * np.maximum(1.0, np.maximum(np.abs(mins), np.abs(maxs)))
    bad = (band_hi < mins - tiny) | (band_lo > maxs + tiny)
    if open_lower:
        # the band touches the range only at an end that needs weights at the open bound
        bad |= (mins < maxs) & ((band_hi <= mins) | (band_lo >= maxs))
    idx = np.flatnonzero(bad)
    if idx.size == 0:
        return
    lines = []
    for j in idx[:8]:
        if mins[j] == 0 and maxs[j] == 0:
            why = "its row of X is all zero (no unit contributes), so only 0 is reachable"
        else:
            left = "(" if open_lower and mins[j] == 0 else "["
            why = (
                f"the weight bounds{domain} allow only totals in "
                f"{left}{mins[j]:.6g}, {maxs[j]:.6g}{')' if np.isinf(maxs[j]) else ']'}"
            )
        if band_lo[j] == band_hi[j]:
            want = f"{band_lo[j]:.6g}"
        else:
            want = f"[{band_lo[j]:.6g}, {band_hi[j]:.6g}]"
        lines.append(f"  {names[j]!r}: wants {want} but {why}")
    more = f"\n  ... and {idx.size - 8} more" if idx.size > 8 else ""
    raise InfeasibleError(
        f"{idx.size} target(s) cannot be reached by any weights within the bounds:\n"
        + "\n".join(lines)
        + more
        + "\nWiden the bounds, add a tolerance, or drop these targets.",
        targets=[names[j] for j in idx],
    )


def reduce_redundant_targets(
    J: np.ndarray,
    T: np.ndarray,
    names: list[str],
    rtol: float = 1e-9,
    rank_tol: float = 1e-11,
) -> tuple[np.ndarray, np.ndarray]:
    """Split targets into a linearly independent set and redundant ones.

    Dependence is judged on ``J = X diag(v) X'`` (``v > 0`` on the units that can move; see
    :func:`calibopt.kernels.weighted_gram`) by :func:`dependent_rows`. A redundant target
    whose total disagrees with the combination of kept totals (beyond ``rtol``) makes the
    problem infeasible.

    Returns
    -------
    keep, dropped : ndarray of int
        Positions of the kept and the dropped targets.
    """
    keep, dropped, C = dependent_rows(J, rank_tol)
    if dropped.size == 0:
        return keep, dropped
    bad = inconsistent(C, T, keep, dropped, rtol)
    if bad.any():
        implied = C.T @ T[keep]
        lines = []
        for k in np.flatnonzero(bad)[:6]:
            j = dropped[k]
            combo = [
                (keep[i], C[i, k]) for i in np.argsort(-np.abs(C[:, k])) if abs(C[i, k]) > 1e-9
            ]
            expr = " ".join(f"{c:+.6g}*{names[i]!r}" for i, c in combo[:6])
            lines.append(
                f"  {names[j]!r} = {expr} in every unit's row, but its total {T[j]:.10g} "
                f"differs from the implied {implied[k]:.10g}"
            )
        involved = sorted(
            {dropped[k] for k in np.flatnonzero(bad)}
            | {
                keep[i]
                for k in np.flatnonzero(bad)
                for i in range(keep.size)
                if abs(C[i, k]) > 1e-9
            }
        )
        raise InfeasibleError(
            "contradictory targets: some targets are linear combinations of others (e.g. "
            "categories that add up to an intercept) but their totals do not add up:\n"
            + "\n".join(lines)
            + "\nMake the totals consistent, add a tolerance, or use penalty mode.",
            targets=[names[j] for j in involved],
        )
    return keep, dropped


def inconsistent(
    C: np.ndarray, T: np.ndarray, keep: np.ndarray, dropped: np.ndarray, rtol: float = 1e-9
) -> np.ndarray:
    """Which dependent rows' totals differ from ``C' T_keep`` (beyond ``rtol``), as a mask."""
    implied = C.T @ T[keep]
    scale = np.abs(T[dropped]) + np.abs(C).T @ np.abs(T[keep]) + 1.0
    return np.abs(T[dropped] - implied) > rtol * scale


def lp_certificate(
    X: sp.spmatrix,
    band_lo: np.ndarray,
    band_hi: np.ndarray,
    wlo: np.ndarray,
    whi: np.ndarray,
    names: list[str],
    raise_if_infeasible: bool = True,
    *,
    stop_early: bool = False,
    time_limit: float = np.inf,
) -> float:
    """Phase-1 LP over all targets at once; raise :class:`InfeasibleError` with a certificate.

    Solves ``min sum_j (s+_j + s-_j) / c_j`` over ``wlo <= w <= whi``, ``e_j`` in the target
    band, ``X w + s+ - s- = e`` (HiGHS, by column generation over the units:
    :func:`calibopt.solvers.phase_one.phase_one`, so time and memory scale with the
    non-zeros of ``X``), where ``c_j = max(|band|, 1)``. Infeasibility is declared only when
    the duals ``y`` of the equality rows prove it on every unit (``L(y) > 0``, a Farkas-type
    certificate); their non-zeros name the targets involved.

    Parameters
    ----------
    X
        The matrix (targets x units), any sparse format (CSC is used without a copy).
    band_lo, band_hi
        The band each target's estimate must reach.
    wlo, whi
        Bounds on the weights.
    names
        Target names (for the message).
    raise_if_infeasible
        Raise when infeasibility is proven (default); otherwise return the shortfall.
    stop_early
        Stop at the first proof of infeasibility (the shortfall reported is then an upper
        bound, and the proven lower bound is quoted) or the first feasible point (returns 0).
    time_limit
        Seconds the LP may run; without a proof by then the answer is NaN.

    Returns
    -------
    float
        The optimal scaled shortfall (0 when feasible; NaN when the LP did not finish
        without proving infeasibility).
    """
    res = phase_one(
        X, band_lo, band_hi, wlo, whi, stop_above=INFEASIBLE if stop_early else np.inf,
        time_limit=time_limit,
    )  # fmt: skip
    proven = res.bound > INFEASIBLE
    if not proven:
        if res.optimal or res.shortfall <= INFEASIBLE:
            return max(res.shortfall, 0.0)
        return float("nan")
    short = res.shortfall if res.optimal else res.bound
    if not raise_if_infeasible:
        return short
    y = res.y
    c_scale = np.maximum(np.maximum(np.abs(band_lo), np.abs(band_hi)), 1.0)
    involved = np.flatnonzero(np.abs(y) > 1e-9 * max(np.abs(y).max(), 1e-300))
    est = matvec(res.Xc, res.w)
    gaps = est - np.clip(est, band_lo, band_hi)
    worst = np.argsort(-np.abs(gaps) / c_scale)[:5]
    detail = ", ".join(f"{names[j]!r} misses by {gaps[j]:.6g}" for j in worst if gaps[j] != 0)
    raise InfeasibleError(
        f"no weights within the bounds meet all targets together: the phase-1 LP proves that "
        f"the scaled shortfall is at least {res.bound:.3g} (weights found by the "
        f"LP, HiGHS: {res.shortfall:.3g}; {detail}). The targets involved (non-zero LP "
        f"multipliers): {_fmt(names, involved)}. Widen the bounds, add tolerances, or use "
        f"penalty mode to trade them off.",
        targets=[names[j] for j in involved],
        certificate=y,
    )
