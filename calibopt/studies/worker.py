"""What runs inside a study's worker process: one repeat of one (instance, method, solver).

The worker loads the problem from its saved file, memory-mapped (the operating system shares
the pages between workers and repeats: no copy of the matrix per task), caps its own memory
for the run (``RLIMIT_DATA`` on Linux: the heap and private anonymous mappings, i.e. what the
run allocates; the shared, file-backed matrix does not count), runs the method through the
registry, and returns one small dictionary: the status, the fit checked from the weights,
times and the run's peak resident memory. The weights go to a ``.npy`` file when asked, so
that nothing of size ``n_units`` crosses the pipe.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import status as st
from ..errors import CalibrationError, InfeasibleError, InvalidProblemError
from ..files import atomic_output
from ..formulations.registry import Method, _normalise, methods, register_method, run_method
from ..problem import CalibrationProblem
from .problem_io import load_problem

__all__ = ["Task", "error_status", "initialize_worker", "plugin_spec", "run_task", "warm_up"]

# engine timings that count as "the solver's own time", first present wins
_SOLVE_KEYS = ("solve", "newton", "mip", "lps", "training", "total")


@dataclass(frozen=True)
class Task:
    """One repeat of one pair, as sent to a worker (small: paths and names only)."""

    instance: str
    problem_path: str
    method: str
    solver: str | None
    options: dict[str, Any] = field(default_factory=dict)
    repeat: int = 0
    memory_limit: int | None = None
    weights_path: str | None = None
    plugin: Method | None = None


def plugin_spec(spec: Method) -> Method | None:
    """What a task must carry for a worker to know ``spec``: nothing for calibopt's own
    methods (the worker imports them), the spec itself for a method registered elsewhere
    (a plug-in or a test: its functions travel by reference, module and name)."""
    return None if spec.solve.__module__.startswith("calibopt.formulations.") else spec


def initialize_worker(modules: tuple[str, ...] = ()) -> None:
    """Worker start-up: leave Ctrl-C to the parent (it stops the study); send the worker's
    standard output to its standard error (a solver's banner must not mix with the study's
    output, e.g. ``--json``); warm up unless the
    forkserver this worker was forked from did already; import the heavy libraries the
    study's solvers need (``cvxpy``, ``torch``), so that no run's time includes them."""
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError, ValueError):  # solvers' chatter never lands on stdout
        sys.stdout.flush()
        os.dup2(2, 1)
    warm_up()
    for name in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


_WARM = False


def warm_up() -> None:
    """Compile (or load from numba's cache) the serial Newton kernels with tiny raking and
    logit calibrations, so that no run's time includes it (once per process).

    The multi-threaded kernels (matrices above about 200,000 non-zeros) load from numba's
    cache in the first large run of each worker: loading them here would start threads in
    the forkserver that workers are forked from.
    """
    global _WARM
    if _WARM:
        return
    small = CalibrationProblem(
        np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]]), [8.0, 4.5], np.full(4, 2.0)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_method(small, "raking")
        run_method(small.with_options(ratio_bounds=(0.5, 2.0)), "logit")
        run_method(small, "linear")
    _WARM = True


def error_status(exc: BaseException) -> str:
    """The study status of a run that raised."""
    if isinstance(exc, MemoryError):
        return st.OUT_OF_MEMORY
    if isinstance(exc, InfeasibleError):
        return st.INFEASIBLE
    if isinstance(exc, InvalidProblemError):
        return st.INVALID
    return st.FAILED


_CACHE: dict[str, tuple[float, CalibrationProblem]] = {}


def _problem(path: str) -> CalibrationProblem:
    """The problem of ``path``, memory-mapped, kept for the next task (the last file only)."""
    mtime = os.stat(path).st_mtime_ns
    hit = _CACHE.get(path)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    _CACHE.clear()
    problem = load_problem(path, mmap=True)
    _CACHE[path] = (mtime, problem)
    return problem


def _ensure_method(spec: Method) -> None:
    """Register in this process a method registered only in the parent (a plug-in or a test
    method: its functions travel by reference and are imported here)."""
    if spec.name in methods():
        return
    register_method(
        spec.name,
        aliases=tuple(a for a in spec.aliases if _normalise(a) != spec.name),
        build=spec.build,
        solvers=spec.solvers,
        catalogue=spec.catalogue,
        summary=spec.summary,
        guarantee=spec.guarantee,
        iterations=spec.iterations,
        objective=spec.objective,
        sparse=spec.sparse,
    )(spec.solve)


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> int | None:
    """Reset the peak resident size (Linux ``clear_refs``); the resident KiB now, or None."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


@contextlib.contextmanager
def memory_cap(limit: int | None) -> Iterator[None]:
    """Let the code inside allocate at most ``limit`` more bytes (soft ``RLIMIT_DATA`` over
    the current data size on Linux; ``RLIMIT_AS`` over the address space elsewhere)."""
    if limit is None:
        yield
        return
    kind, now = resource.RLIMIT_DATA, _status_kib("VmData")
    if now is None:
        kind, now = resource.RLIMIT_AS, 0
    soft, hard = resource.getrlimit(kind)
    cap = now * 1024 + int(limit)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(kind, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(kind, (soft, hard))


def _solve_time(timings: dict[str, float]) -> float:
    for key in _SOLVE_KEYS:
        if key in timings:
            return float(timings[key])
    return float("nan")


def _row(result: Any) -> dict[str, Any]:
    fit = result.fit
    return dict(
        status=result.status,
        solver_used=result.solver,
        solve_time=_solve_time(result.timings),
        objective=result.objective,
        max_rel_error=result.max_rel_error,
        mean_rel_error=result.mean_rel_error,
        misses=int(np.count_nonzero(~fit.target_met)),
        bound_violations=int(fit.below.size + fit.above.size + fit.non_finite.size),
        nnz=result.nnz,
        g_min=float(result.g.min()),
        g_max=float(result.g.max()),
        iterations=result.iterations,
        message=result.message,
    )


def run_task(task: Task) -> dict[str, Any]:
    """Run one repeat; never raises for what the method does (its errors become the row)."""
    if task.plugin is not None:
        _ensure_method(task.plugin)
    problem = _problem(task.problem_path)
    base = _reset_peak()
    t0 = time.perf_counter()
    try:
        with memory_cap(task.memory_limit), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_method(problem, task.method, task.solver, **task.options)
        row = _row(result)
    except Exception as exc:  # a row per failure, whatever it is
        result = None
        kind = "" if isinstance(exc, CalibrationError) else f"{type(exc).__name__}: "
        row = dict(status=error_status(exc), message=f"{kind}{exc}")
        if isinstance(exc, MemoryError):
            limit = task.memory_limit
            row["message"] = (
                f"out of memory (limit {limit / 2**20:,.0f} MiB above the worker's baseline)"
                if limit
                else f"out of memory: {exc}"
            )
    row["wall_time"] = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if base is not None else None
    row["peak_memory_mb"] = (peak - base) / 1024 if peak is not None else float("nan")
    if result is not None and task.weights_path is not None and task.repeat == 0:
        with atomic_output(task.weights_path, overwrite=True) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, result.weights)
    return row
