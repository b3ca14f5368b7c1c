"""The single entry point: ``calibrate(problem, method=..., solver=..., **options)``."""

from __future__ import annotations

import time
from typing import Any

from .errors import InvalidProblemError
from .formulations import get_method
from .problem import CalibrationProblem
from .result import CalibrationResult

__all__ = ["calibrate"]


def calibrate(
    problem: CalibrationProblem,
    method: str = "raking",
    solver: str | None = None,
    **options: Any,
) -> CalibrationResult:
    """Calibrate the weights of ``problem`` with a registered method.

    Parameters
    ----------
    problem
        A :class:`~calibopt.CalibrationProblem`.
    method
        A registered method name or alias (see :func:`calibopt.methods`): ``"linear"``
        (``"chi2"``), ``"raking"`` (``"entropy"``), ``"logit"``, ``"truncated"``, and the
        sparse and gradient methods.
    solver
        ``"newton"`` (the default for the distance methods: Newton on the dual) or any
        installed cvxpy solver name (``"CLARABEL"``, ``"SCS"``, ``"OSQP"``, ``"ECOS"``,
        ``"HIGHS"`` where the cone fits). Methods with one algorithm ignore None.
    **options
        Method options (e.g. ``epsilon``, ``max_iter``, ``penalty``, ``time_limit``); a
        misspelt option raises :class:`~calibopt.InvalidProblemError` listing the valid ones.

    Returns
    -------
    CalibrationResult
    """
    if not isinstance(problem, CalibrationProblem):
        raise InvalidProblemError(
            f"`problem` must be a calibopt.CalibrationProblem, got {type(problem).__name__}; "
            f"build one with CalibrationProblem(X, targets, ...) or problem_from_margins(...)."
        )
    spec = get_method(method)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise InvalidProblemError(
            f"method {spec.name!r} got unknown option(s) {unknown}; its options are: "
            f"{', '.join(o for o in spec.options if o != 'solver') or 'none'}."
        )
    t0 = time.perf_counter()
    result = spec.solve(problem, solver=solver, **options)
    result.wall_time = time.perf_counter() - t0
    return result
