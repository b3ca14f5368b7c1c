"""``gradient``: minimise the target loss plus an L1/L2 penalty under the bounds (L-BFGS-B).

For conflicting targets that need a trade-off rather than an exact fit. The loss is
:mod:`calibopt.loss` (relative squared error per target, optionally group-normalised); the
problem's tolerance bands are a dead zone (errors within a band cost nothing). Program, over
``w`` with ``s_i = d_i`` (1 where ``d_i = 0``) and ``D = sum_i s_i``::

    min  sum_j c_j (dist(X_j w, [lo_j, hi_j]) / (|b_j| + eps))^2
         + l1 * sum_i |w_i| / D  +  l2 * sum_i (w_i - s_i)^2 / s_i / D
    s.t. lower_i <= w_i <= upper_i   (absolute and ratio bounds)

solved by SciPy's L-BFGS-B in the scaled variable ``x = w / s`` (well conditioned when design
weights differ by orders of magnitude). The problem is convex, so L-BFGS-B's answer is its
global minimum up to its stopping tolerances. With ``l1 > 0`` and lower bounds of 0, weights
reach exactly 0 (the projection onto the bounds) -- a convex route to sparsity.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ..errors import InvalidProblemError
from ..fit import ACCURACY
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.loss import DEFAULT_EPS, TargetLoss
from ..validate import integer, number
from .registry import register_method

__all__ = ["gradient_objective", "solve"]


def gradient_objective(
    problem: CalibrationProblem,
    *,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
    l1: float = 0.0,
    l2: float = 0.0,
    bands: bool = True,
) -> tuple[Any, np.ndarray]:
    """The objective of the ``gradient`` method as ``f(x) -> (value, grad)`` over ``x = w / s``.

    Returns
    -------
    f : callable
        Value and gradient in the scaled variable.
    s : ndarray
        The scale (``w = s * x``).
    """
    loss = TargetLoss.from_problem(
        problem,
        eps=eps,
        group_normalise=group_normalise,
        bands=bands and bool(np.any(problem.tolerance > 0)),
    )
    d = problem.initial_weights
    s = np.where(d > 0, d, 1.0)
    D = float(s.sum())

    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        w = s * x
        val, gw = loss(w)
        g = gw * s
        if l1:
            val += l1 * float(np.abs(w).sum()) / D
            g = g + (l1 / D) * np.sign(x) * s
        if l2:
            dx = x - 1.0
            val += l2 * float(np.dot(s * dx, dx)) / D
            g = g + (2.0 * l2 / D) * s * dx
        return val, g

    return f, s


@register_method(
    "gradient",
    aliases=("lbfgs", "loss"),
    solvers=("L-BFGS-B",),
    catalogue="gradient.md",
    summary="min relative squared target error (group-normalised) + L1/L2 penalty; L-BFGS-B",
    guarantee="approximate",
    iterations="L-BFGS-B iterations",
    objective="the loss plus the L1/L2 penalties at the returned weights",
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
    l1: float = 0.0,
    l2: float = 0.0,
    init: np.ndarray | None = None,
    max_iter: int = 5000,
    ftol: float = 1e-12,
    gtol: float = 1e-8,
    progress: bool | None = None,
) -> CalibrationResult:
    """Calibrate by minimising the target loss plus penalties under the bounds.

    Parameters
    ----------
    problem
        Bounds and ratio bounds are enforced; tolerance bands are a dead zone of the loss.
    solver
        None or ``"L-BFGS-B"`` (the only one).
    eps, group_normalise
        Loss parameters (see :mod:`calibopt.loss`).
    l1
        Weight of ``sum |w| / D`` (sparsity; needs lower bounds >= 0).
    l2
        Weight of the chi-square distance to the design weights ``sum (w - d)^2 / d / D``.
    init
        Starting weights (default: the design weights, clipped into the bounds).
    max_iter
        L-BFGS-B iteration cap.
    ftol, gtol
        L-BFGS-B stopping tolerances, on the objective scaled by ``1e16`` (so that they act
        when relative target errors reach about 1e-8).
    progress
        tqdm bar over iterations (None: when stderr is a terminal). Ctrl-C stops and returns
        the best weights so far.
    """
    import sys

    t0 = time.perf_counter()
    if solver is not None and solver.upper() not in ("L-BFGS-B", "LBFGSB", "LBFGS"):
        raise InvalidProblemError(f"method 'gradient' runs L-BFGS-B only; got solver={solver!r}.")
    l1 = number("l1", l1, low=0.0)
    l2 = number("l2", l2, low=0.0)
    max_iter = integer("max_iter", max_iter, low=1)
    ftol = number("ftol", ftol, low=0.0)
    gtol = number("gtol", gtol, low=0.0)
    problem.require_consistent_bounds("gradient")
    lo, hi = problem.weight_bounds()
    if l1 and np.any(lo < 0):
        raise InvalidProblemError(
            "the L1 penalty needs non-negative weights (it is then linear and smooth); give "
            "bounds=(0, ...) or ratio_bounds=(0, ...)."
        )
    f, s = gradient_objective(problem, eps=eps, group_normalise=group_normalise, l1=l1, l2=l2)
    xlo, xhi = lo / s, hi / s
    if init is None:
        x0 = np.ones(problem.n_units)
        x0[problem.initial_weights == 0] = 0.0
    else:
        x0 = np.asarray(init, dtype=np.float64)
        if x0.shape != (problem.n_units,) or not np.all(np.isfinite(x0)):
            raise InvalidProblemError(
                f"`init` must be {problem.n_units} finite weights, got shape {x0.shape}."
            )
        x0 = x0 / s
    x0 = np.clip(x0, xlo, xhi)
    f0, g0 = f(x0)
    # L-BFGS-B's stopping rules compare objective decreases with max(|f|, 1) and the projected
    # gradient with gtol: on the loss scaled by 1/ACCURACY^2 they act when relative target
    # errors reach ~ACCURACY, whatever the starting loss
    scale = 1.0 / ACCURACY**2
    pg0 = float(np.max(np.abs(x0 - np.clip(x0 - g0 * scale, xlo, xhi)), initial=0.0))
    best = {"x": x0, "f": f0}
    history: list[float] = [f0]

    def fs(x: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = f(x)
        if v < best["f"]:
            best["x"], best["f"] = x.copy(), v
        return v * scale, g * scale

    bar = None
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(max_iter), desc="gradient", unit="it")

    def callback(intermediate_result: Any) -> None:
        history.append(float(intermediate_result.fun) / scale)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"loss={history[-1]:.4g}", refresh=False)

    interrupted = False
    res = None
    try:
        res = minimize(
            fs,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=list(
                zip(np.where(np.isfinite(xlo), xlo, None), np.where(np.isfinite(xhi), xhi, None))
            ),
            callback=callback,
            options={
                "maxiter": int(max_iter),
                "maxfun": 4 * int(max_iter),
                "ftol": ftol,
                "gtol": gtol,
                "maxcor": 20,
            },
        )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    x = best["x"]
    w = s * np.clip(x, xlo, xhi)
    if interrupted or res is None:
        converged, message, nit = False, "interrupted: best weights so far", len(history) - 1
    else:
        nit = int(getattr(res, "nit", 0))
        # first-order optimality: the projected gradient has vanished relative to the start
        # (a line search that fails at machine precision then still counts as converged)
        g = fs(x)[1]
        pg = float(np.max(np.abs(x - np.clip(x - g, xlo, xhi)), initial=0.0))
        converged = bool(res.success) or pg <= 1e-9 * max(pg0, 1.0)
        message = f"L-BFGS-B: {res.message} after {nit} iterations; projected gradient {pg:.2g}"
    loss_only = TargetLoss.from_problem(problem, eps=eps, group_normalise=group_normalise)
    return CalibrationResult.from_weights(
        problem,
        w,
        method="gradient",
        solver="L-BFGS-B",
        proven_optimal=converged,
        soft=True,
        message=message,
        iterations=nit,
        objective=float(best["f"]),
        timings={"total": time.perf_counter() - t0},
        info={"loss": loss_only.value(w), "objective_history": history, "l1": l1, "l2": l2},
    )
