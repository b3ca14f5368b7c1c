"""``calibopt targets``: create, fill, inspect and export a targets database.

Sub-commands::

    calibopt targets load TARGETS.csv --db targets.db [--replace]
    calibopt targets export --db targets.db --out targets.csv [--variables snap ...]
    calibopt targets overview --db targets.db
    calibopt targets synthetic --db targets.db [--size tiny] [--seed 0] [--noise 0.02]
                               [--dataset country.h5 [--layout policyengine]]
    calibopt targets uprate --db targets.db VARIABLE FROM_PERIOD TO_PERIOD FACTOR

``--db`` takes a SQLite path or any SQLAlchemy URL (e.g. ``postgresql+psycopg://...``).
The CSV format has one row per target: ``variable``, ``period``, ``value`` and
``constraints`` ("state_fips == 37; age >= 0; age < 5", empty for national), optionally
``reform_id``, ``active``, ``tolerance_fraction`` (a relative tolerance as a fraction:
0.05 = 5%), ``source``, ``notes``. A load that fails writes nothing, and leaves no new
database file behind.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import pandas as pd

from ..targets import TargetFilter, TargetsDatabase
from ._json import add_json_argument, emit, human_output
from ._parsers import add_command

__all__ = ["add_filter_arguments", "filter_from_args", "register"]


def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    """The target filter options shared by the commands that select targets."""
    g = p.add_argument_group("target filter (AND across options, OR within one)")
    g.add_argument("--variables", nargs="+", metavar="VAR", help="target variables")
    g.add_argument(
        "--domain-variables",
        nargs="+",
        metavar="VAR",
        help="domain (constraint) variables; '' for targets without a domain",
    )
    g.add_argument("--geo-levels", nargs="+", choices=["national", "state", "district"])
    g.add_argument("--geographic-ids", nargs="+", metavar="ID", help="'US', FIPS, GEOIDs")


def filter_from_args(args: argparse.Namespace) -> TargetFilter:
    """The :class:`TargetFilter` given by :func:`add_filter_arguments` options."""
    return TargetFilter(
        variables=args.variables,
        domain_variables=args.domain_variables,
        geo_levels=args.geo_levels,
        geographic_ids=args.geographic_ids,
    )


def _json_action(action: Callable[[argparse.Namespace], dict[str, Any]]) -> Callable:
    """An action that returns its result as a dict: printed as JSON with ``--json``."""

    @functools.wraps(action)
    def run(args: argparse.Namespace) -> int:
        with human_output(args):
            payload = action(args)
        if args.json:
            emit(payload)
        return 0

    return run


@_json_action
def _load(args: argparse.Namespace) -> dict[str, Any]:
    with TargetsDatabase.create(args.db) as db:
        n = db.load_csv(args.csv, replace=args.replace)
    print(f"loaded {n:,} target(s) from {args.csv} into {args.db}")
    return dict(loaded=n, csv=args.csv, db=args.db)


@_json_action
def _export(args: argparse.Namespace) -> dict[str, Any]:
    with TargetsDatabase(args.db) as db:
        n = db.to_csv(args.out, filter=filter_from_args(args), overwrite=args.overwrite)
    print(f"wrote {n:,} target(s) to {args.out}")
    return dict(written=n, out=args.out, db=args.db)


@_json_action
def _overview(args: argparse.Namespace) -> dict[str, Any]:
    with TargetsDatabase(args.db) as db:
        table = db.summary()
        up = db.uprating()
    if table.empty:
        print(f"{args.db}: no targets")
        return dict(db=args.db, targets=table, uprating=up)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table.to_string(index=False))
    print(f"\n{int(table['n_targets'].sum()):,} target(s)")
    if len(up):
        print(f"{len(up)} uprating factor(s):")
        print(up.to_string(index=False))
    return dict(db=args.db, targets=table, uprating=up)


@_json_action
def _synthetic(args: argparse.Namespace) -> dict[str, Any]:
    from ..datasets import synthetic_country

    country = synthetic_country(args.size, seed=args.seed, noise=args.noise, period=args.period)
    with TargetsDatabase.create(args.db) as db:
        n = country.write_targets(db)
    print(f"{country}\nwrote {n:,} target(s) to {args.db}")
    if args.dataset:
        country.dataset.to_hdf5(args.dataset, layout=args.layout, overwrite=args.overwrite)
        print(f"wrote the unit data ({args.layout} layout) to {args.dataset}")
    return dict(db=args.db, targets=n, dataset=args.dataset, country=str(country))


@_json_action
def _uprate(args: argparse.Namespace) -> dict[str, Any]:
    with TargetsDatabase.create(args.db) as db:
        db.add_uprating(args.variable, args.from_period, args.to_period, args.factor)
    print(f"{args.variable}: {args.from_period} -> {args.to_period} x {args.factor:g}")
    return dict(
        variable=args.variable,
        from_period=args.from_period,
        to_period=args.to_period,
        factor=args.factor,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt targets``."""
    p = add_command(sub, "targets", "targets database: load, export, overview, synthetic", __doc__)
    tsub = p.add_subparsers(dest="targets_command", metavar="ACTION", required=True)

    q = tsub.add_parser("load", help="add the targets of a CSV file (creates the database)")
    q.add_argument("csv", help="targets CSV")
    q.add_argument("--db", required=True, help="SQLite path or SQLAlchemy URL")
    q.add_argument("--replace", action="store_true", help="replace targets that exist")
    add_json_argument(q)
    q.set_defaults(func=_load)

    q = tsub.add_parser("export", help="write targets (with constraints) to CSV")
    q.add_argument("--db", required=True)
    q.add_argument("--out", required=True, help="output CSV")
    q.add_argument("--overwrite", action="store_true")
    add_filter_arguments(q)
    add_json_argument(q)
    q.set_defaults(func=_export)

    q = tsub.add_parser("overview", help="count targets by level, variable and domain")
    q.add_argument("--db", required=True)
    add_json_argument(q)
    q.set_defaults(func=_overview)

    q = tsub.add_parser("synthetic", help="write the synthetic country's targets (and data)")
    q.add_argument("--db", required=True)
    q.add_argument("--size", default="tiny", choices=["tiny", "small", "default", "full"])
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--noise", type=float, default=0.0, help="relative noise on the targets")
    q.add_argument("--period", type=int, default=2024)
    q.add_argument("--dataset", help="also write the unit data to this HDF5 file")
    q.add_argument("--layout", default="calibopt", choices=["calibopt", "policyengine"])
    q.add_argument("--overwrite", action="store_true")
    add_json_argument(q)
    q.set_defaults(func=_synthetic)

    q = tsub.add_parser("uprate", help="record an uprating factor between two periods")
    q.add_argument("--db", required=True)
    q.add_argument("variable")
    q.add_argument("from_period", type=int)
    q.add_argument("to_period", type=int)
    q.add_argument("factor", type=float)
    add_json_argument(q)
    q.set_defaults(func=_uprate)
