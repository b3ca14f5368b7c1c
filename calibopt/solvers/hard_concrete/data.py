"""The host side of a Hard-Concrete run (numpy only): its settings, free units, scaled rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ...errors import InfeasibleError, InvalidProblemError
from ...problem import CalibrationProblem
from ..loss import loss_roots

__all__ = ["EngineSettings", "HostData", "prepare_host"]


@dataclass
class EngineSettings:
    """Validated options of a run (see the method's docstring for each)."""

    beta: float
    gamma: float
    zeta: float
    eps: float
    group_normalise: bool
    device: Any
    dtype: Any
    progress: bool | None
    callback: Callable[[dict[str, Any]], Any] | None
    resume: bool
    lambda_l0: float | np.ndarray  # one value, or one per unit of the problem
    lambda_l2: float
    epochs: int
    lr: float
    lr_gates: float
    init_keep_prob: float
    min_delta: float
    eval_every: int
    patience: int
    checkpoint_every: int
    seed: int
    threads: int | None
    stop_tolerance: float | None
    checkpoint: Path | None


@dataclass
class HostData:
    """What the device model needs, prepared once on the host in float64.

    Attributes
    ----------
    Xs : scipy.sparse.csr_matrix
        Targets x free units, rows scaled by ``sqrt(omega)``, data in the run's dtype.
    bs, rel_scale, root : ndarray
        Scaled targets, the factor from a scaled residual to a relative error, ``sqrt(omega)``.
    free : ndarray of int
        Units that can carry weight (``d > 0`` and upper bound > 0).
    d, hi : ndarray
        Their initial weights and upper weight bounds.
    log_lower, log_upper : ndarray or None
        Logs of their weight bounds (None when unbounded on that side).
    """

    Xs: sp.csr_matrix
    bs: np.ndarray
    rel_scale: np.ndarray
    root: np.ndarray
    free: np.ndarray
    d: np.ndarray
    hi: np.ndarray
    log_lower: np.ndarray | None
    log_upper: np.ndarray | None


def _check_groups(problem: CalibrationProblem) -> None:
    """A group whose targets are all 0 has no scale for a relative error: refuse it."""
    zero = problem.targets == 0
    if not zero.any():
        return
    labels = pd.Series(problem.groups, dtype=object)
    share = pd.Series(zero.astype(float)).groupby(labels.to_numpy(), sort=False, dropna=False)
    share = share.mean()
    bad = share.index[share.to_numpy() == 1.0].tolist()
    if bad:
        rows = np.flatnonzero(labels.isin(bad).to_numpy() & zero)
        names = [problem.target_names[j] for j in rows[:5]]
        raise InvalidProblemError(
            f"target group(s) {bad[:5]} have every target equal to 0 (e.g. {names}): the "
            f"relative error has no scale there and the loss would count such a group in the "
            f"units of X. Drop these targets, put them in a group with non-zero targets, or "
            f"remove the units that contribute to them."
        )


def _free_units(problem: CalibrationProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units that can carry weight (d > 0 and upper bound > 0) and their bounds on w."""
    lo, hi = problem.weight_bounds()
    neg = np.flatnonzero(hi < 0)
    if neg.size:
        raise InvalidProblemError(
            f"unit(s) {neg[:5].tolist()} have a negative upper weight bound; 'hard-concrete' "
            f"keeps weights >= 0 (exp(theta) times a gate). Use bounds with upper >= 0."
        )
    free = np.flatnonzero((problem.initial_weights > 0) & (hi > 0) & (np.maximum(lo, 0) <= hi))
    if free.size == 0:
        raise InvalidProblemError(
            "no unit can carry weight: 'hard-concrete' starts from the initial weights, so give "
            "positive `initial_weights` (units with d = 0 or upper bound 0 stay at 0)."
        )
    return free, lo[free], hi[free]


def _scale_rows(X: sp.csr_matrix, root: np.ndarray, dtype: type) -> sp.csr_matrix:
    """``diag(root) X`` with data in ``dtype``, sharing X's index arrays (rows in blocks, so
    the float64 temporaries stay small)."""
    data = np.empty(X.nnz, dtype=dtype)
    step = max(1, X.shape[0] // 16)
    for r0 in range(0, X.shape[0], step):
        r1 = min(X.shape[0], r0 + step)
        a, b = X.indptr[r0], X.indptr[r1]
        data[a:b] = X.data[a:b] * np.repeat(root[r0:r1], np.diff(X.indptr[r0 : r1 + 1]))
    out = sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape, copy=False)
    out.has_sorted_indices = X.has_sorted_indices
    return out


def prepare_host(
    problem: CalibrationProblem, *, eps: float, group_normalise: bool, float32: bool
) -> HostData:
    """Check the problem for the method and build the host data."""
    _check_groups(problem)
    root = loss_roots(problem.targets, problem.groups, eps=eps, group_normalise=group_normalise)
    free, lo, hi = _free_units(problem)
    X_free = problem.X if free.size == problem.n_units else problem.X[:, free]
    X_free = sp.csr_matrix(X_free)
    empty = np.flatnonzero((np.diff(X_free.indptr) == 0) & (problem.targets != 0))
    if empty.size:
        names = [problem.target_names[j] for j in empty[:8]]
        raise InfeasibleError(
            f"{empty.size} target(s) have a non-zero total but no unit that can carry weight "
            f"contributes to them, so no weights reach them: {names}. Check X for missing "
            f"entries, or drop these targets.",
            targets=[problem.target_names[j] for j in empty],
        )
    Xs = _scale_rows(X_free, root, np.float32 if float32 else np.float64)
    with np.errstate(divide="ignore"):
        log_lower = np.log(np.maximum(lo, 0.0)) if np.any(lo > 0) else None
        log_upper = np.log(hi) if np.any(np.isfinite(hi)) else None
    return HostData(
        Xs=Xs,
        bs=root * problem.targets,
        rel_scale=1.0 / (root * np.where(problem.targets != 0, np.abs(problem.targets), 1.0)),
        root=root,
        free=free,
        d=problem.initial_weights[free],
        hi=hi,
        log_lower=log_lower,
        log_upper=log_upper,
    )
