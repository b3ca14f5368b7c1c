"""l0-mip engines: HiGHS options passed through; SCIP and Gurobi (cvxpy, gurobipy) reach the
brute-force optimum and report their bound and nodes."""

from __future__ import annotations

import pytest
from test_l0_mip import brute_force_min_support, random_problem

import calibopt as co
from calibopt.fit import check_weights


def test_highs_options_are_set_over_calibopt_s_own():
    p = random_problem(40, 5, 11, tol=0.05)
    free = co.calibrate(p, method="l0-mip", support_search=0, seed=0)
    assert free.info["mip_nodes"] >= 1
    # node_limit sets mip_max_nodes; highs_options overrides it: no branching at all
    capped = co.calibrate(
        p,
        method="l0-mip",
        support_search=0,
        seed=0,
        node_limit=10_000,
        highs_options={"mip_max_nodes": 0},
    )
    assert capped.info["mip_nodes"] == 0
    assert capped.info["mip_status"] != "Optimal"
    assert check_weights(p, capped.weights, sparse=True).ok  # the warm start is kept


@pytest.mark.parametrize("options", [{"no_such_option": 1}, {"mip_rel_gap": "wide"}, [1, 2]])
def test_bad_highs_options_name_the_option(options):
    p = random_problem(8, 3, 0)
    with pytest.raises(co.InvalidProblemError, match=r"option|highs_options"):
        co.calibrate(p, method="l0-mip", highs_options=options)


@pytest.mark.parametrize("solver", ["cvxpy:SCIP", "cvxpy:GUROBI", "gurobi"])
def test_other_mip_solvers_report_bound_and_nodes(solver):
    import cvxpy as cp

    if solver.split(":")[-1].upper() not in cp.installed_solvers():
        pytest.skip(f"{solver} is not installed")
    p = random_problem(12, 4, 2)
    try:
        r = co.calibrate(p, method="l0-mip", solver=solver, time_limit=30)
    except co.SolverError as exc:  # e.g. no Gurobi licence on this machine
        pytest.skip(str(exc)[:200])
    assert r.info["proven_optimal"]
    assert r.nnz == brute_force_min_support(p)
    assert r.info["mip_bound"] == pytest.approx(r.nnz, abs=1e-6)
    assert r.info["mip_gap"] == 0.0
    assert isinstance(r.info["mip_nodes"], int) and r.info["mip_nodes"] >= 0
    assert check_weights(p, r.weights, sparse=True).ok


def test_a_thread_count_unlike_the_schedulers_is_run_not_refused():
    """HiGHS's scheduler belongs to the calling thread and keeps the thread count of its first
    run there. In a worker thread (thread pools, dask) that already ran HiGHS with its default,
    ``l0-mip(threads=...)`` used to have its MIP refused ("Not Set") and returned the warm
    start; the scheduler is now restarted and the MIP runs."""
    from concurrent.futures import ThreadPoolExecutor

    p = random_problem(40, 4, 0)
    best = co.calibrate(p, method="l0-mip", time_limit=20)
    assert best.status == "optimal"

    def in_worker():
        first = co.calibrate(p, method="l0-mip", time_limit=20)  # default thread count
        return [first] + [
            co.calibrate(p, method="l0-mip", threads=k, time_limit=20) for k in (1, 3, 1)
        ]

    with ThreadPoolExecutor(1) as pool:
        runs = pool.submit(in_worker).result()
    for r in runs:
        assert r.info["mip_status"] == "Optimal"
        assert r.status == "optimal"
        assert int((r.weights != 0).sum()) == int((best.weights != 0).sum())
