"""A thin layer over HiGHS (highspy): a :class:`LinearProgram` in, outcomes as plain data.

Building the model from CSC arrays in one ``passModel`` call is what makes the direct route
faster than going through cvxpy (see ``benchmarks/bench_sparse.py``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidProblemError, SolverError
from .linear_program import LinearProgram

__all__ = ["HighsOutcome", "highs_model", "new_highs", "run_highs", "solve_highs"]


def _highspy() -> Any:
    try:
        import highspy
    except ImportError as exc:  # pragma: no cover - highspy is a core dependency
        raise SolverError("highspy is not installed; pip install highspy") from exc
    return highspy


def new_highs() -> Any:
    """A ``highspy.Highs`` with its output off, created without printing HiGHS's banner.

    HiGHS prints its copyright banner on stdout when the object is constructed, before any
    option can be set; the constructor runs with file descriptor 1 pointed at the null device
    (in the main thread only: other threads may be writing).
    """
    highspy = _highspy()
    if threading.current_thread() is not threading.main_thread():
        h = highspy.Highs()
    else:
        import os
        import sys

        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def highs_model(lp: LinearProgram, *, options: dict[str, Any] | None = None) -> Any:
    """A ``highspy.Highs`` holding ``lp``, passed as CSC arrays in one ``passModel`` call.

    Parameters
    ----------
    lp
        The program (its ``integer`` mask makes it a MIP).
    options
        HiGHS options (``time_limit``, ``mip_rel_gap``, ``threads``, ...). Output is off
        unless ``output_flag`` is given.
    """
    highspy = _highspy()
    A = sp.csc_matrix(lp.A, dtype=np.float64)
    A.sort_indices()
    n = A.shape[1]
    inf = highspy.kHighsInf
    model = highspy.HighsLp()
    model.num_col_ = n
    model.num_row_ = A.shape[0]
    model.col_cost_ = np.asarray(lp.cost, dtype=np.float64)
    model.col_lower_ = np.where(np.isneginf(lp.col_lower), -inf, lp.col_lower)
    model.col_upper_ = np.where(np.isposinf(lp.col_upper), inf, lp.col_upper)
    model.row_lower_ = np.where(np.isneginf(lp.row_lower), -inf, lp.row_lower)
    model.row_upper_ = np.where(np.isposinf(lp.row_upper), inf, lp.row_upper)
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.num_col_ = n
    model.a_matrix_.num_row_ = A.shape[0]
    model.a_matrix_.start_ = A.indptr.astype(np.int32)
    model.a_matrix_.index_ = A.indices.astype(np.int32)
    model.a_matrix_.value_ = A.data
    if lp.is_mip:
        kint = highspy.HighsVarType.kInteger
        kcont = highspy.HighsVarType.kContinuous
        model.integrality_ = [
            kint if flag else kcont for flag in np.asarray(lp.integer, dtype=bool)
        ]
    h = new_highs()
    for key, value in (options or {}).items():
        if h.setOptionValue(key, value) == highspy.HighsStatus.kError:
            raise InvalidProblemError(
                f"HiGHS rejects the option {key}={value!r} (unknown name, wrong type or out of "
                f"range); see the option list of the HiGHS documentation."
            )
    status = h.passModel(model)
    if status == highspy.HighsStatus.kError:
        raise SolverError("HiGHS rejected the model (passModel returned an error).")
    return h


@dataclass
class HighsOutcome:
    """What a HiGHS solve returned.

    Attributes
    ----------
    status : str
        HiGHS's model status in words (``"Optimal"``, ``"Time limit reached"``, ...).
    optimal, infeasible, interrupted, has_solution : bool
    x : ndarray or None
        Column values (None without a solution).
    objective, bound, gap : float
        Primal objective, best dual bound (MIP) and relative gap (MIP; 0 for an LP optimum).
    nodes, iterations : int
    seconds : float
    failed : bool
        HiGHS refused to run (an error before any solve, e.g. a thread count its scheduler
        cannot take).
    """

    status: str
    optimal: bool
    infeasible: bool
    interrupted: bool
    has_solution: bool
    x: np.ndarray | None
    objective: float
    bound: float
    gap: float
    nodes: int
    iterations: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


def solve_highs(h: Any, *, start: np.ndarray | None = None) -> HighsOutcome:
    """Solve a model from :func:`highs_model` (Ctrl-C stops it and keeps the best solution)."""
    highspy = _highspy()
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = np.asarray(start, dtype=np.float64)
        sol.value_valid = True
        h.setSolution(sol)
    t0 = time.perf_counter()
    run_status = run_highs(h)
    seconds = time.perf_counter() - t0
    MS = highspy.HighsModelStatus
    ms = h.getModelStatus()
    info = h.getInfo()
    status_text = h.modelStatusToString(ms)
    feasible = int(highspy.SolutionStatus.kSolutionStatusFeasible)
    sol = h.getSolution()
    optimal = ms == MS.kOptimal
    # HiGHS may call an LP optimal whose unscaled residuals exceed its tolerance by a hair
    # (primal status "infeasible" at ~1e-7); such a point is kept: callers check the fit
    has_solution = bool(sol.value_valid) and (
        int(info.primal_solution_status) == feasible
        or (optimal and info.max_primal_infeasibility <= 1e-6)
    )
    x = np.asarray(sol.col_value, dtype=np.float64) if has_solution else None
    is_mip = info.mip_node_count >= 0 and h.getLp().integrality_ != []
    gap = float(info.mip_gap) if is_mip else (0.0 if optimal else np.inf)
    bound = float(info.mip_dual_bound) if is_mip else float(info.objective_function_value)
    return HighsOutcome(
        status=status_text,
        optimal=optimal,
        infeasible=ms in (MS.kInfeasible,),
        interrupted=ms == MS.kInterrupt,
        has_solution=has_solution,
        x=x,
        objective=float(info.objective_function_value) if has_solution else np.nan,
        bound=bound,
        gap=gap if has_solution else np.inf,
        nodes=int(max(info.mip_node_count, 0)),
        iterations=int(max(info.simplex_iteration_count, 0)),
        seconds=seconds,
        failed=_refused(h, run_status),
    )


def run_highs(h: Any, *, interruptible: bool = True) -> Any:
    """Run a ``highspy.Highs`` model; its run status (None when Ctrl-C stopped it).

    In the main thread, and ``interruptible``, highspy's ``solve`` runs it so that Ctrl-C
    cancels it and keeps the incumbent (highspy implements this with locks shared by all Highs
    objects, so worker threads -- dask, thread pools -- use the plain blocking ``run``).

    HiGHS's task scheduler belongs to the calling thread and keeps the thread count of its
    first run there, refusing a later run that asks for another (``threads`` option). Such a
    refused run restarts this thread's scheduler (no other run can be using it) and runs again.
    """

    def once():
        if interruptible and threading.current_thread() is threading.main_thread():
            h.HandleKeyboardInterrupt = True
            try:
                return h.solve()
            except KeyboardInterrupt:  # pragma: no cover - depends on timing
                return None
        return h.run()

    status = once()
    if _refused(h, status) and int(h.getOptionValue("threads")[1]) > 0:
        _highspy().Highs.resetGlobalScheduler(True)
        status = once()
    return status


def _refused(h: Any, run_status: Any) -> bool:
    """HiGHS refused to run (an error before any solve)."""
    highspy = _highspy()
    return (
        run_status == highspy.HighsStatus.kError
        and h.getModelStatus() == highspy.HighsModelStatus.kNotset
    )
