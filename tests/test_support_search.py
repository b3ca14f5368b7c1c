"""Support search: every support it returns is feasible (checked by an independent LP), never
larger than its start, never below the brute-force optimum; wired into l0-mip as the start."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog
from test_l0_mip import brute_force_min_support, random_problem

import calibopt as co
from calibopt.fit import check_weights
from calibopt.formulations.l0_model import build_l0_model
from calibopt.formulations.l0_start import root_bound, search_support
from calibopt.solvers.support_search import shrink_support


def feasible_on(p, support):
    """Independent check: some weights on ``support`` within the kept bounds meet every band."""
    X = p.X.toarray()[:, support]
    lo, hi = p.target_bands()
    low, up = p.weight_bounds()
    low = np.where(np.isneginf(low), 0.0, low)
    res = linprog(
        np.zeros(support.size),
        A_ub=np.vstack([X, -X]),
        b_ub=np.r_[hi, -lo],
        bounds=list(zip(low[support], up[support])),
        method="highs",
    )
    return res.status == 0


def search_from_everything(p, seed):
    """Shrink the support of all records (feasible for these problems), to a local optimum."""
    model = build_l0_model(p)
    return search_support(model, model.multiplicity.copy(), None, seed)


@pytest.mark.parametrize("n, m, seed", [(10, 4, 1), (12, 4, 2), (12, 5, 3), (14, 4, 6)])
def test_shrunk_supports_are_feasible_and_not_below_the_optimum(n, m, seed):
    p = random_problem(n, m, seed, negative_row=seed == 3, dup=2 if seed == 6 else 0)
    out, w = search_from_everything(p, seed)
    support = np.flatnonzero(w)
    assert out.stopped == "local optimum"
    assert out.counts.sum() == support.size < n  # it did shrink
    assert feasible_on(p, support)
    assert support.size >= brute_force_min_support(p)
    # the LP's own weights meet every band (to the phase-one tolerance) within the kept bounds
    assert check_weights(p, w, sparse=True).ok


def test_infeasible_start_is_refused():
    p = random_problem(10, 4, 1)
    model = build_l0_model(p)
    C, m = model.n_classes, p.n_targets
    with pytest.raises(ValueError, match="feasible starting support"):
        shrink_support(
            model.lp.A[:m, :C],
            model.lp.row_lower[:m],
            model.lp.row_upper[:m],
            model.link_lower / model.col_scale[:C],
            model.link_upper / model.col_scale[:C],
            model.multiplicity,
            np.zeros(C, dtype=np.int64),
        )


def test_l0_mip_starts_from_the_shrunk_support():
    p = random_problem(40, 5, 11, tol=0.05)
    on = co.calibrate(p, method="l0-mip", time_limit=30, seed=0)
    off = co.calibrate(p, method="l0-mip", time_limit=30, seed=0, support_search=0)
    assert on.status == off.status == "optimal"
    assert on.nnz == off.nnz
    info = on.info
    assert info["support_search_nnz"] <= info["warm_start_nnz"]
    assert "support_search_nnz" not in off.info
    assert check_weights(p, on.weights, sparse=True).ok


@pytest.mark.parametrize(
    "options, match",
    [({"support_search": -1}, "support_search"), ({"heuristic_effort": 2}, "heuristic_effort")],
)
def test_bad_search_options(options, match):
    p = random_problem(10, 4, 1)
    with pytest.raises(co.CalibrationError, match=match):
        co.calibrate(p, method="l0-mip", **options)


@pytest.mark.parametrize("n, m, seed", [(10, 4, 1), (12, 4, 2)])
def test_search_stops_at_the_root_bound(n, m, seed):
    p = random_problem(n, m, seed)
    model = build_l0_model(p)
    bound = root_bound(model)
    optimum = brute_force_min_support(p)
    assert bound <= optimum + 1e-9  # a valid lower bound
    free, _ = search_support(model, model.multiplicity.copy(), None, seed)
    # a stop at or above what the free search reaches ends as soon as the count gets there
    stop = int(free.counts.sum())
    out, w = search_support(model, model.multiplicity.copy(), None, seed, stop_at=stop)
    assert out.stopped == "bound reached"
    assert out.counts.sum() == stop and out.lps <= free.lps
    assert feasible_on(p, np.flatnonzero(w))
