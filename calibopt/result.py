"""The result every calibration method returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .problem import CalibrationProblem

__all__ = [
    "STATUS_INFEASIBLE",
    "STATUS_OPTIMAL",
    "STATUS_STOPPED",
    "STATUS_WITHIN_TOLERANCE",
    "CalibrationResult",
    "target_diagnostics",
]

STATUS_OPTIMAL = "optimal"
"""The method's program was solved to optimality (and every target is within tolerance)."""
STATUS_WITHIN_TOLERANCE = "within_tolerance"
"""Every target is within its tolerance, but optimality of the objective is not proven."""
STATUS_STOPPED = "stopped"
"""Stopped early (iteration cap, time limit, interrupt): the weights are the best found."""
STATUS_INFEASIBLE = "infeasible"
"""No weights meet the constraints (methods normally raise InfeasibleError instead)."""

ACCURACY = 1e-8
"""Numerical slack of "within tolerance": ``|error| <= tol |b| + ACCURACY max(|b|, 1)``."""


def relative_errors(estimates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(estimate - target) / |target|``, with the absolute error where the target is 0."""
    denom = np.where(targets != 0, np.abs(targets), 1.0)
    return (estimates - targets) / denom


def target_diagnostics(
    problem: CalibrationProblem, weights: np.ndarray, accuracy: float = ACCURACY
) -> pd.DataFrame:
    """Per-target fit of ``weights``, computed from the weights (never from a solver's report).

    Returns
    -------
    DataFrame
        One row per target: ``target`` (position), ``name``, ``group``, ``value`` (target
        total), ``estimate`` (``X @ w``), ``error`` (estimate - value), ``rel_error``
        (error / |value|, absolute error where the value is 0), ``tolerance`` and
        ``within_tolerance`` (``|error| <= tolerance |value| + accuracy max(|value|, 1)``).
    """
    est = problem.estimates(weights)
    b = problem.targets
    err = est - b
    rel = relative_errors(est, b)
    slack = problem.tolerance * np.abs(b) + accuracy * np.maximum(np.abs(b), 1.0)
    return pd.DataFrame(
        {
            "target": np.arange(problem.n_targets),
            "name": problem.target_names,
            "group": problem.groups,
            "value": b,
            "estimate": est,
            "error": err,
            "rel_error": rel,
            "tolerance": problem.tolerance,
            "within_tolerance": np.abs(err) <= slack,
        }
    )


@dataclass
class CalibrationResult:
    """What a calibration returns (like SciPy's ``OptimizeResult``).

    Attributes
    ----------
    weights : ndarray
        Calibrated weights ``w``, one per unit.
    g : ndarray
        ``w / d`` (1 where ``d = 0``).
    status : str
        ``"optimal"``, ``"within_tolerance"``, ``"stopped"`` or ``"infeasible"``.
    message : str
        What happened, in words.
    method, solver : str
        The method name and the solver that ran it.
    iterations : int
        Iterations of the method's main loop (Newton steps, IPF sweeps, epochs, ...).
    wall_time : float
        Seconds from call to return.
    objective : float
        The method's objective at ``weights`` (e.g. the distance, or the count of non-zeros).
    diagnostics : DataFrame
        Per-target fit, see :func:`target_diagnostics`.
    multipliers : ndarray or None
        Lagrange multipliers of the target constraints where the method has them.
    dropped_targets : list of str
        Targets dropped as linearly redundant (rank-deficient X), if any.
    timings : dict
        Seconds spent per phase.
    info : dict
        Method-specific extras (MIP gap, per-block reports, loss history, ...).
    """

    weights: np.ndarray
    g: np.ndarray
    status: str
    message: str
    method: str
    solver: str
    iterations: int
    wall_time: float
    objective: float
    diagnostics: pd.DataFrame
    multipliers: np.ndarray | None = None
    dropped_targets: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_weights(
        cls,
        problem: CalibrationProblem,
        weights: np.ndarray,
        *,
        method: str,
        solver: str,
        status: str | None = None,
        message: str = "",
        iterations: int = 0,
        wall_time: float = 0.0,
        objective: float = float("nan"),
        multipliers: np.ndarray | None = None,
        dropped_targets: list[str] | None = None,
        timings: dict[str, float] | None = None,
        info: dict[str, Any] | None = None,
        soft_targets: bool = False,
    ) -> CalibrationResult:
        """Build a result, computing ``g`` and the diagnostics from the weights.

        If ``status`` is None it is ``"within_tolerance"`` when every target is within its
        tolerance and ``"stopped"`` otherwise. A claimed ``"optimal"`` is downgraded to
        ``"stopped"`` if the weights miss a target by more than its tolerance allows, unless
        ``soft_targets`` (penalty or loss methods, whose optimum trades targets off).
        """
        w = np.asarray(weights, dtype=np.float64)
        d = problem.initial_weights
        g = np.ones_like(w)
        pos = d > 0
        g[pos] = w[pos] / d[pos]
        diag = target_diagnostics(problem, w)
        ok = bool(diag["within_tolerance"].all())
        if status is None:
            status = STATUS_WITHIN_TOLERANCE if ok else STATUS_STOPPED
        elif status in (STATUS_OPTIMAL, STATUS_WITHIN_TOLERANCE) and not ok and not soft_targets:
            worst = diag.loc[~diag["within_tolerance"], "rel_error"].abs()
            message = (
                f"{message}; {worst.size} target(s) miss their tolerance (worst relative error "
                f"{worst.max():.3g}), so the status is 'stopped'"
            ).lstrip("; ")
            status = STATUS_STOPPED
        return cls(
            weights=w,
            g=g,
            status=status,
            message=message,
            method=method,
            solver=solver,
            iterations=int(iterations),
            wall_time=float(wall_time),
            objective=float(objective),
            diagnostics=diag,
            multipliers=multipliers,
            dropped_targets=list(dropped_targets or []),
            timings=dict(timings or {}),
            info=dict(info or {}),
        )

    # ------------------------------------------------------------------ summaries
    @property
    def success(self) -> bool:
        """True when the status is ``"optimal"`` or ``"within_tolerance"``."""
        return self.status in (STATUS_OPTIMAL, STATUS_WITHIN_TOLERANCE)

    @property
    def max_rel_error(self) -> float:
        """Largest absolute relative target error."""
        return float(np.abs(self.diagnostics["rel_error"]).max())

    @property
    def mean_rel_error(self) -> float:
        """Mean absolute relative target error."""
        return float(np.abs(self.diagnostics["rel_error"]).mean())

    @property
    def nnz(self) -> int:
        """Number of non-zero weights."""
        return int(np.count_nonzero(self.weights))

    def summary(self) -> str:
        """One paragraph: status, fit, sparsity, time."""
        return (
            f"{self.method} via {self.solver}: {self.status} in {self.iterations} iterations, "
            f"{self.wall_time:.3g} s; max |rel error| {self.max_rel_error:.3g}, mean "
            f"{self.mean_rel_error:.3g}; {self.nnz} non-zero weights of {self.weights.size}; "
            f"g in [{self.g.min():.4g}, {self.g.max():.4g}]."
            + (f" {self.message}" if self.message else "")
        )

    def fit_by_group(self) -> pd.DataFrame:
        """Fit summarised per target group: count, max and mean |relative error|."""
        df = self.diagnostics.assign(abs_rel=np.abs(self.diagnostics["rel_error"]))
        out = df.groupby("group", sort=False).agg(
            targets=("target", "size"),
            max_abs_rel_error=("abs_rel", "max"),
            mean_abs_rel_error=("abs_rel", "mean"),
            within_tolerance=("within_tolerance", "mean"),
        )
        return out

    def __repr__(self) -> str:
        return f"CalibrationResult({self.summary()})"
