"""Classical distance calibration: linear (chi-square / GREG), raking (entropy), logit, truncated.

One model, two solvers:

* ``solver="newton"`` (default) — Newton's method on the dual (:mod:`calibopt.newton`),
  sparse-aware, exact to ~1e-12, with rank-deficiency handling, tolerance bands (an
  active-set loop around it) and a penalty mode (slacks in the same Newton loop);
* any installed cvxpy solver — the same program written by :func:`build` as a
  :class:`cvxpy.Problem` (QP for linear/truncated; exponential cone for raking/logit).

The program, in ``g = w / d`` over units with ``d > 0`` (``D = sum d``)::

    minimise    sum_i (d_i / D) G(g_i)  [+ (mu / 2) sum_j ((X w - b)_j / s_j)^2  in penalty mode]
    subject to  b_j - tol_j |b_j| <= (X w)_j <= b_j + tol_j |b_j|   (hard targets)
                L_i <= g_i <= U_i                                   (ratio and absolute bounds)

with ``s_j = |b_j|`` (1 where ``b_j = 0``). See ``formulations/<method>.md`` for each page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..cvx import resolve_solver, solve_model
from ..distances import Distance, get_distance
from ..errors import InfeasibleError, InvalidProblemError, SolverError
from ..feasibility import check_target_ranges, lp_certificate, reduce_redundant_targets
from ..kernels import matvec, weighted_gram
from ..newton import DENSE_LIMIT, REDUNDANCY_LIMIT, DualNewton, NewtonOutcome, Slacks
from ..problem import CalibrationProblem
from ..result import STATUS_OPTIMAL, STATUS_STOPPED, CalibrationResult
from .registry import register_method

__all__ = ["build"]


# ---------------------------------------------------------------------------- preparation
@dataclass
class _Prepared:
    """The problem restricted to units with ``d > 0``, with g-bounds checked for the distance."""

    dist: Distance
    pos: np.ndarray  # mask of units with d > 0
    d: np.ndarray
    glo: np.ndarray
    ghi: np.ndarray
    Xc: sp.csc_matrix  # targets x free units

    def weight_domain(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds on w implied by the g-bounds and the distance's natural domain."""
        lo = np.maximum(self.glo, self.dist.domain_lower) * self.d
        return lo, self.ghi * self.d


def _prepare(problem: CalibrationProblem, dist: Distance, method: str) -> _Prepared:
    d_all = problem.initial_weights
    pos = d_all > 0
    if not pos.any():
        raise InvalidProblemError(
            "every initial weight is 0; distance methods scale the design weights, so give "
            "positive `initial_weights` (or use a sparse method such as 'l0-mip')."
        )
    stuck = np.flatnonzero(~pos & (problem.lower > 0))
    if stuck.size:
        raise InvalidProblemError(
            f"unit(s) {stuck[:5].tolist()} have initial weight 0 but a positive lower bound; "
            f"method {method!r} keeps w = d g = 0 for them. Give them a positive initial weight."
        )
    glo, ghi = problem.g_bounds()
    glo, ghi = glo[pos], ghi[pos]
    if method == "truncated" and not (np.isfinite(glo).any() or np.isfinite(ghi).any()):
        raise InvalidProblemError(
            "method 'truncated' needs finite bounds on g: give ratio_bounds=(L, U) (e.g. "
            "(0.5, 2)) or absolute bounds; without bounds use method='linear'."
        )
    dist.check_bounds(glo, ghi)
    Xc = problem.csc if pos.all() else problem.csc[:, np.flatnonzero(pos)]
    if not Xc.has_sorted_indices:
        Xc = Xc.copy()
        Xc.sort_indices()
    return _Prepared(dist=dist, pos=pos, d=d_all[pos], glo=glo, ghi=ghi, Xc=Xc)


def _full(prep: _Prepared, values: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(prep.pos.shape[0], fill)
    out[prep.pos] = values
    return out


def _penalty_scale(b: np.ndarray) -> np.ndarray:
    return np.where(b != 0, np.abs(b), 1.0)


def _objective(prep: _Prepared, g: np.ndarray) -> float:
    return float(prep.d @ prep.dist.G(g, prep.glo, prep.ghi))


# ---------------------------------------------------------------------------- Newton path
def _newton_exact(problem, prep, engine, *, epsilon, max_iter):
    """Equality targets; linearly redundant rows are dropped first (dense systems only)."""
    b = problem.targets
    names = problem.target_names
    lam = np.zeros(problem.n_targets)
    dropped: list[str] = []
    rows = np.arange(problem.n_targets)
    J0 = None
    if problem.n_targets <= min(engine.dense_limit, REDUNDANCY_LIMIT):
        free = np.where(prep.glo < prep.ghi, prep.d, 0.0)
        Jfree = weighted_gram(prep.Xc, free)
        keep, drop = reduce_redundant_targets(Jfree, b, names)
        if drop.size:
            rows = keep
            dropped = [names[j] for j in drop]
        # at lambda = 0, g = F(0) = 1 and F'(0) = 1 for every distance: the Newton matrix is
        # this Gram unless some unit starts on a bound
        if np.all((prep.glo < 1.0) & (prep.ghi > 1.0)):
            J0 = Jfree
    out = engine.solve(b[rows], rows, epsilon=epsilon, max_iter=max_iter, J0=J0)
    lam[rows] = out.lam
    return out, lam, dropped


def _newton_bands(problem, prep, engine, *, epsilon, max_iter, max_outer: int = 100):
    """Tolerance bands by a primal-dual active-set loop around the equality Newton solver.

    A band target is inactive (multiplier 0) while its estimate lies inside the band; when
    outside, it becomes an equality at the violated end. An active target whose multiplier
    has the wrong sign (pulling its estimate into the band's interior) is released. If a set
    of states repeats, the loop changes one target at a time, which cannot cycle.
    """
    b = problem.targets
    lo_b, hi_b = problem.target_bands()
    exact = lo_b == hi_b
    state = np.zeros(problem.n_targets, dtype=np.int8)  # 0 inactive, +1 upper, -1 lower
    lam = np.zeros(problem.n_targets)
    scale = 1.0 + np.abs(b)
    seen: set[bytes] = set()
    cautious = False
    total_iter = 0
    out: NewtonOutcome | None = None
    for outer in range(max_outer):
        active = exact | (state != 0)
        rows = np.flatnonzero(active)
        if rows.size:
            T = np.where(
                state[rows] > 0, hi_b[rows], np.where(state[rows] < 0, lo_b[rows], b[rows])
            )
            out = engine.solve(T, rows, lam[rows], epsilon=epsilon, max_iter=max_iter)
            total_iter += out.iterations
            lam[:] = 0.0
            lam[rows] = out.lam
            g = out.g
            if not out.converged:
                out.message = f"round {outer + 1} of the active-set loop: {out.message}"
                return out, lam, {"rounds": outer + 1}
        else:
            g = engine.g_at(np.zeros(problem.n_targets))
            out = NewtonOutcome(
                lam=np.zeros(0),
                g=g,
                converged=True,
                iterations=0,
                max_residual=0.0,
                message="converged: no band target binds",
            )
        est = matvec(prep.Xc, prep.d * g)
        slack = epsilon * scale
        above = (~active) & (est > hi_b + slack)
        below = (~active) & (est < lo_b - slack)
        wrong = (~exact) & (((state > 0) & (lam > 0)) | ((state < 0) & (lam < 0)))
        if not (above.any() or below.any() or wrong.any()):
            n_at = int((state != 0).sum())
            out.message += (
                f"; active-set loop settled after {outer + 1} round(s) with {n_at} band "
                f"target(s) at an end of their band"
            )
            out.iterations = total_iter
            return out, lam, {"active_band_targets": n_at, "rounds": outer + 1}
        key = state.tobytes()
        cautious |= key in seen
        seen.add(key)
        if cautious:
            viol = np.where(above, est - hi_b, 0.0) + np.where(below, lo_b - est, 0.0)
            if viol.any():
                j = int(np.argmax(viol / scale))
                state[j] = 1 if above[j] else -1
            else:
                state[int(np.argmax(np.abs(lam) * wrong))] = 0
        else:
            state[above] = 1
            state[below] = -1
            state[wrong] = 0
    assert out is not None
    out.converged = False
    out.iterations = total_iter
    out.message = f"active-set loop did not settle in {max_outer} rounds; {out.message}"
    return out, lam, {"rounds": max_outer}


def _solve_newton(problem, prep, method, *, epsilon, max_iter, penalty, dense_limit, fallback, t0):
    timings: dict[str, float] = {}
    b = problem.targets
    names = problem.target_names
    info: dict[str, Any] = {}
    dropped: list[str] = []
    wlo, whi = prep.weight_domain()
    band_lo, band_hi = problem.target_bands()
    if penalty is None:
        domain = " and the distance's domain (w > 0)" if prep.dist.open_lower else ""
        check_target_ranges(
            prep.Xc,
            band_lo,
            band_hi,
            wlo,
            whi,
            names,
            open_lower=prep.dist.open_lower and not np.any(prep.glo > 0),
            domain=domain,
        )
    timings["checks"] = time.perf_counter() - t0
    engine = DualNewton(prep.Xc, prep.d, prep.glo, prep.ghi, prep.dist, dense_limit)
    if penalty is not None:
        # soft targets: unbounded slacks with cost (mu D / 2) (e_j / s_j)^2
        cost = penalty * float(prep.d.sum()) / _penalty_scale(b) ** 2
        slacks = Slacks(cost=cost, width=np.full(b.size, np.inf))
        out = engine.solve(b, epsilon=epsilon, max_iter=max_iter, slacks=slacks)
        lam = out.lam
    elif np.all(problem.tolerance == 0):
        out, lam, dropped = _newton_exact(problem, prep, engine, epsilon=epsilon, max_iter=max_iter)
    else:
        out, lam, extra = _newton_bands(problem, prep, engine, epsilon=epsilon, max_iter=max_iter)
        info.update(extra)
    timings["newton"] = time.perf_counter() - t0 - timings["checks"]
    info["history"] = out.history
    info["linear_solvers"] = out.linear_solvers
    w = _full(prep, prep.d * out.g, 0.0)
    message = out.message
    if dropped:
        message += (
            f"; {len(dropped)} target(s) linearly dependent on others were left out of the "
            f"Newton system (their totals are consistent, so they are met too): {dropped[:10]}"
        )
    status = STATUS_OPTIMAL if out.converged else STATUS_STOPPED
    if not out.converged:
        if penalty is None:
            # classify the failure: an LP over all targets proves infeasibility, naming them
            lp_certificate(sp.csr_matrix(prep.Xc), band_lo, band_hi, wlo, whi, names)
        if fallback is not None:
            # feasible, but the semi-smooth Newton method did not converge (degenerate
            # problems: more binding bands and bounds than free units); an interior-point
            # solver takes the same model
            res = _solve_cvxpy(problem, prep, method, fallback, penalty, None, False, t0)
            res.solver = f"newton+{res.solver}"
            res.message = (
                f"Newton did not converge ({out.message}); solved by {fallback} instead: "
                f"{res.message}"
            )
            res.info["newton_history"] = out.history
            return res
        if penalty is None:
            message += (
                "; an LP check finds weights within the bounds that meet the targets, so the "
                "problem is feasible: raise max_iter, or try solver='CLARABEL'"
            )
    obj = _objective(prep, out.g)
    if penalty is not None:
        err = (matvec(prep.Xc, prep.d * out.g) - b) / _penalty_scale(b)
        obj += 0.5 * penalty * float(prep.d.sum()) * float(err @ err)
    return CalibrationResult.from_weights(
        problem,
        w,
        method=method,
        solver="newton",
        status=status,
        message=message,
        iterations=out.iterations,
        objective=obj,
        multipliers=lam,
        dropped_targets=dropped,
        timings=timings,
        info=info,
        soft_targets=penalty is not None,
    )


# ---------------------------------------------------------------------------- cvxpy path
def _build(problem: CalibrationProblem, prep: _Prepared, penalty: float | None):
    import cvxpy as cp

    b = problem.targets
    D = float(prep.d.sum())
    A = sp.csr_matrix(prep.Xc @ sp.diags(prep.d))
    # row scaling keeps the solver's feasibility tolerances meaningful for large totals
    rowmax = np.zeros(A.shape[0])
    np.maximum.at(rowmax, np.repeat(np.arange(A.shape[0]), np.diff(A.indptr)), np.abs(A.data))
    s = np.maximum(np.maximum(np.abs(b), rowmax), 1e-300)
    As = sp.diags(1.0 / s) @ A
    g = cp.Variable(prep.d.size, name="g")
    objective = prep.dist.cvxpy_objective(g, prep.d / D, prep.glo, prep.ghi)
    cons: dict[str, Any] = {}
    constraints = []
    fin_lo = np.flatnonzero(np.isfinite(prep.glo) & (prep.glo > prep.dist.domain_lower))
    fin_hi = np.flatnonzero(np.isfinite(prep.ghi))
    if prep.dist.intrinsic_bounds:
        fin_lo = fin_hi = np.array([], dtype=int)
    if fin_lo.size:
        constraints.append(g[fin_lo] >= prep.glo[fin_lo])
    if fin_hi.size:
        constraints.append(g[fin_hi] <= prep.ghi[fin_hi])
    if penalty is not None:
        ps = _penalty_scale(b)
        objective = objective + 0.5 * penalty * cp.sum_squares((sp.diags(s / ps) @ As) @ g - b / ps)
    else:
        lo_b, hi_b = problem.target_bands()
        eq = np.flatnonzero(lo_b == hi_b)
        band = np.flatnonzero(lo_b != hi_b)
        if eq.size:
            cons["eq"] = (eq, As[eq] @ g == b[eq] / s[eq])
            constraints.append(cons["eq"][1])
        if band.size:
            cons["hi"] = (band, As[band] @ g <= hi_b[band] / s[band])
            cons["lo"] = (band, As[band] @ g >= lo_b[band] / s[band])
            constraints += [cons["hi"][1], cons["lo"][1]]
    model = cp.Problem(cp.Minimize(objective), constraints)
    return model, g, cons, s, D


def build(
    problem: CalibrationProblem, distance: str = "linear", penalty: float | None = None
) -> Any:
    """The calibration program for ``distance`` as a :class:`cvxpy.Problem` (not solved).

    Parameters
    ----------
    problem
        The calibration problem (bounds, ratio bounds and tolerances apply).
    distance
        ``"linear"`` (also for ``"truncated"``), ``"raking"`` or ``"logit"``.
    penalty
        If given, targets become soft: ``+ (penalty / 2) sum_j ((X w - b)_j / s_j)^2``.

    Returns
    -------
    cvxpy.Problem
        Its variable ``g`` (named ``"g"``) holds ``w / d`` for the units with ``d > 0``.
    """
    method = "truncated" if distance == "truncated" else distance
    dist = get_distance("linear" if distance == "truncated" else distance)
    return _build(problem, _prepare(problem, dist, method), penalty)[0]


def _solve_cvxpy(problem, prep, method, solver, penalty, solver_options, verbose, t0):
    import cvxpy as cp

    name = resolve_solver(solver)
    model, g, cons, s, D = _build(problem, prep, penalty)
    t_build = time.perf_counter() - t0
    status, secs = solve_model(model, name, solver_options, verbose)
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        band_lo, band_hi = problem.target_bands()
        wlo, whi = prep.weight_domain()
        lp_certificate(sp.csr_matrix(prep.Xc), band_lo, band_hi, wlo, whi, problem.target_names)
        raise InfeasibleError(
            f"{name} reports the {method} program infeasible, but an LP over the same targets "
            f"and bounds finds weights; the distance's domain (e.g. w > 0 for raking) may be "
            f"what excludes them. Solver status: {status}.",
            targets=[],
        )
    if g.value is None:
        raise SolverError(
            f"{name} returned no solution for the {method} program (status {status})."
        )
    gv = np.asarray(g.value, dtype=np.float64)
    # project onto the bounds the solver may have missed by its feasibility tolerance
    gv = np.clip(gv, np.maximum(prep.glo, prep.dist.domain_lower), prep.ghi)
    lam = np.zeros(problem.n_targets)
    if "eq" in cons and cons["eq"][1].dual_value is not None:
        rows = cons["eq"][0]
        lam[rows] = -D * np.asarray(cons["eq"][1].dual_value) / s[rows]
    if "hi" in cons and cons["hi"][1].dual_value is not None:
        rows = cons["hi"][0]
        lam[rows] = (
            D
            * (np.asarray(cons["lo"][1].dual_value) - np.asarray(cons["hi"][1].dual_value))
            / s[rows]
        )
    w = _full(prep, prep.d * gv, 0.0)
    st = STATUS_OPTIMAL if status == cp.OPTIMAL else STATUS_STOPPED
    obj = _objective(prep, gv)
    if penalty is not None:
        err = (problem.X @ w - problem.targets) / _penalty_scale(problem.targets)
        obj += 0.5 * penalty * D * float(err @ err)
    return CalibrationResult.from_weights(
        problem,
        w,
        method=method,
        solver=name,
        status=st,
        message=f"cvxpy/{name} status {status}",
        iterations=int(
            model.solver_stats.num_iters
            if model.solver_stats and model.solver_stats.num_iters
            else 0
        ),
        objective=obj,
        multipliers=lam,
        timings={"build": t_build, "solve": secs},
        info={"cvxpy_status": status},
        soft_targets=penalty is not None,
    )


# ---------------------------------------------------------------------------- registration
def _make(method: str, distance: str):
    def solve(
        problem: CalibrationProblem,
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
        t0 = time.perf_counter()
        if not (epsilon > 0):
            raise InvalidProblemError(f"`epsilon` must be > 0, got {epsilon!r}.")
        if int(max_iter) < 0:
            raise InvalidProblemError(f"`max_iter` must be >= 0, got {max_iter!r}.")
        if penalty is not None:
            if not (np.isfinite(penalty) and penalty > 0):
                raise InvalidProblemError(f"`penalty` must be a positive number, got {penalty!r}.")
            if np.any(problem.tolerance > 0):
                raise InvalidProblemError(
                    "penalty mode replaces hard targets by a penalty; use either a tolerance "
                    "or `penalty`, not both."
                )
        if fallback is not None:
            fallback = resolve_solver(fallback)
        prep = _prepare(problem, get_distance(distance), method)
        if solver is None or str(solver).lower() == "newton":
            return _solve_newton(
                problem,
                prep,
                method,
                epsilon=epsilon,
                max_iter=int(max_iter),
                penalty=penalty,
                dense_limit=dense_limit,
                fallback=fallback,
                t0=t0,
            )
        return _solve_cvxpy(problem, prep, method, solver, penalty, solver_options, verbose, t0)

    solve.__name__ = f"solve_{method}"
    solve.__doc__ = f"""Calibrate with the {method} distance (dual Newton, or a cvxpy solver).

    Options
    -------
    solver : str, optional
        ``"newton"`` (default) or an installed cvxpy solver name.
    epsilon : float
        Newton's convergence rule (R's): ``max_j |b_j - X_j w| / (1 + |b_j|) < epsilon``.
    max_iter : int
        Newton iteration cap.
    penalty : float, optional
        Soft targets: adds ``(penalty / 2) sum_j ((X w - b)_j / s_j)^2`` to the objective
        (``s_j = |b_j|``) instead of the target constraints.
    solver_options : dict, optional
        Settings passed to the cvxpy solver (override ``calibopt.cvx.DEFAULT_SETTINGS``).
    dense_limit : int
        Targets up to which the Newton matrix is formed; matrix-free CG beyond.
    fallback : str or None
        cvxpy solver used when Newton stalls on a feasible problem (default ``"CLARABEL"``;
        the result's solver then reads ``"newton+CLARABEL"``); None returns the stopped
        Newton result instead.
    verbose : bool
        Solver output for cvxpy solvers.
    """
    return solve


def _builder(distance: str):
    def b(problem: CalibrationProblem, penalty: float | None = None):
        return build(problem, distance, penalty)

    return b


_SPECS = [
    (
        "linear",
        "linear",
        ("chi2", "chi-square", "greg"),
        "linear.md",
        "quadratic",
        "min sum d (g-1)^2/2 s.t. X w = b (GREG); with bounds it is the truncated linear distance",
    ),
    (
        "raking",
        "raking",
        ("entropy", "exponential"),
        "raking.md",
        "exponential cone",
        "min sum d (g log g - g + 1) s.t. X w = b (multiplicative raking / entropy balancing)",
    ),
    (
        "logit",
        "logit",
        (),
        "logit.md",
        "exponential cone",
        "Deville-Sarndal logit distance with bounds L < g < U built in",
    ),
    (
        "truncated",
        "linear",
        ("truncated-linear",),
        "truncated.md",
        "quadratic",
        "min sum d (g-1)^2/2 s.t. X w = b, L <= g <= U (bounded chi-square)",
    ),
]

for _method, _dist, _aliases, _page, _cone, _summary in _SPECS:
    register_method(
        _method,
        aliases=_aliases,
        build=_builder(_dist if _method != "truncated" else "truncated"),
        solvers=("newton", "CLARABEL", "SCS", "ECOS")
        + (("OSQP", "HIGHS") if _cone == "quadratic" else ()),
        catalogue=_page,
        summary=_summary,
        guarantee="exact",
    )(_make(_method, _dist))
