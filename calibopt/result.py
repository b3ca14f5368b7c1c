"""The result every calibration method returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from . import status as st
from .fit import FitCheck, check_weights
from .problem import CalibrationProblem

__all__ = ["CalibrationResult"]


@dataclass(eq=False)
class CalibrationResult:
    """What a calibration returns (like SciPy's ``OptimizeResult``).

    Build one with :meth:`from_weights`: the status is never the method's claim alone but
    :func:`calibopt.status.decide` applied to :func:`calibopt.fit.check_weights` of the
    returned weights.

    Attributes
    ----------
    weights : ndarray
        Calibrated weights ``w``, one per unit.
    g : ndarray
        ``w / d`` (1 where ``d = 0``).
    status : str
        One of :data:`calibopt.status.RESULT_STATUSES`: ``"optimal"``,
        ``"within_tolerance"``, ``"trade_off"`` or ``"stopped"``.
    message : str
        What happened, in words.
    method, solver : str
        The method name and the solver that ran it.
    iterations : int or None
        Iterations of the method's main loop; what one iteration is depends on the method
        (see ``calibopt.method_table()["iterations"]``): Newton steps (distance methods),
        solver iterations (cvxpy solvers), sweeps (``ipf``), L-BFGS-B iterations
        (``gradient``), branch-and-bound nodes (``l0-mip``; None when a cvxpy MIP solver does
        not report them), weighted-L1 LPs (``reweighted-l1``), epochs (``hard-concrete``),
        the selection's calibration iterations (``cross-category``); summed over blocks.
    wall_time : float
        Seconds from call to return.
    objective : float
        The method's own objective at ``weights`` (see ``method_table()["objective"]``): the
        distance ``sum d G(g)`` (plus the penalty in penalty mode), the number of non-zero
        weights (``l0-mip`` count, ``reweighted-l1``, ``cross-category``), or the loss
        (``gradient``, ``hard-concrete``, ``l0-mip`` error+count).
    fit : FitCheck
        The shared check of the weights (per-target errors, bands met, bound violations).
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
    iterations: int | None
    wall_time: float
    objective: float
    fit: FitCheck
    target_names: list[str]
    groups: np.ndarray
    targets: np.ndarray
    tolerance: np.ndarray
    sparse: bool = False
    unit_ids: np.ndarray | None = None
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
        proven_optimal: bool,
        soft: bool = False,
        completed: bool | None = None,
        sparse: bool = False,
        message: str = "",
        iterations: int | None = 0,
        wall_time: float = 0.0,
        objective: float = float("nan"),
        multipliers: np.ndarray | None = None,
        dropped_targets: list[str] | None = None,
        timings: dict[str, float] | None = None,
        info: dict[str, Any] | None = None,
    ) -> CalibrationResult:
        """Build a result: check the weights, compute ``g`` and decide the status.

        Parameters
        ----------
        proven_optimal
            The method solved its own program to optimality and met its own stopping rule.
        soft
            The method trades targets off (penalty or loss): a converged fit that misses
            targets is a ``"trade_off"``, not a failure.
        completed
            The run ended by the method's own rule (default ``proven_optimal``); see
            :func:`calibopt.status.decide`.
        sparse
            Bounds apply to non-zero weights only (the sparse methods' semantics).
        """
        w = np.asarray(weights, dtype=np.float64)
        d = problem.initial_weights
        g = np.ones_like(w)
        pos = d > 0
        g[pos] = w[pos] / d[pos]
        check = check_weights(problem, w, sparse=sparse)
        status = st.decide(check.ok, proven_optimal=proven_optimal, soft=soft, completed=completed)
        if not check.ok:
            what = check.describe(problem.target_names)
            if status == st.TRADE_OFF:
                note = f"trade-off: {what}"
            elif proven_optimal:
                note = f"the method reports convergence, but {what}, so the status is 'stopped'"
            else:
                note = what
            message = f"{message}; {note}" if message else note
        return cls(
            weights=w,
            g=g,
            status=status,
            message=message,
            method=method,
            solver=solver,
            iterations=None if iterations is None else int(iterations),
            wall_time=float(wall_time),
            objective=float(objective),
            fit=check,
            target_names=list(problem.target_names),
            groups=problem.groups,
            targets=problem.targets,
            tolerance=problem.tolerance,
            sparse=sparse,
            unit_ids=problem.unit_ids,
            multipliers=multipliers,
            dropped_targets=list(dropped_targets or []),
            timings=dict(timings or {}),
            info=dict(info or {}),
        )

    # ------------------------------------------------------------------ summaries
    @property
    def success(self) -> bool:
        """True when every target is within its band and every bound holds."""
        return self.status in st.SUCCESS_STATUSES

    @property
    def max_rel_error(self) -> float:
        """Largest absolute relative target error (see :mod:`calibopt.fit`)."""
        return float(np.abs(self.fit.rel_errors).max())

    @property
    def mean_rel_error(self) -> float:
        """Mean absolute relative target error."""
        return float(np.abs(self.fit.rel_errors).mean())

    @property
    def nnz(self) -> int:
        """Number of non-zero weights."""
        return int(np.count_nonzero(self.weights))

    @cached_property
    def diagnostics(self) -> Any:
        """Per-target fit as a DataFrame (built on first access).

        One row per target: ``target`` (position), ``name``, ``group``, ``value`` (target
        total), ``estimate`` (``X @ w``), ``error`` (estimate - value), ``rel_error``
        (error / s_j, see :mod:`calibopt.fit`), ``tolerance`` and ``within_tolerance``.
        """
        import pandas as pd

        f = self.fit
        return pd.DataFrame(
            {
                "target": np.arange(self.targets.size),
                "name": self.target_names,
                "group": self.groups,
                "value": self.targets,
                "estimate": f.estimates,
                "error": f.errors,
                "rel_error": f.rel_errors,
                "tolerance": self.tolerance,
                "within_tolerance": f.target_met,
            }
        )

    def weights_series(self) -> Any:
        """The weights as a pandas Series on the units' ids (a DataFrame's index for problems
        built by :func:`calibopt.problem_from_margins`; positions otherwise)."""
        import pandas as pd

        index = None if self.unit_ids is None else pd.Index(self.unit_ids)
        return pd.Series(self.weights, index=index, name="weight")

    def summary(self) -> str:
        """One paragraph: status, fit, sparsity, time."""
        its = "?" if self.iterations is None else self.iterations
        return (
            f"{self.method} via {self.solver}: {self.status} in {its} iterations, "
            f"{self.wall_time:.3g} s; max |rel error| {self.max_rel_error:.3g}, mean "
            f"{self.mean_rel_error:.3g}; {self.nnz} non-zero weights of {self.weights.size}; "
            f"g in [{self.g.min():.4g}, {self.g.max():.4g}]."
            + (f" {self.message}" if self.message else "")
        )

    def fit_by_group(self) -> Any:
        """Fit summarised per target group: count, max and mean |relative error|."""
        df = self.diagnostics.assign(abs_rel=np.abs(self.fit.rel_errors))
        return df.groupby("group", sort=False).agg(
            targets=("target", "size"),
            max_abs_rel_error=("abs_rel", "max"),
            mean_abs_rel_error=("abs_rel", "mean"),
            within_tolerance=("within_tolerance", "mean"),
        )

    def __repr__(self) -> str:
        return f"CalibrationResult({self.summary()})"
