"""calibopt: calibrate microdata weights to known totals.

Every method is an explicit optimisation model.

>>> import calibopt as co
>>> problem = co.CalibrationProblem(X, targets, initial_weights=d, ratio_bounds=(0.5, 2))
>>> result = co.calibrate(problem, method="raking")
"""

from .calibrate import calibrate
from .compare import compare
from .errors import CalibrationError, InfeasibleError, InvalidProblemError, SolverError
from .formulations import method_table, methods
from .margins import problem_from_margins
from .problem import CalibrationProblem
from .result import CalibrationResult

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "CalibrationProblem",
    "CalibrationResult",
    "InfeasibleError",
    "InvalidProblemError",
    "SolverError",
    "__version__",
    "calibrate",
    "compare",
    "method_table",
    "methods",
    "problem_from_margins",
]
