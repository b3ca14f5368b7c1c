"""The target loss of calibopt: relative squared error per target, optionally group-normalised.

Every method that trades target errors off against each other (``gradient``, the
``error+count`` variant of ``l0-mip``, the torch ``hard-concrete`` method) measures the fit with
this one definition::

    r_j(w)    = (X_j w - b_j) / (|b_j| + eps)                 relative residual of target j
    c_j       = 1 / n_{G(j)}   if group_normalise else 1      n_G = number of targets in group G
    L(w)      = sum_j c_j r_j(w)^2
    grad L(w) = 2 X' (c * r(w) / (|b| + eps))

With ``group_normalise=True`` each group contributes the *mean* squared relative error of its
targets, so every group (e.g. "district x snap") counts equally however many targets it has;
with singleton groups (the default of :class:`~calibopt.CalibrationProblem`) both settings agree.
``eps`` only keeps zero targets finite: the minimiser of ``L`` over unconstrained ``w`` is any
``w`` with ``X w = b`` (``L = 0``), so the loss has no offset bias (unlike losses of the form
``((Xw - b) + 1) / (b + 1)``, whose optimum sits one unit below every target).

The loss equals ``sum_j omega_j (X_j w - b_j)^2`` with ``omega = c / (|b| + eps)^2``, the
per-target coefficients returned by :func:`loss_weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem

__all__ = [
    "DEFAULT_EPS",
    "TargetLoss",
    "group_coefficients",
    "loss_roots",
    "loss_weights",
    "target_loss",
]

DEFAULT_EPS = 1.0
"""Default ``eps`` of the relative residual ``(X_j w - b_j) / (|b_j| + eps)``."""


def group_coefficients(groups: Sequence[Any] | np.ndarray | None, n_targets: int) -> np.ndarray:
    """``c_j = 1 / (number of targets in target j's group)``; all ones if ``groups`` is None.

    Parameters
    ----------
    groups
        One hashable label per target, or None (each target its own group).
    n_targets
        Number of targets (checked against ``len(groups)``).
    """
    if groups is None:
        return np.ones(n_targets)
    labels = np.asarray(
        list(groups) if not isinstance(groups, np.ndarray) else groups, dtype=object
    )
    if labels.shape != (n_targets,):
        raise InvalidProblemError(
            f"`groups` has {labels.size} labels but there are {n_targets} targets."
        )
    codes, _ = pd.factorize(pd.Series(labels, dtype=object), use_na_sentinel=False)
    counts = np.bincount(codes)
    return 1.0 / counts[codes]


def loss_weights(
    targets: np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
) -> np.ndarray:
    """Per-target coefficients ``omega_j = c_j / (|b_j| + eps)^2`` of the target loss.

    Parameters
    ----------
    targets
        Target totals ``b``.
    groups
        Group label per target (None: each target its own group).
    eps
        Added to ``|b_j|`` in the denominator; must be >= 0, and > 0 if any target is 0.
    group_normalise
        Weight each target by ``1 / (size of its group)`` so every group counts equally.

    Returns
    -------
    ndarray
        ``omega`` such that the loss is ``sum_j omega_j (X_j w - b_j)^2``.
    """
    root = loss_roots(targets, groups, eps=eps, group_normalise=group_normalise)
    return root * root  # (underflows to 0 for totals beyond ~1e154; use loss_roots there)


def loss_roots(
    targets: np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
) -> np.ndarray:
    """``sqrt(omega_j) = sqrt(c_j) / (|b_j| + eps)``, computed directly (``omega`` itself
    underflows to 0 for totals beyond ~1e154, its square root does not)."""
    b = np.asarray(targets, dtype=np.float64).reshape(-1)
    eps = _check_eps(eps, b)
    c = group_coefficients(groups, b.size) if group_normalise else np.ones(b.size)
    return np.sqrt(c) / (np.abs(b) + eps)


def _check_eps(eps: float, b: np.ndarray) -> float:
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"`eps` must be a number, got {eps!r}.") from None
    if not np.isfinite(eps) or eps < 0:
        raise InvalidProblemError(f"`eps` must be finite and >= 0, got {eps!r}.")
    if eps == 0 and np.any(b == 0):
        j = int(np.flatnonzero(b == 0)[0])
        raise InvalidProblemError(
            f"`eps` is 0 but target {j} is 0, so its relative error is undefined; use eps > 0."
        )
    return eps


class TargetLoss:
    """The target loss of a fixed ``(X, b, groups)``, precomputed for repeated evaluation.

    Parameters
    ----------
    X
        Sparse (or dense) matrix, targets x units.
    targets
        Target totals ``b``.
    groups
        Group label per target, or None.
    eps, group_normalise
        As in :func:`loss_weights`.
    bands
        Optional ``(lower, upper)`` per target: the residual becomes the distance of ``X_j w``
        outside ``[lower_j, upper_j]`` (a dead zone: errors within a tolerance band are free).
        None (default) is the plain loss above.

    Examples
    --------
    >>> loss = TargetLoss(problem.X, problem.targets, problem.groups)
    >>> value, grad = loss(w)
    """

    def __init__(
        self,
        X: Any,
        targets: np.ndarray,
        groups: Sequence[Any] | np.ndarray | None = None,
        *,
        eps: float = DEFAULT_EPS,
        group_normalise: bool = True,
        bands: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.X = sp.csr_matrix(X, dtype=np.float64)
        self.targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if self.targets.shape[0] != self.X.shape[0]:
            raise InvalidProblemError(
                f"`targets` has length {self.targets.shape[0]} but X has {self.X.shape[0]} rows."
            )
        self.omega = loss_weights(self.targets, groups, eps=eps, group_normalise=group_normalise)
        self.root = loss_roots(self.targets, groups, eps=eps, group_normalise=group_normalise)
        self._XT = self.X.T.tocsr()
        self.bands = None
        if bands is not None:
            lo, hi = (np.asarray(v, dtype=np.float64).reshape(-1) for v in bands)
            if lo.shape != self.targets.shape or hi.shape != self.targets.shape:
                raise InvalidProblemError("`bands` must be two arrays with one value per target.")
            self.bands = (lo, hi)

    @classmethod
    def from_problem(
        cls,
        problem: CalibrationProblem,
        *,
        eps: float = DEFAULT_EPS,
        group_normalise: bool = True,
        bands: bool = False,
    ) -> TargetLoss:
        """The loss of a :class:`~calibopt.CalibrationProblem` (its X, targets and groups).

        With ``bands=True`` the problem's tolerance bands are the dead zone (see the class).
        """
        return cls(
            problem.X,
            problem.targets,
            problem.groups,
            eps=eps,
            group_normalise=group_normalise,
            bands=problem.target_bands() if bands else None,
        )

    def residuals(self, w: np.ndarray) -> np.ndarray:
        """``X w - b`` (or, with bands, the distance outside the band, signed)."""
        est = self.X @ w
        if self.bands is None:
            return est - self.targets
        lo, hi = self.bands
        return est - np.clip(est, lo, hi)

    def value(self, w: np.ndarray) -> float:
        """``L(w)``."""
        z = self.root * self.residuals(w)
        return float(np.dot(z, z))

    def __call__(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """``(L(w), grad L(w))``."""
        z = self.root * self.residuals(w)
        return float(np.dot(z, z)), 2.0 * (self._XT @ (self.root * z))


def target_loss(
    problem_or_X: CalibrationProblem | Any,
    w: np.ndarray,
    *,
    targets: np.ndarray | None = None,
    groups: Sequence[Any] | np.ndarray | None = None,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
) -> tuple[float, np.ndarray]:
    """Value and gradient of the target loss at weights ``w``.

    Parameters
    ----------
    problem_or_X
        A :class:`~calibopt.CalibrationProblem` (its ``X``, ``targets`` and ``groups`` are
        used), or a matrix ``X`` (targets x units), in which case ``targets`` is required.
    w
        Weights, one per unit.
    targets, groups
        Only with a matrix: the totals ``b`` and the group label per target (None: singletons).
    eps
        Added to ``|b_j|`` in the denominator (default 1.0).
    group_normalise
        Each group contributes the mean of its targets' squared relative errors.

    Returns
    -------
    value : float
        ``sum_j c_j ((X_j w - b_j) / (|b_j| + eps))^2``.
    grad : ndarray
        Its gradient with respect to ``w``.
    """
    if isinstance(problem_or_X, CalibrationProblem):
        if targets is not None or groups is not None:
            raise InvalidProblemError(
                "give either a CalibrationProblem or (X, targets=, groups=), not both."
            )
        loss = TargetLoss.from_problem(problem_or_X, eps=eps, group_normalise=group_normalise)
    else:
        if targets is None:
            raise InvalidProblemError("`targets` is required when the first argument is a matrix.")
        loss = TargetLoss(problem_or_X, targets, groups, eps=eps, group_normalise=group_normalise)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if w.shape[0] != loss.X.shape[1]:
        raise InvalidProblemError(
            f"`w` has length {w.shape[0]} but X has {loss.X.shape[1]} columns."
        )
    return loss(w)
