"""A calibrated design: the design, the problem, the result and how it was obtained.

Linearisation needs the calibration variables (the problem's ``X``), the design weights and
the calibrated weights; replicate variance needs the method and its options to re-calibrate
every replicate the same way. :class:`Calibration` keeps them together.

Two residual methods (``residuals=``) for the linearised variance:

* ``"design"`` (default, R ``survey``): residuals of the regression on the calibration
  variables weighted by the design weights ``d``, times the calibrated weight ``w``, for every
  distance and whatever bounds bind (R's ``calibrate`` stores ``qr(mm * sqrt(d))``);
* ``"derivative"``: the exact first-order expansion at the solution. With ``w_i = d_i
  F(x_i' lambda)`` and ``sum_i w_i x_i = b``, the derivative of ``sum_i w_i y_i`` with respect
  to ``d_k`` is ``g_k (y_k - x_k' B)`` with ``B`` the regression weighted by ``d F'(x' lambda)``:
  units whose ``g`` sits on a bound (``F' = 0`` there) leave the regression, and the raking
  distance weighs by ``w``. Both coincide for the unbounded linear distance.

With tolerance bands only the targets whose band binds enter the regression: the formula
treats the binding set as fixed, which holds when the bands are narrow or wide, not when the
binding set changes from sample to sample; replicates (``calibration.replicates(...)``)
re-solve the bands in every replicate and need no such assumption.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.distances import DISTANCES, Distance
from ..validate import choice
from .design import Design, DesignError

__all__ = ["RESIDUALS", "Calibration"]

RESIDUALS = ("design", "derivative")

_LINEARISABLE = {"linear", "raking", "logit", "truncated", "distance", "ipf"}
_DISTANCE_OF = {"ipf": "raking"}  # IPF's fixed point is the raking solution


def check_units(design: Design, problem: CalibrationProblem, what: str = "problem") -> None:
    """The problem's units must be the design's rows, with the design weights."""
    if not isinstance(problem, CalibrationProblem):
        raise InvalidProblemError(
            f"`{what}` must be a calibopt.CalibrationProblem, got {type(problem).__name__}."
        )
    if problem.n_units != design.n:
        raise DesignError(
            f"the {what} has {problem.n_units} units (columns of X) but the design has "
            f"{design.n} rows: the design's rows must be the problem's units, in order."
        )
    d = problem.initial_weights
    bad = np.flatnonzero(~np.isclose(d, design.weights, rtol=1e-10, atol=0.0))
    if bad.size:
        i = int(bad[0])
        raise DesignError(
            f"the {what}'s initial weights are not the design's weights ({bad.size} unit(s) "
            f"differ, first unit {i}: {d[i]:g} vs {design.weights[i]:g}); build the problem "
            f"with initial_weights=design.weights and its units in the design's row order."
        )


@dataclass(eq=False)
class Calibration:
    """A calibrated design (see the module docstring).

    Build one with :meth:`Design.calibrate` (runs :func:`calibopt.calibrate`), or from a
    result you already have: ``Calibration(design, problem, result, method=..., options=...)``
    (``method`` and ``options`` are needed to re-calibrate replicates; ``method`` defaults to
    ``result.method``).

    Attributes
    ----------
    design, problem, result
    method : str or Distance
    solver : str or None
    options : dict
        The method's options, reused for every replicate.
    """

    design: Design
    problem: CalibrationProblem
    result: CalibrationResult
    method: Any = None
    solver: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.design, Design):
            raise InvalidProblemError(
                f"`design` must be a calibopt.variance.Design, got {type(self.design).__name__}."
            )
        check_units(self.design, self.problem)
        if not isinstance(self.result, CalibrationResult):
            raise InvalidProblemError(
                f"`result` must be a CalibrationResult, got {type(self.result).__name__}."
            )
        if self.result.weights.shape != (self.design.n,):
            raise DesignError(
                f"the result has {self.result.weights.shape[0]} weights but the design has "
                f"{self.design.n} rows."
            )
        if self.method is None:
            self.method = self.result.method
        self.options = dict(self.options or {})

    @classmethod
    def run(
        cls,
        design: Design,
        problem: CalibrationProblem,
        method: Any = "raking",
        solver: str | None = None,
        **options: Any,
    ) -> Calibration:
        """Calibrate ``problem`` with :func:`calibopt.calibrate` and keep everything."""
        from ..calibrate import calibrate

        check_units(design, problem)
        result = calibrate(problem, method, solver, **options)
        return cls(design, problem, result, method=method, solver=solver, options=options)

    @property
    def weights(self) -> np.ndarray:
        """The calibrated weights."""
        return self.result.weights

    @property
    def method_name(self) -> str:
        """The registered name of the method (a custom Distance counts as ``"distance"``)."""
        from ..formulations.registry import get_method

        if isinstance(self.method, Distance):
            return "distance"
        return get_method(self.method).name

    def _distance(self) -> Distance:
        if isinstance(self.method, Distance):
            return self.method
        if self.method_name == "distance":
            dist = self.options.get("distance")
            if isinstance(dist, Distance):
                return dist
            raise InvalidProblemError(
                "residuals='derivative' needs the custom distance: pass method=the Distance."
            )
        return DISTANCES[_DISTANCE_OF.get(self.method_name, self.method_name)]

    def check_linearisable(self) -> None:
        """Raise when the linearised variance does not apply to this calibration."""
        name = self.method_name
        if name not in _LINEARISABLE:
            raise InvalidProblemError(
                f"the linearised variance applies to the distance methods (linear, raking, "
                f"logit, truncated, custom distances) and ipf, not to {name!r}, whose weights "
                f"are not a smooth function of the design weights; use replicates instead: "
                f"calibration.replicates('bootstrap', replicates=100)."
            )
        if self.options.get("penalty") is not None:
            raise InvalidProblemError(
                "the linearised variance assumes hard targets (X w = b); this calibration used "
                "a penalty: use replicates instead (calibration.replicates(...))."
            )
        if not self.result.success:
            raise InvalidProblemError(
                f"the calibration did not meet its targets (status {self.result.status!r}: "
                f"{self.result.message}); the linearised variance assumes X w = b."
            )

    def regression(self, residuals: str = "design") -> tuple[sp.csc_matrix, np.ndarray]:
        """The calibration variables (binding targets only; CSC, targets x units) and the
        regression weights."""
        choice("residuals", residuals, RESIDUALS)
        self.check_linearisable()
        problem = self.problem
        X = problem.csc
        rows = self._binding_rows()
        if rows is not None:
            X = sp.csc_matrix(problem.X[rows])
            X.sort_indices()
        d = problem.initial_weights
        if residuals == "design":
            return X, d
        g = self.result.g
        glo, ghi = problem.g_bounds()
        dist = self._distance()
        lam = self.result.multipliers
        if lam is not None and np.all(np.isfinite(lam)):
            u = np.asarray(problem.X.T @ lam)
        elif type(dist) is Distance:
            raise InvalidProblemError(
                "residuals='derivative' with a custom distance needs the calibration's "
                "multipliers (solver='newton' reports them)."
            )
        else:
            u = np.zeros_like(g)  # the built-in distances' F' depends on g alone
        if dist.intrinsic_bounds:  # logit: F maps onto (L, U) itself, F' -> 0 at the ends
            dF = dist.dF(u, g, glo, ghi)
        else:
            dF = dist.dF(u, g)
            width = 1e-9 * np.maximum(1.0, np.abs(g))
            dF[(g <= glo + width) | (g >= ghi - width)] = 0.0  # F' = 0 where a bound binds
        return X, d * np.where(d > 0, dF, 0.0)

    def _binding_rows(self) -> np.ndarray | None:
        """Targets whose band binds (all of them for exact targets); None for all."""
        tol = self.problem.tolerance
        if np.all(tol == 0):
            return None
        est = self.result.fit.estimates
        b = self.problem.targets
        gap = np.abs(est - b)
        return np.flatnonzero((tol == 0) | (gap >= tol * np.abs(b) * (1 - 1e-6)))

    def replicates(self, type: str = "bootstrap", **options: Any) -> Any:
        """Replicate weights of the design, each replicate re-calibrated like this one.

        Parameters are those of :func:`calibopt.variance.replicate_weights` plus
        ``executor``, ``progress`` and ``chunk_size`` of
        :meth:`calibopt.variance.ReplicateDesign.calibrate`.
        """
        from .replicates import replicate_weights

        run = {k: options.pop(k) for k in ("executor", "progress", "chunk_size") if k in options}
        reps = replicate_weights(self.design, type, **options)
        return reps.calibrate(self.problem, self.method, self.solver, **run, **self.options)

    def __repr__(self) -> str:
        return f"Calibration({self.design!r}, {self.result.summary()})"
