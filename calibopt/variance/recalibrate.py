"""Re-calibrate every replicate of a :class:`ReplicateDesign` on an executor."""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from ..errors import CalibrationError
from ..problem import CalibrationProblem
from ..status import SUCCESS_STATUSES
from .calibration import check_units

__all__ = ["recalibrate", "replicate_problem"]


def replicate_problem(
    problem: CalibrationProblem, d: np.ndarray
) -> tuple[CalibrationProblem, np.ndarray]:
    """``problem`` restricted to the units with ``d > 0``, with ``d`` as initial weights."""
    keep = d > 0
    cols = np.flatnonzero(keep)
    # slicing columns of the cached CSC is a gather of whole columns; the distance methods
    # then use it as it is (CSR is made once, for the fit check)
    X = problem.csc if cols.size == problem.n_units else problem.csc[:, cols]
    sub = CalibrationProblem(
        X,
        problem.targets,
        initial_weights=d[cols],
        bounds=(problem.lower[cols], problem.upper[cols]),
        ratio_bounds=(problem.ratio_lower[cols], problem.ratio_upper[cols])
        if problem.has_ratio_bounds
        else None,
        tolerance=problem.tolerance,
        target_names=problem.target_names,
        groups=problem.groups,
        unit_ids=None if problem.unit_ids is None else problem.unit_ids[cols],
    )
    return sub, keep


def _limit_threads(threads: int | None) -> None:
    """Give a worker process its share of the cores: the compiled kernels run ``threads``
    threads (workers x threads = cores; more only makes them wait on each other)."""
    if threads is None:
        return
    try:
        import numba
    except ImportError:  # the NumPy kernels: BLAS threads are not ours to set
        return
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _calibrate_chunk(task: dict[str, Any]) -> dict[str, Any]:
    """Worker: calibrate the replicates of one chunk (module level, so processes can run it)."""
    from ..calibrate import calibrate

    _limit_threads(task.get("threads"))
    problem = task["problem"]
    n = problem.n_units
    cols = task["columns"]
    out = np.zeros((n, cols.shape[1]))
    status, message, nnz = [], [], []
    for j in range(cols.shape[1]):
        d = task["weights"] * cols[task["index"], j] if task["index"] is not None else cols[:, j]
        sub, keep = replicate_problem(problem, d)
        res = calibrate(sub, task["method"], task["solver"], **task["options"])
        out[keep, j] = res.weights
        status.append(res.status)
        message.append(res.message)
        nnz.append(res.nnz)
    return {"weights": out, "status": status, "message": message, "nnz": nnz}


def _worker_threads(executor: Any) -> int | None:
    """Kernel threads per worker for a local process pool of ``executor`` workers (None:
    leave them, in process or on a cluster whose machines we do not know)."""
    if isinstance(executor, bool) or not isinstance(executor, int):
        return None
    return max(1, (os.cpu_count() or 1) // max(executor, 1))


def _chunk_size(executor: Any, n_rep: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise CalibrationError(f"`chunk_size` must be a positive integer, got {chunk_size!r}.")
        return int(chunk_size)
    if executor is None or executor in ("in-process", "serial"):
        return 1
    workers = executor if isinstance(executor, int) else (os.cpu_count() or 1)
    return max(1, math.ceil(n_rep / (2 * workers)))


def recalibrate(
    reps: Any,
    problem: CalibrationProblem,
    method: Any,
    solver: str | None,
    *,
    executor: Any,
    progress: bool | None,
    chunk_size: int | None,
    options: dict[str, Any],
) -> Any:
    """See :meth:`ReplicateDesign.calibrate`."""
    from ..calibrate import calibrate
    from ..decomposition.executors import run_tasks
    from .replicate_design import ReplicateDesign

    if reps.design is not None:
        check_units(reps.design, problem)
    elif problem.n_units != reps.n or not np.allclose(
        problem.initial_weights, reps.weights, rtol=1e-10, atol=0.0
    ):
        raise CalibrationError(
            "the problem's units and initial weights must be this design's rows and "
            "full-sample weights."
        )
    main = calibrate(problem, method, solver, **options)
    size = _chunk_size(executor, reps.n_replicates, chunk_size)
    compressed = reps.factors is not None
    source = reps.factors if compressed else reps.replicate_weights
    tasks = []
    for start in range(0, reps.n_replicates, size):
        stop = min(start + size, reps.n_replicates)
        tasks.append(
            {
                "problem": problem,
                "method": method,
                "solver": solver,
                "options": options,
                "weights": reps.weights,
                "index": reps.index if compressed else None,
                "columns": source[:, start:stop],
                "threads": _worker_threads(executor),
            }
        )
    run = run_tasks(
        _calibrate_chunk,
        tasks,
        executor,
        progress=progress,
        desc=f"{reps.type} replicates",
        unit="chunk" if size > 1 else "replicate",
        postfix=lambda r: r["status"][-1],
    )
    done = [r for r in run.results if r is not None]
    if run.interrupted and (reps.type != "bootstrap" or len(done) < 1):
        raise CalibrationError(
            f"interrupted after {len(done)} of {len(tasks)} tasks; {reps.type} replicates are "
            f"only valid all together (a bootstrap keeps the replicates that finished)."
        )
    W = np.hstack([r["weights"] for r in done])
    status = [s for r in done for s in r["status"]]
    messages = [m for r in done for m in r["message"]]
    scale, rscales = reps.scale, reps.rscales[: W.shape[1]]
    if W.shape[1] < reps.n_replicates:  # interrupted bootstrap
        scale = 1.0 / (W.shape[1] - 1.0)
        warnings.warn(
            f"interrupted: {W.shape[1]} of {reps.n_replicates} bootstrap replicates kept",
            stacklevel=3,
        )
    failed = [i for i, s in enumerate(status) if main.success and s not in SUCCESS_STATUSES]
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(status)} replicate calibration(s) did not meet their targets "
            f"(first: replicate {failed[0] + 1}, {status[failed[0]]}: {messages[failed[0]]}); "
            f"their weights are used as they are, as R does.",
            stacklevel=3,
        )
    info = {
        "calibration": main,
        "method": method,
        "solver": solver,
        "options": dict(options),
        "replicate_status": status,
        "replicate_nnz": [k for r in done for k in r["nnz"]],
        "executor": run.executor,
    }
    return ReplicateDesign(
        main.weights,
        W,
        scale=scale,
        rscales=rscales,
        type=reps.type,
        mse=reps.mse,
        data=reps.data,
        design=reps.design,
        info=info,
    )
