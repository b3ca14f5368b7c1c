"""Exact re-fit of weights on a chosen support with the core calibration solvers."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CalibrationError
from ..problem import CalibrationProblem
from .domain import kept_bounds

__all__ = ["calibrate_bands", "refit_support", "support_problem"]


def support_problem(
    problem: CalibrationProblem,
    support: np.ndarray,
    center: np.ndarray | None = None,
) -> CalibrationProblem:
    """The problem restricted to ``support`` with the kept-record bounds as absolute bounds.

    Parameters
    ----------
    support
        Integer positions of the kept records.
    center
        Initial weights of the restricted problem; default the design weights, with the
        records whose design weight is 0 centred on ``1`` (so they may still move).
    """
    lo, hi = kept_bounds(problem)
    d = problem.initial_weights[support] if center is None else np.asarray(center)[support]
    d = np.where(d > 0, d, 1.0)
    return CalibrationProblem(
        problem.X[:, support],
        problem.targets,
        initial_weights=d,
        bounds=(lo[support], hi[support]),
        tolerance=problem.tolerance,
        target_names=problem.target_names,
        groups=problem.groups,
    )


def calibrate_bands(problem: CalibrationProblem, method: str = "linear", **options: Any) -> Any:
    """``calibrate(problem, method)`` with the solver most robust for the problem's targets.

    Exact targets go to Newton first (exact, fast); targets with tolerance bands go to CLARABEL
    first, because Newton's band active-set loop can cycle on the vertex-like supports sparse
    methods produce (see ``/work/notes/requests-4.md``). The other solver is the fallback.

    Returns
    -------
    CalibrationResult
        The first successful result.

    Raises
    ------
    CalibrationError
        When both fail (the message lists each solver's reason).
    """
    from ..calibrate import calibrate

    order = ("newton", "CLARABEL") if np.all(problem.tolerance == 0) else ("CLARABEL", "newton")
    notes = []
    for solver in order:
        try:
            res = calibrate(problem, method=method, solver=solver, **options)
        except CalibrationError as exc:
            notes.append(f"{solver}: {exc}")
            continue
        if res.success:
            return res
        notes.append(f"{solver}: {res.message or res.status}")
    raise CalibrationError(" | ".join(notes))


def refit_support(
    problem: CalibrationProblem,
    support: np.ndarray,
    *,
    method: str = "linear",
    center: np.ndarray | None = None,
    **options: Any,
) -> tuple[np.ndarray | None, str]:
    """Weights on ``support`` closest to the design weights that meet every target band.

    Solves ``calibrate(problem restricted to support, method=method)`` (see
    :func:`calibrate_bands` for the solver): the kept-record bounds and the problem's
    tolerances apply, records off the support are 0.

    Returns
    -------
    weights : ndarray or None
        Full-length weights (exact zeros off the support), or None if the re-fit failed.
    message : str
        Why it failed (empty on success).
    """
    support = np.asarray(support)
    if support.dtype == bool:
        support = np.flatnonzero(support)
    if support.size == 0:
        return None, "empty support"
    try:
        res = calibrate_bands(support_problem(problem, support, center), method, **options)
    except CalibrationError as exc:
        return None, f"re-fit on the support failed ({exc})"
    w = np.zeros(problem.n_units)
    w[support] = res.weights
    return w, ""
