"""Polish: re-solve the targets on the support a sparse method selected (numpy only).

The kept units (non-zero weights) form a smaller calibration problem whose initial weights are
the sparse method's weights; a classical distance method (``linear`` by default, solved by the
exact dual Newton method of :mod:`calibopt.formulations.classical`) moves them as little as
possible, in its distance, so that the targets are met as exactly as the support allows.
The weight bounds of the original problem apply as absolute bounds, with the lower bound raised
to 0 (weights stay non-negative; one may become exactly 0, never negative).

Repair: when the support cannot meet the targets (the Newton solve proves it infeasible or
does not converge), units are added back from a ranked list of candidates (the sparse method's
next most promising units) in steps of 25% of the support, until a solve succeeds or the
candidates run out (repair attempts are screened by a phase-1 LP first, which proves an
infeasible support cheaply). Each attempt is reported.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import CalibrationError
from ..feasibility import lp_certificate
from ..newton import DENSE_LIMIT
from ..problem import CalibrationProblem
from ..result import CalibrationResult, relative_errors

__all__ = ["POLISH_METHODS", "fit_summary", "polish_support"]

POLISH_METHODS = ("linear", "truncated", "raking", "logit")
_MAX_ATTEMPTS = 25
_DENSE_POLISH = 8192


def fit_summary(problem: CalibrationProblem, weights: np.ndarray) -> dict[str, float]:
    """Max and mean |relative error| of ``weights`` (as in the diagnostics) and the non-zeros."""
    rel = np.abs(relative_errors(problem.X @ weights, problem.targets))
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
    """The classical ``method`` on the columns ``support`` from initial weights ``start``.

    With ``lp_first``, a phase-1 LP (HiGHS) first checks that the support can meet the targets
    at all: it proves infeasibility in a fraction of the time a failing Newton run takes.
    """
    from ..calibrate import calibrate  # calibopt.calibrate imports the registry

    lo, hi = problem.weight_bounds()
    X_support = sp.csr_matrix(problem.X[:, support])
    try:
        if lp_first:
            band_lo, band_hi = problem.target_bands()
            lp_certificate(
                X_support,
                band_lo,
                band_hi,
                np.maximum(lo[support], 0.0),
                hi[support],
                problem.target_names,
            )
        sub = CalibrationProblem(
            X_support,
            problem.targets,
            initial_weights=start[support],
            bounds=(np.maximum(lo[support], 0.0), hi[support]),
            tolerance=problem.tolerance,
            target_names=problem.target_names,
            groups=problem.groups,
        )
        # a dense Newton system up to 8,192 targets: it detects the redundant targets of
        # nested geographies (national = sum of states = sum of districts) that leave the
        # matrix-free (CG) system singular
        dense = max(DENSE_LIMIT, min(sub.n_targets, _DENSE_POLISH))
        return calibrate(sub, method=method, solver="newton", dense_limit=dense), ""
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
    """Re-solve ``problem`` on the support of ``weights`` with a classical Newton method.

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
            res, err = _solve_on(problem, start, support, method, lp_first=pool.size > 0)
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
    last = attempts[-1]
    report: dict[str, Any] = {
        "method": method,
        "before": before,
        "attempts": attempts,
        "seconds": time.perf_counter() - t0,
    }
    if best is None:
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
