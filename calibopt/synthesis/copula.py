"""Gaussian copula over empirical marginals with explicit zero masses, on encoded matrices.

Each column ``x`` (conditions and targets) gets its weighted empirical distribution function
``F``; a training value becomes a normal score ``z = Phi^-1(F(x-) + V (F(x) - F(x-)))`` with
``V`` uniform (the distributional transform, which handles ties: a mass at zero, counts,
categories ordered by frequency). The scores' correlation matrix ``R`` is the dependence.
Targets given conditions are drawn from the Gaussian conditional ``z_t | z_c`` and mapped back
through the inverse distribution function: a point mass (zero earnings, a category, a count)
comes back exactly; between two positive (or two negative) values of a continuous variable
the quantile function is interpolated linearly, so values are not copied from the training
data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from .variables import Variable

__all__ = ["CopulaModel"]

_EPS = 1e-9


def _marginal(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and the distribution function at each (weighted)."""
    values, inverse = np.unique(x, return_inverse=True)
    mass = np.bincount(inverse, weights=w, minlength=values.size)
    cdf = np.cumsum(mass) / mass.sum()
    cdf[-1] = 1.0
    return values, cdf


def _to_uniform(
    x: np.ndarray, values: np.ndarray, cdf: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The distributional transform (values unseen in training fall on the nearest step)."""
    pos = np.clip(np.searchsorted(values, x, side="right") - 1, 0, values.size - 1)
    upper = cdf[pos]
    lower = np.where(pos > 0, cdf[np.maximum(pos - 1, 0)], 0.0)
    return np.clip(lower + rng.random(x.size) * (upper - lower), _EPS, 1 - _EPS)


def _from_uniform(u: np.ndarray, values: np.ndarray, cdf: np.ndarray, var: Variable) -> np.ndarray:
    """The quantile function; interpolated between same-signed continuous values."""
    pos = np.minimum(np.searchsorted(cdf, u, side="left"), values.size - 1)
    out = values[pos]
    if var.kind != "continuous" or values.size < 2:
        return out
    lo = np.maximum(pos - 1, 0)
    left, right = values[lo], values[pos]
    c_lo = np.where(pos > 0, cdf[lo], 0.0)
    frac = np.clip((u - c_lo) / np.maximum(cdf[pos] - c_lo, _EPS), 0.0, 1.0)
    same_sign = (pos > 0) & (np.sign(left) == np.sign(right)) & (left != 0)
    return np.where(same_sign, left + frac * (right - left), out)


class CopulaModel:
    """Gaussian copula with empirical marginals.

    Parameters
    ----------
    ridge
        Added to the diagonal of the score correlation before normalising (keeps it
        positive definite when a variable is a function of others).
    """

    name = "copula"

    def __init__(self, ridge: float = 1e-6) -> None:
        self.ridge = float(ridge)
        self.arrays: dict[str, np.ndarray] = {}

    def params(self) -> dict[str, Any]:
        """Constructor arguments (for saving)."""
        return {"ridge": self.ridge}

    def _scores(self, M: np.ndarray, first: int, rng: np.random.Generator) -> np.ndarray:
        """Normal scores of columns ``first..`` of the fitted columns, for the rows of M."""
        Z = np.empty_like(M, dtype=np.float64)
        for k in range(M.shape[1]):
            j = first + k
            values, cdf = self.arrays[f"values{j}"], self.arrays[f"cdf{j}"]
            Z[:, k] = ndtri(_to_uniform(self._order(M[:, k], j), values, cdf, rng))
        return Z

    def _order(self, x: np.ndarray, j: int) -> np.ndarray:
        """Categorical codes re-ranked by frequency (identity for numbers)."""
        rank = self.arrays.get(f"rank{j}")
        return x if rank is None else rank[np.rint(x).astype(np.int64)].astype(np.float64)

    def fit(
        self,
        C: np.ndarray,
        T: np.ndarray,
        conditions: Sequence[Variable],
        targets: Sequence[Variable],
        weights: np.ndarray | None,
    ) -> CopulaModel:
        """Fit the marginals and the score correlation (training scores drawn with a fixed
        seed, so the fit is deterministic)."""
        M = np.column_stack([C, T])
        n = M.shape[0]
        w = np.ones(n) if weights is None else weights
        arrays: dict[str, np.ndarray] = {}
        for j, var in enumerate([*conditions, *targets]):
            x = M[:, j]
            if var.kind == "categorical":
                k = len(var.categories or [])
                freq = np.bincount(np.rint(x).astype(np.int64), weights=w, minlength=k)
                order = np.argsort(-freq, kind="stable")
                rank = np.empty(k, dtype=np.int64)
                rank[order] = np.arange(k)
                arrays[f"rank{j}"] = rank
                arrays[f"unrank{j}"] = order.astype(np.int64)
                x = rank[np.rint(x).astype(np.int64)].astype(np.float64)
            arrays[f"values{j}"], arrays[f"cdf{j}"] = _marginal(x, w)
        self.arrays = arrays
        Z = self._scores(M, 0, np.random.default_rng(0))
        mean = np.average(Z, axis=0, weights=w)
        cov = np.cov((Z - mean).T, aweights=w, bias=True).reshape(M.shape[1], M.shape[1])
        cov += self.ridge * np.eye(M.shape[1])
        d = np.sqrt(np.diag(cov))
        arrays["corr"] = cov / np.outer(d, d)
        arrays["n_conditions"] = np.array(C.shape[1])
        return self

    def sample(
        self, C: np.ndarray, targets: Sequence[Variable], rng: np.random.Generator
    ) -> np.ndarray:
        """Draw targets for each row of conditions ``C`` from the Gaussian conditional."""
        R = self.arrays["corr"]
        p = int(self.arrays["n_conditions"])
        n = C.shape[0]
        Rcc, Rtc, Rtt = R[:p, :p], R[p:, :p], R[p:, p:]
        if p:
            A = np.linalg.solve(Rcc, Rtc.T).T
            mean = self._scores(C, 0, rng) @ A.T
            cov = Rtt - A @ Rtc.T
        else:
            mean, cov = np.zeros((n, len(targets))), Rtt
        L = np.linalg.cholesky(cov + _EPS * np.eye(cov.shape[0]))
        Z = mean + rng.standard_normal((n, len(targets))) @ L.T
        U = ndtr(Z)
        T = np.empty((n, len(targets)))
        for k, var in enumerate(targets):
            j = p + k
            x = _from_uniform(U[:, k], self.arrays[f"values{j}"], self.arrays[f"cdf{j}"], var)
            if var.kind == "categorical":
                x = self.arrays[f"unrank{j}"][np.rint(x).astype(np.int64)].astype(np.float64)
            elif var.kind == "count" or var.integral:
                x = np.rint(x)
            T[:, k] = x
        return T
