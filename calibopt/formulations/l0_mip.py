"""``l0-mip``: the fewest non-zero weights that meet every target band, solved exactly by HiGHS.

The model is in :mod:`calibopt.sparse.l0` (program, tightest big-M, record classes, covers);
this module runs it: warm start from reweighted-L1, HiGHS directly (or any cvxpy MIP solver),
an exact re-fit of the kept weights, and an honest report of the MIP gap. With ``blocks=`` the
problem is split by a record label and solved block by block (:mod:`calibopt.blocks`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import InfeasibleError, InvalidProblemError, SolverError
from ..problem import CalibrationProblem
from ..result import (
    STATUS_OPTIMAL,
    STATUS_STOPPED,
    STATUS_WITHIN_TOLERANCE,
    CalibrationResult,
    target_diagnostics,
)
from ..sparse.cvx import assemble, cvxpy_from_arrays
from ..sparse.domain import sparse_domain
from ..sparse.highs import HighsOutcome, highs_model, solve_highs
from ..sparse.l0 import L0Model, build_l0_model
from ..sparse.refit import refit_support
from ..sparse.reweighted import reweighted_l1
from .registry import register_method

__all__ = ["build", "solve", "solve_l0"]

_MODEL_OPTIONS = ("objective", "lam", "eps", "group_normalise", "big_m", "aggregate", "cuts")


def build(problem: CalibrationProblem, **options: Any) -> Any:
    """The L0 MIP of ``problem`` as a ``cvxpy.Problem`` (options as for the model)."""
    model = build_l0_model(problem, **{k: v for k, v in options.items() if k in _MODEL_OPTIONS})
    prob, _, _, _ = cvxpy_from_arrays(
        model.cost,
        model.col_lower,
        model.col_upper,
        model.A,
        model.row_lower,
        model.row_upper,
        model.integer,
    )
    return prob


def _within(problem: CalibrationProblem, w: np.ndarray) -> bool:
    return bool(target_diagnostics(problem, w)["within_tolerance"].all())


def _run_mip(
    model: L0Model,
    solver: str | None,
    start: np.ndarray | None,
    time_limit: float | None,
    mip_gap: float,
    threads: int | None,
    verbose: bool,
    seed: int | None = None,
) -> HighsOutcome:
    integral = model.objective == "count"
    if solver is None or solver.lower() == "highs":
        opts: dict[str, Any] = {"mip_rel_gap": float(mip_gap), "output_flag": bool(verbose)}
        # the count objective is integral: a gap below 1 proves optimality
        opts["mip_abs_gap"] = 1.0 - 1e-6 if integral else 1e-9
        opts["mip_feasibility_tolerance"] = 1e-9
        opts["primal_feasibility_tolerance"] = 1e-9
        if time_limit is not None:
            opts["time_limit"] = float(time_limit)
        if threads is not None:
            opts["threads"] = int(threads)
        if seed is not None:
            opts["random_seed"] = int(seed)
        h = highs_model(
            model.cost,
            model.col_lower,
            model.col_upper,
            model.A,
            model.row_lower,
            model.row_upper,
            integer=model.integer,
            options=opts,
        )
        return solve_highs(h, start=start)
    return _run_cvxpy(model, solver, start, time_limit, verbose)


def _run_cvxpy(
    model: L0Model, solver: str, start: np.ndarray | None, time_limit: float | None, verbose: bool
) -> HighsOutcome:
    import cvxpy as cp

    name = solver.split(":", 1)[1] if solver.lower().startswith("cvxpy:") else solver
    name = name.upper() or "HIGHS"
    prob, xc, xi, _ = cvxpy_from_arrays(
        model.cost,
        model.col_lower,
        model.col_upper,
        model.A,
        model.row_lower,
        model.row_upper,
        model.integer,
    )
    if start is not None:
        xc.value = start[~model.integer]
        if xi is not None:
            xi.value = start[model.integer]
    kwargs: dict[str, Any] = {}
    if time_limit is not None and name == "HIGHS":
        kwargs["time_limit"] = float(time_limit)
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
    x = assemble(model.n_cols, model.integer, xc, xi)
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
        nodes=0,
        iterations=0,
        seconds=seconds,
        extra={"cvxpy_solver": name, "compile_seconds": prob.compilation_time or 0.0},
    )


def solve_l0(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    time_limit: float | None = 60.0,
    mip_gap: float = 0.0,
    objective: str = "count",
    lam: float = 1e-3,
    eps: float = 1.0,
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
    """Solve the L0 MIP of one problem (no blocks); see :func:`solve` for the options."""
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    _check_options(time_limit, mip_gap, warm_start_iter, refit)
    soft = objective == "error+count"
    t0 = time.perf_counter()
    domain = None if soft else sparse_domain(problem)
    model = build_l0_model(
        problem,
        objective=objective,
        lam=lam,
        eps=eps,
        group_normalise=group_normalise,
        big_m=big_m,
        aggregate=aggregate,
        cuts=cuts,
        domain=domain,
    )
    timings["build"] = time.perf_counter() - t0
    # ---- warm start: a feasible incumbent from reweighted-L1
    start_w = None
    t0 = time.perf_counter()
    if isinstance(warm_start, np.ndarray):
        start_w = np.asarray(warm_start, dtype=np.float64)
        if start_w.shape != (problem.n_units,):
            raise InvalidProblemError(
                f"`warm_start` has shape {start_w.shape}; give one weight per unit "
                f"({problem.n_units})."
            )
    elif warm_start and not soft:
        # the sparsest reweighted-L1 iterate: an LP vertex, feasible for the MIP as it is
        rl = reweighted_l1(problem, model.domain, max_iter=warm_start_iter)
        start_w = rl.weights
    timings["warm_start"] = time.perf_counter() - t0
    start = None
    warm_nnz = None
    if start_w is not None:
        warm_nnz = int(np.count_nonzero(start_w))
        start = model.start_from_weights(problem, start_w)
    # ---- the MIP
    remaining = None
    if time_limit is not None:
        remaining = max(1.0, float(time_limit) - (time.perf_counter() - t_start))
    out = _run_mip(model, solver, start, remaining, mip_gap, threads, verbose, seed)
    timings["mip"] = out.seconds
    if out.infeasible:
        raise InfeasibleError(
            "no support meets every target band within the weight bounds (the L0 MIP is "
            "infeasible); widen the tolerance or the bounds.",
            targets=[],
        )
    # ---- map back, re-fit exactly on the support
    t0 = time.perf_counter()
    candidates: list[tuple[str, np.ndarray]] = []
    refit_note = ""
    if out.has_solution and out.x is not None:
        w = model.weights_from_solution(out.x)
        w = np.clip(
            w, np.minimum(model.domain.hull_lower, 0), np.maximum(model.domain.hull_upper, 0)
        )
        if refit and (not soft or _within(problem, w)):
            fitted, refit_note = refit_support(problem, np.flatnonzero(w), method=refit)
            if fitted is not None:
                candidates.append(("mip+refit", fitted))
        candidates.append(("mip", w))
    if start_w is not None:
        candidates.append(("warm start", start_w))
    timings["refit"] = time.perf_counter() - t0
    if not candidates:
        raise SolverError(
            f"HiGHS found no feasible support within the time limit ({out.status}); raise "
            f"`time_limit` or widen the tolerance."
        )
    label, weights = _pick(problem, candidates, soft, model, lam)
    if label == "warm start" and refit and not soft:
        fitted, refit_note = refit_support(problem, np.flatnonzero(weights), method=refit)
        if fitted is not None and _within(problem, fitted):
            label, weights = "warm start+refit", fitted
    nnz = int(np.count_nonzero(weights))
    ok = _within(problem, weights)
    proven = out.optimal and label.startswith("mip")
    if soft:
        status = STATUS_OPTIMAL if proven else STATUS_STOPPED
    elif proven and ok:
        status = STATUS_OPTIMAL
    else:
        status = STATUS_WITHIN_TOLERANCE if ok else STATUS_STOPPED
    gap = out.gap if out.has_solution else np.inf
    msg_parts = []
    if proven:
        msg_parts.append("optimality proven")
    elif out.has_solution:
        msg_parts.append(
            f"optimality not proven ({out.status}): MIP gap {gap:.3g}, bound {out.bound:.6g}"
        )
    else:
        msg_parts.append(f"no MIP incumbent ({out.status}); returning the warm start")
    if not label.endswith("refit") and refit and not soft:
        msg_parts.append(f"kept weights from {label}" + (f" ({refit_note})" if refit_note else ""))
    info = {
        "proven_optimal": bool(proven),
        "mip_gap": float(gap),
        "mip_bound": float(out.bound),
        "mip_objective": float(out.objective),
        "mip_status": out.status,
        "mip_nodes": out.nodes,
        "mip_seconds": out.seconds,
        "warm_start_nnz": warm_nnz,
        "weights_from": label,
        "model": model.stats,
        "objective": objective,
        **out.extra,
    }
    if soft:
        err = _soft_objective(problem, model, weights, lam)
        info["soft_objective"] = err
    timings["total"] = time.perf_counter() - t_start
    return CalibrationResult.from_weights(
        problem,
        weights,
        method="l0-mip",
        solver="highs" if solver is None or solver.lower() == "highs" else solver,
        status=status,
        message="; ".join(msg_parts),
        iterations=out.nodes,
        objective=float(nnz) if not soft else info["soft_objective"],
        timings=timings,
        info=info,
    )


def _soft_objective(
    problem: CalibrationProblem, model: L0Model, w: np.ndarray, lam: float
) -> float:
    omega = model.omega
    est = problem.X @ w
    dist = np.maximum(est - model.domain.band_upper, 0) + np.maximum(
        model.domain.band_lower - est, 0
    )
    return float(np.dot(omega, dist) + lam * np.count_nonzero(w))


def _pick(
    problem: CalibrationProblem,
    candidates: list[tuple[str, np.ndarray]],
    soft: bool,
    model: L0Model,
    lam: float,
) -> tuple[str, np.ndarray]:
    """The best candidate: for the count objective the fewest non-zeros among those within
    tolerance (first listed wins ties); for error+count the lowest objective."""
    if soft:
        return min(candidates, key=lambda c: _soft_objective(problem, model, c[1], lam))
    ok = [c for c in candidates if _within(problem, c[1])]
    pool = ok or candidates
    return min(pool, key=lambda c: np.count_nonzero(c[1]))


def _check_options(
    time_limit: float | None, mip_gap: float, warm_start_iter: int, refit: str | None
) -> None:
    if time_limit is not None and not (np.isfinite(time_limit) and time_limit > 0):
        raise InvalidProblemError(
            f"`time_limit` must be a positive number of seconds or None, got {time_limit!r}."
        )
    if not (np.isfinite(mip_gap) and mip_gap >= 0):
        raise InvalidProblemError(f"`mip_gap` must be >= 0, got {mip_gap!r}.")
    if int(warm_start_iter) != warm_start_iter or warm_start_iter < 1:
        raise InvalidProblemError(
            f"`warm_start_iter` must be a positive integer, got {warm_start_iter!r}."
        )
    if refit is not None and not isinstance(refit, str):
        raise InvalidProblemError(
            f"`refit` must be a method name such as 'linear', or None; got {refit!r}."
        )


@register_method(
    "l0-mip",
    aliases=("l0", "mip"),
    build=build,
    solvers=("highs", "cvxpy"),
    catalogue="l0-mip.md",
    summary="min #non-zero weights s.t. targets within tolerance and bounds (MIP, HiGHS); blocks",
    guarantee="optimal",
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    time_limit: float | None = 60.0,
    mip_gap: float = 0.0,
    objective: str = "count",
    lam: float = 1e-3,
    eps: float = 1.0,
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
    blocks: Any = None,
    executor: Any = None,
    share_method: str = "reweighted-l1",
    progress: bool | None = None,
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
        Seconds per MIP (per block with ``blocks``); None for no limit. On the limit the best
        support found is returned with its MIP gap (``result.info["mip_gap"]``).
    mip_gap
        Relative gap at which to stop (0: prove optimality).
    objective
        ``"count"`` or ``"error+count"`` (minimise the group-normalised L1 relative error
        outside the bands plus ``lam`` per non-zero).
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
        Re-fit the kept weights with this core method (``"linear"``: closest to the design
        weights in chi-square with every band met), or None to keep the MIP's weights.
    threads, seed, verbose
        HiGHS threads, random seed (MIP search paths, hence times, vary with it; the optimum
        does not) and log output.
    blocks
        A label per record (array of length ``n_units``): solve block by block, see
        :func:`calibopt.blocks.solve_blocks`.
    executor
        Where blocks run: None (in process), ``"process"`` / an int (process pool), a
        ``dask.distributed.Client``; see :func:`calibopt.parallel.resolve_executor`.
    share_method
        The continuous solve of the whole problem that divides spanning targets into block
        shares: ``"reweighted-l1"`` (default; LPs whose sparse solution, restricted to a block,
        is already a small support for that block's shares) or a core method such as
        ``"linear"`` (chi-square: smooth shares by design weight).
    progress
        Progress bar over blocks (None: when stderr is a terminal).
    """
    opts = dict(
        solver=solver,
        time_limit=time_limit,
        mip_gap=mip_gap,
        objective=objective,
        lam=lam,
        eps=eps,
        group_normalise=group_normalise,
        big_m=big_m,
        aggregate=aggregate,
        cuts=cuts,
        warm_start=warm_start,
        warm_start_iter=warm_start_iter,
        refit=refit,
        threads=threads,
        seed=seed,
        verbose=verbose,
    )
    if blocks is None:
        if executor is not None:
            raise InvalidProblemError("`executor` needs `blocks` (a block label per record).")
        return solve_l0(problem, **opts)
    from ..blocks import solve_blocks

    if isinstance(warm_start, np.ndarray):
        raise InvalidProblemError("an array `warm_start` cannot be combined with `blocks`.")
    return solve_blocks(
        problem,
        blocks,
        method="l0-mip",
        options=opts,
        executor=executor,
        share_method=share_method,
        progress=progress,
    )
