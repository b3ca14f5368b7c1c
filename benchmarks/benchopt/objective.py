"""benchopt objective: calibrate weights so that X @ w hits the targets.

One run per (dataset, solver): ``value`` is the max relative target error checked from the
weights (calibopt's shared check), with the mean error, targets outside their band, bound
violations, the chi-square distance to the design weights and the non-zero weights.
"""

import numpy as np
from benchopt import BaseObjective


class Objective(BaseObjective):
    name = "calibration"
    min_benchopt_version = "1.5"
    requirements = ["pip:calibopt"]
    sampling_strategy = "run_once"
    parameters = {}

    def set_data(self, problem, provenance):
        self.problem = problem
        self.provenance = provenance

    def get_objective(self):
        return dict(problem=self.problem)

    def evaluate_result(self, weights, status):
        from calibopt.fit import check_weights

        p = self.problem
        w = np.asarray(weights, dtype=float)
        if not np.isfinite(w).all():
            return dict(
                value=np.inf,
                mean_rel_error=np.inf,
                misses=p.n_targets,
                bound_violations=p.n_units,
                distance=np.inf,
                nnz=0,
            )
        check = check_weights(p, w)
        d = p.initial_weights
        pos = d > 0
        g = w[pos] / d[pos]
        rel = np.abs(check.rel_errors)
        return dict(
            value=float(rel.max()),
            mean_rel_error=float(rel.mean()),
            misses=int((~check.target_met).sum()),
            bound_violations=int(check.below.size + check.above.size),
            distance=float(0.5 * np.sum(d[pos] * (g - 1.0) ** 2)),
            nnz=int(np.count_nonzero(w)),
        )

    def get_one_result(self):
        return dict(weights=self.problem.initial_weights, status="stopped")
