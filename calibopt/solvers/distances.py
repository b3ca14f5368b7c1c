"""Deville-Sarndal calibration distances (Deville & Sarndal 1992, JASA 87:376-382).

Calibration minimises ``sum_i d_i G(g_i)`` over ``g = w / d`` subject to ``X (d g) = b``. The
Lagrangian gives ``G'(g_i) = x_i' lambda``, so ``g_i = F(x_i' lambda)`` with ``F = (G')^-1``,
and the dual is the concave function

    phi(lambda) = lambda' b - sum_i d_i G*(x_i' lambda),       G*(u) = u F(u) - G(F(u)).

A distance is a small object that knows ``F``, ``F'`` and (optionally) ``G`` (like R
``survey``'s ``calfun``); every solver (the dual Newton method and the cvxpy models) uses the
same object. Bounds ``lo <= g <= hi`` (per unit) are handled exactly: for a separable strictly
convex ``G``, the box-constrained minimiser of ``G(g) - u g`` is ``clip(F(u), lo, hi)``, so a
bounded distance is the same distance with ``F`` clipped and ``F' = 0`` where the clip binds.
The logit distance has its bounds built in (its ``F`` maps onto ``(L, U)``).

Users write their own distance as R's ``calibrate(calfun=)`` allows::

    import numpy as np, calibopt as co
    hellinger = co.Distance(F=lambda u: 1 / (1 - u / 2) ** 2, dF=lambda u: 1 / (1 - u / 2) ** 3,
                            name="hellinger", domain_lower=0.0)
    co.calibrate(problem, method=hellinger)

``F`` must satisfy ``F(0) = 1`` (the design weights are the starting point) and be increasing.
Give ``G`` too, and Newton's line search uses the dual objective; without it, it uses the
residual norm. Give ``cvxpy`` (``g -> elementwise G(g)`` as a cvxpy expression) to solve the
same program with any cvxpy solver.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit, log_expit

from ..errors import InvalidProblemError, SolverError

__all__ = ["DISTANCES", "Distance", "Linear", "Logit", "Raking", "Truncated", "get_distance"]


class Distance:
    """A calibration distance ``G`` and its dual link ``F = (G')^-1``.

    Built-in distances are subclasses (:class:`Linear`, :class:`Raking`, :class:`Logit`,
    :class:`Truncated`). A custom distance is an instance made from functions:

    Parameters
    ----------
    F
        ``F(u) -> g``, vectorised, increasing, with ``F(0) = 1``: the inverse of ``G'``.
    dF
        ``F'(u)``, vectorised, positive.
    G
        Optional ``G(g)``, vectorised, with ``G(1) = 0``: the distance itself. Used by
        Newton's line search (the dual objective) and to report the objective.
    cvxpy
        Optional ``g -> G(g)`` elementwise as a cvxpy expression (DCP convex), so that cvxpy
        solvers can take the program.
    name
        Name shown in results.
    domain_lower
        Lower end of ``G``'s domain in ``g`` (e.g. 0 for distances defined for ``g > 0``).
    open_lower
        True when ``g`` must stay strictly above ``domain_lower``.
    needs_bounds
        True when the distance needs finite bounds on ``g`` (as ``truncated`` does).
    """

    name = "distance"
    #: lower end of G's natural domain (g must exceed it strictly if ``open_lower``)
    domain_lower = -np.inf
    open_lower = False
    #: True if G is quadratic (then the cvxpy model is a QP any QP solver takes)
    quadratic = False
    #: True if G's domain is the bounds themselves (no explicit bound constraints needed)
    intrinsic_bounds = False
    #: True if the distance needs finite bounds on g
    needs_bounds = False
    #: True when G is known (Newton's line search then uses the dual objective)
    has_objective = True

    def __init__(
        self,
        F: Any = None,
        dF: Any = None,
        G: Any = None,
        cvxpy: Any = None,
        *,
        name: str = "custom",
        domain_lower: float = -np.inf,
        open_lower: bool = False,
        needs_bounds: bool = False,
    ) -> None:
        if type(self) is not Distance:
            return  # built-in subclasses define their functions as methods
        for label, fn, required in (("F", F, True), ("dF", dF, True), ("G", G, False)):
            if (fn is None and required) or (fn is not None and not callable(fn)):
                raise InvalidProblemError(
                    f"a custom Distance needs `{label}` as a vectorised function"
                    + ("" if required else " (or None)")
                    + f"; got {fn!r}."
                )
        if cvxpy is not None and not callable(cvxpy):
            raise InvalidProblemError(f"`cvxpy` must be a function g -> expression, got {cvxpy!r}.")
        self._user = {"F": F, "dF": dF, "G": G, "cvxpy": cvxpy}
        self.name = str(name)
        self.domain_lower = float(domain_lower)
        self.open_lower = bool(open_lower)
        self.needs_bounds = bool(needs_bounds)
        self.has_objective = G is not None
        self._check_link()

    def _check_link(self) -> None:
        """A custom ``F`` must map 0 to 1 and increase, ``F'`` must be positive there."""
        u = np.array([-1e-3, 0.0, 1e-3])
        try:
            g = np.asarray(self._user["F"](u), dtype=np.float64)
            dg = np.asarray(self._user["dF"](u), dtype=np.float64)
        except Exception as exc:  # the user's function failed: say so, typed
            raise InvalidProblemError(
                f"distance {self.name!r}: calling F or dF on an array failed ({exc}); both must "
                f"be vectorised functions of a numpy array."
            ) from None
        if g.shape != u.shape or dg.shape != u.shape:
            raise InvalidProblemError(
                f"distance {self.name!r}: F and dF must return one value per element."
            )
        if not (abs(g[1] - 1.0) <= 1e-9 and np.all(np.isfinite(dg)) and np.all(dg > 0)):
            raise InvalidProblemError(
                f"distance {self.name!r}: F must satisfy F(0) = 1 and F' > 0 (got F(0) = "
                f"{g[1]:.6g}, F'(0) = {dg[1]:.6g}); write F as the inverse of G' for a G with "
                f"its minimum G(1) = 0."
            )
        if not (g[0] < g[1] < g[2]):
            raise InvalidProblemError(f"distance {self.name!r}: F must be increasing near 0.")

    def check_bounds(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Raise if the bounds do not suit the distance (the base accepts any box)."""

    # -- to implement (built-ins override; custom distances call the user's functions) ---
    def _F(self, u: np.ndarray, lo: Any, hi: Any, out: np.ndarray) -> np.ndarray:
        out[...] = self._user["F"](u)
        return out

    def _dF(self, u: np.ndarray, g: np.ndarray, lo: Any, hi: Any, out: np.ndarray) -> np.ndarray:
        out[...] = self._user["dF"](u)
        return out

    def G(self, g: np.ndarray, lo: Any = None, hi: Any = None) -> np.ndarray:
        """The distance ``G(g)`` per unit (``G(1) = 0``, ``G'(1) = 0``)."""
        fn = getattr(self, "_user", {}).get("G")
        if fn is None:
            return np.full(np.shape(g), np.nan)
        return np.asarray(fn(g), dtype=np.float64)

    def cvxpy_objective(self, g: Any, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Any:
        """``sum_i d_i G(g_i)`` as a cvxpy expression of the variable ``g``."""
        import cvxpy as cp

        fn = getattr(self, "_user", {}).get("cvxpy")
        if fn is None:
            raise SolverError(
                f"distance {self.name!r} has no cvxpy expression: give Distance(..., cvxpy=g -> "
                f"G(g)) to solve it with cvxpy solvers, or use solver='newton'."
            )
        return cp.sum(cp.multiply(d, fn(g)))

    # -- shared -----------------------------------------------------------------------
    def F(
        self, u: np.ndarray, lo: Any = None, hi: Any = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``g = clip(F(u), lo, hi)``: the g-weights for dual scores ``u = x' lambda``."""
        if out is None:
            out = np.empty_like(u)
        with np.errstate(over="ignore"):
            self._F(u, lo, hi, out)
        if lo is not None:
            np.maximum(out, lo, out=out)
        if hi is not None:
            np.minimum(out, hi, out=out)
        return out

    def clipped(self, g: np.ndarray, lo: Any, hi: Any) -> np.ndarray | None:
        """Mask of units whose ``g`` sits on a bound (None when there are no bounds)."""
        if lo is None and hi is None:
            return None
        if lo is None:
            return g >= hi
        if hi is None:
            return g <= lo
        return (g <= lo) | (g >= hi)

    def dF(
        self,
        u: np.ndarray,
        g: np.ndarray,
        lo: Any = None,
        hi: Any = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Derivative of ``F`` at ``u`` given ``g = F(u)``; 0 where a bound binds."""
        if out is None:
            out = np.empty_like(u)
        with np.errstate(over="ignore", invalid="ignore"):
            self._dF(u, g, lo, hi, out)
        mask = self.clipped(g, lo, hi)
        if mask is not None:
            out[mask] = 0.0
        return out

    def conjugate(self, u: np.ndarray, g: np.ndarray, lo: Any = None, hi: Any = None) -> np.ndarray:
        """``G*(u) = u g - G(g)`` at ``g = F(u)`` (box-constrained conjugate), per unit."""
        with np.errstate(over="ignore", invalid="ignore"):
            return u * g - self.G(g, lo, hi)

    def conjugate_sum(self, d: np.ndarray, u: np.ndarray, g: np.ndarray, lo: Any, hi: Any) -> float:
        """``sum_i d_i G*(u_i)``."""
        return float(d @ self.conjugate(u, g, lo, hi))

    def __repr__(self) -> str:
        if type(self) is Distance:
            return f"Distance(name={self.name!r})"
        return f"{type(self).__name__}()"


class Linear(Distance):
    """Chi-square distance ``G(g) = (g - 1)^2 / 2`` (GREG); with bounds: truncated linear."""

    name = "linear"
    quadratic = True

    def _F(self, u, lo, hi, out):
        np.add(u, 1.0, out=out)

    def _dF(self, u, g, lo, hi, out):
        out.fill(1.0)

    def G(self, g, lo=None, hi=None):
        return 0.5 * (g - 1.0) ** 2

    def conjugate_sum(self, d, u, g, lo, hi):
        # u g - (g - 1)^2 / 2 = (g - 1)(u - (g - 1)/2) + u
        gm1 = g - 1.0
        return float(d @ u + (d * gm1) @ (u - 0.5 * gm1))

    def cvxpy_objective(self, g, d, lo, hi):
        import cvxpy as cp

        return 0.5 * cp.sum(cp.multiply(d, cp.square(g - 1.0)))


class Raking(Distance):
    """Entropy (raking, exponential) distance ``G(g) = g log g - g + 1``, ``F(u) = exp(u)``."""

    name = "raking"
    domain_lower = 0.0
    open_lower = True

    def _F(self, u, lo, hi, out):
        np.exp(u, out=out)

    def _dF(self, u, g, lo, hi, out):
        np.copyto(out, g)

    def G(self, g, lo=None, hi=None):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = g * np.log(g) - g + 1.0
        return np.where(g == 0, 1.0, out)

    def conjugate_sum(self, d, u, g, lo, hi):
        # where g = exp(u) (not clipped), G*(u) = g - 1; correct the clipped units explicitly
        total = float(d @ g) - float(d.sum())
        mask = self.clipped(g, lo, hi)
        if mask is not None and mask.any():
            idx = np.flatnonzero(mask)
            gi, ui = g[idx], u[idx]
            with np.errstate(over="ignore", invalid="ignore"):
                corr = ui * gi - self.G(gi) - (gi - 1.0)
            total += float(d[idx] @ corr)
        return total

    def cvxpy_objective(self, g, d, lo, hi):
        import cvxpy as cp

        return cp.sum(cp.multiply(d, -cp.entr(g) - g + 1.0))


class Logit(Distance):
    """Logit distance of Deville & Sarndal with bounds ``L < 1 < U`` on ``g`` built in.

    ``G(g) = [(g-L) log((g-L)/(1-L)) + (U-g) log((U-g)/(U-1))] / A``, ``A = (U-L)/((1-L)(U-1))``,
    ``F(u) = L + (U-L) expit(A u - log((U-1)/(1-L)))`` (equal to R survey's ``cal.logit``).
    ``F`` maps onto ``(L, U)`` by itself, so no clipping is applied.
    """

    name = "logit"
    intrinsic_bounds = True

    def check_bounds(self, lo, hi):
        lo = np.asarray(lo, dtype=float) * np.ones_like(np.asarray(hi, dtype=float))
        hi = np.asarray(hi, dtype=float) * np.ones_like(lo)
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

    def _F(self, u, lo, hi, out):
        A, shift = self._params(lo, hi)
        out[...] = lo + (hi - lo) * expit(A * u - shift)

    def _dF(self, u, g, lo, hi, out):
        A, _ = self._params(lo, hi)
        out[...] = A * (g - lo) * (hi - g) / (hi - lo)

    def G(self, g, lo=None, hi=None):
        A, _ = self._params(lo, hi)
        a = g - lo
        b = hi - g
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = np.where(a > 0, a * np.log(a / (1.0 - lo)), 0.0)
            tb = np.where(b > 0, b * np.log(b / (hi - 1.0)), 0.0)
        return (ta + tb) / A

    def F(self, u, lo=None, hi=None, out=None):
        if out is None:
            out = np.empty_like(u)
        self._F(u, lo, hi, out)
        return out

    def dF(self, u, g, lo=None, hi=None, out=None):
        if out is None:
            out = np.empty_like(u)
        self._dF(u, g, lo, hi, out)
        return out

    def conjugate(self, u, g, lo=None, hi=None):
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


class Truncated(Linear):
    """Chi-square distance restricted to bounds ``L <= g <= U`` (finite bounds required)."""

    name = "truncated"
    needs_bounds = True


DISTANCES: dict[str, Distance] = {
    "linear": Linear(),
    "raking": Raking(),
    "logit": Logit(),
    "truncated": Truncated(),
}


def get_distance(name: str | Distance) -> Distance:
    """The distance object for a built-in name (or pass a :class:`Distance` through)."""
    if isinstance(name, Distance):
        return name
    try:
        return DISTANCES[name]
    except (KeyError, TypeError):
        raise InvalidProblemError(
            f"unknown distance {name!r}; available: {sorted(DISTANCES)} or a calibopt.Distance."
        ) from None
