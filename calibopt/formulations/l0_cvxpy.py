"""The exact-L0 MIP through cvxpy: any cvxpy MIP solver (SCIP, Gurobi, HiGHS, ...) on the same
arrays as the direct HiGHS route, with the dual bound and node count where the solver keeps them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import SolverError
from ..solvers.cvx import assemble, cvxpy_model
from ..solvers.highs import HighsOutcome
from .l0_model import L0Model

__all__ = ["run_cvxpy"]


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
