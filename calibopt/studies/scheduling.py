"""Running the tasks of a study: each repeat of each pair in a pebble worker process (or in
this process for ``executor="in-process"``), at most one task per worker at a time so that
the round trip of a task measures its overhead; a task past its time limit is killed, a
dead worker is replaced, and either becomes the pair's row."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import status as st
from ..formulations.registry import Method
from .sources import Source
from .worker import Task, initialize_worker, plugin_spec, run_task, warm_up

__all__ = ["Pair", "aggregate", "schedule"]


@dataclass
class Pair:
    source: Source
    method: Method
    solver: str | None
    label: str
    options: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)


def _heavy_modules(pairs: list[Pair]) -> tuple[str, ...]:
    """Libraries the workers import at start-up for these pairs."""
    labels = {p.label for p in pairs}
    out = []
    if any(s.isupper() or s == "cvxpy" for s in labels):
        out.append("cvxpy")
    if "torch" in labels:
        out.append("torch")
    if "highs" in labels:
        out.append("highspy")
    return tuple(out)


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            pass
    return f"exit code {code}"


def _failure(exc: BaseException, pair: Pair, time_limit: float | None) -> dict[str, Any]:
    from pebble import ProcessExpired

    if isinstance(exc, cf.TimeoutError):
        return dict(
            status=st.TIMED_OUT,
            wall_time=time_limit,
            message=f"killed at the time limit ({time_limit:g} s)",
        )
    if isinstance(exc, ProcessExpired):
        return dict(
            status=st.CRASHED,
            message=f"the worker process died ({_signal_name(exc.exitcode)}); the study went on",
        )
    return dict(status=st.FAILED, message=f"{type(exc).__name__}: {exc}")


def aggregate(pair: Pair, extra: dict[str, Any]) -> dict[str, Any]:
    """One table row from the repeats of a pair."""
    first = dict(pair.runs[0])
    walls = np.array([r["wall_time"] for r in pair.runs if r.get("wall_time") is not None])
    trips = np.asarray(pair.round_trips[: walls.size])
    row = dict(
        instance=pair.source.name,
        method=pair.method.name,
        solver=pair.label,
        **{k: v for k, v in first.items() if k != "wall_time"},
        repeats=len(pair.runs),
        n_targets=pair.source.shape[0],
        n_units=pair.source.shape[1],
        digest=pair.source.digest,
        **extra,
    )
    if walls.size:
        solve = [r.get("solve_time", np.nan) for r in pair.runs]
        row.update(
            wall_time=float(np.median(walls)),
            wall_time_min=float(walls.min()),
            wall_time_max=float(walls.max()),
            solve_time=float(np.median(solve)),
        )
        if trips.size == walls.size and trips.size:
            row["overhead"] = float(np.median(trips - walls))
    if len(pair.runs) > 1:
        peaks = [r.get("peak_memory_mb", np.nan) for r in pair.runs]
        row["peak_memory_mb"] = float(np.nanmax(peaks)) if not np.isnan(peaks).all() else np.nan
    return row


def schedule(
    pairs: list[Pair],
    *,
    workers: int | None,
    repeats: int,
    time_limit: float | None,
    memory_limit: int | None,
    weights_dir: Path,
    done: Callable[[int, Pair], None],
    bar: Any,
) -> bool:
    """Run every repeat of every pair; ``done(pair)`` as each pair ends. Returns True when
    interrupted (Ctrl-C)."""

    def task(i: int, rep: int) -> Task:
        p = pairs[i]
        return Task(
            instance=p.source.name,
            problem_path=str(p.source.path),
            method=p.method.name,
            solver=p.solver,
            options=p.options,
            repeat=rep,
            memory_limit=memory_limit,
            weights_path=str(weights_dir / f"{i}.npy"),
            plugin=plugin_spec(p.method),
        )

    def finished(i: int, rep: int, row: dict[str, Any], trip: float) -> int | None:
        """Record a repeat; the next repeat to run, or None when the pair is done."""
        p = pairs[i]
        p.runs.append(row)
        p.round_trips.append(trip)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{p.source.name} {p.method.name}/{p.label}: {row['status']}")
        if rep + 1 < repeats and row["status"] in st.RESULT_STATUSES:
            return rep + 1
        if bar is not None:
            bar.update(repeats - rep - 1)
        done(i, p)
        return None

    if workers is None:
        warm_up()
        try:
            for i in range(len(pairs)):
                rep: int | None = 0
                while rep is not None:
                    t0 = time.perf_counter()
                    row = run_task(task(i, rep))
                    rep = finished(i, rep, row, time.perf_counter() - t0)
        except KeyboardInterrupt:
            return True
        return False

    from pebble import ProcessPool

    ctx = multiprocessing.get_context(
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    )
    if ctx.get_start_method() == "forkserver":
        # the forkserver (started once per process) imports these once for every worker
        ctx.set_forkserver_preload(["calibopt.studies._preload", *_heavy_modules(pairs)])
    pool = ProcessPool(
        max_workers=workers,
        initializer=initialize_worker,
        initargs=(_heavy_modules(pairs),),
        context=ctx,
    )
    queue = [(i, 0) for i in range(len(pairs))][::-1]
    running: dict[Any, tuple[int, int, float]] = {}
    interrupted = False
    try:
        while queue or running:
            while queue and len(running) < workers:
                i, rep = queue.pop()
                fut = pool.schedule(run_task, args=(task(i, rep),), timeout=time_limit)
                running[fut] = (i, rep, time.perf_counter())
            ready, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in ready:
                i, rep, t0 = running.pop(fut)
                trip = time.perf_counter() - t0
                try:
                    row = fut.result()
                except BaseException as exc:  # timeout, dead worker, pickling error
                    row = _failure(exc, pairs[i], time_limit)
                nxt = finished(i, rep, row, trip)
                if nxt is not None:
                    queue.append((i, nxt))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if interrupted or running:  # stop() ends the workers now; close() would wait
            pool.stop()
        else:
            pool.close()
        pool.join()
    return interrupted
