"""``calibopt calibrate``: calibrate weights from files and write them.

Two kinds of input:

* unit data + margins: ``--data units.csv --margins margins.csv`` where the margins file has
  columns ``variable``, ``level`` (empty for a continuous total) and ``total``;
* a matrix + totals: ``--matrix X.npz`` (``scipy.sparse.save_npz``, targets x units, or a
  Matrix Market ``.mtx``) and ``--totals totals.csv`` (columns ``name``, ``value``).

CSV, TSV and Parquet (``.parquet``/``.pq``) are read by extension. The weights file
(``unit``, ``weight``, ``g``) is written atomically, only when the result is a success (status
``optimal`` or ``within_tolerance``; otherwise the exit status is 3 and nothing is written
unless ``--write-unsuccessful`` is given), and never overwrites an existing file unless
``--overwrite`` is given. ``--diagnostics`` (the fit per target) is written either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from ..calibrate import calibrate
from ..errors import InvalidProblemError
from ..formulations import methods
from ..margins import problem_from_margins
from ..problem import CalibrationProblem
from ._json import add_json_argument, emit, human_output
from ._parsers import add_command
from ._tables import read_table, write_table

__all__ = ["register"]


def _pair(values: list[str] | None, name: str) -> tuple[float | None, float | None] | None:
    """``--bounds LOWER UPPER`` as a pair; ``none`` (or ``inf``) means no bound on that side."""
    if values is None:
        return None
    out = []
    for v in values:
        if v.lower() in ("none", "inf", "-inf", "+inf", ""):
            out.append(None)
            continue
        try:
            out.append(float(v))
        except ValueError:
            raise InvalidProblemError(f"{name} takes two numbers or 'none', got {v!r}.") from None
    return out[0], out[1]


_UNIT_DATA = ("data", "margins", "weights", "population", "id")
_MATRIX = ("matrix", "totals", "initial_weights")


def _check_one_input_kind(args: argparse.Namespace) -> None:
    """Refuse options of both kinds of input: which one was meant is anyone's guess."""
    given = [
        [f"--{name.replace('_', '-')}" for name in kind if getattr(args, name) is not None]
        for kind in (_UNIT_DATA, _MATRIX)
    ]
    if given[0] and given[1]:
        raise InvalidProblemError(
            f"{' '.join(given[0])} (unit data + margins) cannot be combined with "
            f"{' '.join(given[1])} (matrix + totals); give one kind of input."
        )


def _problem_from_args(args: argparse.Namespace) -> tuple[CalibrationProblem, np.ndarray]:
    options: dict = dict(ratio_bounds=_pair(args.ratio_bounds, "--ratio-bounds"))
    if args.bounds is not None:  # without --bounds: the default, non-negative weights
        options["bounds"] = _pair(args.bounds, "--bounds")
    options["tolerance"] = args.tolerance
    _check_one_input_kind(args)
    if args.data is not None:
        if args.margins is None:
            raise InvalidProblemError("--data needs --margins (a file of variable,level,total).")
        data = read_table(args.data)
        margins = read_table(args.margins)
        if args.id and args.id not in data.columns:
            raise InvalidProblemError(f"--id column {args.id!r} is not in {args.data}.")
        ids = data[args.id].to_numpy() if args.id else np.arange(len(data))
        problem = problem_from_margins(
            data, margins, weights=args.weights, population=args.population, **options
        )
        return problem, ids
    if args.matrix is None or args.totals is None:
        raise InvalidProblemError(
            "give either --data and --margins, or --matrix and --totals (see --help)."
        )
    mpath = Path(args.matrix)
    if not mpath.is_file():
        raise InvalidProblemError(f"matrix file {str(mpath)!r} does not exist.")
    try:
        X = scipy.io.mmread(mpath) if mpath.suffix == ".mtx" else sp.load_npz(mpath)
    except (ValueError, OSError) as exc:
        raise InvalidProblemError(f"cannot read the matrix {str(mpath)!r}: {exc}") from exc
    totals = read_table(args.totals)
    if "value" in totals.columns:
        values = totals["value"].to_numpy()
        names = totals["name"].astype(str).tolist() if "name" in totals.columns else None
    else:
        values, names = totals.iloc[:, -1].to_numpy(), None
    d = None
    if args.initial_weights:
        dt = read_table(args.initial_weights)
        d = dt.iloc[:, -1].to_numpy()
    problem = CalibrationProblem(X, values, initial_weights=d, target_names=names, **options)
    return problem, np.arange(problem.n_units)


def _run(args: argparse.Namespace) -> int:
    with human_output(args):
        code, result, written = _calibrate(args)
    if args.json:
        emit(
            dict(
                status=result.status,
                success=result.success,
                method=result.method,
                solver=result.solver,
                iterations=result.iterations,
                wall_time=result.wall_time,
                objective=result.objective,
                max_rel_error=result.max_rel_error,
                mean_rel_error=result.mean_rel_error,
                nnz=result.nnz,
                g_min=float(result.g.min()),
                g_max=float(result.g.max()),
                message=result.message,
                weights_file=written,
                diagnostics=result.diagnostics,
            )
        )
    return code


def _calibrate(args: argparse.Namespace) -> tuple[int, object, str | None]:
    out = Path(args.out)
    for path in (out, Path(args.diagnostics) if args.diagnostics else None):
        if path is not None and path.exists() and not args.overwrite:
            raise InvalidProblemError(f"{str(path)!r} exists; pass --overwrite to replace it.")
    problem, ids = _problem_from_args(args)
    options = {}
    if args.penalty is not None:
        options["penalty"] = args.penalty
    result = calibrate(problem, method=args.method, solver=args.solver, **options)
    if args.diagnostics:
        write_table(result.diagnostics, args.diagnostics, overwrite=args.overwrite)
    print(result.summary())
    with pd.option_context("display.width", 120, "display.max_rows", 60):
        print(result.diagnostics[["name", "value", "estimate", "rel_error"]].to_string(index=False))
    if not (result.success or args.write_unsuccessful):
        print(
            f"calibopt calibrate: status {result.status!r} is not a success: no weights "
            f"written (pass --write-unsuccessful to write them anyway).",
            file=sys.stderr,
        )
        return 3, result, None
    table = pd.DataFrame({"unit": ids, "weight": result.weights, "g": result.g})
    write_table(table, out, overwrite=args.overwrite)
    note = "" if result.success else f" (status {result.status!r}: not a success)"
    print(f"weights written to {out}{note}")
    return (0 if result.success else 3), result, str(out)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt calibrate``."""
    p = add_command(
        sub,
        "calibrate",
        "calibrate weights from unit data + margins, or a matrix + totals",
        __doc__,
    )
    src = p.add_argument_group("unit data + margins")
    src.add_argument("--data", help="unit data (CSV/TSV/Parquet), one row per unit")
    src.add_argument("--margins", help="margins file: columns variable, level, total")
    src.add_argument("--weights", help="column of --data with the design weights (default 1)")
    src.add_argument("--population", type=float, help="population size (adds an intercept)")
    src.add_argument("--id", help="column of --data identifying units in the output")
    mat = p.add_argument_group("matrix + totals")
    mat.add_argument("--matrix", help="sparse matrix, targets x units (.npz or .mtx)")
    mat.add_argument("--totals", help="totals file: columns name, value")
    mat.add_argument("--initial-weights", help="file whose last column holds the design weights")
    p.add_argument("--method", default="raking", help=f"one of {', '.join(methods())}")
    p.add_argument("--solver", default=None, help="'newton' (default) or a cvxpy solver name")
    p.add_argument(
        "--bounds",
        nargs=2,
        metavar=("LOWER", "UPPER"),
        help="bounds on w (default 0 none: non-negative weights; 'none none' removes them)",
    )
    p.add_argument("--ratio-bounds", nargs=2, metavar=("L", "U"), help="bounds on g = w/d")
    p.add_argument("--tolerance", type=float, default=0.0, help="relative tolerance per target")
    p.add_argument("--penalty", type=float, default=None, help="soft targets with this weight")
    p.add_argument("--out", required=True, help="output weights file (.csv or .parquet)")
    p.add_argument("--diagnostics", help="also write the per-target fit table here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--write-unsuccessful",
        action="store_true",
        help="write the weights even when the result is not a success (exit status 3)",
    )
    add_json_argument(p)
    p.set_defaults(func=_run)
