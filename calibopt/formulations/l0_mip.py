"""``l0-mip``: the fewest non-zero weights that meet every target band, solved exactly by HiGHS.

The model is :func:`calibopt.formulations.l0_model.build_l0_model` (program, tightest big-M,
record classes, covers); this module runs it: a warm start from reweighted-L1 re-fitted on its
support, HiGHS directly (or any cvxpy MIP solver), an exact re-fit of the kept weights, and an
honest report of the MIP gap. The weights returned are the best *valid* candidate (every band
and bound checked from the weights): the MIP's own, re-fitted, or the warm start. Splitting by
a record label is the generic ``calibrate(..., blocks=labels)``
(:mod:`calibopt.decomposition.blocks`).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from ..errors import InfeasibleError, InvalidProblemError, SolverError
from ..fit import check_weights
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.cvx import cvxpy_model
from ..solvers.domain import sparse_domain
from ..solvers.highs import HighsOutcome, highs_model, solve_highs
from ..solvers.loss import DEFAULT_EPS
from ..validate import integer, number, optional_text
from .l0_backends import run_cvxpy, run_gurobi
from .l0_model import L0Model, build_l0_model
from .l0_start import root_bound, shrink_start, vertex_start
from .l0_start import warm_start as _warm_start
from .registry import register_method
from .support import refit_support

__all__ = ["build", "solve"]

# the MIP is judged stuck, or not, after max(seconds, share of the time left)
STUCK_AFTER = (5.0, 0.2)

_MODEL_OPTIONS = (
    "objective",
    "lam",
    "eps",
    "group_normalise",
    "big_m",
    "aggregate",
    "cuts",
    "max_records",
)


def build(problem: CalibrationProblem, **options: Any) -> Any:
    """The L0 MIP of ``problem`` as a ``cvxpy.Problem`` (options as for the model)."""
    model = build_l0_model(problem, **{k: v for k, v in options.items() if k in _MODEL_OPTIONS})
    return cvxpy_model(model.lp)[0]


def _highs_options(model, mip_gap, time_limit, node_limit, threads, seed, verbose, effort, extra):
    opts: dict[str, Any] = {"mip_rel_gap": float(mip_gap), "output_flag": bool(verbose)}
    opts["mip_heuristic_effort"] = float(effort)
    # the count objective is integral: a gap below 1 proves optimality
    opts["mip_abs_gap"] = 1.0 - 1e-6 if model.objective == "count" else 1e-9
    opts["mip_feasibility_tolerance"] = 1e-9
    opts["primal_feasibility_tolerance"] = 1e-9
    if time_limit is not None:
        opts["time_limit"] = float(time_limit)
    if node_limit is not None:
        opts["mip_max_nodes"] = int(node_limit)
    if threads is not None:
        opts["threads"] = int(threads)
    if seed is not None:
        opts["random_seed"] = int(seed)
    opts.update(extra or {})
    return opts


def _soft_objective(
    problem: CalibrationProblem, model: L0Model, w: np.ndarray, lam: float
) -> float:
    est = problem.X @ w
    dist = np.maximum(est - model.domain.band_upper, 0) + np.maximum(
        model.domain.band_lower - est, 0
    )
    return float(np.dot(model.omega, dist) + lam * np.count_nonzero(w))


def _candidates(problem, model, out, start_w, refit, soft) -> tuple[list, str]:
    """Weights to choose from: the MIP's (re-fitted and as is) and the warm start."""
    candidates: list[tuple[str, np.ndarray]] = []
    note = ""
    if out.has_solution and out.x is not None:
        w = model.hull_weights(out.x)
        if refit and (not soft or check_weights(problem, w, sparse=True).targets_ok):
            fitted, note = refit_support(problem, np.flatnonzero(w), method=refit)
            if fitted is not None:
                candidates.append(("mip+refit", fitted))
        candidates.append(("mip", w))
    if start_w is not None:
        candidates.append(("warm start", start_w))
    return candidates, note


def _pick(problem, candidates, soft, model, lam) -> tuple[str, np.ndarray]:
    """For the count objective, the fewest non-zeros among the *valid* candidates (every band
    and bound held; the first listed wins ties); when none is valid, the one closest to valid.
    For error+count, the lowest objective among those within their bounds."""
    checks = [check_weights(problem, w, sparse=True) for _, w in candidates]
    if soft:
        pool = [c for c, f in zip(candidates, checks) if f.bounds_ok] or candidates
        return min(pool, key=lambda c: _soft_objective(problem, model, c[1], lam))
    valid = [c for c, f in zip(candidates, checks) if f.ok]
    if valid:
        return min(valid, key=lambda c: np.count_nonzero(c[1]))
    order = sorted(
        range(len(candidates)),
        key=lambda k: (not checks[k].bounds_ok, float(np.abs(checks[k].rel_errors).max())),
    )
    return candidates[order[0]]


def _message(out, label, proven, refit, soft, refit_note) -> str:
    parts = []
    if proven:
        parts.append("optimality proven")
    elif out.has_solution:
        parts.append(
            f"optimality not proven ({out.status}): MIP gap {out.gap:.3g}, bound {out.bound:.6g}"
        )
    else:
        parts.append(f"no MIP incumbent ({out.status}); returning the warm start")
    if not label.endswith("refit") and refit and not soft:
        parts.append(f"kept weights from {label}" + (f" ({refit_note})" if refit_note else ""))
    return "; ".join(parts)


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise InvalidProblemError(
            f"`{name}` must be a dict of option names to values, got {type(value).__name__}."
        )
    return dict(value)


def _check_options(time_limit, node_limit, mip_gap, warm_start_iter, refit, threads, seed):
    def maybe(fn, name, value, **kw):
        return None if value is None else fn(name, value, **kw)

    return (
        maybe(number, "time_limit", time_limit, low=0.0, strict=True),
        maybe(integer, "node_limit", node_limit, low=0),
        number("mip_gap", mip_gap, low=0.0),
        integer("warm_start_iter", warm_start_iter, low=1),
        optional_text("refit", refit),
        maybe(integer, "threads", threads, low=1),
        maybe(integer, "seed", seed, low=0),
    )


def _left(t_start: float, time_limit: float | None) -> float | None:
    """Seconds left of ``time_limit`` (at least 1), or None without a limit."""
    if time_limit is None:
        return None
    return max(1.0, time_limit - (time.perf_counter() - t_start))


def _workers(threads: int | None) -> int:
    """Parallel rounds of the vertex search: ``threads``, or the cores available (at most 4)."""
    if threads is not None:
        return threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


def _interrupt_when_stuck(h: Any, after: float, count: float, root: float) -> threading.Event:
    """Stop the MIP in ``h`` once it has run ``after`` seconds with no progress: its incumbent
    no smaller than the start's ``count`` and its bound not above the root LP's. The event
    returned is set when it did."""
    stuck = threading.Event()
    decided = threading.Event()

    def check(e: Any) -> None:
        data = e.data_out
        if decided.is_set() or data.running_time < after:
            return
        decided.set()
        if data.mip_primal_bound >= count - 0.5 and data.mip_dual_bound <= root + 1e-6:
            stuck.set()
            e.interrupt()

    h.cbMipInterrupt.subscribe(check)
    return stuck


def _restart_smaller(problem, model, out, start_w, run_mip, search_info, left, opts):
    """After a first MIP without a proof: a vertex search from the best valid support, and a
    second MIP for the time left, from what it finds (or from the best support when it finds
    none). Returns the start, the MIP outcome and what was done."""
    seconds, refit, threads, seed, extra = (
        opts[k] for k in ("seconds", "refit", "threads", "seed", "extra")
    )
    candidates, _ = _candidates(problem, model, out, start_w, refit, False)
    valid = [w for _, w in candidates if check_weights(problem, w, sparse=True).ok]
    time_left = left() or 0.0
    if not valid or time_left <= 2.0:
        return start_w, out, {}
    best = min(valid, key=np.count_nonzero)
    bound = search_info.get("root_lp_bound", -np.inf)
    if np.isfinite(out.bound):
        bound = max(bound, out.bound)
    options = {
        "mip_feasibility_tolerance": 1e-9,
        "primal_feasibility_tolerance": 1e-9,
        **({} if threads is None else {"threads": threads}),
        **{k: v for k, v in extra.items() if k.endswith("_tolerance") or k == "threads"},
    }
    found, info = vertex_start(
        problem,
        model,
        best,
        bound=bound,
        seconds=min(seconds, 0.7 * time_left),
        refit=refit,
        workers=_workers(threads),
        seed=seed,
        options=options,
    )
    # the MIP goes on for the time left, from the smaller support when one was found
    restart = best if found is None else found
    if info.get("vertex_search_stopped") == "interrupted":  # Ctrl-C: no second MIP
        return restart, out, info
    again = run_mip(model.start_from_weights(problem, restart), left())
    info["mip_first"] = {
        "seconds": out.seconds,
        "nodes": out.nodes,
        "bound": out.bound,
        "status": out.status,
    }
    again.seconds += out.seconds
    if again.nodes >= 0 and out.nodes >= 0:
        again.nodes += out.nodes
    if np.isfinite(out.bound) and not out.bound <= again.bound:  # both runs bound the count
        again.bound = out.bound
        if again.has_solution:
            again.gap = max(0.0, (again.objective - out.bound) / max(abs(again.objective), 1e-9))
    if again.has_solution or not out.has_solution:
        return restart, again, info
    return restart, out, info


@register_method(
    "l0-mip",
    aliases=("l0", "mip"),
    build=build,
    solvers=("highs", "gurobi", "cvxpy:HIGHS", "cvxpy:SCIP"),
    catalogue="l0-mip.md",
    summary="min #non-zero weights s.t. targets within tolerance and bounds (MIP, HiGHS)",
    guarantee="optimal",
    iterations="branch-and-bound nodes (None when a cvxpy solver does not report them)",
    objective="the number of non-zero weights (count) or the L1 error + lam * non-zeros",
    sparse=True,
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    time_limit: float | None = 60.0,
    node_limit: int | None = None,
    mip_gap: float = 0.0,
    objective: str = "count",
    lam: float = 1e-3,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
    big_m: str = "tight",
    aggregate: bool = True,
    cuts: bool = True,
    warm_start: bool | np.ndarray = True,
    warm_start_iter: int = 5,
    support_search: float = 10.0,
    vertex_search: float = 40.0,
    heuristic_effort: float = 0.05,
    highs_options: dict[str, Any] | None = None,
    refit: str | None = "linear",
    threads: int | None = None,
    seed: int | None = None,
    verbose: bool = False,
    max_records: int | None = None,
) -> CalibrationResult:
    """Exact L0 calibration: the fewest non-zero weights meeting every target band.

    Parameters
    ----------
    problem
        Its bounds apply to kept records (dropped records are exactly 0), its tolerance
        defines the bands ``|X_j w - b_j| <= tol_j |b_j|``.
    solver
        None or ``"highs"``: HiGHS through highspy, the model passed as sparse arrays
        (fastest); ``"gurobi"``: gurobipy directly (bounds kept as variable bounds, so 1,000
        records fit its pip licence); ``"cvxpy:HIGHS"`` or another cvxpy MIP solver name: the
        same model via cvxpy.
    time_limit
        Seconds for the whole call (per block with ``calibrate(..., blocks=)``); None for no
        limit. On the limit the best valid support found is returned with its MIP gap
        (``result.info["mip_gap"]``). A run stopped by time depends on the machine's speed.
    node_limit
        Most branch-and-bound nodes (HiGHS ``mip_max_nodes``): a deterministic work limit.
        With ``threads=1``, a fixed ``seed`` and no ``time_limit`` the same call gives the
        same weights on every run.
    mip_gap
        Relative gap at which to stop (0: prove optimality).
    objective
        ``"count"`` or ``"error+count"`` (minimise the group-normalised L1 relative error
        outside the bands plus ``lam`` per non-zero; a ``"trade_off"`` when it misses).
    lam, eps, group_normalise
        Parameters of ``"error+count"``.
    big_m, aggregate, cuts
        Model options (tightest big-M, identical-record classes, cardinality covers); the
        defaults are the strongest model, the others exist to measure each idea's effect.
    warm_start
        True: start HiGHS from the reweighted-L1 support re-fitted exactly; False: none; or
        an array of weights to start from.
    warm_start_iter
        Reweighted-L1 iterations of the warm start.
    support_search
        Seconds (at most a quarter of the time left) for a local search that shrinks the warm
        start's support before the MIP: drop one record, or two for one, each move checked by an LP
        (:func:`calibopt.solvers.support_search.shrink_support`); 0 switches it off.
    vertex_search
        Seconds (at most 70% of the time left) for a random-vertex neighbourhood search when
        HiGHS is stuck: after a fifth of the time left (at least 5 s) with neither a smaller
        support than the start nor a bound above the root LP's, the MIP is stopped and the
        LP relaxation with the cut-off ``sum N <= K - 1`` is solved for random costs and HiGHS
        searches each vertex's support for a smaller valid one
        (:func:`calibopt.solvers.vertex_search.vertex_search`; parallel rounds, one per
        ``threads`` or per core up to 4). The MIP then restarts from the smaller support found
        (or from the best one). HiGHS only, with a ``time_limit`` and no ``node_limit`` (it is
        timed); 0 switches it off. A MIP that makes progress runs its whole time as before.
    heuristic_effort
        HiGHS's ``mip_heuristic_effort`` (share of the work spent in primal heuristics).
    highs_options
        Further HiGHS options by name (e.g. ``{"mip_pscost_minreliable": 2}``), set after and
        over calibopt's own; a name HiGHS does not know raises
        :class:`~calibopt.errors.InvalidProblemError`.
    refit
        Re-fit the kept weights with this distance method (``"linear"``: closest to the
        design weights in chi-square with every band met), or None to keep the MIP's weights.
    max_records
        A record budget: at most this many non-zero weights (with ``"error+count"`` and
        ``lam=0``: the least error with that many records). Per block with
        ``calibrate(..., blocks=labels, max_records=per_block({...}))``
        (:func:`calibopt.decomposition.per_block`).
    threads, seed, verbose
        HiGHS threads, random seed and log output. The seed changes the search path; with
        a time limit the nodes explored depend on wall time, so a run stopped by its time
        limit may give different weights run to run even with ``threads=1``: use
        ``node_limit`` for reproducible stops.
    """
    t_start = time.perf_counter()
    time_limit, node_limit, mip_gap, warm_start_iter, refit, threads, seed = _check_options(
        time_limit, node_limit, mip_gap, warm_start_iter, refit, threads, seed
    )
    support_search = number("support_search", support_search, low=0.0)
    vertex_search = number("vertex_search", vertex_search, low=0.0)
    heuristic_effort = number("heuristic_effort", heuristic_effort, low=0.0, high=1.0)
    if max_records is not None:
        max_records = integer("max_records", max_records, low=0)
    soft = objective == "error+count"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    model = build_l0_model(
        problem,
        objective=objective,
        lam=lam,
        eps=eps,
        group_normalise=group_normalise,
        big_m=big_m,
        aggregate=aggregate,
        cuts=cuts,
        domain=None if soft else sparse_domain(problem),
        max_records=max_records,
    )
    timings["build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    start_w = _warm_start(problem, model, warm_start, warm_start_iter, refit)
    timings["warm_start"] = time.perf_counter() - t0
    warm_nnz = None if start_w is None else int(np.count_nonzero(start_w))
    t0 = time.perf_counter()
    search_seconds = support_search
    if time_limit is not None:
        search_seconds = min(search_seconds, 0.25 * (time_limit - (t0 - t_start)))
    start_w, search_info = shrink_start(
        problem, model, start_w, seconds=search_seconds, refit=refit, seed=seed or 0
    )
    timings["support_search"] = time.perf_counter() - t0
    start = None if start_w is None else model.start_from_weights(problem, start_w)
    extra = _mapping("highs_options", highs_options)

    def highs_for(seconds: float | None) -> Any:
        opts = _highs_options(
            model, mip_gap, seconds, node_limit, threads, seed, verbose, heuristic_effort, extra
        )
        return highs_model(model.lp, options=opts)

    def run_mip(start_x: np.ndarray | None, seconds: float | None) -> HighsOutcome:
        if solver is None or solver.lower() == "highs":
            return solve_highs(highs_for(seconds), start=start_x)
        if solver.lower() == "gurobi":
            return run_gurobi(model, start_x, seconds, threads, seed, verbose)
        return run_cvxpy(model, solver, start_x, seconds, verbose)

    remaining = _left(t_start, time_limit)
    highs = solver is None or solver.lower() == "highs"
    # the vertex search runs when HiGHS is stuck (time-limited runs only)
    staged = highs and vertex_search > 0 and not soft and remaining is not None
    staged = staged and node_limit is None
    vertex_info: dict[str, Any] = {}
    if not staged:
        out = run_mip(start, remaining)
    else:
        h = highs_for(remaining)
        if "root_lp_bound" not in search_info:
            search_info["root_lp_bound"] = root_bound(model)
        count = np.inf if start_w is None else np.count_nonzero(start_w)
        after = min(remaining, max(STUCK_AFTER[0], STUCK_AFTER[1] * remaining))
        stuck = _interrupt_when_stuck(h, after, count, search_info["root_lp_bound"])
        out = solve_highs(h, start=start)
        if stuck.is_set():
            opts = dict(seconds=vertex_search, refit=refit, threads=threads, seed=seed or 0)
            start_w, out, vertex_info = _restart_smaller(
                problem, model, out, start_w, run_mip, search_info,
                lambda: _left(t_start, time_limit), {**opts, "extra": extra},
            )  # fmt: skip
    timings["mip"] = out.seconds
    if out.infeasible:
        raise InfeasibleError(
            "no support meets every target band within the weight bounds (the L0 MIP is "
            "infeasible); widen the tolerance or the bounds.",
            targets=[],
        )
    t0 = time.perf_counter()
    candidates, refit_note = _candidates(problem, model, out, start_w, refit, soft)
    if max_records is not None:  # the warm start may exceed the budget
        candidates = [c for c in candidates if np.count_nonzero(c[1]) <= max_records]
    timings["refit"] = time.perf_counter() - t0
    if not candidates:
        raise SolverError(
            f"HiGHS found no feasible support within the limits ({out.status}); raise "
            f"`time_limit` or widen the tolerance."
        )
    label, weights = _pick(problem, candidates, soft, model, lam)
    proven = out.optimal and label.startswith("mip")
    info = {
        "proven_optimal": bool(proven),
        "mip_gap": float(out.gap if out.has_solution else np.inf),
        "mip_bound": float(out.bound),
        "mip_objective": float(out.objective),
        "mip_status": out.status,
        "mip_nodes": None if out.nodes < 0 else out.nodes,
        "mip_seconds": out.seconds,
        "warm_start_nnz": warm_nnz,
        "weights_from": label,
        **search_info,
        **vertex_info,
        "model": model.stats,
        "objective": objective,
        **out.extra,
    }
    objective_value = float(np.count_nonzero(weights))
    if soft:
        objective_value = info["soft_objective"] = _soft_objective(problem, model, weights, lam)
    timings["total"] = time.perf_counter() - t_start
    return CalibrationResult.from_weights(
        problem,
        weights,
        method="l0-mip",
        solver="highs" if solver is None or solver.lower() == "highs" else solver,
        proven_optimal=proven,
        soft=soft,
        sparse=True,
        message=_message(out, label, proven, refit, soft, refit_note),
        iterations=None if out.nodes < 0 else out.nodes,
        objective=objective_value,
        timings=timings,
        info=info,
    )
