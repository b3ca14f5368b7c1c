"""Running cvxpy models: solver names, accurate default settings, honest status mapping.

Building a model (``build()`` in each formulation) is kept separate from solving it, so a
solver study can take the same :class:`cvxpy.Problem` to every installed solver.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import SolverError
from .linear_program import LinearProgram

__all__ = [
    "DEFAULT_SETTINGS",
    "assemble",
    "cvxpy_model",
    "installed_solvers",
    "resolve_solver",
    "solve_model",
]

#: settings that make each solver meet calibration accuracy (override with solver_options)
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "CLARABEL": {
        "tol_gap_abs": 1e-11,
        "tol_gap_rel": 1e-11,
        "tol_feas": 1e-11,
        "tol_ktratio": 1e-9,
        "max_iter": 400,
    },
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
    "ECOS": {"abstol": 1e-12, "reltol": 1e-12, "feastol": 1e-12, "max_iters": 500},
    "OSQP": {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iter": 400_000, "polishing": True},
    "HIGHS": {},
}


def installed_solvers() -> list[str]:
    """Names of the cvxpy solvers installed here (looked up once per process: cvxpy's own
    lookup searches the import path each time, ~3 ms, which dominated small calibrations)."""
    return list(_installed())


@functools.cache
def _installed() -> tuple[str, ...]:
    import cvxpy as cp

    return tuple(cp.installed_solvers())


def resolve_solver(name: str) -> str:
    """Canonical cvxpy solver name for ``name`` (case-insensitive); ``"cvxpy"`` -> CLARABEL."""
    wanted = name.strip().upper()
    if wanted == "CVXPY":
        wanted = "CLARABEL"
    have = installed_solvers()
    if wanted not in have:
        raise SolverError(
            f"solver {name!r} is not an installed cvxpy solver; installed: {', '.join(have)} "
            f"(or 'newton' for the built-in dual Newton method)."
        )
    return wanted


def solve_model(
    model: Any, solver: str, solver_options: dict[str, Any] | None = None, verbose: bool = False
) -> tuple[str, float]:
    """Solve a cvxpy problem with accurate defaults; returns (cvxpy status, seconds).

    Raises
    ------
    SolverError
        When the solver errors out or the cone does not fit the solver (e.g. an exponential
        cone given to OSQP), with the solvers that would take it.
    """
    import cvxpy as cp

    name = resolve_solver(solver)
    opts = dict(DEFAULT_SETTINGS.get(name, {}))
    opts.update(solver_options or {})
    t0 = time.perf_counter()
    try:
        model.solve(solver=name, verbose=verbose, **opts)
    except (cp.error.SolverError, cp.error.DCPError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "cannot solve" in msg.lower() or "cone" in msg.lower():
            raise SolverError(
                f"solver {name} cannot take this model ({msg}); exponential-cone models "
                f"(raking, logit) need CLARABEL, SCS or ECOS; quadratic ones (linear, "
                f"truncated) also take OSQP and HIGHS."
            ) from exc
        raise SolverError(f"cvxpy solver {name} failed: {msg}") from exc
    return str(model.status), time.perf_counter() - t0


def cvxpy_model(lp: LinearProgram, *, parametric_cost: bool = False) -> tuple[Any, Any, Any, Any]:
    """``lp`` as a cvxpy problem, so any installed cvxpy (MI)LP solver can take it.

    Parameters
    ----------
    parametric_cost
        Make the cost a non-negative ``cvxpy.Parameter`` (set ``.value`` and re-solve).

    Returns
    -------
    problem : cvxpy.Problem
    x_cont, x_int : cvxpy.Variable
        Continuous and integer parts (the integer part may be None); columns keep their
        order through :func:`assemble`: ``x[~integer] = x_cont``, ``x[integer] = x_int``.
    cost : cvxpy.Parameter or None
        The cost parameter when ``parametric_cost``.
    """
    import cvxpy as cp

    n = lp.n_cols
    integer = np.zeros(n, bool) if lp.integer is None else np.asarray(lp.integer, bool)
    ci = np.flatnonzero(~integer)
    ii = np.flatnonzero(integer)
    A = sp.csc_matrix(lp.A)
    xc = cp.Variable(ci.size, name="x")
    xi = cp.Variable(ii.size, integer=True, name="n") if ii.size else None
    c = cp.Parameter(n, nonneg=True, value=lp.cost) if parametric_cost else lp.cost
    expr = A[:, ci] @ xc
    obj = c[ci] @ xc
    if xi is not None:
        expr = expr + A[:, ii] @ xi
        obj = obj + c[ii] @ xi
    cons = []
    for idx, var in ((ci, xc), (ii, xi)):
        if var is None:
            continue
        lo, hi = lp.col_lower[idx], lp.col_upper[idx]
        if np.isfinite(lo).any():
            k = np.flatnonzero(np.isfinite(lo))
            cons.append(var[k] >= lo[k])
        if np.isfinite(hi).any():
            k = np.flatnonzero(np.isfinite(hi))
            cons.append(var[k] <= hi[k])
    fl = np.isfinite(lp.row_lower)
    fu = np.isfinite(lp.row_upper)
    eq = fl & fu & (lp.row_lower == lp.row_upper)
    for mask, kind in ((eq, "eq"), (fl & ~eq, "ge"), (fu & ~eq, "le")):
        if mask.any():
            k = np.flatnonzero(mask)
            if kind == "eq":
                cons.append(expr[k] == lp.row_lower[k])
            elif kind == "ge":
                cons.append(expr[k] >= lp.row_lower[k])
            else:
                cons.append(expr[k] <= lp.row_upper[k])
    return cp.Problem(cp.Minimize(obj), cons), xc, xi, (c if parametric_cost else None)


def assemble(lp: LinearProgram, x_cont: Any, x_int: Any) -> np.ndarray | None:
    """Column values in model order from the cvxpy variables (None without a solution)."""
    if x_cont.value is None:
        return None
    integer = np.zeros(lp.n_cols, bool) if lp.integer is None else np.asarray(lp.integer, bool)
    x = np.zeros(lp.n_cols)
    x[np.flatnonzero(~integer)] = x_cont.value
    if x_int is not None:
        if x_int.value is None:
            return None
        x[np.flatnonzero(integer)] = x_int.value
    return x
