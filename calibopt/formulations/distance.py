"""Distance calibration: linear (chi-square / GREG), raking (entropy), logit, truncated, custom.

One model, two solvers:

* ``solver="newton"`` (default) — Newton's method on the dual
  (:class:`~calibopt.solvers.newton.DualNewton`), sparse-aware, exact to ~1e-12, with
  rank-deficiency handling, tolerance bands (an active-set loop around it) and a penalty mode
  (slacks in the same Newton loop);
* any installed cvxpy solver — the same program as a :class:`cvxpy.Problem`
  (:mod:`calibopt.formulations.distance_cvxpy`).

Every distance is a :class:`~calibopt.Distance` object; the four built-ins are registered by
name and ``method="distance"`` (or ``calibrate(problem, method=my_distance)``) takes a user's.
See ``formulations/<method>.md`` for each page.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.active_set import newton_exact
from ..solvers.bands import newton_bands
from ..solvers.cvx import resolve_solver
from ..solvers.distances import DISTANCES, Distance, get_distance
from ..solvers.feasibility import check_target_ranges
from ..solvers.kernels import matvec
from ..solvers.newton import DENSE_LIMIT, DualNewton, Slacks
from ..validate import integer, number
from .distance_cvxpy import build, solve_cvxpy
from .distance_prepare import Prepared, penalty_scale, prepare
from .registry import register_method

__all__ = ["build", "solve_distance"]


def _check_ranges(problem: CalibrationProblem, prep: Prepared) -> None:
    wlo, whi = prep.weight_domain()
    band_lo, band_hi = problem.target_bands()
    domain = " and the distance's domain (w > 0)" if prep.dist.open_lower else ""
    check_target_ranges(
        prep.Xc,
        prep.scaled(band_lo),
        prep.scaled(band_hi),
        wlo,
        whi,
        problem.target_names,
        open_lower=prep.dist.open_lower and not np.any(prep.glo > 0),
        domain=domain,
    )


def _run_newton(problem, prep, engine, *, epsilon, max_iter, penalty):
    """The Newton run for exact targets, bands or penalty mode."""
    b = prep.scaled(problem.targets)
    info: dict[str, Any] = {}
    dropped: list[str] = []
    if penalty is not None:
        # soft targets: unbounded slacks with cost (mu D / 2) (e_j / s_j)^2
        rows = np.arange(b.size)
        s = penalty_scale(b, engine.row_scale(np.zeros_like(b), rows))
        slacks = Slacks(cost=penalty * engine.dsum / s**2, width=np.full(b.size, np.inf))
        out = engine.solve(b, epsilon=epsilon, max_iter=max_iter, slacks=slacks)
        lam = out.lam
    elif np.all(problem.tolerance == 0):
        out, lam, dropped = newton_exact(
            engine, b, problem.target_names, prep.glo, prep.ghi, epsilon=epsilon, max_iter=max_iter
        )
    else:
        lo_b, hi_b = (prep.scaled(v) for v in problem.target_bands())
        # slow early progress: the phase-1 LP, stopped at its first proof, may end it at once
        out, lam, info = newton_bands(
            engine, b, lo_b, hi_b, epsilon=epsilon, max_iter=max_iter,
            probe=lambda seconds: prep.certify(problem, stop_early=True, time_limit=seconds),
        )  # fmt: skip
    return out, prep.unscale_multipliers(lam), dropped, info


def _solve_newton(problem, prep, method, *, epsilon, max_iter, penalty, dense_limit, fallback, t0):
    timings: dict[str, float] = {}
    if penalty is None:
        # each target alone; all of them together (the phase-1 LP) only when Newton fails
        _check_ranges(problem, prep)
    timings["checks"] = time.perf_counter() - t0
    engine = DualNewton(prep.Xc, prep.d, prep.glo, prep.ghi, prep.dist, dense_limit)
    out, lam, dropped, info = _run_newton(
        problem, prep, engine, epsilon=epsilon, max_iter=max_iter, penalty=penalty
    )
    timings["newton"] = time.perf_counter() - t0 - timings["checks"]
    info["history"] = out.history
    info["linear_solvers"] = out.linear_solvers
    message = out.message
    if dropped:
        message += (
            f"; {len(dropped)} target(s) linearly dependent on others were left out of the "
            f"Newton system (their totals are consistent, so they are met too): {dropped[:10]}"
        )
    witness = info.pop("witness", None)
    if not out.converged:
        if penalty is None and witness is None:
            # classify the failure: an LP over all targets proves infeasibility, naming them
            prep.certify(problem)
        use_fallback = fallback is not None and prep.dist.has_objective
        if use_fallback:
            # feasible, but the semi-smooth Newton method did not converge (degenerate
            # problems: more binding bands and bounds than free units); an interior-point
            # solver takes the same model
            try:
                fallback = resolve_solver(fallback)
                res = solve_cvxpy(problem, prep, method, fallback, penalty, None, False, t0)
            except Exception as exc:
                message += f"; the {fallback} fallback failed too ({type(exc).__name__}: {exc})"
            else:
                res.solver = f"newton+{res.solver}"
                res.message = (
                    f"Newton did not converge ({out.message}); solved by {fallback} instead: "
                    f"{res.message}"
                )
                res.info["newton_history"] = out.history
                return res
        if witness is not None:
            # weights that meet every band: the exact solution at the bands' middles
            out.g, lam = witness[0], prep.unscale_multipliers(witness[1])
            message += (
                "; returned instead the exact solution at the bands' middles, which meets "
                "every band but is not the optimum of the band program (try "
                "solver='CLARABEL' for it)"
            )
            info["weights_from"] = "bands' middles"
        elif not use_fallback and penalty is None:
            message += (
                "; an LP check finds weights within the bounds that meet the targets, so the "
                "problem is feasible: raise max_iter, or try solver='CLARABEL'"
            )
    obj = prep.objective(out.g)
    w = prep.weights(out.g)
    if penalty is not None:
        b = prep.scaled(problem.targets)
        s = penalty_scale(b, engine.row_scale(np.zeros_like(b), np.arange(b.size)))
        err = (matvec(prep.Xc, prep.d * out.g) - b) / s
        obj += 0.5 * penalty * engine.dsum * float(err @ err)
    return CalibrationResult.from_weights(
        problem,
        w,
        method=method,
        solver="newton",
        proven_optimal=out.converged,
        soft=penalty is not None,
        message=message,
        iterations=out.iterations,
        objective=obj,
        multipliers=lam,
        dropped_targets=dropped,
        timings=timings,
        info=info,
    )


def solve_distance(
    problem: CalibrationProblem,
    distance: str | Distance,
    method: str,
    *,
    solver: str | None = None,
    epsilon: float = 1e-10,
    max_iter: int = 100,
    penalty: float | None = None,
    solver_options: dict[str, Any] | None = None,
    dense_limit: int = DENSE_LIMIT,
    fallback: str | None = "CLARABEL",
    verbose: bool = False,
) -> CalibrationResult:
    """Calibrate with a distance (dual Newton, or a cvxpy solver); see the registered methods."""
    t0 = time.perf_counter()
    epsilon = number("epsilon", epsilon, low=0.0, strict=True)
    max_iter = integer("max_iter", max_iter, low=0)
    dense_limit = integer("dense_limit", dense_limit, low=0)
    if penalty is not None:
        penalty = number("penalty", penalty, low=0.0, strict=True)
        if np.any(problem.tolerance > 0):
            raise InvalidProblemError(
                "penalty mode replaces hard targets by a penalty; use either a tolerance "
                "or `penalty`, not both."
            )
    if solver_options is not None and not isinstance(solver_options, dict):
        raise InvalidProblemError(f"`solver_options` must be a dict, got {solver_options!r}.")
    if fallback is not None:
        if not isinstance(fallback, str):
            raise InvalidProblemError("`fallback` must be a cvxpy solver name or None.")
        # the name is checked against cvxpy's solvers when the fallback is used: importing
        # cvxpy costs about a second, which a call that Newton solves should not pay
        fallback = fallback.strip().upper()
    newton = solver is None or solver.lower() == "newton"
    prep = prepare(problem, get_distance(distance), method, collapse=newton)
    if newton:
        return _solve_newton(
            problem,
            prep,
            method,
            epsilon=epsilon,
            max_iter=max_iter,
            penalty=penalty,
            dense_limit=dense_limit,
            fallback=fallback,
            t0=t0,
        )
    return solve_cvxpy(problem, prep, method, solver, penalty, solver_options, verbose, t0)


_OPTIONS_DOC = """
    Options
    -------
    solver : str, optional
        ``"newton"`` (default) or an installed cvxpy solver name.
    epsilon : float
        Newton's convergence rule: ``max_j |b_j - X_j w| / s_j < epsilon`` (R's rule with
        ``s_j = |b_j|``; see :mod:`calibopt.solvers.newton`).
    max_iter : int
        Newton iteration cap.
    penalty : float, optional
        Soft targets: adds ``(penalty / 2) sum_j ((X w - b)_j / s_j)^2`` to the objective
        instead of the target constraints; the result is a ``"trade_off"`` when it misses.
    solver_options : dict, optional
        Settings passed to the cvxpy solver (override ``calibopt.solvers.cvx.DEFAULT_SETTINGS``).
    dense_limit : int
        Targets up to which the Newton matrix is formed; matrix-free CG beyond.
    fallback : str or None
        cvxpy solver used when Newton stalls on a feasible problem (default ``"CLARABEL"``;
        the result's solver then reads ``"newton+CLARABEL"``); None returns the stopped
        Newton result instead. With tolerance bands whose interior point stalled, the exact
        solution at the bands' middles is returned instead when it meets every band (status
        ``"within_tolerance"``, ``info["weights_from"] == "bands' middles"``), also when the
        fallback fails.
    verbose : bool
        Solver output for cvxpy solvers.
"""


def _signature(*extra: inspect.Parameter) -> inspect.Signature:
    """``(problem, *, <extra>, <the options of solve_distance>)`` for the registered solvers."""
    params = list(inspect.signature(solve_distance).parameters.values())
    options = [p for p in params if p.kind == inspect.Parameter.KEYWORD_ONLY]
    return inspect.Signature([params[0], *extra, *options])


def _make(name: str):
    def solve(problem: CalibrationProblem, **options: Any) -> CalibrationResult:
        return solve_distance(problem, DISTANCES[name], name, **options)

    solve.__name__ = f"solve_{name}"
    solve.__signature__ = _signature()  # type: ignore[attr-defined]
    solve.__doc__ = f"Calibrate with the {name} distance (dual Newton, or a cvxpy solver).\n"
    solve.__doc__ += _OPTIONS_DOC
    return solve


_ITERATIONS = "Newton steps (newton) or the cvxpy solver's iterations"
_OBJECTIVE = "the distance sum_i d_i G(g_i) (+ the penalty in penalty mode)"

_SPECS = [
    (
        "linear",
        ("chi2", "chi-square", "greg"),
        "min sum d (g-1)^2/2 s.t. X w = b (GREG); with bounds it is the truncated linear distance",
    ),
    (
        "raking",
        ("entropy", "exponential"),
        "min sum d (g log g - g + 1) s.t. X w = b (multiplicative raking / entropy balancing)",
    ),
    ("logit", (), "Deville-Sarndal logit distance with bounds L < g < U built in"),
    (
        "truncated",
        ("truncated-linear",),
        "min sum d (g-1)^2/2 s.t. X w = b, L <= g <= U (bounded chi-square; finite bounds)",
    ),
]

for _name, _aliases, _summary in _SPECS:
    _dist = DISTANCES[_name]
    register_method(
        _name,
        aliases=_aliases,
        build=lambda problem, penalty=None, _d=_dist: build(problem, _d, penalty),
        solvers=("newton", "CLARABEL", "SCS", "ECOS")
        + (("OSQP", "HIGHS") if _dist.quadratic else ()),
        catalogue=f"{_name}.md",
        summary=_summary,
        guarantee="exact",
        iterations=_ITERATIONS,
        objective=_OBJECTIVE,
    )(_make(_name))


def solve_custom(
    problem: CalibrationProblem, *, distance: Distance | None = None, **options: Any
) -> CalibrationResult:
    """Calibrate with a user's :class:`~calibopt.Distance` (``distance=``); the other options
    as for the built-in distances."""
    if not isinstance(distance, Distance):
        raise InvalidProblemError(
            "method 'distance' needs `distance=` a calibopt.Distance, e.g. "
            "co.Distance(F=..., dF=...); or call calibrate(problem, method=my_distance)."
        )
    if not distance.has_objective:
        options.setdefault("fallback", None)  # no G: no cvxpy model to fall back on
    return solve_distance(problem, distance, distance.name, **options)


solve_custom.__signature__ = _signature(  # type: ignore[attr-defined]
    inspect.Parameter("distance", inspect.Parameter.KEYWORD_ONLY, default=None)
)
register_method(
    "distance",
    aliases=("custom-distance", "calfun"),
    build=lambda problem, distance, penalty=None: build(problem, distance, penalty),
    solvers=("newton", "CLARABEL", "SCS", "ECOS"),
    catalogue="distance.md",
    summary="a user's distance G (calibopt.Distance: F = (G')^-1, F', optional G and cvxpy)",
    guarantee="exact",
    iterations=_ITERATIONS,
    objective=_OBJECTIVE + " (NaN without G)",
)(solve_custom)
