"""The single entry point: ``calibrate(problem, method=..., solver=..., **options)``."""

from __future__ import annotations

from typing import Any

from .problem import CalibrationProblem
from .result import CalibrationResult

__all__ = ["calibrate"]


def calibrate(
    problem: CalibrationProblem,
    method: Any = "raking",
    solver: str | None = None,
    *,
    blocks: Any = None,
    executor: Any = None,
    share_method: str = "reweighted-l1",
    **options: Any,
) -> CalibrationResult:
    """Calibrate the weights of ``problem`` with a registered method.

    Parameters
    ----------
    problem
        A :class:`~calibopt.CalibrationProblem`.
    method
        A registered method name or alias (see :func:`calibopt.methods`): ``"linear"``
        (``"chi2"``), ``"raking"`` (``"entropy"``), ``"logit"``, ``"truncated"``, the sparse
        and gradient methods; or a :class:`~calibopt.Distance` (a custom distance, as R's
        ``calibrate(calfun=)``).
    solver
        ``"newton"`` (the default for the distance methods: Newton on the dual) or any
        installed cvxpy solver name (``"CLARABEL"``, ``"SCS"``, ``"OSQP"``, ``"ECOS"``,
        ``"HIGHS"`` where the cone fits). Methods with one algorithm ignore None.
    blocks
        One label per unit (e.g. its geography): solve block by block
        (:func:`calibopt.decomposition.blocks.solve_blocks`); spanning targets are divided
        into block shares by one continuous solve (``share_method``).
    executor
        Where blocks run: None (in process), ``"process"`` / an int (process pool), a
        ``dask.distributed.Client``, a ``concurrent.futures`` executor.
    share_method
        The continuous solve that divides spanning targets into block shares:
        ``"reweighted-l1"`` (default) or a distance method such as ``"linear"``.
    **options
        Method options (e.g. ``epsilon``, ``max_iter``, ``penalty``, ``time_limit``); a
        misspelt option raises :class:`~calibopt.InvalidProblemError` listing the valid ones.
        With ``blocks``, ``progress`` shows a bar over blocks.

    Returns
    -------
    CalibrationResult
        Sparse methods report ``info["blocks"]`` (one row per block; one row without
        ``blocks``).
    """
    import time

    from .errors import InvalidProblemError
    from .formulations import get_method, run_method
    from .solvers.distances import Distance

    if isinstance(method, Distance):
        method, options = "distance", {**options, "distance": method}
    if blocks is None:
        if executor is not None:
            raise InvalidProblemError("`executor` needs `blocks` (a block label per unit).")
        t0 = time.perf_counter()
        result = run_method(problem, method, solver, **options)
        if get_method(method).sparse and "blocks" not in result.info:
            result.info["blocks"] = _one_block(problem, result)
        result.wall_time = time.perf_counter() - t0
        return result
    from .decomposition.blocks import solve_blocks

    if not isinstance(problem, CalibrationProblem):
        return run_method(problem, method, solver, **options)  # raises the typed error
    if solver is not None:
        options["solver"] = solver
    progress = options.pop("progress", None)
    t0 = time.perf_counter()
    result = solve_blocks(
        problem,
        blocks,
        method=method,
        options=options,
        executor=executor,
        share_method=share_method,
        progress=progress,
    )
    result.wall_time = time.perf_counter() - t0
    return result


def _one_block(problem: CalibrationProblem, result: CalibrationResult) -> Any:
    """The ``info["blocks"]`` table of an undivided run (one row)."""
    import numpy as np
    import pandas as pd

    from .decomposition.blocks import block_row, outcome_of

    row = block_row(
        "(all)",
        problem.n_units,
        problem.n_targets,
        0,
        outcome_of(0, result, result.wall_time),
        result.nnz,
    )
    row["mip_gap"] = float(result.info.get("mip_gap", np.nan))
    return pd.DataFrame([row])
