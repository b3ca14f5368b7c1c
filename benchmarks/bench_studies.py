"""Solver studies: the cost of isolating each run, and one full study (issue 13).

Part ``overhead`` -- for a small and a large instance, the same method (raking, Newton) run
(a) in this process and (b) through ``calibopt.compare`` in a worker process, ``--repeats``
times. Per repeat: the solve time measured in the worker, the round trip seen by the parent
and their difference (the isolation overhead: scheduling, the pipe, loading the memory-mapped
problem); the bytes sent per task (a path and names), against what a plain process pool
would send (the pickled problem) and the time to pickle and unpickle it; the worker's peak
resident memory during a repeat against the size of the matrix (the matrix pages come from
the shared file mapping, so repeats do not copy it). Goal: under 0.3 s per pair and no copy
of the matrix per repeat.

Part ``study`` -- every method with every installed solver on the five standard instances
and the two on real public data (``--kinds``) at ``--size``, each run isolated with
``--time-limit``; writes the table and the report (figures, report.md) into ``--out``.

Usage:
  python benchmarks/bench_studies.py [--part overhead|study|all] [--repeats 5]
      [--large bounded-qp:large] [--size small] [--time-limit 60] [--out DIR]
Long: run under ``flock /tmp/calibopt-heavy.lock``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import calibopt as co
from calibopt.studies import STANDARD, make_instance, standard_instances
from calibopt.studies.worker import Task, _reset_peak, _status_kib


def _matrix_bytes(p: co.CalibrationProblem) -> int:
    X = p.X
    return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def overhead(spec: str, repeats: int) -> dict:
    kind, size = spec.split(":")
    t = time.perf_counter()
    inst = make_instance(kind, size)
    made = time.perf_counter() - t
    p = inst.problem
    co.calibrate(p, method="raking")  # compile / warm the kernels here too
    inproc, inproc_peak = [], []
    for _ in range(repeats):
        base = _reset_peak()
        t = time.perf_counter()
        co.calibrate(p, method="raking")
        inproc.append(time.perf_counter() - t)
        peak = _status_kib("VmHWM")
        inproc_peak.append((peak - base) / 1024 if base is not None else np.nan)
    t = time.perf_counter()
    blob = pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.loads(blob)
    naive = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        study = co.compare(
            {inst.name: p}, methods=["raking"], repeats=repeats, directory=d, progress=False
        )
        total = time.perf_counter() - t
        task = Task(inst.name, f"{d}/problems/{inst.name}.npz", "raking", None, {}, 0, None, "")
        sent = len(pickle.dumps(task))
    r = study.iloc[0]
    return {
        "instance": inst.name,
        "units": p.n_units,
        "nnz": p.nnz,
        "matrix MB": _matrix_bytes(p) / 2**20,
        "status": r["status"],
        "in-process solve s (median)": float(np.median(inproc)),
        "worker solve s (median)": r["wall_time"],
        "overhead s / repeat (median)": r["overhead"],
        "overhead / solve": r["overhead"] / r["wall_time"],
        "bytes sent per task": sent,
        "plain pool: pickled problem MB": len(blob) / 2**20,
        "plain pool: pickle+unpickle s": naive,
        "worker peak MB / repeat": r["peak_memory_mb"],
        "in-process peak MB / repeat": float(np.nanmax(inproc_peak)),
        "study wall s (incl. pool start)": total,
        "instance build s": made,
    }


def _abort(problem, *, solver=None):
    os.abort()


def _sleep(problem, *, solver=None):
    time.sleep(3600)


def restarts() -> pd.DataFrame:
    """The overhead of the run that follows a crash (``abort()``) or a time-out: a new worker
    is forked from the forkserver (which has imported the methods, cvxpy and torch)."""
    from calibopt.formulations import register_method

    for name, fn in (("bench-abort", _abort), ("bench-sleep", _sleep)):
        register_method(name, solvers=("fake",), catalogue="-", summary="benchmark only",
                        guarantee="approximate", iterations="-", objective="-")(fn)  # fmt: skip
    methods = ["linear", "bench-abort", "raking", "bench-sleep", "truncated", "hard-concrete"]
    study = co.compare(
        "survey-margins:tiny",
        methods=methods,
        solvers=[None, "CLARABEL"],
        time_limit=2.0,
        progress=False,
    )
    study = study[study["status"] != "not_applicable"]
    return study[["method", "solver", "status", "wall_time", "overhead"]]


def run_overhead(args: argparse.Namespace) -> pd.DataFrame:
    rows = [overhead(s, args.repeats) for s in (args.small, args.large)]
    table = pd.DataFrame(rows).set_index("instance").T
    print(f"\n== isolation overhead ({args.repeats} repeats of raking/newton per instance) ==")
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 160):
        print(table.to_string())
        print("\n== overhead of the run after a crash or a time-out (time limit 2 s) ==")
        print(restarts().to_string(index=False))
    return table


def run_study(args: argparse.Namespace) -> None:
    out = Path(args.out)
    kinds = tuple(args.kinds.split(","))
    print(
        f"\n== full study: every method, every installed solver, {len(kinds)} instances "
        f"({args.size}) =="
    )
    t = time.perf_counter()
    study = co.compare(
        standard_instances(args.size, seed=0, kinds=kinds),
        methods=None,
        solvers=None,
        repeats=1,
        time_limit=args.time_limit,
        directory=out,
        progress=sys.stderr.isatty(),
    )
    took = time.perf_counter() - t
    report = study.report(out / "report", formats=("png", "svg"))
    counts = study["status"].value_counts()
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"{len(study)} pairs in {took:.0f} s: {summary}")
    cols = ["instance", "method", "solver", "status", "wall_time", "max_rel_error", "nnz"]
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(study[cols].to_string(index=False, float_format="{:.3g}".format))
    print(f"report: {report}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["overhead", "restarts", "study", "all"], default="all")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--small", default="survey-margins:tiny")
    ap.add_argument("--large", default="bounded-qp:large")
    ap.add_argument("--size", default="small")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument(
        "--kinds",
        default=",".join((*STANDARD, "api", "cps-state")),
        help="instance kinds of the full study (default: the five standard ones + real data)",
    )
    ap.add_argument("--out", default="benchmarks/_results/study")
    args = ap.parse_args(argv)
    if args.part in ("overhead", "all"):
        run_overhead(args)
    if args.part == "restarts":
        with pd.option_context("display.float_format", "{:.4g}".format):
            print(restarts().to_string(index=False))
    if args.part in ("study", "all"):
        run_study(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
