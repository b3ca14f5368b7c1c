"""The one check of a weight vector against a problem: every target band and every bound.

Every status calibopt reports comes from :func:`check_weights` (through
:func:`calibopt.status.decide`), never from a solver's own report. The check is
scale-invariant: multiplying ``X`` and ``b`` (or ``b``, the initial weights and the bounds) by
any positive factor changes no verdict.

Target ``j`` is *met* when::

    |X_j w - b_j|  <=  tol_j |b_j|  +  accuracy * s_j,       s_j = |b_j|            if b_j != 0
                                                              s_j = sum_i |X_ji| d_i  if b_j == 0

(``problem.target_bands()`` is the first term; ``s_j`` for a zero target is the row's gross
activity at the initial weights ``d``, or at ``w`` where that is 0). The relative error reported
per target is ``(X_j w - b_j) / s_j``. A weight holds its bounds when it lies in
``problem.weight_bounds()`` up to ``accuracy * max(|bound_i|, d_i)``; for sparse methods a
weight of exactly 0 is always allowed (their bounds apply to the units they keep).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .problem import CalibrationProblem

__all__ = ["ACCURACY", "FitCheck", "check_weights", "relative_errors", "target_scale"]

ACCURACY = 1e-8
"""Relative accuracy of "target met" and "bound held" (see the module docstring)."""


def gross_activity(
    problem: CalibrationProblem, weights: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """``sum_i |X_ji w_i|`` for the given rows (a copy of those rows only)."""
    sub = problem.X[rows]
    return abs(sub) @ np.abs(weights)


def target_scale(problem: CalibrationProblem, weights: np.ndarray) -> np.ndarray:
    """``s_j``: ``|b_j|``; where ``b_j = 0``, the row's gross activity at the initial weights
    ``sum_i |X_ji| d_i`` (or at ``w`` when that is 0 too)."""
    b = problem.targets
    scale = np.abs(b)
    zero = np.flatnonzero(b == 0)
    if zero.size:
        at_d = gross_activity(problem, problem.initial_weights, zero)
        at_w = gross_activity(problem, np.asarray(weights, dtype=np.float64), zero)
        scale[zero] = np.where(at_d > 0, at_d, at_w)
    return scale


def relative_errors(errors: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``errors / scale`` with 0 where the scale is 0 (then the error is 0 too)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, errors / np.where(scale > 0, scale, 1.0), 0.0)


@dataclass(frozen=True)
class FitCheck:
    """The verdict of :func:`check_weights`.

    Attributes
    ----------
    estimates, errors, scale, rel_errors : ndarray
        Per target: ``X w``, ``X w - b``, ``s_j`` and ``errors / s_j``.
    target_met : ndarray of bool
        Per target: within its band (see the module docstring).
    below, above : ndarray of int
        Units whose weight is below its lower / above its upper bound.
    non_finite : ndarray of int
        Units whose weight is NaN or infinite.
    """

    estimates: np.ndarray
    errors: np.ndarray
    scale: np.ndarray
    rel_errors: np.ndarray
    target_met: np.ndarray
    below: np.ndarray
    above: np.ndarray
    non_finite: np.ndarray

    @property
    def targets_ok(self) -> bool:
        """Every target within its band."""
        return bool(self.target_met.all())

    @property
    def bounds_ok(self) -> bool:
        """Every weight finite and within its bounds."""
        return not (self.below.size or self.above.size or self.non_finite.size)

    @property
    def ok(self) -> bool:
        """Every target met and every bound held."""
        return self.targets_ok and self.bounds_ok

    def describe(self, names: list[str] | None = None) -> str:
        """What fails, in words (empty when :attr:`ok`)."""
        parts = []
        miss = np.flatnonzero(~self.target_met)
        if miss.size:
            j = int(miss[np.argmax(np.abs(self.rel_errors[miss]))])
            label = repr(names[j]) if names is not None else f"target {j}"
            parts.append(
                f"{miss.size} target(s) miss their band (worst {label}: relative error "
                f"{self.rel_errors[j]:.3g})"
            )
        for what, idx in (
            ("below their lower bound", self.below),
            ("above their upper bound", self.above),
            ("not finite", self.non_finite),
        ):
            if idx.size:
                parts.append(f"{idx.size} weight(s) {what} (first at unit {int(idx[0])})")
        return "; ".join(parts)


def check_weights(
    problem: CalibrationProblem,
    weights: np.ndarray,
    *,
    sparse: bool = False,
    accuracy: float = ACCURACY,
) -> FitCheck:
    """Check ``weights`` against every target band and bound of ``problem``.

    Parameters
    ----------
    problem
        The problem whose targets, tolerances and bounds apply.
    weights
        One weight per unit.
    sparse
        Bounds apply only to non-zero weights (the semantics of the sparse methods: a dropped
        unit has weight exactly 0 whatever its bounds).
    accuracy
        Relative accuracy (default :data:`ACCURACY`).
    """
    w = np.asarray(weights, dtype=np.float64)
    non_finite = np.flatnonzero(~np.isfinite(w))
    w_eval = w
    if non_finite.size:
        w_eval = w.copy()
        w_eval[non_finite] = 0.0
    est = problem.estimates(w_eval)  # in the matrix's own format: no CSR copy of a CSC input
    b = problem.targets
    err = est - b
    scale = target_scale(problem, w_eval)
    met = np.abs(err) <= problem.tolerance * np.abs(b) + accuracy * scale
    lo, hi = problem.weight_bounds()
    d = problem.initial_weights
    below = _beyond(w_eval, lo, d, -accuracy)
    above = _beyond(w_eval, hi, d, accuracy)
    if sparse:
        below = below[w_eval[below] != 0]
        above = above[w_eval[above] != 0]
    return FitCheck(
        estimates=est,
        errors=err,
        scale=scale,
        rel_errors=relative_errors(err, scale),
        target_met=met & np.isfinite(est),
        below=np.setdiff1d(below, non_finite, assume_unique=True),
        above=np.setdiff1d(above, non_finite, assume_unique=True),
        non_finite=non_finite,
    )


def _beyond(w: np.ndarray, bound: np.ndarray, d: np.ndarray, slack: float) -> np.ndarray:
    """Units whose weight passes ``bound`` by more than ``|slack| max(|bound|, d)``: below a
    lower bound for ``slack < 0``, above an upper bound for ``slack > 0``.

    One temporary: at millions of units, each one costs about as much as the arithmetic.
    """
    finite = np.isfinite(bound)
    if not finite.any():
        return np.zeros(0, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        edge = np.abs(bound)
        np.maximum(edge, d, out=edge)
        edge *= slack
        edge += bound
        return np.flatnonzero(w < edge if slack < 0 else w > edge)
