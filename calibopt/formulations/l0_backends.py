"""Other engines for the exact-L0 MIP than HiGHS through highspy (``l0_mip`` runs that one).

* :func:`run_cvxpy` -- any cvxpy MIP solver (SCIP, Gurobi, HiGHS, ...) on the same arrays, with
  the dual bound and node count where the solver keeps them;
* :func:`run_gurobi` -- gurobipy directly (``solver="gurobi"``), which keeps the column bounds
  as variable bounds.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError
from ..solvers.cvx import assemble, cvxpy_model
from ..solvers.highs import HighsOutcome
from .l0_model import L0Model

__all__ = ["run_cvxpy", "run_gurobi"]


def run_cvxpy(
    model: L0Model, solver: str, start: np.ndarray | None, time_limit: float | None, verbose: bool
) -> HighsOutcome:
    """Solve ``model`` with the cvxpy solver named by ``solver`` (``"cvxpy:SCIP"``, ...)."""
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
    bound, nodes = _cvxpy_bound(prob, name)
    if st == cp.OPTIMAL:
        bound = float(prob.value)
    value = float(prob.value) if x is not None else np.nan
    gap = abs(value - bound) / max(abs(value), 1e-12) if np.isfinite(bound) else np.inf
    return HighsOutcome(
        status=st,
        optimal=st == cp.OPTIMAL,
        infeasible=st in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE),
        interrupted=False,
        has_solution=x is not None,
        x=x,
        objective=value,
        bound=bound,
        gap=0.0 if st == cp.OPTIMAL else gap,
        nodes=nodes,
        iterations=0,
        seconds=seconds,
        extra={"cvxpy_solver": name, "compile_seconds": prob.compilation_time or 0.0},
    )


def _cvxpy_bound(prob: Any, name: str) -> tuple[float, int]:
    """The dual bound and node count SCIP or Gurobi reached (NaN, -1 when not reported)."""
    extra = getattr(prob.solver_stats, "extra_stats", None)
    try:
        if name == "GUROBI" and extra is not None:
            return float(extra.ObjBound), int(extra.NodeCount)
        if name == "SCIP" and isinstance(extra, dict) and "model" in extra:
            scip = extra["model"]
            return float(scip.getDualbound()), int(scip.getNNodes())
    except Exception:  # gurobipy.GurobiError and others: a solver keeps no bound
        pass
    return np.nan, -1


def run_gurobi(
    model: L0Model,
    start: np.ndarray | None,
    time_limit: float | None,
    threads: int | None,
    seed: int | None,
    verbose: bool,
) -> HighsOutcome:
    """Solve ``model`` with gurobipy directly: column bounds stay variable bounds and only the
    rows with a finite side become constraints, so a block of 1,000 records fits the pip
    licence's 2,000 variables and 2,000 constraints (through cvxpy the bounds become rows)."""
    try:
        import gurobipy as gp
    except ImportError as exc:
        raise SolverError("gurobipy is not installed; pip install 'calibopt[mip]'") from exc
    lp = model.lp
    A = sp.csr_matrix(lp.A)
    try:
        env = gp.Env(empty=True)
        env.setParam("OutputFlag", int(bool(verbose)))
        env.start()
        g = gp.Model(env=env)
        vtype = np.where(np.asarray(lp.integer, bool), gp.GRB.INTEGER, gp.GRB.CONTINUOUS)
        x = g.addMVar(lp.n_cols, lb=lp.col_lower, ub=lp.col_upper, vtype=vtype, obj=lp.cost)
        for side, sense in ((lp.row_lower, ">"), (lp.row_upper, "<")):
            rows = np.flatnonzero(np.isfinite(side))
            if rows.size:
                g.addMConstr(A[rows], x, sense, side[rows])
        # the count objective is integral: a gap below 1 proves optimality
        g.Params.MIPGapAbs = 1.0 - 1e-6 if model.objective == "count" else 1e-9
        g.Params.MIPGap = 0.0
        g.Params.FeasibilityTol = 1e-9
        g.Params.IntFeasTol = 1e-9
        if time_limit is not None:
            g.Params.TimeLimit = float(time_limit)
        if threads is not None:
            g.Params.Threads = int(threads)
        if seed is not None:
            g.Params.Seed = int(seed)
        if start is not None:
            x.Start = start
        t0 = time.perf_counter()
        g.optimize()
        seconds = time.perf_counter() - t0
    except gp.GurobiError as exc:
        raise SolverError(
            f"Gurobi failed on the L0 MIP ({lp.n_cols} variables, {lp.n_rows} rows): {exc}"
        ) from exc
    has = g.SolCount > 0
    status = {
        gp.GRB.OPTIMAL: "Optimal",
        gp.GRB.TIME_LIMIT: "Time limit reached",
        gp.GRB.INFEASIBLE: "Infeasible",
        gp.GRB.INTERRUPTED: "Interrupted",
        gp.GRB.NODE_LIMIT: "Node limit reached",
    }.get(g.Status, f"Gurobi status {g.Status}")
    objective = float(g.ObjVal) if has else np.nan
    bound = float(g.ObjBound) if g.Status != gp.GRB.INFEASIBLE else np.nan
    return HighsOutcome(
        status=status,
        optimal=g.Status == gp.GRB.OPTIMAL,
        infeasible=g.Status == gp.GRB.INFEASIBLE,
        interrupted=g.Status == gp.GRB.INTERRUPTED,
        has_solution=has,
        x=np.asarray(x.X, dtype=np.float64) if has else None,
        objective=objective,
        bound=bound,
        gap=float(g.MIPGap) if has else np.inf,
        nodes=int(g.NodeCount),
        iterations=int(g.IterCount),
        seconds=seconds,
        extra={"gurobi_version": ".".join(map(str, gp.gurobi.version()))},
    )
