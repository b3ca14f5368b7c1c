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

import time
from typing import Any

import numpy as np

from ..errors import InfeasibleError, InvalidProblemError, SolverError
from ..fit import check_weights
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.cvx import assemble, cvxpy_model
from ..solvers.domain import sparse_domain
from ..solvers.highs import HighsOutcome, highs_model, solve_highs
from ..solvers.loss import DEFAULT_EPS
from ..solvers.reweighted_l1 import reweighted_l1
from ..validate import integer, number, optional_text
from .l0_model import L0Model, build_l0_model
from .registry import register_method
from .support import refit_iterates, refit_support

__all__ = ["build", "solve"]

_MODEL_OPTIONS = ("objective", "lam", "eps", "group_normalise", "big_m", "aggregate", "cuts")


def build(problem: CalibrationProblem, **options: Any) -> Any:
    """The L0 MIP of ``problem`` as a ``cvxpy.Problem`` (options as for the model)."""
    model = build_l0_model(problem, **{k: v for k, v in options.items() if k in _MODEL_OPTIONS})
    return cvxpy_model(model.lp)[0]


def _highs_options(model, mip_gap, time_limit, node_limit, threads, seed, verbose):
    opts: dict[str, Any] = {"mip_rel_gap": float(mip_gap), "output_flag": bool(verbose)}
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
    return opts


def _run_cvxpy(
    model: L0Model, solver: str, start: np.ndarray | None, time_limit: float | None, verbose: bool
) -> HighsOutcome:
    import cvxpy as cp

    name = solver.split(":", 1)[1] if solver.lower().startswith("cvxpy:") else solver
    name = name.upper()
    if name in ("", "CVXPY"):
        name = "HIGHS"  # "cvxpy" alone: the same MIP through cvxpy, solved by HiGHS
    prob, xc, xi, _ = cvxpy_model(model.lp)
    if start is not None:
        integer_cols = np.asarray(model.lp.integer, bool)
        xc.value = start[~integer_cols]
        if xi is not None:
            xi.value = start[integer_cols]
    kwargs: dict[str, Any] = {}
    if time_limit is not None:
        # each solver's own time-limit option through cvxpy
        if name == "HIGHS":
            kwargs["time_limit"] = float(time_limit)
        elif name == "SCIP":
            kwargs["scip_params"] = {"limits/time": float(time_limit)}
        elif name == "GUROBI":
            kwargs["TimeLimit"] = float(time_limit)
    t0 = time.perf_counter()
    try:
        prob.solve(solver=name, verbose=verbose, warm_start=start is not None, **kwargs)
    except cp.error.SolverError as exc:
        raise SolverError(f"cvxpy solver {name} failed on the L0 MIP: {exc}") from exc
    except (ValueError, KeyError) as exc:
        raise SolverError(
            f"cvxpy cannot solve the L0 MIP with {name!r} ({exc}); installed: "
            f"{cp.installed_solvers()}."
        ) from exc
    seconds = time.perf_counter() - t0
    x = assemble(model.lp, xc, xi)
    st = prob.status
    return HighsOutcome(
        status=st,
        optimal=st == cp.OPTIMAL,
        infeasible=st in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE),
        interrupted=False,
        has_solution=x is not None,
        x=x,
        objective=float(prob.value) if x is not None else np.nan,
        bound=float(prob.value) if st == cp.OPTIMAL else np.nan,
        gap=0.0 if st == cp.OPTIMAL else np.inf,
        nodes=-1,
        iterations=0,
        seconds=seconds,
        extra={"cvxpy_solver": name, "compile_seconds": prob.compilation_time or 0.0},
    )


def _warm_start(problem, model, warm_start, warm_start_iter, refit) -> np.ndarray | None:
    """Valid starting weights: an array given by the user, or reweighted-L1 re-fitted."""
    if isinstance(warm_start, np.ndarray):
        start_w = np.asarray(warm_start, dtype=np.float64)
        if start_w.shape != (problem.n_units,):
            raise InvalidProblemError(
                f"`warm_start` has shape {start_w.shape}; give one weight per unit "
                f"({problem.n_units})."
            )
        return start_w
    if not warm_start or model.objective != "count":
        return None
    rl = reweighted_l1(problem, model.domain, max_iter=warm_start_iter)
    fitted, _ = refit_iterates(problem, rl, refit or "linear", max_tries=2)
    return fitted


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
        w = model.weights_from_solution(out.x)
        w = np.clip(
            w, np.minimum(model.domain.hull_lower, 0), np.maximum(model.domain.hull_upper, 0)
        )
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


@register_method(
    "l0-mip",
    aliases=("l0", "mip"),
    build=build,
    solvers=("highs", "cvxpy:HIGHS", "cvxpy:SCIP"),
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
    refit: str | None = "linear",
    threads: int | None = None,
    seed: int | None = None,
    verbose: bool = False,
) -> CalibrationResult:
    """Exact L0 calibration: the fewest non-zero weights meeting every target band.

    Parameters
    ----------
    problem
        Its bounds apply to kept records (dropped records are exactly 0), its tolerance
        defines the bands ``|X_j w - b_j| <= tol_j |b_j|``.
    solver
        None or ``"highs"``: HiGHS through highspy, the model passed as sparse arrays
        (fastest); ``"cvxpy:HIGHS"`` or another cvxpy MIP solver name: the same model via cvxpy.
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
    refit
        Re-fit the kept weights with this distance method (``"linear"``: closest to the
        design weights in chi-square with every band met), or None to keep the MIP's weights.
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
    )
    timings["build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    start_w = _warm_start(problem, model, warm_start, warm_start_iter, refit)
    timings["warm_start"] = time.perf_counter() - t0
    start = None if start_w is None else model.start_from_weights(problem, start_w)
    remaining = None
    if time_limit is not None:
        remaining = max(1.0, time_limit - (time.perf_counter() - t_start))
    if solver is None or solver.lower() == "highs":
        opts = _highs_options(model, mip_gap, remaining, node_limit, threads, seed, verbose)
        out = solve_highs(highs_model(model.lp, options=opts), start=start)
    else:
        out = _run_cvxpy(model, solver, start, remaining, verbose)
    timings["mip"] = out.seconds
    if out.infeasible:
        raise InfeasibleError(
            "no support meets every target band within the weight bounds (the L0 MIP is "
            "infeasible); widen the tolerance or the bounds.",
            targets=[],
        )
    t0 = time.perf_counter()
    candidates, refit_note = _candidates(problem, model, out, start_w, refit, soft)
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
        "warm_start_nnz": None if start_w is None else int(np.count_nonzero(start_w)),
        "weights_from": label,
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
