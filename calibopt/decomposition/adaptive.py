"""Adaptive sparsity by area: a per-area L0 price, so each area meets its tolerance cheaply.

One global sparsity penalty treats every area alike: large or heterogeneous areas miss their
targets while small or easy ones keep more records than they need. :func:`adaptive_sparsity`
gives each area ``a`` its own price ``lambda_a`` (the ``hard-concrete`` method's per-unit
``lambda_l0``) and adjusts them over a few runs: ``lambda_a`` is multiplied by
``tol_a / error_a`` (clipped to ``[1 / step, step]``), so an area whose local targets miss the
tolerance gets a lower price and an area well within it a higher one, and once an area has
met and missed its tolerance the price stays inside that bracket (its geometric middle when
the step would leave it). With ``per_area=False`` the same search runs on one global price,
steered by the area furthest from its tolerance, so the two can be compared at the same
worst-area error.

The exact counterpart for ``l0-mip`` needs no search: ``calibrate(problem, "l0-mip",
blocks=area)`` already returns, per area, the fewest records meeting its bands, and
``max_records=per_block({...})`` sets a budget per area (:func:`calibopt.decomposition.per_block`).

Each run is a full ``hard-concrete`` training; the controller is a heuristic (the training is
stochastic and areas share their state and national targets): the result reports, per area,
the records kept, the local error reached and the price, and says which areas did not reach
the tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from ..fit import relative_errors, target_scale
from ..formulations.registry import run_method
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..validate import integer, number
from .plan import plan_blocks

__all__ = ["AdaptiveSparsity", "adaptive_sparsity", "area_errors"]


@dataclass
class AdaptiveSparsity:
    """What :func:`adaptive_sparsity` returns.

    Attributes
    ----------
    result : CalibrationResult
        The kept run: the one with the fewest records among those meeting the tolerance in
        every area (else the one with the smallest worst-area error).
    areas : pandas.DataFrame
        One row per area: ``area``, ``units``, ``local_targets``, ``records`` (non-zero
        weights), ``error`` (largest |relative error| of its local targets), ``tolerance``,
        ``met``, ``lambda_l0``.
    history : pandas.DataFrame
        One row per run: ``round``, ``records``, ``worst_area_error``, ``areas_met``,
        ``seconds``.
    met : bool
        Every area within its tolerance in the kept run.
    per_area : bool
    seconds : float
    """

    result: CalibrationResult
    areas: Any
    history: Any
    met: bool
    per_area: bool
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Non-zero weights of the kept run."""
        return self.result.nnz

    @property
    def worst_area_error(self) -> float:
        """Largest local relative error over areas in the kept run."""
        return float(self.areas["error"].max())


def area_errors(problem: CalibrationProblem, weights: np.ndarray, plan: Any) -> np.ndarray:
    """Largest |relative error| of each block's local targets (0 for a block without any)."""
    rel = np.abs(_rel_errors(problem, weights))
    return np.array([float(rel[loc].max()) if loc.size else 0.0 for loc in plan.local])


def _rel_errors(problem: CalibrationProblem, w: np.ndarray) -> np.ndarray:
    return relative_errors(problem.X @ w - problem.targets, target_scale(problem, w))


def _next_price(lam, lo, hi, err, tol, step):
    """New prices from the errors: proportional to ``tol / err`` (at most ``step`` either way),
    kept inside the bracket of prices known to meet (``lo``) and to miss (``hi``)."""
    ok = err <= tol
    lo = np.where(ok, np.maximum(lo, lam), lo)  # largest price known to meet
    hi = np.where(~ok, np.minimum(hi, lam), hi)  # smallest price known to miss
    with np.errstate(divide="ignore"):
        ratio = np.where(err > 0, tol / np.where(err > 0, err, 1.0), np.inf)
    new = lam * np.clip(ratio, 1.0 / step, step)
    both = (lo > 0) & np.isfinite(hi)
    outside = both & ((new <= lo) | (new >= hi))
    new = np.where(outside, np.sqrt(np.maximum(lo, 1e-300) * hi), new)
    return new, lo, hi


def adaptive_sparsity(
    problem: CalibrationProblem,
    labels: Any,
    *,
    tolerance: float | dict[Any, float] = 0.05,
    lambda_l0: float = 1e-6,
    rounds: int = 6,
    step: float = 3.0,
    per_area: bool = True,
    options: dict[str, Any] | None = None,
) -> AdaptiveSparsity:
    """Choose an L0 price per area (or one global price) so each area meets its tolerance.

    Parameters
    ----------
    problem
        The calibration problem.
    labels
        The area of each unit (e.g. the district of each column).
    tolerance
        Largest relative error allowed on each area's local targets (targets whose units all
        lie in the area): one number, or a mapping area -> number.
    lambda_l0
        Starting price (per area, or the global one).
    rounds
        ``hard-concrete`` runs.
    step
        Largest factor by which a price moves in one round.
    per_area
        One price per area (adaptive) or one for all (global, for comparison).
    options
        Further ``hard-concrete`` options (``epochs``, ``lr``, ``seed``, ...); ``polish`` is
        None unless given (the fit measured is the training's own).

    Returns
    -------
    AdaptiveSparsity
    """
    import pandas as pd

    t0 = time.perf_counter()
    rounds = integer("rounds", rounds, low=1)
    step = number("step", step, low=1.0, strict=True)
    lam0 = number("lambda_l0", lambda_l0, low=0.0, strict=True)
    plan = plan_blocks(problem, labels)
    K = plan.n_blocks
    if isinstance(tolerance, dict):
        tol = np.array([float(tolerance.get(lab, np.nan)) for lab in plan.labels])
        if np.isnan(tol).any():
            raise InvalidProblemError("`tolerance` must give a value for every area.")
    else:
        tol = np.full(K, number("tolerance", tolerance, low=0.0, strict=True))
    unit_block = np.empty(problem.n_units, dtype=np.int64)
    for k, U in enumerate(plan.units):
        unit_block[U] = k
    opts = {"polish": None, "progress": False, **(options or {})}
    lam = np.full(K, lam0)
    lo, hi = np.zeros(K), np.full(K, np.inf)
    best: tuple[Any, ...] | None = None
    history = []
    for r in range(rounds):
        ts = time.perf_counter()
        price = lam[unit_block] if per_area else float(lam[0])
        res = run_method(problem, "hard-concrete", lambda_l0=price, **opts)
        err = area_errors(problem, res.weights, plan)
        ok = err <= tol
        history.append(
            {
                "round": r,
                "records": res.nnz,
                "worst_area_error": float(err.max(initial=0.0)),
                "areas_met": int(ok.sum()),
                "seconds": time.perf_counter() - ts,
            }
        )
        key = (not ok.all(), res.nnz if ok.all() else float((err / tol).max()))
        if best is None or key < best[0]:
            best = (key, res, err, ok, lam.copy())
        if per_area:
            lam, lo, hi = _next_price(lam, lo, hi, err, tol, step)
        else:  # one price, steered by the area furthest from its tolerance
            worst = np.array([float((err / tol).max(initial=0.0))])
            nxt, glo, ghi = _next_price(lam[:1], lo[:1], hi[:1], worst, np.ones(1), step)
            lam, lo, hi = np.full(K, nxt[0]), np.full(K, glo[0]), np.full(K, ghi[0])
    assert best is not None
    _, res, err, ok, lam_kept = best
    nz = res.weights != 0
    areas = pd.DataFrame(
        {
            "area": plan.labels,
            "units": [U.size for U in plan.units],
            "local_targets": [loc.size for loc in plan.local],
            "records": [int(nz[U].sum()) for U in plan.units],
            "error": err,
            "tolerance": tol,
            "met": ok,
            "lambda_l0": lam_kept,
        }
    )
    notes = []
    if not ok.all():
        notes.append(f"{int((~ok).sum())} area(s) did not reach their tolerance in {rounds} runs")
    return AdaptiveSparsity(
        result=res,
        areas=areas,
        history=pd.DataFrame(history),
        met=bool(ok.all()),
        per_area=per_area,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )
