"""The plain data around the dual Newton method: its outcome and the rows' slacks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["NewtonOutcome", "Slacks"]


@dataclass
class NewtonOutcome:
    """What one run of the dual Newton method produced."""

    lam: np.ndarray
    g: np.ndarray
    converged: bool
    iterations: int
    max_residual: float
    message: str
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    linear_solvers: list[str] = field(default_factory=list)


@dataclass
class Slacks:
    """Per-row slacks ``e_j`` with cost ``c_j e_j^2 / 2`` and box ``|e_j| <= t_j``.

    A row ``j`` asks ``X_j w - e_j = T_j``. Penalty mode is ``t = inf``, ``c = mu D / s_j^2``;
    a tolerance band is ``t_j = tol_j |b_j|`` with a tiny ``c_j`` (inside the band the slack
    absorbs the difference almost for free; at an end it is clipped and the row becomes an
    equality at that end). In the dual, ``e*(lambda) = clip(-lambda / c, -t, t)``, the
    residual gains ``+ e*`` and the Newton matrix gains ``1 / c`` on rows whose slack is not
    clipped; the dual loses ``h(lambda) = sup_{|e| <= t} (-lambda e - c e^2 / 2)``.
    """

    cost: np.ndarray
    width: np.ndarray

    def e(self, lam: np.ndarray) -> np.ndarray:
        """The optimal slack for multipliers ``lam``."""
        return np.clip(-lam / self.cost, -self.width, self.width)

    def curvature(self, lam: np.ndarray) -> np.ndarray:
        """``1 / c`` where the slack is inside its box, 0 where clipped."""
        inside = np.abs(lam) < self.cost * self.width
        return np.where(inside, 1.0 / self.cost, 0.0)

    def h(self, lam: np.ndarray) -> float:
        """``sum_j h_j(lambda_j)`` (the slacks' share of the dual)."""
        e = self.e(lam)
        return float(np.sum(-lam * e - 0.5 * self.cost * e * e))
