"""The distance methods' program as a cvxpy model, solved by any installed cvxpy solver.

The program, in ``g = w / d`` over units with ``d > 0`` (``D = sum d``)::

    minimise    sum_i (d_i / D) G(g_i)  [+ (mu / 2) sum_j ((X w - b)_j / s_j)^2  in penalty mode]
    subject to  b_j - tol_j |b_j| <= (X w)_j <= b_j + tol_j |b_j|   (hard targets)
                L_i <= g_i <= U_i                                   (ratio and absolute bounds)

a QP for the chi-square distances, an exponential-cone program for raking and logit. Exact
targets that are linear combinations of other exact targets (nested geographies) are left out
of the model, as the Newton path leaves them out of its system, once their totals are checked
to agree: met kept targets meet them too, and interior-point solvers see a full-rank system.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InfeasibleError, SolverError
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.cvx import resolve_solver, solve_model
from ..solvers.distances import Distance, get_distance
from ..solvers.feasibility import reduce_redundant_targets
from ..solvers.kernels import weighted_gram, weighted_row_abs
from ..solvers.newton import REDUNDANCY_LIMIT
from .distance_prepare import Prepared, penalty_scale, prepare

__all__ = ["build", "solve_cvxpy"]


def _model(problem: CalibrationProblem, prep: Prepared, penalty: float | None):
    import cvxpy as cp

    b = prep.scaled(problem.targets)
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
        ps = penalty_scale(b, weighted_row_abs(prep.Xc, prep.d))
        objective = objective + 0.5 * penalty * cp.sum_squares((sp.diags(s / ps) @ As) @ g - b / ps)
    else:
        lo_b, hi_b = (prep.scaled(v) for v in problem.target_bands())
        eq = _independent(problem, prep, np.flatnonzero(lo_b == hi_b), b)
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


def _independent(problem: CalibrationProblem, prep: Prepared, eq: np.ndarray, b: np.ndarray):
    """The exact targets ``eq`` less those linearly dependent on the others.

    Nested geographies make exact targets dependent (a state's total is the sum of its
    districts'); interior-point solvers then stall (Clarabel: "InsufficientProgress" on the
    80,000-unit synthetic country). The dependent rows are found as the Newton path finds them
    (pivoted Cholesky of ``X D X'``); their totals must agree with the kept ones, else
    :class:`~calibopt.errors.InfeasibleError` names them. Met kept rows meet them too.
    """
    if eq.size < 2 or eq.size > REDUNDANCY_LIMIT:
        return eq
    J = weighted_gram(prep.Xc, prep.d)
    names = [problem.target_names[j] for j in eq]
    keep, _ = reduce_redundant_targets(J[np.ix_(eq, eq)], b[eq], names)
    return eq[keep]


def build(
    problem: CalibrationProblem, distance: str | Distance = "linear", penalty: float | None = None
) -> Any:
    """The calibration program for ``distance`` as a :class:`cvxpy.Problem` (not solved).

    Parameters
    ----------
    problem
        The calibration problem (bounds, ratio bounds and tolerances apply).
    distance
        ``"linear"``, ``"raking"``, ``"logit"``, ``"truncated"`` or a
        :class:`~calibopt.Distance` with a cvxpy expression.
    penalty
        If given, targets become soft: ``+ (penalty / 2) sum_j ((X w - b)_j / s_j)^2``.

    Returns
    -------
    cvxpy.Problem
        Its variable ``g`` (named ``"g"``) holds ``w / d`` for the units with ``d > 0``; exact
        targets dependent on others are not among its constraints (see the module docstring).
    """
    dist = get_distance(distance)
    return _model(problem, prepare(problem, dist, dist.name), penalty)[0]


def _multipliers(problem, prep, cons, s, D) -> np.ndarray:
    lam = np.zeros(problem.n_targets)
    if "eq" in cons and cons["eq"][1].dual_value is not None:
        rows = cons["eq"][0]
        lam[rows] = -D * np.asarray(cons["eq"][1].dual_value) / s[rows]
    if "hi" in cons and cons["hi"][1].dual_value is not None:
        rows = cons["hi"][0]
        lo_dual = np.asarray(cons["lo"][1].dual_value)
        lam[rows] = D * (lo_dual - np.asarray(cons["hi"][1].dual_value)) / s[rows]
    return prep.unscale_multipliers(lam)


def solve_cvxpy(
    problem: CalibrationProblem,
    prep: Prepared,
    method: str,
    solver: str,
    penalty: float | None,
    solver_options: dict[str, Any] | None,
    verbose: bool,
    t0: float,
) -> CalibrationResult:
    """Solve the distance program with a cvxpy solver and make the result."""
    import cvxpy as cp

    name = resolve_solver(solver)
    model, g, cons, s, D = _model(problem, prep, penalty)
    t_build = time.perf_counter() - t0
    status, secs = solve_model(model, name, solver_options, verbose)
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        shortfall = prep.certify(problem)  # raises InfeasibleError when the LP proves it
        others = " or ".join(repr(x) for x in ("newton", "CLARABEL") if x != name)
        if not shortfall <= 0.0:
            raise SolverError(
                f"{name} reports the {method} program infeasible (status {status}), and the "
                f"phase-1 LP over the same targets and bounds could neither find weights nor "
                f"prove that none exist; try solver={others}."
            )
        if not prep.dist.open_lower:
            # a closed domain: the LP's weights are feasible for this program too
            raise SolverError(
                f"{name} reports the {method} program infeasible (status {status}), but an LP "
                f"over the same targets and bounds finds weights, so the solver failed; try "
                f"solver={others}."
            )
        raise InfeasibleError(
            f"{name} reports the {method} program infeasible, and an LP over the same targets "
            f"and bounds finds weights only at the edge of the distance's domain (w > 0 for "
            f"raking), which the program cannot reach. Solver status: {status}.",
            targets=[],
        )
    if g.value is None:
        raise SolverError(
            f"{name} returned no solution for the {method} program (status {status})."
        )
    gv = np.asarray(g.value, dtype=np.float64)
    # project onto the bounds the solver may have missed by its feasibility tolerance
    gv = np.clip(gv, np.maximum(prep.glo, prep.dist.domain_lower), prep.ghi)
    w = prep.weights(gv)
    obj = prep.objective(gv)
    if penalty is not None:
        gross = weighted_row_abs(prep.Xc, prep.d)
        err = prep.scaled(problem.X @ w - problem.targets) / penalty_scale(
            prep.scaled(problem.targets), gross
        )
        obj += 0.5 * penalty * D * float(err @ err)
    stats = model.solver_stats
    return CalibrationResult.from_weights(
        problem,
        w,
        method=method,
        solver=name,
        proven_optimal=status == cp.OPTIMAL,
        soft=penalty is not None,
        message=f"cvxpy/{name} status {status}",
        iterations=int(stats.num_iters) if stats and stats.num_iters is not None else None,
        objective=obj,
        multipliers=_multipliers(problem, prep, cons, s, D),
        timings={"build": t_build, "solve": secs},
        info={"cvxpy_status": status},
    )
