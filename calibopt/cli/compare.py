"""``calibopt compare``: a solver / method study, each run in its own worker process.

Every (instance, method, solver) that applies runs in a worker process with a hard time
limit and a memory limit; a run that crashes, hangs or runs out of memory becomes a row
(``crashed``, ``timed_out``, ``out_of_memory``) and the study goes on. The table (one row per
pair: status, wall time, the engine's own time, objective, max / mean relative target error
checked from the weights, misses, non-zeros, g range, iterations, peak memory, message) is
printed, saved as CSV and Parquet in ``--out`` (rows already there for the same problem are
not rerun), and ``--report DIR`` writes the figures (PNG, SVG) and a Markdown summary.

Instances are saved problem files (``.npz``, written by ``calibopt.studies.save_problem`` or
by an earlier study in ``OUT/problems/``) or generated ones: ``KIND[:SIZE[:SEED]]`` with a
kind from ``--list-instances`` and a size tiny, small, medium or large (default small).

Examples::

    calibopt compare local-area:tiny survey-margins:tiny --methods linear,raking
    calibopt compare --standard small --methods all --solvers all --time-limit 120 \\
        --out study --report study/report
    calibopt compare study/problems/local-area-small.npz --methods l0-mip \\
        --option l0-mip.time_limit=30 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from ..errors import InvalidProblemError
from ..studies import STANDARD, compare, instance_kinds
from ._json import add_json_argument, emit, human_output
from ._parsers import add_command

__all__ = ["register"]

_SHOWN = ["instance", "method", "solver", "status", "wall_time", "max_rel_error", "nnz"]


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, raw = item.partition("=")
        method, dot, name = key.partition(".")
        if not (eq and dot and method and name):
            raise InvalidProblemError(
                f"--option expects METHOD.NAME=VALUE (e.g. l0-mip.time_limit=30), got {item!r}."
            )
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(method.strip(), {})[name.strip()] = value
    return out


def _solvers(text: str) -> Any:
    if text == "all":
        return None
    if text == "default":
        return "default"
    return [None if s == "default" else s for s in _split(text)]


def _run(args: argparse.Namespace) -> int:
    if args.list_instances:
        kinds = instance_kinds()
        if args.json:
            emit(kinds)
        else:
            for kind, text in kinds.items():
                print(f"{kind:18s} {text}")
        return 0
    problems: list[str] = list(args.problems)
    if args.standard:
        problems += [f"{k}:{args.standard}" for k in STANDARD]
    if not problems:
        raise InvalidProblemError(
            "give problems (saved .npz files or KIND[:SIZE[:SEED]]) or --standard SIZE; "
            "see --list-instances."
        )
    methods = None if args.methods == "all" else _split(args.methods)
    if methods is not None and not methods:
        raise InvalidProblemError("--methods is empty: give names (see `calibopt methods`).")
    with human_output(args):
        study = compare(
            problems,
            methods=methods,
            solvers=_solvers(args.solvers),
            repeats=args.repeats,
            time_limit=None if args.time_limit == 0 else args.time_limit,
            memory_limit=None if args.memory_limit == "none" else args.memory_limit,
            executor=args.workers,
            options=_options(args.option),
            directory=args.out,
            resume=not args.no_resume,
            progress=None if args.progress is None else args.progress,
        )
        with pd.option_context("display.width", 160, "display.max_rows", 500):
            print(study[_SHOWN].to_string(index=False, float_format="{:.3g}".format))
        counts = study["status"].value_counts()
        print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()))
        if args.out:
            print(f"table written to {args.out}/study.csv and study.parquet")
        if study.attrs.get("interrupted"):
            again = " (the same command resumes it)" if args.out else ""
            print(f"interrupted: {len(study)} pair(s) finished{again}", file=sys.stderr)
        report = study.report(args.report) if args.report else None
        if report is not None:
            print(f"report written to {report}")
    if args.json:
        emit({"rows": pd.DataFrame(study), "report": report, "out": args.out})
    return 130 if study.attrs.get("interrupted") else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt compare``."""
    p = add_command(sub, "compare", "compare methods and solvers on instances", __doc__)
    p.add_argument("problems", nargs="*", help="saved problems (.npz) or KIND[:SIZE[:SEED]]")
    p.add_argument("--standard", metavar="SIZE", help="add the five standard instances")
    p.add_argument("--list-instances", action="store_true", help="list instance kinds")
    p.add_argument("--methods", default="linear,raking", help="comma-separated methods, or 'all'")
    p.add_argument(
        "--solvers",
        default="default",
        help="'default' (each method's), 'all' (every installed one) or comma-separated names",
    )
    p.add_argument(
        "--repeats", type=int, default=1, metavar="N", help="runs per pair (median time; 1)"
    )
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per run, 0 for none")
    p.add_argument("--memory-limit", default="auto", help="per run, e.g. 4GB; 'auto' or 'none'")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes (1, the default, keeps timings undisturbed)",
    )
    p.add_argument(
        "--option",
        action="append",
        metavar="METHOD.NAME=VALUE",
        help="a method option (repeat), e.g. l0-mip.time_limit=30",
    )
    p.add_argument(
        "--out", metavar="DIR", help="study directory (table, problems, weights; resumable)"
    )
    p.add_argument("--no-resume", action="store_true", help="rerun rows already in --out")
    p.add_argument("--report", metavar="DIR", help="write figures and report.md here")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", default=None, help="progress bar")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    add_json_argument(p)
    p.set_defaults(func=_run)
