"""``least-misfit``: as close as possible, honestly -- the least largest relative target miss.

When no weights meet every target band within the bounds, this method minimises the largest
(or the weighted total) relative miss outside the bands, subject to the bounds, by one LP
(:mod:`calibopt.solvers.misfit`, HiGHS, sifting over the weights on large problems); then,
among the minimisers, it picks the weights closest to the design weights by a distance method
(``distance="linear"``: chi-square) run on the problem with every band widened by the
least miss. Program (``objective="max"``; see ``formulations/least-misfit.md``)::

    stage 1:  t* = min t   s.t.  lo_j - t s_j / k_j <= X_j w <= hi_j + t s_j / k_j  (soft j)
                                 lo_j <= X_j w <= hi_j                             (hard j)
                                 wlo <= w <= whi
    stage 2:  min distance(w, d)  s.t. the same with t = t*,  wlo <= w <= whi

``s_j = |b_j|`` (the row's gross activity at the design weights for a zero target). The
result is a ``"trade_off"`` when ``t* > 0`` (the misses are reported in
``result.info["misses"]``) and ``"optimal"`` when every band can be met.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import CalibrationError, InfeasibleError, InvalidProblemError
from ..fit import ACCURACY, target_scale
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.misfit import OBJECTIVES, misfit_inputs
from ..solvers.sifting import SiftedMisfit
from ..validate import choice, float_vector, number
from .registry import register_method, run_method

__all__ = ["misses", "solve"]

STAGE2 = ("linear", "truncated", "raking", "logit")
STAGE2_SLACK = 1e-7
"""Relative room added to the least miss before stage 2, so that the distance method's
feasible set is not a single face it must hit to the last bit."""


def _hard_mask(problem: CalibrationProblem, hard: Any) -> np.ndarray:
    """``hard`` (None, a boolean mask, or names / groups of targets) as a mask."""
    m = problem.n_targets
    if hard is None:
        return np.zeros(m, bool)
    arr = np.asarray(hard)
    if arr.dtype == bool:
        if arr.shape != (m,):
            raise InvalidProblemError(f"`hard` as a mask needs {m} booleans, got {arr.shape}.")
        return arr.copy()
    labels = [hard] if isinstance(hard, str) else list(hard)
    names = np.asarray(problem.target_names, dtype=object)
    groups = np.asarray(problem.groups, dtype=object)
    mask = np.isin(names, labels) | np.isin(groups, labels)
    unknown = [x for x in labels if x not in set(names) and x not in set(groups)]
    if unknown:
        raise InvalidProblemError(
            f"`hard` names {unknown[:5]} that are neither target names nor groups."
        )
    return mask


def misses(
    problem: CalibrationProblem, w: np.ndarray, scale: np.ndarray | None = None
) -> np.ndarray:
    """Signed relative miss of each target outside its band: ``dist(X_j w, band_j) / s_j``."""
    s = target_scale(problem, problem.initial_weights) if scale is None else scale
    s = np.where(s > 0, s, 1.0)
    est = problem.X @ w
    lo, hi = problem.target_bands()
    return (np.maximum(est - hi, 0.0) - np.maximum(lo - est, 0.0)) / s


def _stage2_problem(problem, w_lp, miss, level, objective, k, hard, s) -> CalibrationProblem:
    """The problem whose bands are the set of stage-1 minimisers (``max``: each target's
    miss within its level) or the stage-1 misses kept (``sum``), written as targets and
    relative tolerances."""
    lo, hi = problem.target_bands()
    est = problem.X @ w_lp
    if objective == "max":
        widen = np.where(hard, 0.0, (level * (1 + STAGE2_SLACK) + 1e-12) * s / k)
        L, U = lo - widen, hi + widen
    else:
        room = 1e-12 * s + STAGE2_SLACK * np.abs(miss) * s
        L = np.where(miss < 0, est - room, lo)
        U = np.where(miss > 0, est + room, hi)
    mid = (L + U) / 2
    # a band around 0 cannot be a relative tolerance: keep the half holding the LP estimate
    zero = mid == 0
    L = np.where(zero & (est >= 0), 0.0, L)
    U = np.where(zero & (est < 0), 0.0, U)
    mid = (L + U) / 2
    tol = np.where(mid != 0, (U - L) / 2 / np.where(mid != 0, np.abs(mid), 1.0), 0.0)
    return problem.with_options(targets=mid, tolerance=tol)


CLARABEL_UNITS = 20_000
"""Up to this many units, stage 2 falls back on CLARABEL when Newton's band loop fails (on
the 80,000-unit ``small`` synthetic country with noise, Newton then CLARABEL took ~4 minutes
and both missed the thin minimiser bands; larger problems skip CLARABEL)."""


def _closest(problem, stage2, distance, w_lp) -> tuple[np.ndarray | None, str]:
    """Stage 2 by the distance method: Newton on the bands of the minimiser set; CLARABEL on
    the same (small problems); else Newton with every target held at the LP's estimate (a
    point of the minimiser set in target space: equality targets, no band loop)."""
    notes = []
    tries = [("newton", stage2)]
    if problem.n_units <= CLARABEL_UNITS:
        tries.append(("CLARABEL", stage2))
    at_lp = stage2.with_options(targets=problem.X @ w_lp, tolerance=0.0)
    tries.append(("newton, targets at the LP estimates", at_lp))
    for label, prob in tries:
        solver = label.split(",")[0]
        try:
            res = run_method(prob, distance, solver=solver)
        except CalibrationError as exc:
            notes.append(f"{distance} via {label}: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if res.success:
            return res.weights, f"{distance} via {label} ({res.status})"
        notes.append(f"{distance} via {label}: {res.status}")
    return None, "; ".join(notes)


@register_method(
    "least-misfit",
    aliases=("minimax", "chebyshev", "least-miss"),
    solvers=("highs",),
    catalogue="least-misfit.md",
    summary=(
        "min the largest (or weighted total) relative miss outside the bands s.t. bounds "
        "(LP, HiGHS), then the closest weights among the minimisers (distance method)"
    ),
    guarantee="optimal",
    iterations="simplex iterations of the misfit LP",
    objective="the largest weighted relative miss (max) or their weighted total (sum)",
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    objective: str = "max",
    weights: Any = None,
    hard: Any = None,
    distance: str | None = "linear",
    lexicographic: bool = True,
    time_limit: float | None = None,
    sift: bool | None = None,
) -> CalibrationResult:
    """Minimise the largest (or total) relative target miss, then the distance.

    Parameters
    ----------
    problem
        Bounds and ratio bounds are enforced; a target's band is ``b -/+ tol |b|``.
    solver
        None or ``"highs"`` (the LP is solved by HiGHS's simplex method).
    objective
        ``"max"``: minimise ``max_j k_j miss_j`` (no target misses by more than needed);
        ``"sum"``: minimise ``sum_j k_j miss_j`` (the misses concentrate on few targets).
    weights
        Importance ``k_j > 0`` of each target (array), default 1: with ``max`` a target of
        importance 2 may miss half as much.
    hard
        Targets that must stay within their band: a boolean mask, or target names and/or
        group labels (e.g. ``"consistency"``). Raises :class:`~calibopt.InfeasibleError`
        when the hard targets cannot hold together within the bounds.
    distance
        Stage 2: ``"linear"`` (default), ``"truncated"``, ``"raking"`` or ``"logit"`` --
        the weights closest to the design weights among the minimisers; None keeps the LP's
        vertex solution (sparse, extreme weights).
    lexicographic
        ``objective="max"``: after the least largest miss ``t*``, hold the targets that miss
        by ``t*`` in every minimiser (the dual support of the LP) at ``t*`` and minimise the
        largest miss of the others, and so on (lexicographic minimax): no target misses by
        more than it must given the misses of those that must miss more. False: one pass
        (every other target may then miss by up to ``t*``).
    time_limit
        Seconds for the LPs (None: no limit); when it runs out before the first optimum the
        method raises :class:`~calibopt.SolverError` (later passes stop where they are).
    sift
        Solve the LP by sifting over the weights (None: for large problems).
    """
    from ..errors import SolverError

    t0 = time.perf_counter()
    if solver is not None and solver.lower() != "highs":
        raise InvalidProblemError(f"method 'least-misfit' runs HiGHS only; got solver={solver!r}.")
    choice("objective", objective, OBJECTIVES)
    if distance is not None:
        choice("distance", distance, STAGE2)
    if time_limit is not None:
        time_limit = number("time_limit", time_limit, low=0.0, strict=True)
    m = problem.n_targets
    k = np.ones(m) if weights is None else float_vector(weights, "weights", m)
    if np.any(~(k > 0)) or not np.all(np.isfinite(k)):
        raise InvalidProblemError("`weights` must be finite and > 0 (one per target).")
    hard_mask = _hard_mask(problem, hard)
    problem.require_consistent_bounds("least-misfit")
    system = misfit_inputs(problem)
    lo_w, hi_w, s = system.wlo, system.whi, system.scale
    lp = SiftedMisfit(
        system,
        objective=objective,
        weights=k,
        hard=hard_mask,
        sift=sift,
    )
    t_build = time.perf_counter() - t0
    sol = lp.solve(time_limit=time_limit)
    if not sol.optimal:
        if "nfeasible" in sol.status and hard_mask.any():
            names = [problem.target_names[j] for j in np.flatnonzero(hard_mask)]
            raise InfeasibleError(
                f"the hard targets cannot all be met within the bounds ({sol.status}); "
                f"co.diagnose(problem.subproblem(targets=hard)) names the conflicts.",
                targets=names,
            )
        raise SolverError(f"the misfit LP stopped before its optimum: {sol.status}.")
    t_star = float(sol.value)
    level = np.full(m, t_star)
    passes = [(t_star, 0)]
    lex_stop = "not run"
    if objective == "max" and lexicographic:
        sol, level, passes, lex_stop = _lexicographic(lp, sol, k, hard_mask, time_limit, t0)
    w_lp = np.clip(lp.weights(sol.x), lo_w, hi_w)
    t_lp = time.perf_counter() - t0 - t_build
    miss_lp = misses(problem, w_lp, s)
    w, stage2 = w_lp, "none (the LP's vertex weights)"
    if distance is not None:
        prob2 = _stage2_problem(problem, w_lp, miss_lp, level, objective, k, hard_mask, s)
        closest, note = _closest(problem, prob2, distance, w_lp)
        if closest is not None:
            w, stage2 = closest, note
        else:
            stage2 = f"failed, keeping the LP's weights: {note}"
    miss = misses(problem, w, s)
    value = float(np.max(np.abs(miss) * k)) if objective == "max" else float(np.abs(miss) @ k)
    missed = np.flatnonzero(np.abs(miss) > ACCURACY)
    info: dict[str, Any] = {
        "misfit": t_star,
        "levels": level,
        "passes": passes,
        "lexicographic_stop": lex_stop,
        "objective": objective,
        "misses": _miss_table(problem, w, miss, missed),
        "stage2": stage2,
        "lp_status": sol.status,
        "lp_seconds": t_lp,
        "sifting_rounds": lp.rounds,
        "working_set": int(lp.working.size),
        "hard": int(hard_mask.sum()),
    }
    message = (
        f"least {'largest' if objective == 'max' else 'total'} relative miss "
        f"{100 * t_star:.6g}% (LP, HiGHS"
        + (f", {len(passes)} lexicographic pass(es)" if len(passes) > 1 else "")
        + ("" if lex_stop in ("complete", "not run") else f" stopped at {lex_stop}")
        + f"); {missed.size} target(s) missed; stage 2: {stage2}"
    )
    return CalibrationResult.from_weights(
        problem,
        w,
        method="least-misfit",
        solver="highs" if distance is None else f"highs+{distance}",
        proven_optimal=True,
        soft=True,
        message=message,
        iterations=sol.iterations,
        objective=value,
        timings={"build": t_build, "lp": t_lp, "total": time.perf_counter() - t0},
        info=info,
    )


def _lexicographic(lp, sol, k, hard, time_limit, t0) -> tuple[Any, np.ndarray, list, str]:
    """Progressive filling: fix the targets that must miss by the current ``t*`` (non-zero
    band-row duals: tight in every optimal solution by complementary slackness), minimise the
    largest miss of the others, until it is 0 (within accuracy) or the time runs out.

    Returns the last optimal solution, each target's level (its cap; the last ``t*`` for the
    targets never capped), the passes ``(t*, targets fixed)`` and why they stopped
    (``"complete"``, ``"time_limit"`` or the status of a pass that found no optimum: the
    targets not yet capped then keep the last level, a valid but not lexicographically least
    bound).
    """
    m = k.size
    capped = hard.copy()
    level = np.zeros(m)
    passes = []
    stop = "complete"
    while sol.value > ACCURACY:
        y = np.abs(sol.row_dual[:m])
        tight = ~capped & (y > 1e-9 * max(float(y[~capped].max(initial=0.0)), 1e-300))
        if not tight.any():
            stop = "no target tight in the dual solution"
            break
        rows = np.flatnonzero(tight)
        level[rows] = sol.value
        lp.cap_targets(rows, sol.value / k[rows] * (1 + 1e-8) + 1e-10)
        capped[rows] = True
        passes.append((float(sol.value), int(rows.size)))
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0:
            stop = "time_limit"
            break
        nxt = lp.solve(time_limit=left)
        if not nxt.optimal:
            stop = f"pass {len(passes) + 1}: HiGHS {nxt.status}"
            break
        sol = nxt
    level[~capped] = max(float(sol.value), 0.0)
    return sol, level, passes or [(float(sol.value), 0)], stop


def _miss_table(problem: CalibrationProblem, w: np.ndarray, miss: np.ndarray, rows) -> Any:
    import pandas as pd

    lo, hi = problem.target_bands()
    est = problem.X @ w
    return pd.DataFrame(
        {
            "name": [problem.target_names[j] for j in rows],
            "group": problem.groups[rows],
            "value": problem.targets[rows],
            "band_lower": lo[rows],
            "band_upper": hi[rows],
            "estimate": est[rows],
            "miss": miss[rows],
        }
    ).sort_values("miss", key=np.abs, ascending=False, ignore_index=True)
