"""Vertex search: every support it returns is feasible (checked by an independent LP), smaller
than its start and never below the brute-force optimum; it stops at the bound, proves a start
optimal when the cut-off LP is infeasible, and never spins on a HiGHS that refuses to run; wired
into l0-mip after a first MIP without a proof."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_l0_mip import brute_force_min_support, random_problem
from test_support_search import feasible_on

import calibopt as co
import calibopt.formulations.l0_mip as l0_mip
import calibopt.solvers.vertex_search as vs_module
from calibopt.fit import check_weights
from calibopt.formulations.l0_model import build_l0_model
from calibopt.formulations.l0_start import root_bound
from calibopt.solvers.highs import _highspy, highs_model, solve_highs
from calibopt.solvers.vertex_search import vertex_search


@pytest.mark.parametrize("n, m, seed", [(10, 4, 1), (12, 4, 2), (12, 5, 3), (14, 4, 6)])
def test_found_supports_are_feasible_smaller_and_not_below_the_optimum(n, m, seed):
    p = random_problem(n, m, seed, negative_row=seed == 3, dup=2 if seed == 6 else 0)
    model = build_l0_model(p)
    best = brute_force_min_support(p)
    assert best < n
    out = vertex_search(model.lp, model.n_classes, n, time_limit=30, max_rounds=40, seed=seed)
    assert out.x is not None and out.found >= 1
    w = model.weights_from_solution(out.x)
    support = np.flatnonzero(w)
    assert support.size == out.count < n
    assert support.size >= best
    assert feasible_on(p, support)
    # with the optimum's ceiling as the stop, it ends there or proves nothing smaller exists
    assert out.stopped in ("bound reached", "round limit", "relaxation infeasible")


def test_stops_at_the_bound_without_a_round():
    p = random_problem(12, 4, 2)
    model = build_l0_model(p)
    out = vertex_search(model.lp, model.n_classes, 5, time_limit=30, stop_at=5)
    assert (out.x, out.rounds, out.stopped) == (None, 0, "bound reached")


def test_a_start_at_the_rounded_up_lp_bound_is_proven_optimal():
    p = random_problem(14, 4, 6, dup=2)
    model = build_l0_model(p)
    k = int(np.ceil(root_bound(model) - 1e-6))
    out = vertex_search(model.lp, model.n_classes, k, time_limit=30)
    assert out.x is None and out.rounds == 1
    assert out.stopped == "relaxation infeasible"


class _Refusing:
    """A HiGHS object whose runs are refused (as HiGHS refuses a thread count its scheduler
    cannot take): ``run`` returns kError and solves nothing."""

    def __init__(self, h):
        self._h = h

    def __getattr__(self, name):
        return getattr(self._h, name)

    def run(self):
        return _highspy().HighsStatus.kError

    solve = run


@pytest.mark.parametrize("refuse", ["relaxation", "neighbourhood"])
def test_a_refused_run_ends_the_search_at_once(monkeypatch, refuse):
    p = random_problem(12, 4, 2)
    model = build_l0_model(p)
    built = []

    def highs_model_refusing(lp, options=None):
        h = highs_model(lp, options=options)
        built.append(lp.is_mip)
        return _Refusing(h) if lp.is_mip == (refuse == "neighbourhood") else h

    monkeypatch.setattr(vs_module, "highs_model", highs_model_refusing)
    out = vertex_search(model.lp, model.n_classes, 12, time_limit=20, seed=0)
    assert out.stopped == "solver error"
    assert out.rounds == 1 and out.x is None and out.seconds < 5
    assert built == ([False] if refuse == "relaxation" else [False, True])


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_ends_the_search_with_what_it_found(monkeypatch, workers):
    p = random_problem(40, 5, 11, tol=0.05)
    model = build_l0_model(p)
    calls = []

    def solve_then_interrupt(h, **kw):
        calls.append(1)
        if len(calls) > 3:  # Ctrl-C during the fourth neighbourhood MIP
            raise KeyboardInterrupt
        return solve_highs(h, **kw)

    monkeypatch.setattr(vs_module, "solve_highs", solve_then_interrupt)
    out = vertex_search(model.lp, model.n_classes, 40, time_limit=60, workers=workers, seed=1)
    assert out.stopped == "interrupted" and out.seconds < 10
    # every worker stopped: at most one more neighbourhood per other worker after the signal
    assert len(calls) <= 3 + workers
    if out.x is not None:
        w = model.weights_from_solution(out.x)
        assert np.count_nonzero(w) == out.count < 40
        assert feasible_on(p, np.flatnonzero(w))


def test_parallel_workers_find_valid_supports():
    p = random_problem(40, 5, 11, tol=0.05)
    model = build_l0_model(p)
    out = vertex_search(model.lp, model.n_classes, 40, time_limit=30, workers=2, max_rounds=20)
    assert out.x is not None and out.rounds <= 21
    w = model.weights_from_solution(out.x)
    assert np.count_nonzero(w) == out.count < 40
    assert feasible_on(p, np.flatnonzero(w))


def test_l0_mip_runs_it_when_the_mip_is_stuck(monkeypatch):
    # judged at the first MIP callback: no progress yet, so the search runs and the MIP restarts
    monkeypatch.setattr(l0_mip, "STUCK_AFTER", (0.0, 0.0))
    p = random_problem(40, 5, 11, tol=0.05)
    r = co.calibrate(p, method="l0-mip", time_limit=30, seed=0, support_search=0, vertex_search=2)
    info = r.info
    assert {"vertex_search_rounds", "vertex_search_stopped", "mip_first"} <= set(info)
    assert info["vertex_search_seconds"] < 4
    assert info["mip_first"]["status"] == "Interrupted by user"
    assert info["vertex_search_nnz"] <= info["warm_start_nnz"]
    assert r.nnz <= info["vertex_search_nnz"]
    assert check_weights(p, r.weights, sparse=True).ok
    assert r.status == "optimal"  # the restarted MIP proves it
    assert r.nnz == co.calibrate(p, method="l0-mip", time_limit=30, vertex_search=0).nnz
    off = co.calibrate(p, method="l0-mip", time_limit=30, seed=0, vertex_search=0)
    assert not {"vertex_search_rounds", "mip_first"} & set(off.info)


class _Event:
    def __init__(self, running_time, primal, dual):
        self.data_out = SimpleNamespace(
            running_time=running_time, mip_primal_bound=primal, mip_dual_bound=dual
        )
        self.interrupted = False

    def interrupt(self):
        self.interrupted = True


@pytest.mark.parametrize(
    "primal, dual, stuck",
    [(54, 53.0, True), (np.inf, 53.0, True), (53, 53.0, False), (54, 53.2, False)],
)
def test_only_a_mip_without_progress_is_stopped(primal, dual, stuck):
    calls = []
    h = SimpleNamespace(cbMipInterrupt=SimpleNamespace(subscribe=calls.append))
    event = l0_mip._interrupt_when_stuck(h, after=5.0, count=54, root=53.0)
    (check,) = calls
    early = _Event(4.9, primal, dual)
    check(early)  # too early to judge
    assert not early.interrupted and not event.is_set()
    on_time = _Event(5.0, primal, dual)
    check(on_time)
    assert on_time.interrupted == stuck == event.is_set()
    later = _Event(9.0, 54, 53.0)
    check(later)  # judged once: a MIP left running is never stopped later
    assert not later.interrupted and event.is_set() == stuck


def test_deterministic_runs_skip_it():
    p = random_problem(40, 5, 11, tol=0.05)
    r = co.calibrate(p, method="l0-mip", node_limit=1, threads=1, seed=0, support_search=0)
    assert "vertex_search_rounds" not in r.info


def test_vertex_search_option_is_checked():
    p = random_problem(12, 4, 2)
    with pytest.raises(co.CalibrationError, match="vertex_search"):
        co.calibrate(p, method="l0-mip", vertex_search=-1)
