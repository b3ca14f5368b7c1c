"""``calibopt stack``: calibrated local-area weights -> a stacked HDF5 dataset + mapping CSV.

Examples::

    # from files: the dataset, the matrix it was built into, and the calibrated weights
    calibopt stack --data country.h5 --matrix matrix.h5 --rules synthetic \\
        --weights weights.csv --subset 37 --out nc.h5 --verify
    # PolicyEngine-style /<variable>/<period> file, input variables only
    calibopt stack --data country.h5 --matrix matrix.h5 --rules synthetic --weights w.npy \\
        --layout policyengine --variables age,employment_income --out all.h5
    # the embedded synthetic country with its true weights (or --weights)
    calibopt stack --size tiny --subset 3701 --out cd3701.h5 --verify

The geographies (column blocks of the weights) come from ``--matrix`` (a file written by
``calibopt build-matrix``; only its column map is read unless ``--verify``), or from
``--geographies`` (comma-separated GEOIDs in column order). ``--weights`` is a ``.npy`` vector
or a CSV/Parquet table (its ``weight`` column, else its last column; rows in column order,
or ordered by a ``column`` / ``unit`` column), e.g. the output of ``calibopt calibrate``.
``--subset`` takes GEOIDs and state FIPS codes (a state = its calibrated districts).
The mapping CSV goes beside the file (``<stem>_household_mapping.csv``) unless ``--mapping``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import InvalidProblemError
from ..matrix.columns import ColumnMap
from ._json import add_json_argument, emit, human_output
from ._parsers import add_command
from ._tables import read_table
from .build_matrix import load_rules

__all__ = ["read_weights", "register"]


def read_weights(path: str | Path) -> np.ndarray:
    """A weight vector from ``.npy`` or a CSV/TSV/Parquet table (see the module docstring)."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        if not p.is_file():
            raise InvalidProblemError(f"weights file {str(p)!r} does not exist.")
        try:
            return np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InvalidProblemError(f"cannot read {str(p)!r} as a .npy array: {exc}") from None
    table = read_table(p)
    if table.empty:
        raise InvalidProblemError(f"weights file {str(p)!r} has no rows.")
    order_col = next((c for c in ("column", "unit") if c in table.columns), None)
    if order_col is not None:
        order = table[order_col].to_numpy()
        if order.dtype.kind not in "iu" or not np.array_equal(
            np.sort(order), np.arange(len(table))
        ):
            raise InvalidProblemError(
                f"{str(p)!r}: the {order_col!r} column must number the matrix columns "
                f"0..{len(table) - 1}, each once."
            )
        table = table.iloc[np.argsort(order, kind="stable")]
    col = "weight" if "weight" in table.columns else table.columns[-1]
    return table[col].to_numpy(dtype=np.float64)


def _matrix_columns(path: str) -> ColumnMap:
    """The column map of a matrix file, without reading X."""
    from ..matrix.storage import FORMAT

    p = Path(path)
    if not p.is_file():
        raise InvalidProblemError(f"matrix file {str(p)!r} does not exist.")
    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InvalidProblemError(f"{str(p)!r} is not a calibopt matrix file.")
            c = f["columns"]
            return ColumnMap(
                c["geographies"][...], c["household_ids"][...], level=str(f.attrs["level"])
            )
    except OSError as exc:
        raise InvalidProblemError(f"cannot read matrix file {str(p)!r}: {exc}") from None


def _codes(text: str | None, what: str) -> list[int] | None:
    if text is None or text.strip().lower() == "all":
        return None
    try:
        return [int(g) for g in text.replace(" ", "").split(",") if g]
    except ValueError:
        raise InvalidProblemError(
            f"{what} {text!r}: give comma-separated GEOIDs / FIPS codes, or 'all'."
        ) from None


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    """dataset, rules, geographies, weights and (for --verify) the matrix."""
    if args.size is not None:
        if args.data or args.matrix or args.geographies:
            raise InvalidProblemError("--size builds the synthetic country; drop --data/--matrix.")
        from ..datasets.synthetic import synthetic_country

        country = synthetic_country(args.size, seed=args.seed)
        matrix = None
        if args.verify:
            from ..matrix.builder import MatrixBuilder

            matrix = MatrixBuilder(
                country.targets_database(),
                country.dataset,
                country.geographies,
                rules=country.rules,
            ).build()
        weights = read_weights(args.weights) if args.weights else country.true_weights
        rules = load_rules(args.rules) if args.rules else country.rules
        return dict(
            dataset=country.dataset,
            rules=rules,
            geographies=matrix if matrix is not None else country.geographies,
            weights=weights,
            matrix=matrix,
        )
    if not args.data:
        raise InvalidProblemError("give --data (with --matrix or --geographies) or --size.")
    if not args.weights:
        raise InvalidProblemError("--weights is required with --data.")
    if bool(args.matrix) == bool(args.geographies):
        raise InvalidProblemError("give exactly one of --matrix and --geographies.")
    matrix = None
    if args.matrix:
        if args.verify:
            from ..matrix.calibration_matrix import CalibrationMatrix

            matrix = CalibrationMatrix.load(args.matrix)
            geographies: Any = matrix
        else:
            geographies = _matrix_columns(args.matrix)
    else:
        if args.verify:
            raise InvalidProblemError("--verify needs --matrix (the targets and X).")
        geographies = _codes(args.geographies, "--geographies")
        if geographies is None:
            raise InvalidProblemError("--geographies must list the calibrated geographies.")
    return dict(
        dataset=args.data,
        rules=load_rules(args.rules),
        geographies=geographies,
        weights=read_weights(args.weights),
        matrix=matrix,
    )


def _run(args: argparse.Namespace) -> int:
    with human_output(args):
        code, payload = _stack(args)
    if args.json:
        emit(payload)
    return code


def _stack(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    from ..stacking import stack, verify

    inputs = _inputs(args)
    stride: int | str = args.stride
    if stride != "auto":
        try:
            stride = int(stride)
        except ValueError:
            raise InvalidProblemError(f"--stride {args.stride!r}: 'auto' or an integer.") from None
    stacked = stack(
        inputs["weights"],
        inputs["geographies"],
        inputs["dataset"],
        args.out,
        _codes(args.subset, "--subset"),
        rules=inputs["rules"],
        layout=args.layout,
        mapping_path=args.mapping,
        period=args.period,
        level=args.level,
        variables=args.variables.split(",") if args.variables else None,
        stride=stride,
        id_dtype=args.id_dtype,
        derived_id_factor=args.derived_id_factor,
        overwrite=args.overwrite,
    )
    print(stacked.summary())
    print(f"stacked in {stacked.info['timings']['total']:.2f} s (before writing)")
    payload: dict[str, Any] = dict(
        out=args.out, summary=stacked.summary(), timings=stacked.info["timings"], verified=None
    )
    if inputs["matrix"] is not None:
        check = verify(stacked, inputs["matrix"], inputs["weights"])
        worst = float(check["rel_error"].abs().max())
        print(
            f"verified {len(check):,} targets against X @ w: max |file - X@w| = "
            f"{float(check['error'].abs().max()):.3g}, max relative error {worst:.3g}"
        )
        payload["verified"] = dict(targets=len(check), max_rel_error=worst)
        if worst > 1e-9:
            print(check.loc[check["rel_error"].abs() > 1e-9].head(20).to_string(index=False))
            return 3, payload
    return 0, payload


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt stack``."""
    p = add_command(
        sub, "stack", "write calibrated local-area weights as a stacked HDF5 dataset", __doc__
    )
    src = p.add_argument_group("inputs")
    src.add_argument("--data", help="the unit data HDF5 the matrix was built from")
    src.add_argument("--matrix", help="the matrix file (calibopt build-matrix --out)")
    src.add_argument("--geographies", help="or: calibrated GEOIDs in column order, comma-separated")
    src.add_argument("--level", choices=["district", "state"], help="with --geographies")
    src.add_argument("--weights", help="calibrated weights (.npy, or CSV/Parquet)")
    src.add_argument(
        "--rules",
        help="'synthetic' or module:name: the GeographyRules the matrix was built with "
        "(without them geography-dependent variables keep their home values)",
    )
    src.add_argument("--size", help="use the synthetic country of this size instead of --data")
    src.add_argument("--seed", type=int, default=0, help="seed of the synthetic country")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, help="the stacked HDF5 file")
    out.add_argument("--subset", help="GEOIDs / state FIPS codes to write (default all)")
    out.add_argument("--layout", default="calibopt", choices=["calibopt", "policyengine"])
    out.add_argument("--mapping", help="mapping CSV (default <stem>_household_mapping.csv)")
    out.add_argument("--period", type=int, help="period of the PolicyEngine layout")
    out.add_argument("--variables", help="comma-separated variables to write (default all)")
    out.add_argument("--stride", default="auto", help="ids per geography range (default auto)")
    out.add_argument("--id-dtype", default="int32", choices=["int32", "int64"])
    out.add_argument(
        "--derived-id-factor",
        type=int,
        default=100,
        help="ids times this must fit the id dtype (default 100)",
    )
    out.add_argument("--verify", action="store_true", help="check file totals against X @ w")
    out.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_json_argument(p)
    p.set_defaults(func=_run)
