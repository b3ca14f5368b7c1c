"""``cross-category``: keep a proportional sample of every cross-category cell, then calibrate it.

The selection of the sparse-calibration paper: records are grouped by the cross product of
their categorical targets (a record's *cell* is the set of count rows it belongs to); each
cell keeps a seeded sample proportional to its size and at least one record, so exactly
``n_keep`` records survive; the kept records start from their design weights scaled up to
their cell's design total and are calibrated to the categorical targets (``calibration="ipf"``
as in the paper, or ``"linear"``). Dropped records get weight exactly 0.

``refine`` adds the hybrid the paper leaves open: after the selection and calibration, fit
*every* target (continuous ones too) on the kept records -- ``"linear"``: the chi-square-closest
weights to the calibrated ones that meet every band within the bounds (exact; if the kept
records cannot meet them it falls back to ``"gradient"``), or ``"gradient"``: the
group-normalised relative-error loss, started from the calibrated weights.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import CalibrationError, InvalidProblemError
from ..fit import check_weights
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.domain import project_semicontinuous
from ..validate import choice, integer, number
from .registry import register_method, run_method
from .support import calibrate_bands

__all__ = ["apportion", "categorical_targets", "cell_labels", "sample_cells", "solve"]

CALIBRATIONS = ("ipf", "linear", "raking")
REFINES = (None, "linear", "gradient")


def cell_labels(X_cat: sp.spmatrix) -> np.ndarray:
    """Cell of each record: records with the same pattern of categorical rows share a cell.

    ``X_cat`` holds the categorical targets' rows (targets x records); a record's cell is the
    set of rows it has a non-zero in (the cross product of its categories). Patterns are
    compared through two independent random projections of the 0/1 pattern.

    Returns
    -------
    ndarray of int
        Cell code per record, ``0..n_cells-1`` in order of first appearance.
    """
    P = sp.csc_matrix(X_cat, dtype=np.float64, copy=True)
    P.data[:] = 1.0
    rng = np.random.default_rng(7)
    r = rng.standard_normal((P.shape[0], 2))
    h = P.T @ r
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([h[:, 0], h[:, 1]]), sort=False)
    return codes.astype(np.int64)


def apportion(sizes: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` over cells in proportion to ``sizes``, each cell in ``[1, size]``.

    Largest-remainder apportionment of the quotas ``sizes * lam`` with the multiplier ``lam``
    found by bisection so that the floors (clipped to ``[1, size]``) sum to at most ``k``; the
    remaining seats go to the largest fractional parts. The total is exactly ``k``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    C = sizes.size
    n = int(sizes.sum())
    if not (C <= k <= n):
        raise InvalidProblemError(
            f"cannot keep {k} records from {C} cells of {n} records: keeping at least one per "
            f"cell needs k >= {C}, and k <= {n}."
        )

    def seats(lam: float) -> np.ndarray:
        return np.clip(np.floor(sizes * lam), 1, sizes).astype(np.int64)

    lo, hi = 0.0, 1.0
    while seats(hi).sum() < k:  # pragma: no cover - hi = 1 already gives n seats
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if seats(mid).sum() <= k:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    a = seats(lo)
    rest = k - int(a.sum())
    if rest > 0:
        frac = sizes * hi - np.floor(sizes * lo)
        frac = np.where(a < sizes, frac, -np.inf)
        order = np.argsort(-frac, kind="stable")[:rest]
        a[order] += 1
    return a


def sample_cells(
    cells: np.ndarray,
    quota: np.ndarray,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Positions of ``quota[c]`` records drawn without replacement from each cell ``c``.

    Uniform within a cell, or with probability proportional to ``weights`` (Efraimidis-Spirakis
    keys ``log(u) / weight``). Vectorised: one sort of all records.
    """
    u = rng.random(cells.size)
    if weights is None:
        key = u
    else:
        with np.errstate(divide="ignore"):
            key = np.where(weights > 0, np.log(u) / weights, -np.inf)
    order = np.lexsort((-key, cells))
    sorted_cells = cells[order]
    start = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.arange(cells.size) - start
    keep = rank < quota[sorted_cells]
    return np.sort(order[keep])


def categorical_targets(problem: CalibrationProblem, categorical: Any = None) -> np.ndarray:
    """Positions of the categorical (count) targets.

    Parameters
    ----------
    categorical
        None: the rows whose non-zeros are all 1 (counts of records in a category); a boolean
        mask over targets; or names of targets or of target groups.
    """
    m = problem.n_targets
    if categorical is None:
        X = problem.X
        rows = np.repeat(np.arange(m), np.diff(X.indptr))
        not_one = np.bincount(rows, weights=(X.data != 1.0), minlength=m)
        nnz = np.diff(X.indptr)
        return np.flatnonzero((not_one == 0) & (nnz > 0))
    arr = np.asarray(categorical)
    if arr.dtype == bool:
        if arr.shape != (m,):
            raise InvalidProblemError(
                f"`categorical` mask has shape {arr.shape}; expected ({m},), one per target."
            )
        return np.flatnonzero(arr)
    wanted = {str(v) for v in np.atleast_1d(arr)}
    names = np.asarray(problem.target_names, dtype=object)
    groups = np.asarray([str(g) for g in problem.groups], dtype=object)
    hit = np.isin(names, list(wanted)) | np.isin(groups, list(wanted))
    unknown = wanted - set(names[hit]) - set(groups[hit])
    if unknown:
        raise InvalidProblemError(
            f"`categorical` names {sorted(unknown)[:5]} match no target name or group."
        )
    return np.flatnonzero(hit)


def _sub(
    problem: CalibrationProblem, units: np.ndarray, rows: np.ndarray, d: np.ndarray
) -> CalibrationProblem:
    """Kept records x some targets, started from ``d``, with the original absolute bounds."""
    lo, hi = problem.weight_bounds()
    return CalibrationProblem(
        problem.X[rows][:, units],
        problem.targets[rows],
        initial_weights=d,
        bounds=(lo[units], hi[units]),
        tolerance=problem.tolerance[rows],
        target_names=[problem.target_names[j] for j in rows],
        groups=problem.groups[rows],
    )


def _n_keep(n: int, n_keep: Any, sparsity: Any) -> int:
    if (n_keep is None) == (sparsity is None):
        raise InvalidProblemError("give exactly one of `n_keep` (records to keep) or `sparsity`.")
    if sparsity is not None:
        sparsity = number("sparsity", sparsity, low=0.0)
        if not sparsity < 1:
            raise InvalidProblemError(f"`sparsity` must be in [0, 1), got {sparsity!r}.")
        return max(1, round(n * (1 - sparsity)))
    return integer("n_keep", n_keep, low=1)


def _select(problem, cat, n_keep, seed, sampling):
    """Kept records (a proportional sample of every cell) and their expanded design weights."""
    d = problem.initial_weights
    cells = cell_labels(problem.X[cat])
    sizes = np.bincount(cells)
    quota = apportion(sizes, int(n_keep))
    rng = np.random.default_rng(seed)
    kept = sample_cells(cells, quota, rng, d if sampling == "weighted" else None)
    # expansion: each kept record carries its cell's design total in proportion to its d
    cell_d = np.bincount(cells, weights=d, minlength=sizes.size)
    kept_d = np.bincount(cells[kept], weights=d[kept], minlength=sizes.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(kept_d > 0, cell_d / kept_d, 0.0)
    d_exp = d[kept] * factor[cells[kept]]
    d_exp = np.where(d_exp > 0, d_exp, np.where(d[kept] > 0, d[kept], 1.0))
    return kept, d_exp, int(sizes.size)


def _calibrate_cells(problem, kept, cat, d_exp, calibration, notes):
    """The paper's step: calibrate the kept records to the categorical targets."""
    try:
        sub = _sub(problem, kept, cat, d_exp)
        if calibration == "ipf":
            res = run_method(sub, "ipf")
        else:
            res = calibrate_bands(sub, calibration)
    except CalibrationError as exc:
        notes.append(f"{calibration} on the categorical targets failed: {exc}")
        return d_exp, None
    notes.append(f"{calibration} on {cat.size} categorical targets: {res.status}")
    if not res.success:
        notes.append(res.message)
    return res.weights, res.iterations


def _refine(problem, kept, start, refine, options, notes):
    """The hybrid: fit every target on the kept records."""
    sub = _sub(problem, kept, np.arange(problem.n_targets), start)
    method = refine
    try:
        if refine == "linear":
            res = calibrate_bands(sub, "linear", **options)
        else:
            res = run_method(sub, refine, **options)
    except CalibrationError as exc:
        if refine != "linear":
            raise
        notes.append(f"linear refine failed ({str(exc)[:200]}); gradient instead")
        method = "gradient"
        res = run_method(sub, "gradient", init=start)
    notes.append(f"{method} refine on all {problem.n_targets} targets: {res.status}")
    return res.weights, res.iterations


@register_method(
    "cross-category",
    aliases=("cross-cat", "cells"),
    solvers=("ipf", "newton"),
    catalogue="cross-category.md",
    summary="proportional seeded sample of every cross-category cell, calibrated; optional refine",
    guarantee="approximate",
    iterations="iterations of the last calibration run (IPF sweeps, Newton steps, ...)",
    objective="the number of non-zero weights",
    sparse=True,
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    n_keep: int | None = None,
    sparsity: float | None = None,
    categorical: Any = None,
    seed: int = 0,
    sampling: str = "uniform",
    calibration: str = "ipf",
    refine: str | None = None,
    refine_options: dict[str, Any] | None = None,
) -> CalibrationResult:
    """Cross-category selection and calibration (optionally refined on every target).

    Parameters
    ----------
    problem
        Categorical targets are count rows (all entries 1) unless ``categorical`` says which.
    solver
        Ignored (the calibration and refine methods pick theirs).
    n_keep, sparsity
        Exactly one: the number of records to keep, or the share of zero weights
        (``n_keep = round(n (1 - sparsity))``).
    categorical
        Which targets define the cells (see :func:`categorical_targets`).
    seed
        Seed of the within-cell samples (same seed, same selection).
    sampling
        ``"uniform"`` within each cell, or ``"weighted"``: probability proportional to the
        design weight.
    calibration
        Calibration of the kept records to the categorical targets: ``"ipf"`` (the paper),
        ``"linear"`` or ``"raking"``.
    refine
        None (the paper's method), ``"linear"`` or ``"gradient"``: then fit every target.
    refine_options
        Options for the refine method (e.g. ``{"l2": 1e-3}`` for ``"gradient"``).
    """
    t0 = time.perf_counter()
    n = problem.n_units
    n_keep = _n_keep(n, n_keep, sparsity)
    seed = integer("seed", seed, low=0)
    choice("sampling", sampling, ("uniform", "weighted"))
    choice("calibration", calibration, CALIBRATIONS)
    choice("refine", refine, REFINES)
    if refine_options is not None and not isinstance(refine_options, dict):
        raise InvalidProblemError(f"`refine_options` must be a dict, got {refine_options!r}.")
    cat = categorical_targets(problem, categorical)
    if cat.size == 0:
        raise InvalidProblemError(
            "no categorical targets: cross-category selection needs count rows (entries all 1) "
            "or `categorical=` naming the targets that define the cells."
        )
    kept, d_exp, n_cells = _select(problem, cat, n_keep, seed, sampling)
    timings = {"select": time.perf_counter() - t0}
    notes = [f"kept {kept.size} of {n} records from {n_cells} cells"]
    t1 = time.perf_counter()
    w_kept, its = _calibrate_cells(problem, kept, cat, d_exp, calibration, notes)
    timings["calibrate"] = time.perf_counter() - t1
    if refine is not None:
        t2 = time.perf_counter()
        start = np.where(w_kept > 0, w_kept, d_exp)
        w_kept, its = _refine(problem, kept, start, refine, dict(refine_options or {}), notes)
        timings["refine"] = time.perf_counter() - t2
    w = np.zeros(n)
    lo, hi = problem.weight_bounds()
    # a failed step leaves weights that may break the bounds: never return those
    w[kept] = project_semicontinuous(w_kept, lo[kept], hi[kept])
    fit = check_weights(problem, w, sparse=True)
    rel = np.abs(fit.rel_errors)
    cont = np.setdiff1d(np.arange(problem.n_targets), cat)
    timings["total"] = time.perf_counter() - t0
    return CalibrationResult.from_weights(
        problem,
        w,
        method="cross-category",
        solver=calibration if refine is None else f"{calibration}+{refine}",
        proven_optimal=False,
        sparse=True,
        message="; ".join(notes),
        iterations=its,
        objective=float(np.count_nonzero(w)),
        timings=timings,
        info={
            "n_cells": n_cells,
            "n_keep": int(kept.size),
            "kept": kept,
            "categorical_targets": [problem.target_names[j] for j in cat],
            "max_rel_error_categorical": float(rel[cat].max()),
            "max_rel_error_continuous": float(rel[cont].max()) if cont.size else 0.0,
        },
    )
