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

from ..errors import CalibrationError, InvalidProblemError
from ..problem import CalibrationProblem
from ..result import CalibrationResult, relative_errors
from ..sparse.cells import apportion, cell_labels, sample_cells
from ..sparse.domain import kept_bounds
from ..sparse.refit import calibrate_bands
from .registry import register_method

__all__ = ["categorical_targets", "solve"]

CALIBRATIONS = ("ipf", "linear", "raking")
REFINES = (None, "linear", "gradient")


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
    lo, hi = kept_bounds(problem)
    return CalibrationProblem(
        problem.X[rows][:, units],
        problem.targets[rows],
        initial_weights=d,
        bounds=(lo[units], hi[units]),
        tolerance=problem.tolerance[rows],
        target_names=[problem.target_names[j] for j in rows],
        groups=problem.groups[rows],
    )


@register_method(
    "cross-category",
    aliases=("cross-cat", "cells"),
    solvers=("ipf", "newton"),
    catalogue="cross-category.md",
    summary="proportional seeded sample of every cross-category cell, calibrated; optional refine",
    guarantee="approximate",
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
    from ..calibrate import calibrate

    t0 = time.perf_counter()
    n = problem.n_units
    if (n_keep is None) == (sparsity is None):
        raise InvalidProblemError("give exactly one of `n_keep` (records to keep) or `sparsity`.")
    if sparsity is not None:
        if not (0 <= sparsity < 1):
            raise InvalidProblemError(f"`sparsity` must be in [0, 1), got {sparsity!r}.")
        n_keep = max(1, round(n * (1 - sparsity)))
    if int(n_keep) != n_keep or n_keep < 1:
        raise InvalidProblemError(f"`n_keep` must be a positive integer, got {n_keep!r}.")
    if sampling not in ("uniform", "weighted"):
        raise InvalidProblemError(f"`sampling` must be 'uniform' or 'weighted', got {sampling!r}.")
    if calibration not in CALIBRATIONS:
        raise InvalidProblemError(
            f"`calibration` must be one of {CALIBRATIONS}, got {calibration!r}."
        )
    if refine not in REFINES:
        raise InvalidProblemError(f"`refine` must be one of {REFINES}, got {refine!r}.")
    cat = categorical_targets(problem, categorical)
    if cat.size == 0:
        raise InvalidProblemError(
            "no categorical targets: cross-category selection needs count rows (entries all 1) "
            "or `categorical=` naming the targets that define the cells."
        )
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
    timings = {"select": time.perf_counter() - t0}
    notes = [f"kept {kept.size} of {n} records from {sizes.size} cells"]
    # ---- the paper: calibrate the kept records to the categorical targets
    t1 = time.perf_counter()
    w_kept = d_exp
    try:
        sub = _sub(problem, kept, cat, d_exp)
        res = (
            calibrate(sub, method="ipf")
            if calibration == "ipf"
            else calibrate_bands(sub, calibration)
        )
        w_kept = res.weights
        notes.append(f"{calibration} on {cat.size} categorical targets: {res.status}")
        if not res.success:
            notes.append(res.message)
    except CalibrationError as exc:
        notes.append(f"{calibration} on the categorical targets failed: {exc}")
    timings["calibrate"] = time.perf_counter() - t1
    # ---- the hybrid: refine on every target
    if refine is not None:
        t2 = time.perf_counter()
        all_rows = np.arange(problem.n_targets)
        start = np.where(w_kept > 0, w_kept, d_exp)
        opts = dict(refine_options or {})
        method = refine
        sub = _sub(problem, kept, all_rows, start)
        try:
            if refine == "linear":
                res = calibrate_bands(sub, "linear", **opts)
            else:
                res = calibrate(sub, method=refine, **opts)
        except CalibrationError as exc:
            if refine != "linear":
                raise
            notes.append(f"linear refine failed ({str(exc)[:200]}); gradient instead")
            method = "gradient"
            res = calibrate(sub, method="gradient", init=start)
        w_kept = res.weights
        notes.append(f"{method} refine on all {problem.n_targets} targets: {res.status}")
        timings["refine"] = time.perf_counter() - t2
    w = np.zeros(n)
    w[kept] = w_kept
    rel = np.abs(relative_errors(problem.X @ w, problem.targets))
    cont = np.setdiff1d(np.arange(problem.n_targets), cat)
    timings["total"] = time.perf_counter() - t0
    result = CalibrationResult.from_weights(
        problem,
        w,
        method="cross-category",
        solver=calibration if refine is None else f"{calibration}+{refine}",
        message="; ".join(notes),
        iterations=1,
        objective=float(np.count_nonzero(w)),
        timings=timings,
        info={
            "n_cells": int(sizes.size),
            "n_keep": int(kept.size),
            "kept": kept,
            "categorical_targets": [problem.target_names[j] for j in cat],
            "max_rel_error_categorical": float(rel[cat].max()),
            "max_rel_error_continuous": float(rel[cont].max()) if cont.size else 0.0,
        },
    )
    return result
