"""Record classes, big-M links and cardinality covers of the exact-L0 MIP.

* :func:`record_classes` -- identical records (same column of X, same kept bounds) merge into
  one class with an integer multiplicity, which removes the symmetry between copies;
* :func:`classes` -- the classes and each one's kept interval ``[a_c, b_c]`` (the tightest
  big-M: user bounds within the bounds the bands imply) or the textbook uniform M;
* :func:`cover_counts` / :func:`cover_rows` -- the least number of kept records each target
  needs (valid inequalities ``sum N_c >= k_j``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..solvers.domain import SparseDomain, propagate_bounds

__all__ = ["Classes", "classes", "cover_counts", "cover_rows", "record_classes"]


def record_classes(
    problem: CalibrationProblem, lower: np.ndarray, upper: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Group identical records: same column of X (pattern and values) and same kept bounds.

    Columns are compared through two independent random projections plus their non-zero
    count and bounds (distinct columns collide with probability ~0).

    Returns
    -------
    labels : ndarray of int
        Class of each record (-1 for inactive records).
    representatives : ndarray of int
        The first record of each class.
    """
    csc = problem.csc
    rng = np.random.default_rng(20240531)
    r1 = rng.standard_normal(problem.n_targets)
    r2 = rng.standard_normal(problem.n_targets)
    # row-wise projections: X' r  (identical columns give bit-identical sums)
    h1 = csc.T @ r1
    h2 = csc.T @ r2
    nnz = np.diff(csc.indptr)
    key = pd.DataFrame({"nnz": nnz, "h1": h1, "h2": h2, "lo": lower, "hi": upper})
    idx = np.flatnonzero(active)
    labels = np.full(problem.n_units, -1, dtype=np.int64)
    if idx.size == 0:
        return labels, np.zeros(0, dtype=np.int64)
    codes, _ = pd.factorize(pd.MultiIndex.from_frame(key.iloc[idx]), sort=False)
    labels[idx] = codes
    first = np.full(codes.max() + 1 if codes.size else 0, -1, dtype=np.int64)
    # first occurrence of each code, in record order
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    first[codes[order[starts]]] = idx[order[starts]]
    return labels, first


def cover_counts(
    Xc: sp.csr_matrix,
    cap_pos: np.ndarray,
    cap_neg: np.ndarray,
    mult: np.ndarray,
    band_lower: np.ndarray,
    band_upper: np.ndarray,
) -> np.ndarray:
    """Least number of kept records each row needs to reach its band.

    ``cap_pos[c]`` (``cap_neg[c]``) is the largest positive (negative) contribution one kept
    record of class ``c`` can make per unit of ``X_jc`` sign, i.e. ``max(X_jc b_c, X_jc a_c, 0)``
    is computed per entry. Rows with ``lo_j > 0`` need records with positive contributions
    summing to at least ``lo_j``; rows with ``hi_j < 0`` symmetric. Others need 0.
    """
    coo = Xc.tocoo()
    m = Xc.shape[0]
    need = np.zeros(m, dtype=np.int64)
    for sign, band in ((1.0, band_lower), (-1.0, -band_upper)):
        target = band  # need sum of sign*contributions >= target where target > 0
        vals = sign * coo.data
        # largest sign-contribution of one record: max over its kept interval [a, b]
        contrib = np.maximum(np.maximum(vals * cap_pos[coo.col], vals * cap_neg[coo.col]), 0.0)
        rows = coo.row
        sel = (contrib > 0) & (target[rows] > 0)
        if not sel.any():
            continue
        rows, contrib, k = rows[sel], contrib[sel], mult[coo.col[sel]].astype(np.float64)
        order = np.lexsort((-contrib, rows))
        rows, contrib, k = rows[order], contrib[order], k[order]
        cum_cap = np.cumsum(contrib * k)
        cum_cnt = np.cumsum(k)
        start = np.searchsorted(rows, rows, side="left")
        base_cap = np.where(start > 0, cum_cap[start - 1], 0.0)
        base_cnt = np.where(start > 0, cum_cnt[start - 1], 0.0)
        prev_cap = cum_cap - contrib * k - base_cap  # capacity of the row before this entry
        prev_cnt = cum_cnt - k - base_cnt
        tgt = target[rows]
        # entry where the cumulative capacity first reaches the target
        reach = (prev_cap < tgt) & (prev_cap + contrib * k >= tgt * (1 - 1e-12))
        if not reach.any():
            continue
        extra = np.ceil((tgt[reach] - prev_cap[reach]) / contrib[reach] * (1 - 1e-12))
        cnt = (prev_cnt[reach] + np.maximum(extra, 1.0)).astype(np.int64)
        np.maximum.at(need, rows[reach], cnt)
    return need


@dataclass
class Classes:
    """Records grouped into classes, with each class's kept interval and total-weight bounds."""

    labels: np.ndarray
    reps: np.ndarray
    mult: np.ndarray
    a: np.ndarray  # a_c: lower end of a kept record's weight
    b: np.ndarray  # b_c: upper end
    wl: np.ndarray  # bounds on the class total W_c
    wu: np.ndarray
    Xc: sp.csc_matrix  # targets x classes


def _kept_intervals(domain: SparseDomain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval of a kept record (user bounds within the implied hull) and the active ones."""
    a = np.maximum(domain.lower, domain.hull_lower)
    bnd = np.minimum(domain.upper, domain.hull_upper)
    active = ~domain.fixed_zero & (a <= bnd)
    unbounded = active & ~(np.isfinite(a) & np.isfinite(bnd))
    if unbounded.any():
        i = int(np.flatnonzero(unbounded)[0])
        raise InvalidProblemError(
            f"record {i} (and {int(unbounded.sum()) - 1} more) has no finite bound on its weight "
            f"from the bounds or the target bands, so the MIP has no valid big-M; give an upper "
            f"bound, e.g. bounds=(0, U) or ratio_bounds=(0, U)."
        )
    return a, bnd, active


def classes(
    problem: CalibrationProblem,
    domain: SparseDomain,
    *,
    big_m: str,
    aggregate: bool,
    propagate: bool,
) -> Classes:
    """Classes of records and their big-M links (tightest per class, or one uniform M)."""
    a, bnd, active = _kept_intervals(domain)
    n = problem.n_units
    if aggregate and big_m == "tight":
        labels, reps = record_classes(problem, a, bnd, active)
    else:  # the textbook model: one binary per record
        reps = np.flatnonzero(active)
        labels = np.full(n, -1, dtype=np.int64)
        labels[reps] = np.arange(reps.size)
    mult = np.bincount(labels[labels >= 0], minlength=reps.size).astype(np.int64)
    Xc = problem.csc[:, reps]
    if big_m == "uniform":
        # one constant M for every record; the user's own bounds stay as column bounds. The
        # textbook constant: the largest band end over the smallest entry of X (valid for
        # non-negative data), and never below any record's implied bound (always valid)
        band_max = float(np.max(np.maximum(np.abs(domain.band_lower), np.abs(domain.band_upper))))
        x_min = float(np.min(np.abs(problem.X.data))) if problem.X.nnz else 1.0
        M = max(band_max / x_min, float(np.max(np.abs(np.r_[a[reps], bnd[reps]]), initial=0.0)))
        lo_r, up_r = domain.lower[reps], domain.upper[reps]
        a_c = np.where(lo_r > 0, lo_r, np.where(lo_r < 0, -M, 0.0))
        b_c = np.where(up_r > 0, M, np.where(up_r < 0, up_r, 0.0))
        wl = np.where(lo_r < 0, np.maximum(lo_r, -M), 0.0)
        wu = np.where(up_r > 0, np.minimum(up_r, M), 0.0)
        return Classes(labels, reps, mult, a_c, b_c, wl, wu, Xc)
    a_c = a[reps]
    b_c = bnd[reps]
    # class totals W_c: start from [k a, k b] (0 inside) and propagate through the bands
    wl = np.where(a_c < 0, mult * a_c, 0.0)
    wu = np.where(b_c > 0, mult * b_c, 0.0)
    if propagate:
        wl, wu, _ = propagate_bounds(
            Xc.tocsr(),
            domain.band_lower,
            domain.band_upper,
            wl,
            wu,
            max_rounds=3,
            names=problem.target_names,
        )
    return Classes(labels, reps, mult, a_c, b_c, wl, wu, Xc)


def cover_rows(cl: Classes, domain: SparseDomain) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """Cardinality covers ``sum_{c useful for j} N_c >= k_j`` for rows needing 2+ records."""
    need = cover_counts(cl.Xc.tocsr(), cl.b, cl.a, cl.mult, domain.band_lower, domain.band_upper)
    sel = np.flatnonzero(need >= 2)
    C = cl.reps.size
    if not sel.size:
        return sp.csr_matrix((0, C)), np.zeros(0), int(need.max(initial=0))
    # rows over the N columns: classes with a contribution of the needed sign
    S = cl.Xc.tocsr()[sel].tocoo()
    lo_pos = domain.band_lower[sel] > 0
    sign_ok = np.where(
        lo_pos[S.row],
        (S.data * cl.b[S.col] > 0) | (S.data * cl.a[S.col] > 0),
        (S.data * cl.b[S.col] < 0) | (S.data * cl.a[S.col] < 0),
    )
    P = sp.csr_matrix(
        (np.ones(int(sign_ok.sum())), (S.row[sign_ok], S.col[sign_ok])), shape=(sel.size, C)
    )
    return P, need[sel].astype(np.float64), int(need.max(initial=0))
