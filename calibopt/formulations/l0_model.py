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
import scipy.sparse as sp

from ..problem import CalibrationProblem
from ..solvers.domain import SparseDomain, propagate_bounds, sparse_domain
from ..solvers.linear_program import LinearProgram
from ..solvers.loss import DEFAULT_EPS, group_coefficients
from ..validate import choice, number
from .l0_classes import Classes, classes, cover_rows

__all__ = ["L0Model", "build_l0_model"]

OBJECTIVES = ("count", "error+count")
BIG_M = ("tight", "uniform")


@dataclass
class L0Model:
    """The L0 MIP, with what is needed to map solutions back to records.

    Attributes
    ----------
    lp : LinearProgram
        The scaled model (see ``col_scale``).
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

    lp: LinearProgram
    n_classes: int
    labels: np.ndarray
    representatives: np.ndarray
    multiplicity: np.ndarray
    link_lower: np.ndarray
    link_upper: np.ndarray
    domain: SparseDomain
    objective: str
    col_scale: np.ndarray
    n_slack: int = 0
    omega: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_cols(self) -> int:
        """Number of MIP columns."""
        return self.lp.n_cols

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

    def hull_weights(self, x: np.ndarray) -> np.ndarray:
        """:meth:`weights_from_solution` clipped to each record's implied hull (a MIP solution
        may step outside it by the solver's tolerance)."""
        w = self.weights_from_solution(x)
        return np.clip(
            w, np.minimum(self.domain.hull_lower, 0), np.maximum(self.domain.hull_upper, 0)
        )

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


def _assemble(
    cl: Classes,
    domain: SparseDomain,
    *,
    big_m: str,
    lam: float,
    omega: np.ndarray | None,
    covers: tuple[sp.csr_matrix, np.ndarray] | None,
    max_records: int | None = None,
) -> tuple[LinearProgram, np.ndarray, int]:
    """The unscaled MIP: columns ``W, N (, s+, s-)``; rows bands, links, covers."""
    soft = omega is not None
    C = cl.reps.size
    m = domain.band_lower.size
    n_slack = 2 * m if soft else 0
    cost = np.concatenate([np.zeros(C), np.full(C, lam if soft else 1.0)])
    col_lower = np.concatenate([cl.wl, np.zeros(C)])
    col_upper = np.concatenate([cl.wu, cl.mult.astype(np.float64)])
    # records whose implied hull excludes 0 must be kept
    if big_m == "tight":
        must = (domain.hull_lower[cl.reps] > 0) | (domain.hull_upper[cl.reps] < 0)
        col_lower[C:][must] = cl.mult[must]
    integer = np.concatenate([np.zeros(C, bool), np.ones(C, bool)])
    eye = sp.identity(C, format="csc")
    top = [cl.Xc, sp.csc_matrix((m, C))]
    if soft:
        I_m = sp.identity(m, format="csc")
        top += [-I_m, I_m]
        cost = np.concatenate([cost, omega, omega])
        col_lower = np.concatenate([col_lower, np.zeros(2 * m)])
        col_upper = np.concatenate([col_upper, np.full(2 * m, np.inf)])
        integer = np.concatenate([integer, np.zeros(2 * m, bool)])
    pad = [sp.csc_matrix((C, n_slack))] if soft else []
    rows = [sp.hstack(top, format="csc"), sp.hstack([eye, -sp.diags(cl.b), *pad], format="csc")]
    row_lower = [domain.band_lower, np.full(C, -np.inf)]
    row_upper = [domain.band_upper, np.zeros(C)]
    has_lower_link = cl.a != 0
    if has_lower_link.any():
        sel = np.flatnonzero(has_lower_link)
        E = eye[sel]
        rows.append(
            sp.hstack(
                [E, -sp.diags(cl.a).tocsr()[sel], *[p.tocsr()[sel] for p in pad]], format="csc"
            )
        )
        row_lower.append(np.zeros(sel.size))
        row_upper.append(np.full(sel.size, np.inf))
    if covers is not None and covers[1].size:
        P, need = covers
        rows.append(sp.hstack([sp.csc_matrix((need.size, C)), P], format="csc"))
        row_lower.append(need)
        row_upper.append(np.full(need.size, np.inf))
    if max_records is not None:
        # record budget: sum_c N_c <= max_records
        budget = np.concatenate([np.zeros(C), np.ones(C), np.zeros(n_slack)])
        rows.append(sp.csc_matrix(budget.reshape(1, -1)))
        row_lower.append(np.array([-np.inf]))
        row_upper.append(np.array([float(max_records)]))
    lp = LinearProgram(
        cost=cost,
        col_lower=col_lower,
        col_upper=col_upper,
        A=sp.vstack(rows, format="csc"),
        row_lower=np.concatenate(row_lower),
        row_upper=np.concatenate(row_upper),
        integer=integer,
    )
    return lp, has_lower_link, n_slack


def _scale(
    lp: LinearProgram, cl: Classes, domain: SparseDomain, has_lower_link: np.ndarray, soft: bool
) -> tuple[LinearProgram, np.ndarray]:
    """W_c in units of its largest kept weight, band rows in units of their band, so that
    HiGHS's absolute tolerances mean the same for a count and a billion-dollar total."""
    C = cl.reps.size
    m = domain.band_lower.size
    sw = np.maximum(np.abs(cl.a), np.abs(cl.b))
    sw = np.where(sw > 0, sw, 1.0)
    band = np.maximum(np.abs(domain.band_lower), np.abs(domain.band_upper))
    rband = 1.0 / np.where(np.isfinite(band) & (band > 0), band, 1.0)
    col_scale = np.concatenate(
        [sw, np.ones(C), 1.0 / rband, 1.0 / rband] if soft else [sw, np.ones(C)]
    )
    n_link_lo = int(has_lower_link.sum())
    row_scale = np.concatenate(
        [rband, 1.0 / sw, 1.0 / sw[has_lower_link], np.ones(lp.n_rows - m - C - n_link_lo)]
    )
    scaled = LinearProgram(
        cost=lp.cost * col_scale,
        col_lower=lp.col_lower / col_scale,
        col_upper=lp.col_upper / col_scale,
        A=sp.csc_matrix(sp.diags(row_scale) @ lp.A @ sp.diags(col_scale)),
        row_lower=lp.row_lower * row_scale,
        row_upper=lp.row_upper * row_scale,
        integer=lp.integer,
    )
    return scaled, col_scale


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
    max_records: int | None = None,
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
        Error weighting, as in :func:`calibopt.solvers.loss.loss_weights` (``error+count``).
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
    max_records
        A record budget: at most this many non-zero weights (one row ``sum_c N_c <= k``).
    """
    choice("objective", objective, OBJECTIVES)
    choice("big_m", big_m, BIG_M)
    soft = objective == "error+count"
    lam = number("lam", lam, low=0.0)
    m, n = problem.X.shape
    omega = None
    if soft:
        b = problem.targets
        c = group_coefficients(problem.groups, m) if group_normalise else np.ones(m)
        omega = c / (np.abs(b) + number("eps", eps, low=0.0, strict=True))
        domain = _soft_domain(problem, omega)
    elif domain is None:
        domain = sparse_domain(problem)
    cl = classes(problem, domain, big_m=big_m, aggregate=aggregate, propagate=not soft)
    covers = None
    cover_bound = 0
    if not soft:
        P, need, cover_bound = cover_rows(cl, domain)
        covers = (P, need) if cuts else None
    lp, has_lower_link, n_slack = _assemble(
        cl, domain, big_m=big_m, lam=lam, omega=omega, covers=covers, max_records=max_records
    )
    lp, col_scale = _scale(lp, cl, domain, has_lower_link, soft)
    C = cl.reps.size
    stats = {
        "records": n,
        "fixed_zero": int((cl.labels < 0).sum()),
        "classes": C,
        "aggregated_records": int((cl.mult - 1).clip(min=0).sum()),
        "cover_rows": 0 if covers is None else int(covers[1].size),
        "cover_bound": cover_bound,
        "mip_rows": lp.n_rows,
        "mip_cols": lp.n_cols,
        "big_m": big_m,
        "max_big_m": float(np.max(np.abs(np.r_[cl.a, cl.b]), initial=0.0)),
    }
    return L0Model(
        lp=lp,
        n_classes=C,
        labels=cl.labels,
        representatives=cl.reps,
        multiplicity=cl.mult,
        link_lower=cl.a,
        link_upper=cl.b,
        domain=domain,
        objective=objective,
        col_scale=col_scale,
        n_slack=n_slack,
        omega=omega,
        stats=stats,
    )


def _soft_domain(problem: CalibrationProblem, omega: np.ndarray) -> SparseDomain:
    """The domain of the error+count model: bands widened by the largest useful slack.

    ``w = 0`` is feasible with objective ``E0 = sum_j omega_j dist(0, band_j)``, so an optimal
    solution has ``omega_j s_j <= E0`` for every ``j``; the bands widened by ``E0 / omega_j``
    are valid for propagation and give finite big-Ms.
    """
    lower, upper = problem.weight_bounds()
    lo_b, hi_b = problem.target_bands()
    dist0 = np.maximum(lo_b, 0.0) + np.maximum(-hi_b, 0.0)
    E0 = float(np.dot(omega, dist0))
    widen = E0 / omega
    hull_lower = np.minimum(lower, 0.0)
    hull_upper = np.maximum(upper, 0.0)
    fixed = (np.diff(problem.csc.indptr) == 0) | (lower > upper)
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
