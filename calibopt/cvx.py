"""Running cvxpy models: solver names, accurate default settings, honest status mapping.

Building a model (``build()`` in each formulation) is kept separate from solving it, so a
solver study can take the same :class:`cvxpy.Problem` to every installed solver.
"""

from __future__ import annotations

import time
from typing import Any

from .errors import SolverError

__all__ = ["DEFAULT_SETTINGS", "installed_solvers", "resolve_solver", "solve_model"]

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
    """Names of the cvxpy solvers installed here."""
    import cvxpy as cp

    return list(cp.installed_solvers())


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
