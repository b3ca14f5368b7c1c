"""Executors: in-process, process pool and a local Dask cluster give the same block weights."""

from __future__ import annotations

import concurrent.futures as cf
import math

import numpy as np
import pytest
from test_blocks import local_area_problem

import calibopt as co
from calibopt.decomposition.executors import (
    DaskExecutor,
    FuturesExecutor,
    InProcessExecutor,
    ProcessExecutor,
    resolve_executor,
    run_tasks,
)


@pytest.fixture(scope="module")
def blocks_case():
    p, labels = local_area_problem(areas=3, households=25, seed=3)
    ref = co.calibrate(p, method="l0-mip", blocks=labels, time_limit=30)
    assert ref.success
    return p, labels, ref


def test_run_tasks_returns_results_in_task_order():
    tasks = [9, 4, 1, 16]
    run = run_tasks(math.sqrt, tasks, None, progress=False)
    assert run.results == [3.0, 2.0, 1.0, 4.0]
    assert not run.interrupted
    with cf.ThreadPoolExecutor(2) as pool:
        run = run_tasks(math.sqrt, tasks, pool, progress=False)
    assert run.results == [3.0, 2.0, 1.0, 4.0]
    assert run.executor == "futures"


def test_process_pool_gives_the_in_process_weights(blocks_case):
    p, labels, ref = blocks_case
    r = co.calibrate(p, method="l0-mip", blocks=labels, time_limit=30, executor=2)
    assert r.info["executor"] == "process-pool"
    np.testing.assert_array_equal(r.weights, ref.weights)
    assert r.status == ref.status


def test_dask_local_cluster_gives_the_in_process_weights(blocks_case):
    distributed = pytest.importorskip("distributed")
    p, labels, ref = blocks_case
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        r = co.calibrate(p, method="l0-mip", blocks=labels, time_limit=30, executor=client)
        assert r.info["executor"] == "dask"
        np.testing.assert_array_equal(r.weights, ref.weights)
        # executor="dask" picks up the running client
        r2 = co.calibrate(p, method="l0-mip", blocks=labels, time_limit=30, executor="dask")
        np.testing.assert_array_equal(r2.weights, ref.weights)


def test_resolve_executor():
    assert isinstance(resolve_executor(None)[0], InProcessExecutor)
    assert isinstance(resolve_executor("serial")[0], InProcessExecutor)
    ex, owned = resolve_executor(3)
    assert isinstance(ex, ProcessExecutor) and ex.max_workers == 3 and owned
    assert isinstance(resolve_executor("process")[0], ProcessExecutor)
    with cf.ThreadPoolExecutor(1) as pool:
        ex, owned = resolve_executor(pool)
        assert isinstance(ex, FuturesExecutor) and not owned
    mine = InProcessExecutor()
    assert resolve_executor(mine) == (mine, False)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("threads", "unknown executor"),
        (True, "not a bool"),
        (2.5, "not supported"),
        (0, "positive"),
    ],
)
def test_bad_executor(spec, match):
    with pytest.raises(co.InvalidProblemError, match=match):
        resolve_executor(spec)


def test_dask_without_client_says_how_to_fix():
    pytest.importorskip("distributed")
    with pytest.raises(co.InvalidProblemError, match="no running dask"):
        resolve_executor("dask")


def test_dask_executor_wraps_a_client_object():
    class Client:  # duck-typed stand-in: resolve_executor recognises clients by name
        def submit(self, *a, **k):  # pragma: no cover - not called
            raise AssertionError

    ex, owned = resolve_executor(Client())
    assert isinstance(ex, DaskExecutor) and not owned
