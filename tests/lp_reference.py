"""Independent LP references for the conflict and least-misfit tests: Clarabel via cvxpy.

Clarabel is an interior-point conic solver, unrelated to the HiGHS simplex code the methods
use; the model below is written directly from the definitions (relative misses outside the
bands), in relative units for conditioning.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from calibopt.fit import target_scale


def least_max_miss(
    problem, rows, lower=None, upper=None, all_bounds=False, weights=None, hard=None, caps=None
) -> float:
    """min t s.t. dist(X_j w, band_j) <= t s_j / k_j for the rows (0 for hard ones, cap_j for
    capped ones: ``caps`` maps a row to its fixed largest miss), with only the given bounds
    (or every bound), by Clarabel (an interior-point conic solver)."""
    import cvxpy as cp

    rows = np.asarray(rows)
    X = sp.csr_matrix(problem.X)[rows]
    cols = np.unique(X.indices)
    lo_b, hi_b = problem.target_bands()
    s = target_scale(problem, problem.initial_weights)[rows]
    d = problem.initial_weights[cols]
    d = np.where(d > 0, d, 1.0)
    # in relative units: rows divided by s_j, weights by d_i (g = w / d)
    A = (sp.diags(1.0 / s) @ X[:, cols] @ sp.diags(d)).toarray()
    wlo, whi = problem.weight_bounds()
    g = cp.Variable(cols.size)
    t = cp.Variable(nonneg=True)
    e = A @ g
    k = np.ones(rows.size) if weights is None else np.asarray(weights, float)[rows]
    soft = np.ones(rows.size) if hard is None else (~np.asarray(hard, bool)[rows]).astype(float)
    cap = np.zeros(rows.size)
    for i, j in enumerate(rows):
        if caps is not None and int(j) in caps:
            soft[i], cap[i] = 0.0, caps[int(j)]
    cons = [
        e >= lo_b[rows] / s - cp.multiply(soft / k, t) - cap,
        e <= hi_b[rows] / s + cp.multiply(soft / k, t) + cap,
    ]
    if all_bounds:
        keep_l = np.isfinite(wlo[cols])
        keep_u = np.isfinite(whi[cols])
    else:
        keep_l = np.isin(cols, np.asarray(lower if lower is not None else [], dtype=int))
        keep_u = np.isin(cols, np.asarray(upper if upper is not None else [], dtype=int))
    if keep_l.any():
        cons.append(g[np.flatnonzero(keep_l)] >= (wlo[cols] / d)[keep_l])
    if keep_u.any():
        cons.append(g[np.flatnonzero(keep_u)] <= (whi[cols] / d)[keep_u])
    prob = cp.Problem(cp.Minimize(t), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    assert prob.status == cp.OPTIMAL, prob.status
    return float(t.value)
