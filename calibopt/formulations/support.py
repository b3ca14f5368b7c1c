"""Re-solving a calibration on a chosen support, shared by the sparse methods.

* :func:`refit_support` — the exact re-fit of ``l0-mip``, ``reweighted-l1`` and
  ``cross-category``: the weights on a support closest to the design weights (chi-square by
  default) that meet every band within the bounds;
* :func:`polish_support` — ``hard-concrete``'s polish: the same re-solve started from the
  gradient method's weights, with a *repair* that adds back the most promising dropped units
  (25% of the support at a time, each repaired support screened by a phase-1 LP) until it
  succeeds.

Both call the distance methods through the registry (:func:`run_method`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..errors import CalibrationError
from ..fit import check_weights
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.feasibility import lp_certificate
from ..solvers.newton import DENSE_LIMIT
from ..solvers.reweighted_l1 import ReweightedL1
from .registry import run_method

__all__ = [
    "POLISH_METHODS",
    "calibrate_bands",
    "fit_summary",
    "polish_support",
    "refit_iterates",
    "refit_support",
    "support_problem",
]

POLISH_METHODS = ("linear", "truncated", "raking", "logit")
_MAX_ATTEMPTS = 25
_DENSE_POLISH = 8192


def support_problem(
    problem: CalibrationProblem,
    support: np.ndarray,
    center: np.ndarray | None = None,
    *,
    nonnegative: bool = False,
) -> CalibrationProblem:
    """The problem restricted to ``support`` with its effective bounds as absolute bounds.

    Parameters
    ----------
    support
        Integer positions of the kept records.
    center
        Initial weights of the restricted problem (indexed by unit); default the design
        weights. Records whose centre is 0 are centred on 1 (so they may still move).
    nonnegative
        Raise negative lower bounds to 0 (methods whose weights are non-negative by model).
    """
    lo, hi = problem.weight_bounds()
    if nonnegative:
        lo = np.maximum(lo, 0.0)
    d = problem.initial_weights[support] if center is None else np.asarray(center)[support]
    d = np.where(d > 0, d, 1.0)
    return CalibrationProblem(
        problem.X[:, support],
        problem.targets,
        initial_weights=d,
        bounds=(lo[support], hi[support]),
        tolerance=problem.tolerance,
        target_names=problem.target_names,
        groups=problem.groups,
    )


def calibrate_bands(
    problem: CalibrationProblem, method: str = "linear", **options: Any
) -> CalibrationResult:
    """Run ``method`` with the solver most robust for the problem's targets.

    Exact targets go to Newton first (exact, fast); targets with tolerance bands go to
    CLARABEL first, because Newton's band active-set loop can cycle on the vertex-like
    supports sparse methods produce. The other solver is the fallback.

    Raises
    ------
    CalibrationError
        When neither succeeds (the message lists each solver's reason).
    """
    order = ("newton", "CLARABEL") if np.all(problem.tolerance == 0) else ("CLARABEL", "newton")
    notes = []
    for solver in order:
        try:
            res = run_method(problem, method, solver=solver, **options)
        except CalibrationError as exc:
            notes.append(f"{solver}: {exc}")
            continue
        if res.success:
            return res
        notes.append(f"{solver}: {res.message or res.status}")
    raise CalibrationError(" | ".join(notes))


def refit_support(
    problem: CalibrationProblem,
    support: np.ndarray,
    *,
    method: str = "linear",
    center: np.ndarray | None = None,
    **options: Any,
) -> tuple[np.ndarray | None, str]:
    """Weights on ``support`` closest to the design weights that meet every target band.

    Returns
    -------
    weights : ndarray or None
        Full-length weights (exact zeros off the support), or None if the re-fit failed.
    message : str
        Why it failed (empty on success).
    """
    support = np.asarray(support)
    if support.dtype == bool:
        support = np.flatnonzero(support)
    if support.size == 0:
        return None, "empty support"
    try:
        res = calibrate_bands(support_problem(problem, support, center), method, **options)
    except CalibrationError as exc:
        return None, f"re-fit on the support failed ({exc})"
    w = np.zeros(problem.n_units)
    w[support] = res.weights
    return w, ""


def refit_iterates(
    problem: CalibrationProblem, rl: ReweightedL1, method: str, max_tries: int | None = None
) -> tuple[np.ndarray | None, str]:
    """Re-fit the reweighted-L1 iterates' supports, sparsest first; the first that succeeds
    wins (at most ``max_tries`` distinct supports)."""
    notes: list[str] = []
    tried: set[int] = set()
    for k in np.argsort([s.size for s in rl.supports], kind="stable"):
        if max_tries is not None and len(tried) >= max_tries:
            break
        support = rl.supports[k]
        key = hash(support.tobytes())
        if key in tried:
            continue
        tried.add(key)
        fitted, note = refit_support(problem, support, method=method)
        if fitted is not None:
            extra = (
                f"; re-fitted the support of LP {k + 1}"
                if support.size > min(s.size for s in rl.supports)
                else ""
            )
            return fitted, extra.lstrip("; ")
        notes.append(f"LP {k + 1} ({support.size} records): {note}")
    return None, "; ".join(notes[:3])


def fit_summary(problem: CalibrationProblem, weights: np.ndarray) -> dict[str, float]:
    """Max and mean |relative error| of ``weights`` (as in the diagnostics) and the non-zeros."""
    rel = np.abs(check_weights(problem, weights, sparse=True).rel_errors)
    return {
        "max_rel_error": float(rel.max()),
        "mean_rel_error": float(rel.mean()),
        "nnz": int(np.count_nonzero(weights)),
    }


def _solve_on(
    problem: CalibrationProblem,
    start: np.ndarray,
    support: np.ndarray,
    method: str,
    lp_first: bool = False,
) -> tuple[CalibrationResult | None, str]:
    """The distance ``method`` on the columns ``support`` from initial weights ``start``.

    With ``lp_first``, a phase-1 LP (HiGHS) first checks that the support can meet the targets
    at all: it proves infeasibility in a fraction of the time a failing Newton run takes. It
    stops at its first proof or its first feasible point: a screen, not an optimisation (run to
    optimality on a feasible national support of 57,000 units it took minutes).
    """
    sub = support_problem(problem, support, start, nonnegative=True)
    try:
        if lp_first:
            band_lo, band_hi = problem.target_bands()
            lo, hi = sub.weight_bounds()
            lp_certificate(sub.csc, band_lo, band_hi, lo, hi, problem.target_names, stop_early=True)
        # a dense Newton system up to 8,192 targets: it detects the redundant targets of
        # nested geographies (national = sum of states = sum of districts) that leave the
        # matrix-free (CG) system singular
        dense = max(DENSE_LIMIT, min(sub.n_targets, _DENSE_POLISH))
        return run_method(sub, method, solver="newton", dense_limit=dense), ""
    except CalibrationError as exc:
        return None, f"{type(exc).__name__}: {exc}"


def polish_support(
    problem: CalibrationProblem,
    weights: np.ndarray,
    method: str = "linear",
    *,
    candidates: np.ndarray | None = None,
    candidate_weights: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Re-solve ``problem`` on the support of ``weights`` with a distance method (Newton).

    Parameters
    ----------
    problem
        The original problem (its targets, tolerances, groups and weight bounds apply).
    weights
        Non-negative weights whose non-zeros define the support; they become the polish's
        initial weights.
    method
        ``"linear"`` (chi-square), ``"truncated"``, ``"raking"`` or ``"logit"``.
    candidates
        Units outside the support, most promising first, added back when the support cannot
        meet the targets (None: no repair).
    candidate_weights
        Positive starting weights for the candidates (indexed by unit, like ``weights``).

    Returns
    -------
    weights : ndarray
        The polished weights when a solve succeeded or improved the worst target error,
        otherwise ``weights`` unchanged.
    report : dict
        ``method``, ``accepted``, ``status``, ``message``, ``iterations``, ``seconds``,
        ``before`` / ``after`` fit summaries (``max_rel_error``, ``mean_rel_error``, ``nnz``),
        ``support`` (units in the final attempt's support) and ``attempts`` (support size,
        status and message of every solve).
    """
    t0 = time.perf_counter()
    before = fit_summary(problem, weights)
    base = np.flatnonzero(weights > 0)
    start = np.asarray(weights, dtype=np.float64).copy()
    pool = np.zeros(0, dtype=np.int64) if candidates is None else np.asarray(candidates)
    attempts: list[dict[str, Any]] = []
    best: tuple[np.ndarray, CalibrationResult, float, int] | None = None
    added = 0
    while True:
        support = np.concatenate([base, pool[:added]]) if added else base
        if added:
            start[pool[:added]] = candidate_weights[pool[:added]]
        if support.size == 0:
            attempts.append({"support": 0, "status": "skipped", "message": "no unit selected"})
        else:
            # the trained support goes straight to Newton (seconds when it can meet the
            # targets, as at national scale, where the LP screen on 57,000 units ran for
            # minutes); the LP screens the repaired supports, which often cannot
            screen = pool.size > 0 and len(attempts) > 0
            res, err = _solve_on(problem, start, support, method, lp_first=screen)
            attempts.append(
                {
                    "support": int(support.size),
                    "status": "failed" if res is None else res.status,
                    "message": err if res is None else res.message,
                }
            )
            if res is not None:
                full = np.zeros_like(start)
                full[support] = res.weights
                score = fit_summary(problem, full)["max_rel_error"]
                if best is None or res.success or score < best[2]:
                    best = (full, res, score, int(support.size))
                if res.success:
                    break
        if added >= pool.size or len(attempts) >= _MAX_ATTEMPTS:
            break
        step = max(1, math.ceil(0.25 * support.size))
        added = pool.size if len(attempts) == _MAX_ATTEMPTS - 1 else min(pool.size, added + step)
    report: dict[str, Any] = {
        "method": method,
        "before": before,
        "attempts": attempts,
        "seconds": time.perf_counter() - t0,
    }
    if best is None:
        last = attempts[-1]
        report.update(
            accepted=False,
            status=last["status"],
            message=last["message"],
            iterations=0,
            after=before,
            support=int(base.size),
        )
        return weights, report
    polished, res, _, size = best
    after = fit_summary(problem, polished)
    accepted = res.success or after["max_rel_error"] < before["max_rel_error"]
    report.update(
        accepted=bool(accepted),
        status=res.status,
        message=res.message,
        iterations=res.iterations,
        after=after if accepted else before,
        support=size,
        dropped_targets=list(res.dropped_targets),
    )
    return (polished if accepted else weights), report
