"""``reweighted-l1``: Candes-Wakin-Boyd reweighted-L1 LPs, then an exact re-fit on the support.

The iterations are in :mod:`calibopt.sparse.reweighted`; the first LP is the LP relaxation of
the big-M L0 model (costs ``1 / M_i``), later ones reweight by ``1 / (|w_i| + eps M_i)``. The
sparsest iterate's support is then re-fitted with a core method (``refit="linear"``: the
chi-square-closest weights to the design weights that meet every band within the bounds).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..result import STATUS_STOPPED, STATUS_WITHIN_TOLERANCE, CalibrationResult, target_diagnostics
from ..sparse.cvx import cvxpy_from_arrays
from ..sparse.domain import sparse_domain
from ..sparse.refit import refit_support
from ..sparse.reweighted import column_scale, reweighted_l1
from .registry import register_method

__all__ = ["build", "solve"]


def build(problem: CalibrationProblem, **options: Any) -> Any:
    """The first weighted-L1 LP (the LP relaxation of the L0 model) as a ``cvxpy.Problem``.

    Its cost is a ``cvxpy.Parameter`` (``problem.parameters()[0]``) to set for later iterations.
    The variable is scaled: ``w_i = M_i x_i`` (``M_i`` the record's big-M), rows are divided by
    their band's magnitude; records that may be negative are split as ``w = p - q`` (columns
    ``n + k`` hold ``q``).
    """
    from ..sparse.reweighted import _BandLP

    domain = sparse_domain(problem)
    lp = _BandLP(problem, domain, solver="CLARABEL")
    v = 1.0 / column_scale(problem, domain)
    cost = np.concatenate([v, v[lp.neg]]) * lp.cscale
    prob, _, _, _ = cvxpy_from_arrays(
        cost, lp.col_lo, lp.col_hi, lp.A, lp.row_lo, lp.row_hi, parametric_cost=True
    )
    return prob


@register_method(
    "reweighted-l1",
    aliases=("rl1", "cwb", "reweighted"),
    build=build,
    solvers=("highs", "CLARABEL", "SCS", "ECOS", "HIGHS"),
    catalogue="reweighted-l1.md",
    summary="Candes-Wakin-Boyd reweighted-L1 LPs over the bands; exact re-fit on the support",
    guarantee="approximate",
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    eps: float = 1e-3,
    max_iter: int = 10,
    threshold: float | None = None,
    refit: str | None = "linear",
    progress: bool | None = None,
) -> CalibrationResult:
    """Sparse weights by reweighted L1 minimisation (Candes, Wakin & Boyd 2008).

    Parameters
    ----------
    problem
        Bounds apply to kept records (others are exactly 0); tolerance defines the bands.
    solver
        None or ``"highs"``: HiGHS's simplex directly (exact zeros, warm-started re-solves);
        or a cvxpy solver name (``"CLARABEL"``, ``"HIGHS"`` through cvxpy, ...).
    eps
        Relative smoothing of the weights ``1 / (|w_i| + eps M_i)``.
    max_iter
        Number of weighted-L1 LPs.
    threshold
        A weight below ``threshold * M_i`` counts as zero (default 1e-9 with HiGHS's simplex,
        1e-6 with cvxpy's interior-point solvers).
    refit
        Core method for the exact re-fit on the support (None: keep the LP weights).
    progress
        Progress bar over the LPs (None: when stderr is a terminal); Ctrl-C keeps the best.
    """
    t0 = time.perf_counter()
    if refit is not None and not isinstance(refit, str):
        raise InvalidProblemError(f"`refit` must be a method name or None, got {refit!r}.")
    lp_solver = None if solver is None or str(solver).lower() == "highs" else str(solver)
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise InvalidProblemError(f"`threshold` must be >= 0, got {threshold!r}.")
    domain = sparse_domain(problem)
    bar = None
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(max_iter), desc="reweighted-l1", unit="LP")

    def callback(it: int, k: int) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"support={k}", refresh=False)

    try:
        rl = reweighted_l1(
            problem,
            domain,
            eps=eps,
            max_iter=max_iter,
            solver=lp_solver,
            threshold=threshold,
            callback=callback,
        )
    finally:
        if bar is not None:
            bar.close()
    timings = {"lps": rl.lp_seconds}
    weights = rl.weights
    note = ""
    t1 = time.perf_counter()
    if refit:
        fitted, note = refit_support(problem, np.flatnonzero(weights), method=refit)
        if fitted is not None:
            weights = fitted
    timings["refit"] = time.perf_counter() - t1
    ok = bool(target_diagnostics(problem, weights)["within_tolerance"].all())
    msg = f"{rl.iterations} weighted-L1 LP(s), {rl.stopped}; support sizes {rl.support_sizes}" + (
        f"; {note}, kept the LP weights" if note else ""
    )
    timings["total"] = time.perf_counter() - t0
    return CalibrationResult.from_weights(
        problem,
        weights,
        method="reweighted-l1",
        solver="highs" if lp_solver is None else lp_solver,
        status=STATUS_WITHIN_TOLERANCE if ok and rl.stopped != "interrupted" else STATUS_STOPPED,
        message=msg,
        iterations=rl.iterations,
        objective=float(np.count_nonzero(weights)),
        timings=timings,
        info={
            "support_sizes": rl.support_sizes,
            "history": rl.history,
            "refit": refit if not note else None,
        },
    )
