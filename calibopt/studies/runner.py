"""Run a study: every (instance, method, solver) that applies, each run in a worker process
with a hard time and memory limit, so that a crash, a hang or an out-of-memory run becomes a
row of the table and the study goes on.

Worker processes come from `pebble <https://pypi.org/project/Pebble/>`_'s process pool: a
task past its time limit is killed and its worker replaced, a worker that dies (segfault,
``abort()``) is replaced and its task reported, and the other workers go on. Workers start
from a ``forkserver`` that has imported calibopt's methods and compiled the serial kernels
once, so a replaced worker imports nothing again, and they are reused across tasks. Each
problem is saved once (a memory-mappable ``.npz``) and every task receives only its path.
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import status as st
from ..errors import InvalidProblemError
from ..formulations import get_method
from ..formulations import methods as registered_methods
from ..formulations.registry import Method
from ..validate import integer, number
from .scheduling import Pair, aggregate, schedule
from .solvers import installed_solvers, match_solver
from .sources import Source, parse_memory, resolve_sources, write_sources
from .study import Study, finalize, load_table

__all__ = ["DEFAULT_OPTIONS", "NEEDS_OPTIONS", "compare"]


DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {"cross-category": {"sparsity": 0.5}}
"""Options a study gives a method that cannot run without a choice, unless ``options``
names the method: ``cross-category`` keeps half the records."""
SOFT_LIMIT_SHARE, SOFT_LIMIT_MARGIN = 0.8, 1.0
"""A method that takes ``time_limit`` gets ``0.8 * limit - 1`` seconds of a study's hard limit
(the rest covers loading the problem, the re-fit and the checks) unless ``options`` sets it."""
NEEDS_OPTIONS = ("distance",)
"""Methods left out of ``methods=None``: ``distance`` needs a ``distance=`` object."""


def _method_list(methods: Any) -> list[Method]:
    if methods is None:
        names = [m for m in registered_methods() if m not in NEEDS_OPTIONS]
    elif isinstance(methods, str):
        names = [methods]
    else:
        names = list(methods)
    specs = [get_method(m) for m in names]
    return list({s.name: s for s in specs}.values())


def _soft_limit(spec: Method, opts: dict[str, Any], time_limit: float | None) -> None:
    """Give a method with its own ``time_limit`` option (an anytime solver such as
    ``l0-mip``) a budget inside the study's hard limit, so that it returns its best result
    with an honest status instead of being killed; an explicit option wins."""
    if time_limit is None or "time_limit" in opts:
        return
    if "time_limit" in inspect.signature(spec.solve).parameters:
        opts["time_limit"] = max(SOFT_LIMIT_SHARE * time_limit - SOFT_LIMIT_MARGIN, 0.1)


def _pairs(
    sources: list[Source],
    specs: list[Method],
    solvers: Any,
    options: dict[str, Any],
    time_limit: float | None = None,
) -> tuple[list[Pair], list[dict[str, Any]]]:
    """The pairs to run, and ``not_applicable`` rows for the named solvers a method does not
    take and for solvers that are not installed here."""
    pairs, skipped = [], []
    for src in sources:
        for spec in specs:
            opts = dict(options.get(spec.name, DEFAULT_OPTIONS.get(spec.name, {})))
            _soft_limit(spec, opts, time_limit)
            here = installed_solvers(spec) if spec.solvers else []
            if solvers is None:
                wanted: Sequence[str | None] = list(spec.solvers) or [None]
            elif isinstance(solvers, str) and solvers == "default":
                wanted = [None]
            else:
                wanted = [solvers] if isinstance(solvers, str) else list(solvers)
            seen: set[str | None] = set()
            for solver in wanted:
                own = solver
                if solver is None:
                    own = spec.solvers[0] if spec.solvers else None
                elif spec.solvers:
                    own = match_solver(spec, solver)
                if own in seen and own is not None:
                    continue  # named twice (e.g. None and the default's own name)
                seen.add(own)
                why = None
                if own is None and solver is not None:
                    why = f"{spec.name} takes {', '.join(spec.solvers)}"
                elif spec.solvers and own not in here:
                    why = f"solver {own} of {spec.name} is not installed here"
                if why is not None:
                    skipped.append(
                        dict(
                            instance=src.name,
                            method=spec.name,
                            solver=own or solver,
                            status=st.NOT_APPLICABLE,
                            message=why,
                        )
                    )
                    continue
                pairs.append(Pair(src, spec, solver and own, own or "default", opts))
    return pairs, skipped


def _executor(spec: Any) -> int | None:
    """Worker count from ``executor`` (None: run in this process)."""
    if spec is None or spec == "process":
        return 1
    if isinstance(spec, str) and spec.strip().lower() in ("in-process", "serial"):
        return None
    if isinstance(spec, int) and not isinstance(spec, bool) and spec >= 1:
        return spec
    raise InvalidProblemError(
        f"`executor` must be None or 'process' (one worker process), an int (that many "
        f"worker processes) or 'in-process' (no isolation, no limits: for debugging); "
        f"got {spec!r}."
    )


def _auto_memory(workers: int) -> int | None:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(0.75 * total / max(workers, 1))


def compare(
    problems: Any,
    methods: str | Iterable[str] | None = ("linear", "raking"),
    solvers: str | Iterable[str | None] | None = "default",
    *,
    repeats: int = 1,
    time_limit: float | None = 300.0,
    memory_limit: int | str | None = "auto",
    executor: int | str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    directory: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool | None = None,
) -> Study:
    """Run every (instance, method, solver) that applies, each in its own worker process.

    Parameters
    ----------
    problems
        A :class:`~calibopt.CalibrationProblem`, an :class:`~calibopt.studies.Instance`, a
        saved problem file (``.npz``, see :func:`~calibopt.studies.save_problem`), an
        instance name (``"local-area:small"``, ``"sparse-recovery:tiny:3"``: kind, size,
        seed), or a list of them, or a dict ``name -> any of them``.
    methods
        Method names (see :func:`calibopt.methods`); None: every registered method that
        needs no option (``distance`` needs ``distance=``: name it with its options).
    solvers
        ``"default"``: each method's default solver; None: every solver of each method
        (those not installed here give a ``not_applicable`` row); or names (None in the
        list: the method's default). A named solver a method does not take gives a
        ``not_applicable`` row.
    repeats
        Runs per pair; the table gives the median wall time and its range. Repeats stop
        after a run that returned no result.
    time_limit
        Hard limit in seconds per run: the worker is killed at the limit (status
        ``timed_out``). A method with its own ``time_limit`` option (``l0-mip``) is given
        ``0.8 * time_limit - 1`` seconds of it, so that it returns its best solution (status
        ``within_tolerance`` or ``stopped``) rather than being killed. None: no limit.
    memory_limit
        What one run may allocate on top of its worker's baseline: bytes or ``"4GB"``;
        ``"auto"``: 3/4 of the physical memory shared among the workers; None: no limit.
        A run past it gets status ``out_of_memory`` (or ``crashed`` when a native solver
        aborts on the failed allocation).
    executor
        None or ``"process"``: one worker process (timings undisturbed); an int: that many
        worker processes (faster studies, noisier timings on a busy machine);
        ``"in-process"``: in this process, no isolation and no limits (for debugging).
    options
        Per-method options, e.g. ``{"l0-mip": {"time_limit": 30}}``.
    directory
        Where the study lives: ``problems/`` (the saved instances), ``weights/`` (one
        ``.npy`` per pair), ``study.csv`` and ``study.parquet`` (rewritten as rows finish).
        With ``resume``, rows already there for the same problem (same digest) are not
        rerun, except runs that hit a limit which has since been raised. None: a temporary
        directory, removed at the end.
    progress
        Show a progress bar (None: when stderr is a terminal).

    Returns
    -------
    Study
        A DataFrame (one row per pair; columns in :data:`calibopt.studies.COLUMNS`) with
        :meth:`~Study.report`, :meth:`~Study.save`, :meth:`~Study.fit` and
        :meth:`~Study.weights`.
    """
    repeats = integer("repeats", repeats, low=1)
    if time_limit is not None:
        time_limit = number("time_limit", time_limit, low=0.0, strict=True)
    workers = _executor(executor)
    if memory_limit == "auto":
        memory_limit = None if workers is None else _auto_memory(workers)
    memory_limit = parse_memory(memory_limit)
    options = {get_method(k).name: dict(v) for k, v in (options or {}).items()}
    sources = resolve_sources(problems)
    specs = _method_list(methods)
    tmp = None
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="calibopt-study-")
        root = Path(tmp.name)
    else:
        root = Path(directory)
    try:
        (root / "problems").mkdir(parents=True, exist_ok=True)
        write_sources(sources, root / "problems")
        pairs, skipped = _pairs(sources, specs, solvers, options, time_limit)
        limits = dict(
            time_limit=time_limit,
            memory_limit_mb=None if memory_limit is None else memory_limit / 2**20,
        )
        old = load_table(root) if (resume and directory is not None) else None
        kept, todo = _reuse(old, pairs, limits, repeats)
        run = _Run(root, tmp is None, sources, pairs, skipped, limits)
        return run.execute(
            todo,
            kept,
            workers=workers,
            repeats=repeats,
            time_limit=time_limit,
            memory_limit=memory_limit,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
    finally:
        if tmp is not None:
            tmp.cleanup()


def _reuse(
    old: Any, pairs: list[Pair], limits: dict[str, Any], repeats: int
) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """Rows of a previous run to keep (by pair index) and the pairs to run."""
    kept: dict[int, dict[str, Any]] = {}
    if old is not None and len(old):
        index = {(r["instance"], r["method"], r["solver"]): r for r in old.to_dict("records")}
        for i, p in enumerate(pairs):
            r = index.get((p.source.name, p.method.name, p.label))
            if r is None or r.get("digest") != p.source.digest:
                continue
            raised_time = r["status"] == st.TIMED_OUT and _more(limits["time_limit"], r)
            raised_mem = r["status"] == st.OUT_OF_MEMORY and _more(
                limits["memory_limit_mb"], r, "memory_limit_mb"
            )
            short = r["status"] in st.RESULT_STATUSES and (r.get("repeats") or 0) < repeats
            if not (raised_time or raised_mem or short):
                kept[i] = r
    return kept, [i for i in range(len(pairs)) if i not in kept]


def _more(new: float | None, row: dict[str, Any], key: str = "time_limit") -> bool:
    old = row.get(key)
    if old is None or (isinstance(old, float) and np.isnan(old)):
        return False
    return new is None or new > old


@dataclass
class _Run:
    """The rows of a study as they come in, saved after each pair when the study is kept."""

    root: Path
    keep: bool
    sources: list[Source]
    pairs: list[Pair]
    skipped: list[dict[str, Any]]
    limits: dict[str, Any]
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    def table(self) -> list[dict[str, Any]]:
        return [self.rows[i] for i in sorted(self.rows)] + self.skipped

    def execute(self, todo: list[int], kept: dict[int, dict[str, Any]], **how: Any) -> Study:
        weights_dir = self.root / "weights"
        weights_dir.mkdir(exist_ok=True)
        self.rows.update(kept)
        sub = [self.pairs[i] for i in todo]

        def done(k: int, p: Pair) -> None:
            self.rows[todo[k]] = aggregate(p, self.limits)
            src = weights_dir / f"{k}.npy"
            if src.is_file():
                os.replace(src, weights_dir / _weights_name(p))
            if self.keep:  # the table so far, for a study that is stopped and resumed
                finalize(self.table(), self.sources, self.root, save=True, distances=False)

        bar = None
        if how.pop("progress") and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo) * how["repeats"], desc="study", unit="run")
        try:
            interrupted = schedule(sub, weights_dir=weights_dir, done=done, bar=bar, **how)
        finally:
            if bar is not None:
                bar.close()
        study = finalize(self.table(), self.sources, self.root, save=self.keep)
        study.attrs["interrupted"] = interrupted
        if not self.keep:  # the temporary folder goes away
            study.attrs["directory"] = None
            study.attrs["problems"] = {}
        return study


def _weights_name(p: Pair) -> str:
    return f"{p.source.name}__{p.method.name}__{p.label}.npy".replace(":", "_")
