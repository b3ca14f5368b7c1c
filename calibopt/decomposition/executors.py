"""Executors for independent tasks (e.g. the blocks of a sparse calibration).

One small interface, three back-ends:

* :class:`InProcessExecutor` -- one after the other in this process (default; debuggable);
* :class:`ProcessExecutor` -- a local process pool (``concurrent.futures``, forkserver start so
  that solver threads in the parent are never forked);
* :class:`DaskExecutor` -- a ``dask.distributed`` client, for users who outgrow one machine
  (``Client(LocalCluster(...))`` locally, or a scheduler address).

Each yields ``(index, result)`` as tasks complete. :func:`run_tasks` drives one with a
progress bar and returns the results in task order; Ctrl-C cancels what has not started and
returns what finished (the caller decides what the missing ones mean).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import InvalidProblemError

__all__ = [
    "DaskExecutor",
    "Executor",
    "FuturesExecutor",
    "InProcessExecutor",
    "ProcessExecutor",
    "TaskRun",
    "resolve_executor",
    "run_tasks",
]


_BROKEN = (
    "a worker process died while starting or running a task. Worker processes start with "
    "'forkserver'/'spawn', which re-imports your main script: put the calling code under "
    '`if __name__ == "__main__":` (notebooks need nothing), and check the worker\'s memory.'
)


class Executor:
    """Runs ``fn(task)`` for each task; subclasses implement :meth:`run`."""

    name = "executor"

    def run(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(tasks[index]))`` as each task completes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources this executor created (not those the user passed in)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class InProcessExecutor(Executor):
    """Run tasks one after the other in this process."""

    name = "in-process"

    def run(self, fn, tasks):
        for i, task in enumerate(tasks):
            yield i, fn(task)


class FuturesExecutor(Executor):
    """Run tasks on a ``concurrent.futures.Executor`` (not shut down here: the caller owns it)."""

    name = "futures"

    def __init__(self, pool: cf.Executor) -> None:
        self.pool = pool

    def run(self, fn, tasks):
        try:
            futures = {self.pool.submit(fn, task): i for i, task in enumerate(tasks)}
        except cf.process.BrokenProcessPool as exc:
            raise RuntimeError(_BROKEN) from exc
        try:
            for fut in cf.as_completed(futures):
                try:
                    yield futures[fut], fut.result()
                except cf.process.BrokenProcessPool as exc:
                    raise RuntimeError(_BROKEN) from exc
        finally:
            for fut in futures:
                fut.cancel()


class ProcessExecutor(FuturesExecutor):
    """A local process pool of ``max_workers`` processes (default: the CPU count).

    The pool is created on first use and shut down by :meth:`close`. Workers start with the
    ``forkserver`` method where available (``spawn`` otherwise), so a parent that already runs
    solver threads is never forked mid-flight.
    """

    name = "process-pool"

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (int(max_workers) != max_workers or max_workers < 1):
            raise InvalidProblemError(
                f"`max_workers` must be a positive integer, got {max_workers!r}."
            )
        self.max_workers = max_workers
        self.pool = None  # type: ignore[assignment]

    def run(self, fn, tasks):
        if self.pool is None:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            workers = self.max_workers or os.cpu_count() or 1
            self.pool = cf.ProcessPoolExecutor(
                max_workers=min(workers, max(len(tasks), 1)), mp_context=ctx
            )
        yield from super().run(fn, tasks)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers})"


class DaskExecutor(Executor):
    """Run tasks on a ``dask.distributed.Client`` (tasks are submitted with ``pure=False``)."""

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client

    def run(self, fn, tasks):
        from distributed import as_completed

        futures = [self.client.submit(fn, task, pure=False) for task in tasks]
        index = {fut.key: i for i, fut in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                yield index[fut.key], fut.result()
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()

    def __repr__(self) -> str:
        return f"DaskExecutor({self.client!r})"


def resolve_executor(spec: Any) -> tuple[Executor, bool]:
    """An :class:`Executor` from a user's choice, and whether we created it (must close it).

    Parameters
    ----------
    spec
        None, ``"in-process"`` / ``"serial"``: in this process; ``"process"`` or an int ``n``:
        a local pool of ``n`` processes; ``"dask"``: the current ``dask.distributed`` client;
        a ``distributed.Client``; a ``concurrent.futures.Executor``; or an :class:`Executor`.
    """
    if spec is None:
        return InProcessExecutor(), True
    if isinstance(spec, Executor):
        return spec, False
    if isinstance(spec, bool):
        raise InvalidProblemError(
            "`executor` must be a name, a worker count or a client, not a bool."
        )
    if isinstance(spec, int):
        return ProcessExecutor(spec), True
    if isinstance(spec, str):
        key = spec.strip().lower().replace("_", "-")
        if key in ("in-process", "inprocess", "serial", "none"):
            return InProcessExecutor(), True
        if key in ("process", "processes", "process-pool"):
            return ProcessExecutor(), True
        if key == "dask":
            try:
                from distributed import get_client
            except ImportError as exc:
                raise InvalidProblemError(
                    "executor='dask' needs dask.distributed: pip install 'calibopt[dask]'."
                ) from exc
            try:
                return DaskExecutor(get_client()), False
            except ValueError as exc:
                raise InvalidProblemError(
                    "executor='dask' found no running dask.distributed client; create one "
                    "(distributed.Client(...)) or pass it as `executor=client`."
                ) from exc
        raise InvalidProblemError(
            f"unknown executor {spec!r}; use None, 'in-process', 'process', an int (worker "
            f"count), 'dask', a distributed.Client or a concurrent.futures executor."
        )
    if isinstance(spec, cf.Executor):
        return FuturesExecutor(spec), False
    if type(spec).__name__ == "Client" and hasattr(spec, "submit"):
        return DaskExecutor(spec), False
    raise InvalidProblemError(
        f"`executor` of type {type(spec).__name__} is not supported; use None, 'process', an "
        f"int, 'dask', a distributed.Client or a concurrent.futures executor."
    )


class TaskRun:
    """Results of :func:`run_tasks`: ``results[i]`` is None for tasks that did not finish."""

    def __init__(self, results: list[Any], interrupted: bool, executor: str) -> None:
        self.results = results
        self.interrupted = interrupted
        self.executor = executor


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    executor: Any = None,
    *,
    progress: bool | None = None,
    desc: str = "tasks",
    unit: str = "block",
    postfix: Callable[[Any], str] | None = None,
) -> TaskRun:
    """Run ``fn`` over ``tasks`` on ``executor`` with a progress bar; results in task order.

    Parameters
    ----------
    progress
        Show a tqdm bar (None: when stderr is a terminal).
    desc, unit
        The bar's label and the name of one task.
    postfix
        Text for the bar from each finished result (e.g. its status).
    """
    ex, owned = resolve_executor(executor)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit=unit)
    results: list[Any] = [None] * len(tasks)
    interrupted = False
    try:
        for i, res in ex.run(fn, tasks):
            results[i] = res
            if bar is not None:
                bar.update(1)
                if postfix is not None:
                    bar.set_postfix_str(postfix(res), refresh=False)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        if owned:
            ex.close()
    return TaskRun(results, interrupted, ex.name)
