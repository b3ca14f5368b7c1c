"""benchopt solver: any calibopt method with any solver it takes.

``-s "calibopt[method=l0-mip,solver=highs]"``; a pair the method does not take is skipped
(benchopt's ``skip``). A run that raises (an infeasible problem, a failed solver) returns
NaN weights, which the objective scores as ``inf``. benchopt runs solvers in its own process
without calibopt's isolation: for studies with hard time and memory limits use
``calibopt compare``.
"""

import numpy as np
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "calibopt"
    requirements = ["pip:calibopt"]
    sampling_strategy = "run_once"
    parameters = {
        "method": ["linear", "raking", "logit", "truncated", "ipf", "reweighted-l1"],
        "solver": ["default"],
    }
    test_config = {"method": "linear"}

    def skip(self, problem):
        from calibopt.formulations import get_method
        from calibopt.studies.solvers import match_solver, solver_installed

        spec = get_method(self.method)
        if self.solver != "default":
            own = match_solver(spec, self.solver)
            if own is None:
                return True, f"{spec.name} takes {', '.join(spec.solvers)}"
            if not solver_installed(own):
                return True, f"solver {own} is not installed"
        return False, None

    def set_objective(self, problem):
        self.problem = problem

    def warm_up(self):
        self.run_once()

    def run(self, _):
        import warnings

        import calibopt as co

        solver = None if self.solver == "default" else self.solver
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = co.calibrate(self.problem, method=self.method, solver=solver)
            self.weights, self.status = r.weights, r.status
        except co.CalibrationError as exc:
            self.weights = np.full(self.problem.n_units, np.nan)
            self.status = type(exc).__name__

    def get_result(self):
        return dict(weights=self.weights, status=self.status)
