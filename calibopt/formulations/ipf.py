"""``ipf``: iterative proportional fitting (classic raking) over margins.

A *margin* is a group of targets (``problem.groups``; :func:`calibopt.problem_from_margins`
makes one per variable); the sweeps are :class:`calibopt.solvers.ipf.IPF` (exact
one-dimensional rescaling per target, cyclic coordinate ascent on the raking dual), so at
convergence IPF gives the raking solution (``method="raking"``).

IPF stops when :func:`calibopt.fit.check_weights` (at accuracy ``epsilon``) passes, after
``max_iter`` sweeps, or when the worst error has not improved for ``patience`` sweeps
(conflicting margins make IPF cycle forever; this never does). A stopped result names the
failing margin and, when complete margins disagree on the population total, says so.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, InvalidProblemError
from ..fit import check_weights
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.distances import get_distance
from ..solvers.ipf import IPF
from ..validate import integer, number
from .registry import register_method

__all__ = ["solve"]


def _complete_margins(
    problem: CalibrationProblem, margins: dict, keep: np.ndarray
) -> list[tuple[str, float]]:
    """Margins whose 0/1 rows cover every record exactly once, with their totals."""
    out = []
    n_keep = int(keep.sum())
    for name, rows in margins.items():
        sub = problem.X[rows][:, np.flatnonzero(keep)]
        if sub.nnz != n_keep or not np.all(sub.data == 1.0):
            continue
        if np.all(np.diff(sub.tocsc().indptr) == 1):
            out.append((name, float(problem.targets[rows].sum())))
    return out


@register_method(
    "ipf",
    aliases=("rake", "iterative-proportional-fitting"),
    solvers=("ipf",),
    catalogue="ipf.md",
    summary="classic raking over margins (cyclic exact rescaling); converges to raking",
    guarantee="exact",
    iterations="sweeps over all margins",
    objective="the raking distance sum_i d_i (g_i log g_i - g_i + 1)",
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    epsilon: float = 1e-10,
    max_iter: int = 1000,
    patience: int = 50,
) -> CalibrationResult:
    """Iterative proportional fitting over the margins ``problem.groups``.

    Parameters
    ----------
    problem
        Non-negative X. Ratio/absolute bounds clip the raking factors (bounded raking).
    solver
        None or ``"ipf"``.
    epsilon
        Convergence: :func:`calibopt.fit.check_weights` at accuracy ``epsilon`` passes (every
        target within ``tolerance |b| + epsilon s_j``).
    max_iter
        Most sweeps over all margins.
    patience
        Stop when the worst relative error has not improved by 0.1% over this many sweeps.
    """
    t0 = time.perf_counter()
    if solver is not None and solver.lower() != "ipf":
        raise InvalidProblemError(f"method 'ipf' has one algorithm; got solver={solver!r}.")
    epsilon = number("epsilon", epsilon, low=0.0, strict=True)
    max_iter = integer("max_iter", max_iter, low=1)
    patience = integer("patience", patience, low=1)
    _check(problem)
    d = problem.initial_weights
    keep = d > 0
    glo, ghi = problem.g_bounds()
    codes, labels = pd.factorize(pd.Series(problem.groups, dtype=object), use_na_sentinel=False)
    margins = {str(labels[c]): np.flatnonzero(codes == c) for c in range(labels.size)}
    engine = IPF(problem.X, problem.targets, d, np.maximum(glo, 0.0), ghi, margins, keep)
    converged, stopped, sweep, history = _run(problem, engine, epsilon, max_iter, patience)
    w = engine.weights()
    fit = check_weights(problem, w, accuracy=epsilon)
    per_margin = pd.DataFrame(
        {
            "margin": list(margins),
            "targets": [rows.size for rows in margins.values()],
            "max_rel_error": [float(np.abs(fit.rel_errors[r]).max()) for r in margins.values()],
            "within_tolerance": [bool(fit.target_met[r].all()) for r in margins.values()],
        }
    )
    message = f"converged in {sweep} sweep(s)"
    worst = None
    if not converged:
        failing = per_margin.loc[~per_margin["within_tolerance"]].sort_values(
            "max_rel_error", ascending=False
        )
        worst = failing.iloc[0] if len(failing) else per_margin.iloc[0]
        message = _failure_message(problem, margins, keep, stopped, worst, engine.unbounded)
    return CalibrationResult.from_weights(
        problem,
        w,
        method="ipf",
        solver="ipf",
        # with exact targets the converged point is the raking optimum; with bands IPF stops at
        # the first point inside them, which optimises nothing
        proven_optimal=converged and bool(np.all(problem.tolerance == 0)),
        message=message,
        iterations=sweep,
        objective=float(d[keep] @ get_distance("raking").G(w[keep] / d[keep])),
        timings={"total": time.perf_counter() - t0},
        info={
            "margins": per_margin,
            "error_history": history,
            "failing_margin": None if worst is None else str(worst["margin"]),
        },
    )


def _check(problem: CalibrationProblem) -> None:
    """IPF's requirements: non-negative X and targets, reachable targets, bounds that fit."""
    X = problem.X
    if X.nnz and X.data.min() < 0:
        j = int(np.searchsorted(X.indptr, int(np.argmin(X.data)), side="right") - 1)
        raise InvalidProblemError(
            f"IPF rescales weights multiplicatively and needs a non-negative X; target "
            f"{problem.target_names[j]!r} has negative entries. Use method='raking' or 'linear'."
        )
    b = problem.targets
    neg = np.flatnonzero(b < 0)
    if neg.size:
        raise InfeasibleError(
            f"target(s) {[problem.target_names[j] for j in neg[:5]]} are negative, but X and the "
            f"weights are non-negative.",
            targets=[problem.target_names[j] for j in neg[:10]],
        )
    problem.require_consistent_bounds("ipf", multiplicative=True)
    keep = problem.initial_weights > 0
    # every non-zero target must have a record that can carry weight
    reach = np.asarray(abs(X[:, np.flatnonzero(keep)]).sum(axis=1)).ravel()
    dead = np.flatnonzero((reach == 0) & (b != 0))
    if dead.size:
        names = [problem.target_names[j] for j in dead[:10]]
        raise InfeasibleError(
            f"target(s) {names} have no record with a positive initial weight, so no rescaling "
            f"can reach their non-zero totals.",
            targets=names,
        )


def _run(problem, engine, epsilon, max_iter, patience):
    """Sweeps until the shared check passes, the cap, no progress, or Ctrl-C."""
    history: list[float] = []
    best, best_at, sweep = np.inf, 0, 0
    try:
        for sweep in range(1, max_iter + 1):
            engine.sweep()
            fit = check_weights(problem, engine.weights(), accuracy=epsilon)
            history.append(float(np.abs(fit.rel_errors).max()))
            if fit.targets_ok:
                return True, "", sweep, history
            if history[-1] < best * (1 - 1e-3):
                best, best_at = history[-1], sweep
            elif sweep - best_at >= patience:
                return False, f"no progress in {patience} sweeps", sweep, history
    except KeyboardInterrupt:
        return False, "interrupted", sweep, history
    return False, f"iteration cap ({max_iter} sweeps)", sweep, history


def _failure_message(problem, margins, keep, stopped, worst, unbounded) -> str:
    message = (
        f"did not converge: {stopped}; margin {worst['margin']!r} fails with max relative "
        f"error {worst['max_rel_error']:.3g}"
    )
    totals = _complete_margins(problem, margins, keep)
    if len({round(t, 9) for _, t in totals}) > 1:
        shown = ", ".join(f"{nm!r} sums to {t:.10g}" for nm, t in totals[:6])
        message += (
            f"; the complete margins disagree on the population total ({shown}), so no "
            f"weights can meet them all"
        )
    elif not unbounded:
        message += "; the bounds may be too tight for these margins"
    return message
