"""``ipf``: iterative proportional fitting (classic raking) over margins.

A *margin* is a group of targets (``problem.groups``; :func:`calibopt.problem_from_margins`
makes one per variable). One sweep visits the margins in order and, for each target ``j`` of
the margin, rescales the weights of the records in it so that its total is met exactly::

    w_i  <-  d_i clip(exp(eta_i + delta_j x_ji), L_i, U_i),   eta_i += delta_j x_ji

For 0/1 rows without binding bounds ``delta_j = log(b_j / estimate_j)`` -- the textbook IPF
factor ``b_j / estimate_j``; for amounts or bounds ``delta_j`` solves the one-dimensional
equation exactly (safeguarded Newton). This is cyclic coordinate ascent on the dual of
(bounded) raking, so at convergence IPF gives the raking solution (``method="raking"``).

IPF stops when every target is within ``tolerance |b| + epsilon max(|b|, 1)``, after
``max_iter`` sweeps, or when the worst error has not improved for ``patience`` sweeps
(conflicting margins make IPF cycle forever; this never does). A stopped result names the
failing margin and, when complete margins disagree on the population total, says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..distances import get_distance
from ..errors import InfeasibleError, InvalidProblemError
from ..problem import CalibrationProblem
from ..result import STATUS_OPTIMAL, STATUS_STOPPED, STATUS_WITHIN_TOLERANCE, CalibrationResult
from .registry import register_method

__all__ = ["solve"]


@dataclass
class _Layer:
    """Rows of one margin whose record sets are disjoint (updated together)."""

    rows: np.ndarray  # global target positions
    entry_row: np.ndarray  # local row (0..len(rows)-1) of each entry
    units: np.ndarray
    x: np.ndarray  # entries divided by their row's largest entry
    scale: np.ndarray  # each row's largest entry
    binary: bool


def _layers(problem: CalibrationProblem, rows: np.ndarray, keep: np.ndarray) -> list[_Layer]:
    """Split a margin's rows into layers of rows with disjoint records (greedy, in order)."""
    X = problem.X
    out: list[_Layer] = []
    pending = list(rows)
    while pending:
        layer_rows, rest = [], []
        seen = np.zeros(problem.n_units, dtype=bool)
        for j in pending:
            cols = X.indices[X.indptr[j] : X.indptr[j + 1]]
            cols = cols[keep[cols]]
            if seen[cols].any():
                rest.append(j)
                continue
            seen[cols] = True
            layer_rows.append(j)
        r = np.asarray(layer_rows)
        sub = X[r]
        counts = np.diff(sub.indptr)
        er = np.repeat(np.arange(r.size), counts)
        units = sub.indices
        m = keep[units]
        # each row's entries scaled to at most 1 (delta is then per unit of the row's largest
        # entry, which keeps exp() in range for amounts in the millions)
        rowmax = np.zeros(r.size)
        np.maximum.at(rowmax, er[m], sub.data[m])
        x = sub.data[m] / rowmax[er[m]]
        out.append(_Layer(r, er[m], units[m], x, rowmax, bool(np.all(x == 1.0))))
        pending = rest
    return out


def _solve_layer(
    layer: _Layer,
    eta: np.ndarray,
    d: np.ndarray,
    glo: np.ndarray,
    ghi: np.ndarray,
    b: np.ndarray,
    unbounded: bool,
) -> None:
    """Update ``eta`` so that each row of the layer meets its target exactly (in place)."""
    k = layer.rows.size
    er, u, x = layer.entry_row, layer.units, layer.x
    bj = b[layer.rows] / layer.scale  # in units of the scaled entries
    eta_e = eta[u]
    de, le, he = d[u], glo[u], ghi[u]

    def total(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):
            z = eta_e + delta[er] * x
            g = np.exp(z)
            gc = np.clip(g, le, he)
        t = np.bincount(er, weights=x * de * gc, minlength=k)
        free = (g > le) & (g < he)
        dt = np.bincount(er, weights=np.where(free, x * x * de * g, 0.0), minlength=k)
        return t, dt

    est, _ = total(np.zeros(k))
    zero = bj == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where((est > 0) & (bj > 0), np.log(bj / est), 0.0)
    if not (layer.binary and unbounded):
        _newton(total, delta, bj, zero)
    delta = np.where(zero, -np.inf, delta)
    with np.errstate(invalid="ignore"):
        eta[u] = eta_e + delta[er] * x


def _newton(total, delta: np.ndarray, bj: np.ndarray, zero: np.ndarray) -> None:
    """Safeguarded Newton on the monotone row totals ``total(delta) = bj`` (in place)."""
    k = delta.size
    with np.errstate(all="ignore"):
        lo = np.full(k, -np.inf)
        hi = np.full(k, np.inf)
        for _ in range(100):
            t, dt = total(delta)
            F = t - bj
            lo = np.where(F < 0, delta, lo)
            hi = np.where(F > 0, delta, hi)
            done = (np.abs(F) <= 1e-13 * np.abs(bj)) | (
                hi - lo <= 4e-16 * np.maximum(1, np.abs(delta))
            )
            if np.all(done | zero):
                break
            step = delta - F / dt
            bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
            mid = np.where(
                np.isfinite(lo) & np.isfinite(hi),
                0.5 * (lo + hi),
                np.where(
                    np.isfinite(lo),
                    lo + np.maximum(1.0, np.abs(lo)),
                    hi - np.maximum(1.0, np.abs(hi)),
                ),
            )
            # a row the bounds cannot bring to its target: stop at the bound it tends to
            delta[:] = np.clip(np.where(done | zero, delta, np.where(bad, mid, step)), -700, 700)


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
        Convergence: every target within ``tolerance |b| + epsilon max(|b|, 1)``.
    max_iter
        Most sweeps over all margins.
    patience
        Stop when the worst relative error has not improved by 0.1% over this many sweeps.
    """
    t0 = time.perf_counter()
    if solver is not None and str(solver).lower() != "ipf":
        raise InvalidProblemError(f"method 'ipf' has one algorithm; got solver={solver!r}.")
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise InvalidProblemError(f"`epsilon` must be > 0, got {epsilon!r}.")
    for nm, v in (("max_iter", max_iter), ("patience", patience)):
        if int(v) != v or v < 1:
            raise InvalidProblemError(f"`{nm}` must be a positive integer, got {v!r}.")
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
    d = problem.initial_weights
    keep = d > 0
    glo, ghi = problem.g_bounds()
    glo = np.maximum(glo, 0.0)
    unbounded = bool(np.all(glo[keep] <= 0) and np.all(np.isposinf(ghi[keep])))
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
    codes, labels = pd.factorize(pd.Series(problem.groups, dtype=object), use_na_sentinel=False)
    margins = {str(labels[c]): np.flatnonzero(codes == c) for c in range(labels.size)}
    plan = [(name, _layers(problem, rows, keep)) for name, rows in margins.items()]
    eta = np.zeros(problem.n_units)
    slack = problem.tolerance * np.abs(b) + epsilon * np.maximum(np.abs(b), 1.0)
    denom = np.where(b != 0, np.abs(b), 1.0)
    history: list[float] = []
    best = np.inf
    best_at = 0
    stopped = ""
    converged = False
    sweep = 0

    def weights() -> np.ndarray:
        with np.errstate(over="ignore"):
            g = np.clip(np.exp(eta), glo, ghi)
        return np.where(keep, d * g, 0.0)

    try:
        for sweep in range(1, int(max_iter) + 1):
            for _, layers in plan:
                for layer in layers:
                    _solve_layer(layer, eta, d, glo, ghi, b, unbounded)
            err = X @ weights() - b
            history.append(float(np.max(np.abs(err) / denom)))
            if np.all(np.abs(err) <= slack):
                converged = True
                break
            if history[-1] < best * (1 - 1e-3):
                best, best_at = history[-1], sweep
            elif sweep - best_at >= patience:
                stopped = f"no progress in {patience} sweeps"
                break
        else:
            stopped = f"iteration cap ({max_iter} sweeps)"
    except KeyboardInterrupt:
        stopped = "interrupted"
    w = weights()
    err = X @ w - b
    rel = np.abs(err) / denom
    per_margin = pd.DataFrame(
        {
            "margin": list(margins),
            "targets": [rows.size for rows in margins.values()],
            "max_rel_error": [float(rel[rows].max()) for rows in margins.values()],
            "within_tolerance": [
                bool(np.all(np.abs(err[rows]) <= slack[rows])) for rows in margins.values()
            ],
        }
    )
    if converged:
        status = STATUS_OPTIMAL if np.all(problem.tolerance == 0) else STATUS_WITHIN_TOLERANCE
        message = f"converged in {sweep} sweep(s)"
    else:
        status = STATUS_STOPPED
        failing = per_margin.loc[~per_margin["within_tolerance"]].sort_values(
            "max_rel_error", ascending=False
        )
        worst = failing.iloc[0] if len(failing) else per_margin.iloc[0]
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
    return CalibrationResult.from_weights(
        problem,
        w,
        method="ipf",
        solver="ipf",
        status=status,
        message=message,
        iterations=sweep,
        objective=float(d[keep] @ get_distance("raking").G(w[keep] / d[keep])),
        timings={"total": time.perf_counter() - t0},
        info={
            "margins": per_margin,
            "error_history": history,
            "failing_margin": None if converged else str(worst["margin"]),
        },
    )
