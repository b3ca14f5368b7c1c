"""``calibopt build-matrix``: targets database + unit data -> local-area calibration matrix.

Example::

    calibopt targets synthetic --db t.db --size tiny --dataset country.h5
    calibopt build-matrix --db t.db --data country.h5 --rules synthetic --out matrix.h5
    calibopt build-matrix --db t.db --data country.h5 --rules synthetic --out m.h5 \\
        --npz X.npz --totals totals.csv --initial-weights d.csv   # for `calibopt calibrate`

``--rules`` names the geography-dependent variables' callback: ``synthetic`` (the synthetic
country's state rules) or ``package.module:name`` where ``name`` is a
:class:`~calibopt.datasets.GeographyRules` or a function returning one.
"""

from __future__ import annotations

import argparse
import importlib

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..datasets.rules import GeographyRules
from ..errors import InvalidProblemError
from ..files import atomic_output
from ..matrix import CalibrationMatrix, MatrixBuilder
from ._json import add_json_argument, emit, human_output
from ._parsers import add_command
from .targets import add_filter_arguments, filter_from_args

__all__ = ["load_rules", "register"]


def load_rules(spec: str | None) -> GeographyRules | None:
    """``None``, ``"synthetic"`` or ``"module:attribute"`` -> GeographyRules."""
    if spec is None:
        return None
    if spec == "synthetic":
        from ..datasets.synthetic import synthetic_rules

        return synthetic_rules()
    module, _, attr = spec.partition(":")
    if not attr:
        raise InvalidProblemError(f"--rules {spec!r}: write 'synthetic' or 'module:name'.")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidProblemError(f"--rules {spec!r}: cannot import it ({exc}).") from None
    rules = obj if isinstance(obj, GeographyRules) else obj()
    if not isinstance(rules, GeographyRules):
        raise InvalidProblemError(f"--rules {spec!r} did not give a GeographyRules object.")
    return rules


def _geographies(text: str | None) -> list[int] | None:
    if text is None or text == "all":
        return None
    try:
        return [int(g) for g in text.replace(" ", "").split(",") if g]
    except ValueError:
        raise InvalidProblemError(
            f"--geographies {text!r}: give comma-separated GEOIDs/FIPS codes or 'all'."
        ) from None


def _run(args: argparse.Namespace) -> int:
    with human_output(args):
        matrix = _build(args)
    if args.json:
        emit(
            dict(
                out=args.out,
                targets=matrix.X.shape[0],
                columns=matrix.X.shape[1],
                nnz=matrix.X.nnz,
                timings=matrix.info["timings"],
                npz=args.npz,
                totals=args.totals,
                initial_weights=args.initial_weights,
            )
        )
    return 0


def _build(args: argparse.Namespace) -> CalibrationMatrix:
    builder = MatrixBuilder(
        args.db,
        args.data,
        _geographies(args.geographies),
        period=args.period,
        rules=load_rules(args.rules),
        level=args.level,
        reform_id=args.reform_id,
        partial=args.partial,
    )
    matrix = builder.build(filter_from_args(args), progress=None)
    matrix.save(args.out, overwrite=args.overwrite)
    print(matrix)
    t = matrix.info["timings"]
    print(f"built in {t['total']:.2f} s; wrote {args.out}")
    if args.structure:
        matrix.tracer().print_structure()
    if args.npz:
        with atomic_output(args.npz, overwrite=args.overwrite) as tmp:
            with open(tmp, "wb") as fh:
                sp.save_npz(fh, matrix.X)
    if args.totals:
        frame = pd.DataFrame({"name": matrix.targets["name"], "value": matrix.targets["value"]})
        with atomic_output(args.totals, overwrite=args.overwrite) as tmp:
            frame.to_csv(tmp, index=False)
    if args.initial_weights:
        d = matrix.columns.design_weights(args.outside_share)
        frame = pd.DataFrame({"column": np.arange(d.size), "weight": d})
        with atomic_output(args.initial_weights, overwrite=args.overwrite) as tmp:
            frame.to_csv(tmp, index=False)
    return matrix


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt build-matrix``."""
    p = add_command(sub, "build-matrix", "build a local-area calibration matrix", __doc__)
    p.add_argument("--db", required=True, help="targets database (SQLite path or URL)")
    p.add_argument("--data", required=True, help="unit data HDF5 (calibopt or PolicyEngine)")
    p.add_argument("--geographies", help="comma-separated GEOIDs (or FIPS), default: all")
    p.add_argument("--level", default="district", choices=["district", "state"])
    p.add_argument("--period", type=int, help="period to calibrate (default: the data's)")
    p.add_argument("--rules", help="'synthetic' or module:name of GeographyRules")
    p.add_argument("--reform-id", type=int, default=0)
    p.add_argument(
        "--partial",
        default="drop",
        choices=["drop", "keep", "error"],
        help="targets over geographies only partly calibrated",
    )
    add_filter_arguments(p)
    p.add_argument("--out", required=True, help="matrix file (HDF5)")
    p.add_argument("--npz", help="also write X as scipy .npz (for `calibopt calibrate`)")
    p.add_argument("--totals", help="also write the targets as CSV (name, value)")
    p.add_argument("--initial-weights", help="also write the design prior (column, weight)")
    p.add_argument(
        "--outside-share",
        type=float,
        default=0.01,
        help="design weight share placed outside a household's state",
    )
    p.add_argument("--structure", action="store_true", help="print the matrix structure")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_json_argument(p)
    p.set_defaults(func=_run)
