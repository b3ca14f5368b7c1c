"""Studies survive any solver: crashes, hangs and memory hogs become rows; problems round-trip;
a saved problem reruns to the same table; a study resumes; the figures render."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import calibopt as co
from calibopt import status as st
from calibopt.formulations import register_method, unregister_method
from calibopt.studies import (
    COLUMNS,
    load_problem,
    load_study,
    make_instance,
    problem_digest,
    save_problem,
)


# ----------------------------------------------------------------------------- fake methods
def fake_raise(problem, *, solver=None):
    raise RuntimeError("the solver blew up")


def fake_sleep(problem, *, solver=None):
    time.sleep(120)


def fake_alloc(problem, *, solver=None):
    hog = []
    for _ in range(64):  # 64 x 64 MiB = 4 GiB, far past the 256 MiB limit
        hog.append(np.ones(8 * 2**20))
    return hog


def fake_abort(problem, *, solver=None):
    os.abort()


def fake_inspect(problem, *, solver=None):
    """Returns the design weights and says whether X is memory-mapped (shared, not copied)."""
    import mmap

    base, mapped = problem.X.data, False
    while base is not None and not mapped:
        mapped = isinstance(base, mmap.mmap)
        base = getattr(base, "base", None)
    return co.CalibrationResult.from_weights(
        problem,
        problem.initial_weights,
        method="fake-inspect",
        solver="fake",
        proven_optimal=False,
        message=f"memmap={mapped} pid={os.getpid()}",
    )


def fake_anytime(problem, *, solver=None, time_limit=None):
    """An anytime method: says which budget the study gave it."""
    return co.CalibrationResult.from_weights(
        problem,
        problem.initial_weights,
        method="fake-anytime",
        solver="fake",
        proven_optimal=False,
        message=f"budget={time_limit}",
    )


FAKES = {
    "fake-raise": fake_raise,
    "fake-sleep": fake_sleep,
    "fake-alloc": fake_alloc,
    "fake-abort": fake_abort,
    "fake-inspect": fake_inspect,
}


def register_fake(name, fn):
    register_method(
        name,
        solvers=("fake",),
        catalogue="none.md",
        summary="test-only",
        guarantee="approximate",
        iterations="none",
        objective="none",
    )(fn)


@pytest.fixture(scope="module")
def fakes():
    for name, fn in FAKES.items():
        register_fake(name, fn)
    yield list(FAKES)
    for name in FAKES:
        unregister_method(name)


@pytest.fixture(scope="module")
def survey():
    return make_instance("survey-margins", "tiny", seed=1)


def test_a_study_survives_raise_hang_memory_hog_and_abort(fakes, survey, tmp_path):
    methods = ["linear", *fakes, "raking"]
    t0 = time.perf_counter()
    study = co.compare(
        survey, methods=methods, time_limit=2.0, memory_limit="256MB", directory=tmp_path
    )
    took = time.perf_counter() - t0
    got = dict(zip(study["method"], study["status"]))
    assert got == {
        "linear": st.OPTIMAL,
        "fake-raise": st.FAILED,
        "fake-sleep": st.TIMED_OUT,
        "fake-alloc": st.OUT_OF_MEMORY,
        "fake-abort": st.CRASHED,
        "fake-inspect": st.STOPPED,  # design weights miss the targets
        "raking": st.OPTIMAL,
    }
    msg = dict(zip(study["method"], study["message"]))
    assert "RuntimeError: the solver blew up" in msg["fake-raise"]
    assert "SIGABRT" in msg["fake-abort"]
    assert "256 MiB" in msg["fake-alloc"]
    assert "memmap=True" in msg["fake-inspect"]  # the worker maps the saved matrix
    assert f"pid={os.getpid()}" not in msg["fake-inspect"]  # ... in another process
    assert study.loc[study["method"] == "fake-sleep", "wall_time"].item() == 2.0
    assert took < 40
    assert list(study.columns) == COLUMNS
    # the rows that ran carry the fit checked from their weights
    ok = study[study["method"].isin(["linear", "raking"])]
    assert (ok["max_rel_error"] < 1e-9).all() and (ok["misses"] == 0).all()
    assert (ok["nnz"] == survey.problem.n_units).all()


def test_methods_and_solvers_compared_side_by_side(survey):
    study = co.compare(
        survey, methods=["linear", "raking"], solvers=[None, "CLARABEL", "OSQP"], repeats=2
    )
    row = study.set_index(["method", "solver"])
    assert len(study) == 6
    assert row.loc[("raking", "OSQP"), "status"] == st.NOT_APPLICABLE
    assert row.loc[("linear", "OSQP"), "status"] == st.OPTIMAL
    for method in ("linear", "raking"):
        assert row.loc[(method, "newton"), "status"] == st.OPTIMAL
        assert row.loc[(method, "newton"), "distance_to_first"] == 0.0
        assert row.loc[(method, "newton"), "repeats"] == 2
        # a second solver lands on the same optimum, checked from the weights
        assert row.loc[(method, "CLARABEL"), "distance_to_first"] < 1e-6
        assert row.loc[(method, "CLARABEL"), "max_rel_error"] < 1e-8
    # the same objective from both solvers of a method
    np.testing.assert_allclose(
        row.loc[("linear", "CLARABEL"), "objective"], row.loc[("linear", "newton"), "objective"],
        rtol=1e-7,
    )  # fmt: skip
    newton = row.loc[("linear", "newton")]
    assert newton["wall_time_min"] <= newton["wall_time"] <= newton["wall_time_max"]


def test_anytime_method_gets_a_budget_inside_the_hard_limit(survey):
    """A method with its own ``time_limit`` (l0-mip) returns its incumbent before the study
    kills it: 0.8 * limit - 1 s unless the study's options set it."""
    register_fake("fake-anytime", fake_anytime)
    try:
        run = dict(methods=["fake-anytime"], executor="in-process")

        def budget(**kw):
            return co.compare(survey, **run, **kw)["message"].iloc[0].split(";")[0]

        assert budget(time_limit=20) == "budget=15.0"
        assert budget(time_limit=None) == "budget=None"
        assert budget(time_limit=20, options={"fake-anytime": {"time_limit": 3}}) == "budget=3"
    finally:
        unregister_method("fake-anytime")


def test_infeasible_instance_reported_and_the_study_goes_on():
    study = co.compare("infeasible:tiny", methods=["linear", "raking"], executor="in-process")
    assert list(study["status"]) == [st.INFEASIBLE, st.INFEASIBLE]
    assert study["message"].str.contains("cannot be reached").all()


def test_problem_round_trip(tmp_path):
    X = np.array([[1.0, 0.0, 2.0, 1.0], [0.0, 3.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    p = co.CalibrationProblem(
        X,
        [4.0, 5.0, 6.0],
        initial_weights=[1.0, 2.0, 1.5, 0.5],
        bounds=([0.0, 0.1, 0.0, 0.0], None),
        ratio_bounds=(0.5, [2.0, 3.0, 4.0, np.inf]),
        tolerance=[0.0, 0.01, 0.02],
        target_names=["a", "b", "c"],
        groups=["g1", 7, "g1"],
        unit_ids=["u1", "u2", "u3", "u4"],
    )
    path = save_problem(p, tmp_path / "p", provenance={"source": "test", "seed": 3})
    assert path.name == "p.npz"
    with pytest.raises(co.InvalidProblemError, match="exists"):
        save_problem(p, path)
    for mmap in (False, True):
        q = load_problem(path, mmap=mmap)
        assert (q.X != p.X).nnz == 0 and q.X.shape == p.X.shape
        for name in ("targets", "initial_weights", "lower", "upper", "ratio_lower",
                     "ratio_upper", "tolerance"):  # fmt: skip
            np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
        assert q.target_names == p.target_names
        assert list(q.groups) == ["g1", 7, "g1"]
        assert list(q.unit_ids) == ["u1", "u2", "u3", "u4"]
        assert q.has_ratio_bounds
        assert problem_digest(q) == problem_digest(p)
    assert not load_problem(path, mmap=True).X.data.flags.writeable  # read-only mapping
    # numpy reads it as any .npz
    with np.load(path) as z:
        np.testing.assert_array_equal(z["X_data"], p.X.data)
    assert co.studies.problem_meta(path)["provenance"] == {"source": "test", "seed": 3}
    # no ratio bounds, no bounds
    r = co.CalibrationProblem(X, [4.0, 5.0, 6.0], bounds=None)
    s = load_problem(save_problem(r, tmp_path / "r.npz"))
    assert not s.has_ratio_bounds and np.isneginf(s.lower).all()
    assert problem_digest(s) == problem_digest(r)


def test_bad_problem_files(tmp_path):
    with pytest.raises(co.InvalidProblemError, match="does not exist"):
        load_problem(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.ones(3))
    with pytest.raises(co.InvalidProblemError, match=r"problem\.json"):
        load_problem(bad)


def test_saved_problem_reruns_to_the_same_table(tmp_path):
    first = co.compare(
        "bounded-qp:tiny", methods=["linear", "raking", "ipf"], directory=tmp_path / "a"
    )
    saved = tmp_path / "a" / "problems" / "bounded-qp-tiny.npz"
    again = co.compare(
        {"bounded-qp-tiny": saved}, methods=["linear", "raking", "ipf"], directory=tmp_path / "b"
    )
    timing = ["wall_time", "wall_time_min", "wall_time_max", "solve_time", "overhead",
              "peak_memory_mb"]  # fmt: skip
    a, b = first.drop(columns=timing), again.drop(columns=timing)
    assert (a["status"] == st.OPTIMAL).all()
    assert a.equals(b)
    # and the study reloads from its folder (CSV and Parquet written)
    assert (tmp_path / "a" / "study.csv").is_file() and (tmp_path / "a" / "study.parquet").is_file()
    assert load_study(tmp_path / "a").drop(columns=timing).equals(a)


def test_resume_reruns_nothing_finished(tmp_path):
    first = co.compare("survey-margins:tiny", methods=["linear"], directory=tmp_path)
    second = co.compare("survey-margins:tiny", methods=["linear", "raking"], directory=tmp_path)
    t1 = first.set_index("method")["wall_time"]
    t2 = second.set_index("method")["wall_time"]
    assert t2["linear"] == t1["linear"]  # the same float: the row was kept, not rerun
    assert second.set_index("method").loc["raking", "status"] == st.OPTIMAL
    # a different problem under the same name is not mistaken for the saved one
    third = co.compare(
        {"survey-margins-tiny": make_instance("survey-margins", "tiny", seed=5)},
        methods=["linear"],
        directory=tmp_path,
    )
    assert third["wall_time"].item() != t1["linear"]


def test_bad_arguments():
    with pytest.raises(co.InvalidProblemError, match="executor"):
        co.compare("survey-margins:tiny", executor="threads")
    with pytest.raises(co.InvalidProblemError, match="memory_limit"):
        co.compare("survey-margins:tiny", memory_limit="lots")
    with pytest.raises(co.InvalidProblemError, match="unknown instance kind"):
        co.compare("no-such-kind:tiny")
    with pytest.raises(co.InvalidProblemError, match="unknown method"):
        co.compare("survey-margins:tiny", methods=["no-such-method"])
    with pytest.raises(co.InvalidProblemError, match="time_limit"):
        co.compare("survey-margins:tiny", time_limit=0)


def test_figures_render_with_labels(tmp_path):
    study = co.compare(
        ["sparse-recovery:tiny", "bounded-qp:tiny"],
        methods=["linear", "reweighted-l1"],
        directory=tmp_path / "study",
    )
    report = study.report(tmp_path / "report")
    text = report.read_text()
    assert "| sparse-recovery-tiny | reweighted-l1 | highs |" in text
    for stem in ("time_vs_error", "profile", "sparsity", "fit_sparse-recovery-tiny"):
        for ext in ("png", "svg"):
            f = tmp_path / "report" / f"{stem}.{ext}"
            assert f.stat().st_size > 5_000, f
        assert f"({stem}.png)" in text
    svg = (tmp_path / "report" / "time_vs_error.svg").read_text()
    assert "wall time (s)" in svg and "max relative target error" in svg
    assert "non-zero weights" in (tmp_path / "report" / "sparsity.svg").read_text()
    assert "share of instances solved" in (tmp_path / "report" / "profile.svg").read_text()
    assert "target group" in (tmp_path / "report" / "fit_bounded-qp-tiny.svg").read_text()


def test_performance_ratios_by_hand():
    import pandas as pd

    from calibopt.studies.plots import performance_ratios

    t = pd.DataFrame(
        {
            "instance": ["p", "p", "q", "q"],
            "method": ["a", "b", "a", "b"],
            "solver": ["s", "s", "s", "s"],
            "status": [st.OPTIMAL, st.OPTIMAL, st.OPTIMAL, st.TIMED_OUT],
            "wall_time": [1.0, 4.0, 3.0, 1.0],
        }
    )
    r = performance_ratios(t)
    assert r.loc["p", "a/s"] == 1.0 and r.loc["p", "b/s"] == 4.0
    assert r.loc["q", "a/s"] == 1.0 and np.isinf(r.loc["q", "b/s"])


def test_solvers_not_installed_or_not_taken_are_rows(fakes, survey):
    from calibopt.studies.solvers import installed_solvers, solver_installed

    assert solver_installed("newton") and solver_installed("CLARABEL")
    assert not solver_installed("NO_SUCH_CVXPY_SOLVER")
    assert installed_solvers("linear")[0] == "newton"
    study = co.compare(
        survey,
        methods=["linear"],
        solvers=["newton", "NO_SUCH_CVXPY_SOLVER", "ipf"],
        executor="in-process",
    )
    got = dict(zip(study["solver"], study["message"]))
    assert study.set_index("solver").loc["newton", "status"] == st.OPTIMAL
    assert "linear takes newton" in got["ipf"]
    assert study.set_index("solver").loc["ipf", "status"] == st.NOT_APPLICABLE
    register_method(
        "fake-two",
        solvers=("fake", "NOT_HERE"),
        catalogue="none.md",
        summary="test-only",
        guarantee="approximate",
        iterations="none",
        objective="none",
    )(fake_inspect)
    try:
        study = co.compare(survey, methods=["fake-two"], solvers=None, executor="in-process")
    finally:
        unregister_method("fake-two")
    row = study.set_index("solver")
    assert row.loc["fake", "status"] == st.STOPPED
    assert row.loc["NOT_HERE", "status"] == st.NOT_APPLICABLE
    assert "not installed" in row.loc["NOT_HERE", "message"]


def test_instances_are_seeded_and_sized():
    from calibopt.studies import instance_kinds, standard_instances

    assert set(co.studies.STANDARD) | {"infeasible"} <= set(instance_kinds())
    a = make_instance("sparse-recovery", "tiny", seed=3)
    b = make_instance("sparse-recovery", "tiny", seed=3)
    c = make_instance("sparse-recovery", "tiny", seed=4)
    assert problem_digest(a.problem) == problem_digest(b.problem) != problem_digest(c.problem)
    assert a.provenance == {"kind": "sparse-recovery", "size": "tiny", "seed": 3, "blocks": 2,
                            "records": 150, "rows": 10, "planted_nonzeros_share": 0.1}  # fmt: skip
    assert a.problem.X.shape == (20, 300)
    # the blocks are independent: every column touches the rows of one block only
    rows_of = [set(a.problem.csc[:, j].indices // 10) for j in range(300)]
    assert all(len(r) == 1 for r in rows_of)
    small = {i.name: i.problem for i in standard_instances("tiny")}
    assert list(small) == [f"{k}-tiny" for k in co.studies.STANDARD]
    assert small["local-area-tiny"].X.shape == (127, 1440)
    # the conflicting variant: the same matrix, other (noisy) totals
    assert (small["conflicting-tiny"].X != small["local-area-tiny"].X).nnz == 0
    assert not np.allclose(small["conflicting-tiny"].targets, small["local-area-tiny"].targets)
    with pytest.raises(co.InvalidProblemError, match="size 'huge'"):
        make_instance("bounded-qp", "huge")
