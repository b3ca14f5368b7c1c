"""Solver and method comparison studies: many (method, solver) pairs on one problem."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import status as st
from .calibrate import calibrate
from .errors import CalibrationError, InfeasibleError, InvalidProblemError
from .formulations import get_method
from .problem import CalibrationProblem
from .result import CalibrationResult

__all__ = ["compare"]


def compare(
    problem: CalibrationProblem,
    methods: Sequence[str] = ("linear", "raking"),
    solvers: Sequence[str | None] = (None,),
    options: dict[str, dict[str, Any]] | None = None,
    keep_results: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[tuple[str, str], CalibrationResult]]:
    """Run every (method, solver) pair that fits and tabulate the outcomes.

    Parameters
    ----------
    problem
        The problem every pair solves.
    methods
        Method names (see :func:`calibopt.methods`).
    solvers
        Solver names; ``None`` is each method's default. A pair whose method does not take the
        solver (e.g. raking with OSQP) is listed with status ``"not_applicable"``; a pair that
        fails is listed with its status (``"infeasible"``, ``"invalid"``, ``"failed"``, see
        :mod:`calibopt.status`) and error, and the study goes on.
    options
        Per-method options, e.g. ``{"l0-mip": {"time_limit": 30}}``.
    keep_results
        Also return the :class:`CalibrationResult` of each pair, keyed by (method, solver).

    Returns
    -------
    DataFrame
        One row per pair: ``method``, ``solver``, ``status``, ``seconds``, ``iterations``,
        ``objective``, ``max_rel_error``, ``mean_rel_error``, ``nnz``, ``g_min``, ``g_max``,
        ``distance_to_first`` (max |w - w_ref| / max |w_ref| against the first successful
        run of the same method) and ``message``.
    """
    options = options or {}
    rows = []
    results: dict[tuple[str, str], CalibrationResult] = {}
    reference: dict[str, np.ndarray] = {}
    for method in methods:
        spec = get_method(method)
        for solver in solvers:
            label = solver or spec.solvers[0] if spec.solvers else (solver or "default")
            if solver is not None and spec.solvers and not _takes(spec.solvers, solver):
                rows.append(
                    dict(
                        method=spec.name,
                        solver=label,
                        status=st.NOT_APPLICABLE,
                        message=f"{spec.name} takes {', '.join(spec.solvers)}",
                    )
                )
                continue
            t0 = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = calibrate(
                        problem, method=spec.name, solver=solver, **options.get(spec.name, {})
                    )
            except CalibrationError as exc:
                rows.append(
                    dict(
                        method=spec.name,
                        solver=label,
                        status=_error_status(exc),
                        seconds=time.perf_counter() - t0,
                        message=str(exc)[:200],
                    )
                )
                continue
            ref = reference.setdefault(spec.name, r.weights)
            scale = max(float(np.abs(ref).max()), 1e-300)
            rows.append(
                dict(
                    method=spec.name,
                    solver=r.solver,
                    status=r.status,
                    seconds=r.wall_time,
                    iterations=r.iterations,
                    objective=r.objective,
                    max_rel_error=r.max_rel_error,
                    mean_rel_error=r.mean_rel_error,
                    nnz=r.nnz,
                    g_min=float(r.g.min()),
                    g_max=float(r.g.max()),
                    distance_to_first=float(np.abs(r.weights - ref).max() / scale),
                    message=r.message[:200],
                )
            )
            results[(spec.name, r.solver)] = r
    columns = [
        "method",
        "solver",
        "status",
        "seconds",
        "iterations",
        "objective",
        "max_rel_error",
        "mean_rel_error",
        "nnz",
        "g_min",
        "g_max",
        "distance_to_first",
        "message",
    ]
    table = pd.DataFrame(rows).reindex(columns=columns)
    return (table, results) if keep_results else table


def _error_status(exc: CalibrationError) -> str:
    """The study status of a run that raised."""
    if isinstance(exc, InfeasibleError):
        return st.INFEASIBLE
    if isinstance(exc, InvalidProblemError):
        return st.INVALID
    return st.FAILED


def _takes(solvers: Sequence[str], solver: str) -> bool:
    wanted = solver.strip().upper()
    return any(s.upper() == wanted for s in solvers) or (
        "CVXPY" in (s.upper() for s in solvers) and wanted not in ("NEWTON",)
    )
