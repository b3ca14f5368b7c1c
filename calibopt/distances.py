"""Deville-Sarndal calibration distances (Deville & Sarndal 1992, JASA 87:376-382).

Calibration minimises ``sum_i d_i G(g_i)`` over ``g = w / d`` subject to ``X (d g) = b``. The
Lagrangian gives ``G'(g_i) = x_i' lambda``, so ``g_i = F(x_i' lambda)`` with ``F = (G')^-1``,
and the dual is the concave function

    phi(lambda) = lambda' b - sum_i d_i G*(x_i' lambda),       G*(u) = u F(u) - G(F(u)).

A distance is a small object that knows ``G``, ``F``, ``F'`` and ``G*`` (like R ``survey``'s
``calfun``); every solver (the dual Newton method and the cvxpy models) uses the same object.
Bounds ``lo <= g <= hi`` (per unit) are handled exactly: for a separable strictly convex
``G``, the box-constrained minimiser of ``G(g) - u g`` is ``clip(F(u), lo, hi)``, so a bounded
distance is the same distance with ``F`` clipped and ``F' = 0`` where the clip binds.
The logit distance has its bounds built in (its ``F`` maps onto ``(L, U)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, log_expit

from .errors import InvalidProblemError

__all__ = ["DISTANCES", "Distance", "Linear", "Logit", "Raking", "get_distance"]


class Distance:
    """Base class: a calibration distance ``G`` and its dual link ``F = (G')^-1``.

    Subclasses implement the unclipped ``_F``, ``_dF`` and ``_G``; this class adds the exact
    box-constrained versions. All functions are vectorised over units; ``lo`` and ``hi`` are
    arrays (or scalars) of bounds on ``g``.
    """

    name = "distance"
    #: lower end of G's natural domain (g must exceed it strictly if ``open_lower``)
    domain_lower = -np.inf
    open_lower = False
    #: True if G is quadratic (then the cvxpy model is a QP any QP solver takes)
    quadratic = False

    def check_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Raise if the bounds do not suit the distance (the base accepts any box)."""

    # -- to implement -----------------------------------------------------------------
    def _F(self, u: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
        raise NotImplementedError

    def _dF(self, u: np.ndarray, g: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
        raise NotImplementedError

    def G(self, g: np.ndarray, lo: Any = -np.inf, hi: Any = np.inf) -> np.ndarray:
        """The distance ``G(g)`` per unit (``G(1) = 0``, ``G'(1) = 0``)."""
        raise NotImplementedError

    def cvxpy_objective(self, g: Any, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Any:
        """``sum_i d_i G(g_i)`` as a cvxpy expression of the variable ``g``."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    def F(self, u: np.ndarray, lo: Any = -np.inf, hi: Any = np.inf) -> np.ndarray:
        """``g = clip(F(u), lo, hi)``: the g-weights for dual scores ``u = x' lambda``."""
        with np.errstate(over="ignore"):
            g = self._F(u, lo, hi)
        return np.clip(g, lo, hi)

    def dF(self, u: np.ndarray, g: np.ndarray, lo: Any = -np.inf, hi: Any = np.inf) -> np.ndarray:
        """Derivative of ``F`` at ``u`` given ``g = F(u)``; 0 where a bound binds."""
        with np.errstate(over="ignore", invalid="ignore"):
            dg = self._dF(u, g, lo, hi)
        clipped = (g <= lo) | (g >= hi)
        if np.any(clipped):
            dg = np.where(clipped, 0.0, dg)
        return dg

    def conjugate(self, u: np.ndarray, g: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
        """``G*(u) = u g - G(g)`` at ``g = F(u)`` (box-constrained conjugate)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return u * g - self.G(g, lo, hi)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Distance):
    """Chi-square distance ``G(g) = (g - 1)^2 / 2`` (GREG); with bounds: truncated linear."""

    name = "linear"
    quadratic = True

    def _F(self, u, lo, hi):
        return 1.0 + u

    def _dF(self, u, g, lo, hi):
        return np.ones_like(u)

    def G(self, g, lo=-np.inf, hi=np.inf):
        return 0.5 * (g - 1.0) ** 2

    def conjugate(self, u, g, lo, hi):
        # u g - (g-1)^2/2; exact and overflow-free
        return u * g - 0.5 * (g - 1.0) ** 2

    def cvxpy_objective(self, g, d, lo, hi):
        import cvxpy as cp

        return 0.5 * cp.sum(cp.multiply(d, cp.square(g - 1.0)))


class Raking(Distance):
    """Entropy (raking, exponential) distance ``G(g) = g log g - g + 1``, ``F(u) = exp(u)``."""

    name = "raking"
    domain_lower = 0.0
    open_lower = True

    def _F(self, u, lo, hi):
        return np.exp(u)

    def _dF(self, u, g, lo, hi):
        return g

    def G(self, g, lo=-np.inf, hi=np.inf):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = g * np.log(g) - g + 1.0
        return np.where(g == 0, 1.0, out)

    def cvxpy_objective(self, g, d, lo, hi):
        import cvxpy as cp

        return cp.sum(cp.multiply(d, -cp.entr(g) - g + 1.0))


class Logit(Distance):
    """Logit distance of Deville & Sarndal with bounds ``L < 1 < U`` on ``g`` built in.

    ``G(g) = [(g-L) log((g-L)/(1-L)) + (U-g) log((U-g)/(U-1))] / A``, ``A = (U-L)/((1-L)(U-1))``,
    ``F(u) = L + (U-L) expit(A u - log((U-1)/(1-L)))`` (equal to R survey's ``cal.logit``).
    """

    name = "logit"

    def check_bounds(self, lo, hi):
        lo = np.broadcast_to(lo, np.shape(hi)) if np.ndim(hi) else np.atleast_1d(lo)
        hi = np.broadcast_to(hi, np.shape(lo))
        bad = np.flatnonzero(~((lo < 1.0) & (hi > 1.0) & np.isfinite(lo) & np.isfinite(hi)))
        if bad.size:
            i = bad[0]
            raise InvalidProblemError(
                f"the logit distance needs finite bounds L < 1 < U on g = w/d for every unit; "
                f"unit {i} has [{lo[i]:g}, {hi[i]:g}] ({bad.size} unit(s) in all). Give "
                f"ratio_bounds=(L, U), e.g. (0.5, 2), and absolute bounds that contain d."
            )

    @staticmethod
    def _params(lo, hi):
        A = (hi - lo) / ((1.0 - lo) * (hi - 1.0))
        shift = np.log((hi - 1.0) / (1.0 - lo))
        return A, shift

    def _F(self, u, lo, hi):
        A, shift = self._params(lo, hi)
        return lo + (hi - lo) * expit(A * u - shift)

    def _dF(self, u, g, lo, hi):
        A, _ = self._params(lo, hi)
        return A * (g - lo) * (hi - g) / (hi - lo)

    def G(self, g, lo=-np.inf, hi=np.inf):
        A, _ = self._params(lo, hi)
        a = g - lo
        b = hi - g
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = np.where(a > 0, a * np.log(a / (1.0 - lo)), 0.0)
            tb = np.where(b > 0, b * np.log(b / (hi - 1.0)), 0.0)
        return (ta + tb) / A

    def F(self, u, lo=-np.inf, hi=np.inf):
        return self._F(u, lo, hi)

    def dF(self, u, g, lo=-np.inf, hi=np.inf):
        return self._dF(u, g, lo, hi)

    def conjugate(self, u, g, lo, hi):
        # G*(u) = u g - G(g) computed through log-expit to stay finite when g saturates:
        # with z = A u - shift, g - L = (U-L) s(z), U - g = (U-L) s(-z).
        A, shift = self._params(lo, hi)
        z = A * u - shift
        span = hi - lo
        la = np.log(span) + log_expit(z)
        lb = np.log(span) + log_expit(-z)
        a = span * expit(z)
        b = span * expit(-z)
        G = (a * (la - np.log(1.0 - lo)) + b * (lb - np.log(hi - 1.0))) / A
        return u * g - G

    def cvxpy_objective(self, g, d, lo, hi):
        import cvxpy as cp

        A, _ = self._params(lo, hi)
        c = d / A
        return cp.sum(
            cp.multiply(c, cp.rel_entr(g - lo, 1.0 - lo))
            + cp.multiply(c, cp.rel_entr(hi - g, hi - 1.0))
        )


DISTANCES: dict[str, Distance] = {"linear": Linear(), "raking": Raking(), "logit": Logit()}


def get_distance(name: str | Distance) -> Distance:
    """The distance object for ``"linear"``, ``"raking"`` or ``"logit"`` (or pass one through)."""
    if isinstance(name, Distance):
        return name
    try:
        return DISTANCES[name]
    except KeyError:
        raise InvalidProblemError(
            f"unknown distance {name!r}; available: {sorted(DISTANCES)}."
        ) from None
