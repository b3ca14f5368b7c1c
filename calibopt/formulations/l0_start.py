"""Starting supports of the exact-L0 MIP: reweighted-L1 re-fitted, then shrunk by local search.

:func:`warm_start` gives valid weights (every band and bound met, checked from the weights) to
hand to the MIP as its first incumbent: the user's array, or the reweighted-L1 support re-fitted
exactly; then, for the count objective, :func:`calibopt.solvers.support_search.shrink_support`
removes records by drop and two-for-one moves (each checked by an LP) and the smaller support is
re-fitted. A shrunk support replaces the start only when its re-fitted weights are valid.
:func:`vertex_start` gives a smaller support to restart the MIP from, when the MIP stops short
of a proof (:mod:`calibopt.solvers.vertex_search`), under the same rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from ..fit import check_weights
from ..problem import CalibrationProblem
from ..solvers.highs import highs_model, solve_highs
from ..solvers.linear_program import LinearProgram
from ..solvers.reweighted_l1 import reweighted_l1
from ..solvers.support_search import SupportSearch, shrink_support
from ..solvers.vertex_search import vertex_search
from .l0_model import L0Model
from .support import refit_iterates, refit_support

__all__ = ["search_support", "shrink_start", "vertex_start", "warm_start"]


def warm_start(problem, model: L0Model, start, iterations: int, refit) -> np.ndarray | None:
    """Valid starting weights: an array given by the user, or reweighted-L1 re-fitted."""
    if isinstance(start, np.ndarray):
        start_w = np.asarray(start, dtype=np.float64)
        if start_w.shape != (problem.n_units,):
            raise InvalidProblemError(
                f"`warm_start` has shape {start_w.shape}; give one weight per unit "
                f"({problem.n_units})."
            )
        return start_w
    if not start or model.objective != "count":
        return None
    rl = reweighted_l1(problem, model.domain, max_iter=iterations)
    fitted, _ = refit_iterates(problem, rl, refit or "linear", max_tries=2)
    return fitted


def root_bound(model: L0Model) -> float:
    """The LP relaxation's optimum of the count model (covers included): no support is smaller
    than its ceiling. ``-inf`` when HiGHS does not report an optimum."""
    relaxed = LinearProgram(
        cost=model.lp.cost,
        col_lower=model.lp.col_lower,
        col_upper=model.lp.col_upper,
        A=model.lp.A,
        row_lower=model.lp.row_lower,
        row_upper=model.lp.row_upper,
    )
    out = solve_highs(highs_model(relaxed))
    return float(out.objective) if out.optimal else -np.inf


def search_support(
    model: L0Model,
    counts: np.ndarray,
    seconds: float | None,
    seed: int = 0,
    stop_at: int | None = None,
) -> tuple[SupportSearch, np.ndarray]:
    """:func:`shrink_support` over the model's band rows from ``counts`` kept copies per class;
    returns the search and the record weights of its last feasible LP."""
    C, m = model.n_classes, model.domain.band_lower.size
    scale = model.col_scale[:C]
    search = shrink_support(
        model.lp.A[:m, :C],
        model.lp.row_lower[:m],
        model.lp.row_upper[:m],
        model.link_lower / scale,
        model.link_upper / scale,
        model.multiplicity,
        counts,
        time_limit=seconds,
        seed=seed,
        stop_at=stop_at,
    )
    x = np.zeros(model.n_cols)
    x[:C] = search.values
    x[C : 2 * C] = search.counts
    return search, model.weights_from_solution(x)


def shrink_start(
    problem: CalibrationProblem,
    model: L0Model,
    start_w: np.ndarray | None,
    *,
    seconds: float,
    refit: str | None,
    seed: int,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The start's support shrunk by local search (count objective, valid starts only).

    Returns the new start (or ``start_w`` unchanged) and what the search did.
    """
    if (
        start_w is None
        or seconds <= 0
        or model.objective != "count"
        or not check_weights(problem, start_w, sparse=True).ok
    ):
        return start_w, {}
    x0 = model.start_from_weights(problem, start_w)
    C = model.n_classes
    bound = root_bound(model)
    # the search stops at the rounded-up LP bound (the tolerance guards HiGHS's own)
    stop_at = int(np.ceil(bound - 1e-6)) if np.isfinite(bound) else None
    if stop_at is not None and np.count_nonzero(start_w) <= stop_at:
        return start_w, {"root_lp_bound": bound}
    try:
        search, w = search_support(
            model, np.rint(x0[C : 2 * C]).astype(np.int64), seconds, seed, stop_at
        )
    except ValueError:  # valid to the checker's accuracy but not to the LP's tolerance
        return start_w, {}
    info = {
        "support_search_nnz": int(search.counts.sum()),
        "support_search_moves": {"drops": search.drops, "swaps": search.swaps},
        "support_search_lps": search.lps,
        "support_search_seconds": search.seconds,
        "support_search_stopped": search.stopped,
        "root_lp_bound": bound,
    }
    if search.counts.sum() >= np.count_nonzero(start_w):
        return start_w, info
    valid = _valid(problem, w, refit)
    return (start_w if valid is None else valid), info


def _valid(problem: CalibrationProblem, w: np.ndarray, refit: str | None) -> np.ndarray | None:
    """``w``'s support re-fitted (or ``w`` itself) when the weights meet every band and bound."""
    candidates = []
    if refit:
        fitted, _ = refit_support(problem, np.flatnonzero(w), method=refit)
        if fitted is not None:
            candidates.append(fitted)
    candidates.append(w)
    for cand in candidates:
        if check_weights(problem, cand, sparse=True).ok:
            return cand
    return None


def vertex_start(
    problem: CalibrationProblem,
    model: L0Model,
    weights: np.ndarray,
    *,
    bound: float,
    seconds: float,
    refit: str | None,
    workers: int,
    seed: int,
    options: dict[str, Any],
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Valid weights on fewer records than ``weights`` (valid themselves) by
    :func:`calibopt.solvers.vertex_search.vertex_search`, or None; and what the search did.

    ``bound`` is a lower bound on the count (the MIP's dual bound or the root LP's): the
    search stops at its ceiling.
    """
    count = int(np.count_nonzero(weights))
    stop_at = int(np.ceil(bound - 1e-6)) if np.isfinite(bound) else None
    if seconds <= 0 or (stop_at is not None and count <= stop_at):
        return None, {}
    search = vertex_search(
        model.lp,
        model.n_classes,
        count,
        time_limit=seconds,
        stop_at=stop_at,
        workers=workers,
        options=options,
        seed=seed,
    )
    info = {
        "vertex_search_nnz": search.count,
        "vertex_search_rounds": search.rounds,
        "vertex_search_seconds": search.seconds,
        "vertex_search_stopped": search.stopped,
    }
    if search.x is None:
        return None, info
    valid = _valid(problem, model.hull_weights(search.x), refit)
    if valid is None or np.count_nonzero(valid) >= count:
        return None, info
    return valid, info
