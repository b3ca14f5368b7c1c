"""The exact-L0 calibration model as a mixed-integer program, built as sparse arrays.

Variables (one *class* ``c`` per group of identical records, see :func:`record_classes`):

* ``W_c``: the total weight of the class's kept records (continuous);
* ``N_c``: how many of its ``k_c`` records are kept (integer in ``[0, k_c]``; binary when
  ``k_c = 1``);
* with ``objective="error+count"``: ``s_j >= 0``, the distance of target ``j`` outside its band.

Program (``objective="count"``)::

    min  sum_c N_c
    s.t. lo_j <= sum_c X_jc W_c <= hi_j                      (target bands, every j)
         a_c N_c <= W_c <= b_c N_c                           (linking, every class)
         sum_{c: cap_jc > 0} N_c >= k_j                      (cardinality covers, optional)
         N_c integer in [0, k_c],  W_c in [k_c hull_lower_c, k_c hull_upper_c] (tightened)

``[a_c, b_c]`` is the interval a *kept* record may take: the user's kept-record bounds
intersected with the bounds the bands imply (:mod:`calibopt.sparse.domain`) -- the tightest
big-M per column instead of a blind constant. ``k_j`` is the least number of records whose
largest possible contributions reach ``lo_j`` (valid for every feasible solution).

With ``objective="error+count"`` the bands become soft:
``lo_j <= X_j W + s_j^- - s_j^+ <= hi_j`` and the objective is
``sum_j omega_j (s_j^+ + s_j^-) + lam sum_c N_c`` with ``omega_j = c_j / (|b_j| + eps)`` (the
group-normalised relative error of :mod:`calibopt.loss`, in L1 so the program stays linear).

Aggregating identical records is exact: ``N`` kept copies can carry any total in
``[N a, N b]`` (split it evenly), and it removes the symmetry between copies that makes the
branch-and-bound tree explode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..loss import DEFAULT_EPS, group_coefficients
from ..problem import CalibrationProblem
from .domain import SparseDomain, kept_bounds, propagate_bounds, sparse_domain

__all__ = ["L0Model", "build_l0_model", "cover_counts", "record_classes"]

OBJECTIVES = ("count", "error+count")
BIG_M = ("tight", "uniform")


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
    codes, _ = pd.factorize(pd.MultiIndex.from_frame(key.iloc[idx]), sort=False)
    labels = np.full(problem.n_units, -1, dtype=np.int64)
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
class L0Model:
    """The L0 MIP as arrays, with what is needed to map solutions back to records.

    Attributes
    ----------
    cost, col_lower, col_upper, row_lower, row_upper : ndarray
        The scaled model (see ``col_scale``).
    A : scipy.sparse.csc_matrix
    integer : ndarray of bool
    n_classes : int
        Columns ``[0, n_classes)`` are the ``W_c``, ``[n_classes, 2 n_classes)`` the ``N_c``,
        then the slacks (``error+count``).
    labels, representatives, multiplicity : ndarray
        Record -> class, class -> first record, class -> number of records.
    link_lower, link_upper : ndarray
        ``a_c`` and ``b_c`` per class.
    domain : SparseDomain
    objective : str
    col_scale : ndarray
        Model column ``k`` holds the unscaled value divided by ``col_scale[k]`` (the ``W_c`` in
        units of the class's largest kept weight, slacks in units of their band).
    omega : ndarray or None
        Per-target error weights (``error+count``).
    stats : dict
        Sizes and what the presolve did (records fixed to zero, classes, cover rows).
    """

    cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    A: sp.csc_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    integer: np.ndarray
    n_classes: int
    labels: np.ndarray
    representatives: np.ndarray
    multiplicity: np.ndarray
    link_lower: np.ndarray
    link_upper: np.ndarray
    domain: SparseDomain
    objective: str
    n_slack: int = 0
    col_scale: np.ndarray | None = None
    omega: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_cols(self) -> int:
        """Number of MIP columns."""
        return self.cost.size

    def start_from_weights(self, problem: CalibrationProblem, w: np.ndarray) -> np.ndarray:
        """A MIP start vector from record weights ``w`` (one per record)."""
        C = self.n_classes
        x = np.zeros(self.n_cols)
        act = self.labels >= 0
        W = np.bincount(self.labels[act], weights=w[act], minlength=C)
        N = np.bincount(self.labels[act], weights=(w[act] != 0), minlength=C)
        x[:C] = W
        x[C : 2 * C] = N
        if self.n_slack:
            est = problem.X @ w
            m = problem.n_targets
            x[2 * C : 2 * C + m] = np.maximum(est - self.domain.band_upper, 0.0)  # s+
            x[2 * C + m :] = np.maximum(self.domain.band_lower - est, 0.0)  # s-
        return x / self.col_scale

    def weights_from_solution(self, x: np.ndarray) -> np.ndarray:
        """Record weights from a MIP solution: class totals split evenly over kept copies."""
        C = self.n_classes
        W = x[:C] * self.col_scale[:C]
        N = np.rint(x[C : 2 * C]).astype(np.int64)
        N = np.minimum(N, self.multiplicity)
        n = self.labels.size
        w = np.zeros(n)
        act = np.flatnonzero(self.labels >= 0)
        lab = self.labels[act]
        # rank of each record within its class (records in index order)
        order = np.argsort(lab, kind="stable")
        sorted_lab = lab[order]
        starts = np.searchsorted(sorted_lab, sorted_lab, side="left")
        rank = np.empty(act.size, dtype=np.int64)
        rank[order] = np.arange(act.size) - starts
        kept = rank < N[lab]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(N > 0, W / np.maximum(N, 1), 0.0)
        w[act[kept]] = share[lab[kept]]
        return w


def build_l0_model(
    problem: CalibrationProblem,
    *,
    objective: str = "count",
    lam: float = 1e-3,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
    big_m: str = "tight",
    aggregate: bool = True,
    cuts: bool = True,
    domain: SparseDomain | None = None,
) -> L0Model:
    """Build the L0 MIP of ``problem`` (see the module docstring for the program).

    Parameters
    ----------
    objective
        ``"count"`` (minimise non-zeros with every target in its band) or ``"error+count"``.
    lam
        Price of one non-zero in units of (group-normalised) relative target error
        (``error+count`` only).
    eps, group_normalise
        Error weighting, as in :func:`calibopt.loss.loss_weights` (``error+count`` only).
    big_m
        ``"tight"``: per record, the tightest bound implied by the user bounds and the target
        bands; ``"uniform"``: one constant for every record (the largest band end over the
        smallest entry of X, at least every implied bound), the textbook big-M model, kept
        for comparison.
    aggregate
        Merge identical records into one integer-multiplicity class.
    cuts
        Add the cardinality cover rows ``sum N_c >= k_j``.
    domain
        A precomputed :class:`SparseDomain` (count objective only).
    """
    if objective not in OBJECTIVES:
        raise InvalidProblemError(f"`objective` must be one of {OBJECTIVES}, got {objective!r}.")
    if big_m not in BIG_M:
        raise InvalidProblemError(f"`big_m` must be one of {BIG_M}, got {big_m!r}.")
    soft = objective == "error+count"
    if soft and not (np.isfinite(lam) and lam >= 0):
        raise InvalidProblemError(f"`lam` must be a finite number >= 0, got {lam!r}.")
    m, n = problem.X.shape
    omega = None
    if soft:
        b = problem.targets
        c = group_coefficients(problem.groups, m) if group_normalise else np.ones(m)
        omega = c / (np.abs(b) + float(eps))
        domain = _soft_domain(problem, omega)
    elif domain is None:
        domain = sparse_domain(problem)
    lower, upper = domain.lower, domain.upper
    # interval of a kept record: user bounds within the implied hull
    a = np.maximum(lower, domain.hull_lower)
    bnd = np.minimum(upper, domain.hull_upper)
    active = ~domain.fixed_zero & (a <= bnd)
    unbounded = active & ~(np.isfinite(a) & np.isfinite(bnd))
    if unbounded.any():
        i = int(np.flatnonzero(unbounded)[0])
        raise InvalidProblemError(
            f"record {i} (and {int(unbounded.sum()) - 1} more) has no finite bound on its weight "
            f"from the bounds or the target bands, so the MIP has no valid big-M; give an upper "
            f"bound, e.g. bounds=(0, U) or ratio_bounds=(0, U)."
        )
    if big_m == "uniform":
        aggregate = False  # the textbook model: one binary per record
    if aggregate:
        labels, reps = record_classes(problem, a, bnd, active)
    else:
        reps = np.flatnonzero(active)
        labels = np.full(n, -1, dtype=np.int64)
        labels[reps] = np.arange(reps.size)
    C = reps.size
    mult = np.bincount(labels[labels >= 0], minlength=C).astype(np.int64)
    Xc = problem.csc[:, reps]
    if big_m == "uniform":
        # one constant M for every record; the user's own bounds stay as column bounds
        # the textbook constant: the largest band end over the smallest entry of X (valid for
        # non-negative data), and never below any record's implied bound (always valid)
        band_max = float(np.max(np.maximum(np.abs(domain.band_lower), np.abs(domain.band_upper))))
        x_min = float(np.min(np.abs(problem.X.data))) if problem.X.nnz else 1.0
        M = max(band_max / x_min, float(np.max(np.abs(np.r_[a[reps], bnd[reps]]), initial=0.0)))
        lo_r, up_r = lower[reps], upper[reps]
        a_c = np.where(lo_r > 0, lo_r, np.where(lo_r < 0, -M, 0.0))
        b_c = np.where(up_r > 0, M, np.where(up_r < 0, up_r, 0.0))
        wl = np.where(lo_r < 0, np.maximum(lo_r, -M), 0.0)
        wu = np.where(up_r > 0, np.minimum(up_r, M), 0.0)
    else:
        a_c = a[reps]
        b_c = bnd[reps]
        # class totals W_c: start from [k a, k b] (0 inside) and propagate through the bands
        wl = np.where(a_c < 0, mult * a_c, 0.0)
        wu = np.where(b_c > 0, mult * b_c, 0.0)
        if not soft:
            wl, wu, _ = propagate_bounds(
                Xc.tocsr(),
                domain.band_lower,
                domain.band_upper,
                wl,
                wu,
                max_rounds=3,
                names=problem.target_names,
            )
    # ---- columns: W (C), N (C), slacks (2m, soft only)
    n_slack = 2 * m if soft else 0
    cost = np.concatenate([np.zeros(C), np.full(C, lam if soft else 1.0)])
    col_lower = np.concatenate([wl, np.zeros(C)])
    col_upper = np.concatenate([wu, mult.astype(np.float64)])
    # records whose implied hull excludes 0 must be kept
    if big_m == "tight":
        must = (domain.hull_lower[reps] > 0) | (domain.hull_upper[reps] < 0)
        col_lower[C:][must] = mult[must]
    integer = np.concatenate([np.zeros(C, bool), np.ones(C, bool)])
    # ---- rows: bands (m), links (2C: W - b N <= 0, W - a N >= 0), covers
    eye = sp.identity(C, format="csc")
    zeros_mc = sp.csc_matrix((m, C))
    blocks_top = [Xc, zeros_mc]
    if soft:
        I_m = sp.identity(m, format="csc")
        blocks_top += [-I_m, I_m]
        cost = np.concatenate([cost, omega, omega])
        col_lower = np.concatenate([col_lower, np.zeros(2 * m)])
        col_upper = np.concatenate([col_upper, np.full(2 * m, np.inf)])
        integer = np.concatenate([integer, np.zeros(2 * m, bool)])
    rows = [sp.hstack(blocks_top, format="csc")]
    row_lower = [domain.band_lower]
    row_upper = [domain.band_upper]
    pad = [sp.csc_matrix((C, n_slack))] if soft else []
    rows.append(sp.hstack([eye, -sp.diags(b_c), *pad], format="csc"))
    row_lower.append(np.full(C, -np.inf))
    row_upper.append(np.zeros(C))
    has_lower_link = a_c != 0
    if has_lower_link.any():
        sel = np.flatnonzero(has_lower_link)
        E = eye[sel]
        rows.append(
            sp.hstack(
                [E, -sp.diags(a_c).tocsr()[sel], *[p.tocsr()[sel] for p in pad]], format="csc"
            )
        )
        row_lower.append(np.zeros(sel.size))
        row_upper.append(np.full(sel.size, np.inf))
    n_cover = 0
    need = (
        cover_counts(Xc.tocsr(), b_c, a_c, mult, domain.band_lower, domain.band_upper)
        if not soft
        else np.zeros(m, dtype=np.int64)
    )
    if cuts and not soft:
        sel = np.flatnonzero(need >= 2)
        if sel.size:
            # rows over the N columns: classes with a contribution of the needed sign
            Xs = Xc.tocsr()[sel]
            S = Xs.tocoo()
            lo_pos = domain.band_lower[sel] > 0
            sign_ok = np.where(
                lo_pos[S.row],
                (S.data * b_c[S.col] > 0) | (S.data * a_c[S.col] > 0),
                (S.data * b_c[S.col] < 0) | (S.data * a_c[S.col] < 0),
            )
            P = sp.csr_matrix(
                (np.ones(int(sign_ok.sum())), (S.row[sign_ok], S.col[sign_ok])),
                shape=(sel.size, C),
            )
            rows.append(sp.hstack([sp.csc_matrix((sel.size, C)), P], format="csc"))
            row_lower.append(need[sel].astype(np.float64))
            row_upper.append(np.full(sel.size, np.inf))
            n_cover = sel.size
    A = sp.vstack(rows, format="csc")
    row_lower = np.concatenate(row_lower)
    row_upper = np.concatenate(row_upper)
    # ---- scaling: W_c in units of its largest kept weight, band rows in units of their band,
    # so that HiGHS's absolute tolerances mean the same for a count and a billion-dollar total
    sw = np.maximum(np.abs(a_c), np.abs(b_c))
    sw = np.where(sw > 0, sw, 1.0)
    band = np.maximum(np.abs(domain.band_lower), np.abs(domain.band_upper))
    rband = 1.0 / np.where(np.isfinite(band) & (band > 0), band, 1.0)
    col_scale = np.concatenate(
        [sw, np.ones(C), 1.0 / rband, 1.0 / rband] if soft else [sw, np.ones(C)]
    )
    n_link_lo = int(has_lower_link.sum())
    row_scale = np.concatenate(
        [rband, 1.0 / sw, 1.0 / sw[has_lower_link], np.ones(A.shape[0] - m - C - n_link_lo)]
    )
    A = sp.csc_matrix(sp.diags(row_scale) @ A @ sp.diags(col_scale))
    row_lower = row_lower * row_scale
    row_upper = row_upper * row_scale
    cost = cost * col_scale
    col_lower = col_lower / col_scale
    col_upper = col_upper / col_scale
    stats = {
        "records": n,
        "fixed_zero": int((~active).sum()),
        "classes": C,
        "aggregated_records": int((mult - 1).clip(min=0).sum()),
        "cover_rows": n_cover,
        "cover_bound": int(need.max(initial=0)),
        "mip_rows": A.shape[0],
        "mip_cols": A.shape[1],
        "big_m": big_m,
        "max_big_m": float(np.max(np.abs(np.r_[a_c, b_c]), initial=0.0)),
    }
    return L0Model(
        cost=cost,
        col_lower=col_lower,
        col_upper=col_upper,
        A=A,
        row_lower=row_lower,
        row_upper=row_upper,
        integer=integer,
        n_classes=C,
        labels=labels,
        representatives=reps,
        multiplicity=mult,
        link_lower=a_c,
        link_upper=b_c,
        domain=domain,
        objective=objective,
        n_slack=n_slack,
        col_scale=col_scale,
        omega=omega,
        stats=stats,
    )


def _soft_domain(problem: CalibrationProblem, omega: np.ndarray) -> SparseDomain:
    """The domain of the error+count model: bands widened by the largest useful slack.

    ``w = 0`` is feasible with objective ``E0 = sum_j omega_j dist(0, band_j)``, so an optimal
    solution has ``omega_j s_j <= E0`` for every ``j``; the bands widened by ``E0 / omega_j``
    are valid for propagation and give finite big-Ms.
    """
    lower, upper = kept_bounds(problem)
    lo_b, hi_b = problem.target_bands()
    dist0 = np.maximum(lo_b, 0.0) + np.maximum(-hi_b, 0.0)
    E0 = float(np.dot(omega, dist0))
    widen = E0 / omega
    hull_lower = np.minimum(lower, 0.0)
    hull_upper = np.maximum(upper, 0.0)
    fixed = np.diff(problem.csc.indptr) == 0
    hull_lower[fixed] = 0.0
    hull_upper[fixed] = 0.0
    hl, hu, rounds = propagate_bounds(
        problem.X, lo_b - widen, hi_b + widen, hull_lower, hull_upper, names=problem.target_names
    )
    return SparseDomain(
        lower=lower,
        upper=upper,
        hull_lower=hl,
        hull_upper=hu,
        band_lower=lo_b,
        band_upper=hi_b,
        fixed_zero=fixed,
        rounds=rounds,
    )
