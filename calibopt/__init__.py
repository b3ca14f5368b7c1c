"""calibopt: calibrate microdata weights to known totals.

Every method is an explicit optimisation model.

>>> import calibopt as co
>>> problem = co.CalibrationProblem(X, targets, initial_weights=d, ratio_bounds=(0.5, 2))
>>> result = co.calibrate(problem, method="raking")

``import calibopt`` loads only the spine (numpy and scipy.sparse); the methods, pandas, cvxpy,
highspy, numba and torch load when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import status
from .calibrate import calibrate
from .errors import CalibrationError, InfeasibleError, InvalidProblemError, SolverError
from .problem import CalibrationProblem
from .result import CalibrationResult
from .status import (
    INFEASIBLE,
    OPTIMAL,
    STOPPED,
    TRADE_OFF,
    WITHIN_TOLERANCE,
)

__version__ = "0.1.0"

_LAZY = {
    "Distance": ("calibopt.solvers.distances", "Distance"),
    "check_weights": ("calibopt.fit", "check_weights"),
    "compare": ("calibopt.studies", "compare"),
    "method_table": ("calibopt.formulations", "method_table"),
    "methods": ("calibopt.formulations", "methods"),
    "problem_from_margins": ("calibopt.margins", "problem_from_margins"),
}

__all__ = [
    "INFEASIBLE",
    "OPTIMAL",
    "STOPPED",
    "TRADE_OFF",
    "WITHIN_TOLERANCE",
    "CalibrationError",
    "CalibrationProblem",
    "CalibrationResult",
    "Distance",
    "InfeasibleError",
    "InvalidProblemError",
    "SolverError",
    "__version__",
    "calibrate",
    "check_weights",
    "compare",
    "method_table",
    "methods",
    "problem_from_margins",
    "status",
]


def __getattr__(name: str) -> Any:
    """Load the heavier public names on first use (PEP 562)."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'calibopt' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
