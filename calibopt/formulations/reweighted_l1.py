"""``reweighted-l1``: Candes-Wakin-Boyd reweighted-L1 LPs, then an exact re-fit on the support.

The iterations are :func:`calibopt.solvers.reweighted_l1.reweighted_l1`; the first LP is the
LP relaxation of the big-M L0 model (costs ``1 / M_i``), later ones reweight by
``1 / (|w_i| + eps M_i)``. An LP iterate lies in the convex hull of the sparse domain, so a kept
weight may sit below its lower bound; the re-fit (``refit="linear"``: the chi-square-closest
weights to the design weights that meet every band within the bounds) makes it valid. The
supports are tried from the sparsest iterate to the densest; when none can be re-fitted, the
sparsest iterate is projected onto the bounds and the status says what it misses.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.cvx import cvxpy_model
from ..solvers.domain import project_semicontinuous, sparse_domain
from ..solvers.reweighted_l1 import BandLP, column_scale, reweighted_l1
from ..validate import number, optional_text
from .registry import register_method
from .support import refit_iterates

__all__ = ["build", "solve"]


def build(problem: CalibrationProblem, **options: Any) -> Any:
    """The first weighted-L1 LP (the LP relaxation of the L0 model) as a ``cvxpy.Problem``.

    Its cost is a ``cvxpy.Parameter`` (``problem.parameters()[0]``) to set for later iterations.
    The variable is scaled: ``w_i = M_i x_i`` (``M_i`` the record's big-M), rows are divided by
    their band's magnitude; records that may be negative are split as ``w = p - q`` (columns
    ``n + k`` hold ``q``).
    """
    domain = sparse_domain(problem)
    lp = BandLP(problem, domain, solver="CLARABEL")
    cost = lp.costs(1.0 / column_scale(problem, domain))
    return cvxpy_model(lp.lp.with_cost(cost), parametric_cost=True)[0]


@register_method(
    "reweighted-l1",
    aliases=("rl1", "cwb", "reweighted"),
    build=build,
    solvers=("highs", "CLARABEL", "SCS", "ECOS", "HIGHS"),
    catalogue="reweighted-l1.md",
    summary="Candes-Wakin-Boyd reweighted-L1 LPs over the bands; exact re-fit on the support",
    guarantee="approximate",
    iterations="weighted-L1 LPs solved",
    objective="the number of non-zero weights",
    sparse=True,
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
        Distance method for the exact re-fit on the support (None: keep the LP weights,
        projected onto the bounds).
    progress
        Progress bar over the LPs (None: when stderr is a terminal); Ctrl-C keeps the best.
    """
    t0 = time.perf_counter()
    refit = optional_text("refit", refit)
    lp_solver = None if solver is None or solver.lower() == "highs" else solver
    if threshold is not None:
        threshold = number("threshold", threshold, low=0.0)
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
    t1 = time.perf_counter()
    weights, note = (None, "") if refit is None else refit_iterates(problem, rl, refit)
    refitted = weights is not None
    if not refitted:
        # keep the sparsest LP iterate, projected onto the kept-record bounds
        weights = project_semicontinuous(rl.weights, domain.lower, domain.upper)
        if refit is not None:
            note = f"no support could be re-fitted ({note}); kept the LP weights"
    timings["refit"] = time.perf_counter() - t1
    msg = f"{rl.iterations} weighted-L1 LP(s), {rl.stopped}; support sizes {rl.support_sizes}"
    timings["total"] = time.perf_counter() - t0
    return CalibrationResult.from_weights(
        problem,
        weights,
        method="reweighted-l1",
        solver="highs" if lp_solver is None else lp_solver,
        proven_optimal=False,
        sparse=True,
        message=msg + (f"; {note}" if note else ""),
        iterations=rl.iterations,
        objective=float(np.count_nonzero(weights)),
        timings=timings,
        info={
            "support_sizes": rl.support_sizes,
            "history": rl.history,
            "refit": refit if refitted else None,
        },
    )
