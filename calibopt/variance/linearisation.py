"""Design-based (co)variance of linearised totals, as R ``survey``'s ``svyrecvar``.

A statistic is linearised into per-unit scores ``z_i`` (its influence values times the unit's
weight); its variance is the variance of the estimated total of ``z`` under the design:

* first stage: per stratum ``h`` with ``n_h`` PSUs, PSU totals ``t_hi`` of ``z``,
  ``(1 - f_h) n_h / (n_h - 1) sum_i (t_hi - mean_h)(t_hi - mean_h)'``;
* later stages (only with an fpc at every stage): the same within each cluster of the stage
  before, multiplied by the sampling fractions ``n/N`` of the stages above (R's recursion,
  done here stage by stage with sparse group sums: cost linear in the units);
* lonely PSUs as :data:`calibopt.variance.design.LONELY_PSU` says.

Calibration enters through :func:`residualise`: the scores are replaced by their residuals from
a weighted regression on the calibration variables (the residual method of Deville & Sarndal
1992, as R ``svyrecvar`` applies ``qr.resid`` of a ``greg_calibration``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..solvers.kernels import weighted_gram
from .design import _CERTAIN, Design, DesignError, first_of_group

__all__ = ["design_covariance", "residualise"]


def _group_sums(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group column sums of ``values`` (rows grouped by ``codes``)."""
    n = codes.shape[0]
    ind = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))
    return np.asarray(ind @ values)


def _stage(design: Design, Z: np.ndarray, s: int, mult: np.ndarray) -> np.ndarray:
    """Stage ``s``'s contribution (0-based) with per-row multipliers ``mult``."""
    c = design.clusters[s]
    h = design.strata[s]
    n_c = int(c.max()) + 1
    first = first_of_group(c)  # a row of each cluster (cluster attributes are constant)
    T = _group_sums(c, Z, n_c)
    hc = h[first]
    n_h = design.sampsize[s][first]
    f = design.fraction(s)[first]
    n_strata = int(h.max()) + 1
    means = _group_sums(hc, T, n_strata)
    counts = np.bincount(hc, minlength=n_strata).astype(np.float64)
    means /= np.maximum(counts, 1.0)[:, None]
    certain = f < _CERTAIN
    lonely = (n_h == 1) & ~certain
    centred = T - means[hc]
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(n_h > 1, f * n_h / (n_h - 1), f)
    scale[certain] = 0.0
    if lonely.any():
        option = design.lonely_psu
        if option == "fail":
            raise DesignError(
                f"a stratum has only one PSU at stage {s + 1}; choose lonely_psu= 'remove', "
                f"'certainty', 'adjust' or 'average' (R's survey.lonely.psu)."
            )
        if option == "adjust":
            centred[lonely] = T[lonely]
        elif option == "average":
            scale[lonely] = 0.0
            parent = design.clusters[s - 1][first] if s > 0 else np.zeros(n_c, np.int64)
            # strata per parent cluster, and those with a variance (R's nstrat / nokstrat)
            n_parent = int(parent.max()) + 1
            stratum_parent = np.zeros(n_strata, np.int64)
            stratum_parent[hc] = parent
            stratum_lonely = np.zeros(n_strata, bool)
            stratum_lonely[hc[lonely]] = True
            n_all = np.bincount(stratum_parent, minlength=n_parent).astype(np.float64)
            n_ok = np.bincount(stratum_parent[~stratum_lonely], minlength=n_parent)
            if np.any((n_ok == 0) & (n_all > 0)):
                raise DesignError(
                    f"lonely_psu='average' at stage {s + 1}: every stratum of some cluster has "
                    f"a single PSU, so there is no variance to average; use 'adjust' or 'remove'."
                )
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(n_ok > 0, n_all / np.maximum(n_ok, 1), 0.0)
            scale *= ratio[parent]
    omega = scale * mult[first]
    S = centred * np.sqrt(omega)[:, None]
    return S.T @ S


def design_covariance(design: Design, Z: np.ndarray) -> np.ndarray:
    """Covariance matrix of the estimated totals of the columns of ``Z`` under ``design``.

    Parameters
    ----------
    design
        The survey design (rows of ``Z`` are its units).
    Z
        Scores, shape ``(n, k)``: weight times influence value of each unit for each statistic.

    Returns
    -------
    ndarray, shape ``(k, k)``
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim == 1:
        Z = Z[:, None]
    mult = np.ones(design.n)
    V = _stage(design, Z, 0, mult)
    for s in range(1, design.variance_stages()):
        pop = design.popsize[s - 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            mult = mult * np.where(np.isinf(pop), 0.0, design.sampsize[s - 1] / pop)
        if not np.any(mult > 0):
            break
        V += _stage(design, Z, s, mult)
    return V


def _solve_psd(M: np.ndarray, R: np.ndarray) -> np.ndarray:
    """``pinv(M) @ R`` for a symmetric positive semi-definite ``M`` (rank-deficient allowed).

    The system is equilibrated by the diagonal first; eigenvalues below ``1e-12`` of the
    largest count as zero (R's ``qr`` drops such columns at tolerance 1e-7 on their norms).
    """
    diag = np.diag(M).copy()
    live = diag > 0
    out = np.zeros((M.shape[0], R.shape[1]))
    if not live.any():
        return out
    s = 1.0 / np.sqrt(diag[live])
    Ms = M[np.ix_(live, live)] * s[:, None] * s[None, :]
    vals, vecs = np.linalg.eigh(Ms)
    keep = vals > vals.max() * 1e-12
    inv = (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T
    out[live] = s[:, None] * (inv @ (s[:, None] * R[live]))
    return out


def residualise(A: np.ndarray, Xc: sp.csc_matrix, q: np.ndarray) -> np.ndarray:
    """Residuals of the columns of ``A`` regressed on the rows of ``X`` with weights ``q``.

    ``A - X' B`` with ``B = (X Q X')^+ X Q A``, ``Q = diag(q)``: what R's
    ``qr.resid(qr(mm * sqrt(q)), a * sqrt(q)) / sqrt(q)`` gives, in ``O(nnz(X) k)``: the
    Gram matrix by the compiled kernel, the products column by column of the CSC matrix.

    Parameters
    ----------
    A
        Influence values, shape ``(n, k)``.
    Xc
        Calibration variables, shape ``(p, n)`` (targets x units, as in the problem), CSC
        with sorted indices (``problem.csc``).
    q
        Regression weights per unit (the design weights; or ``d F'`` at the solution).
    """
    M = weighted_gram(Xc, q)
    B = _solve_psd(M, np.asarray(Xc @ (q[:, None] * A)))
    return A - np.asarray(Xc.T @ B)
