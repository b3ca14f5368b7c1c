"""``calibopt allocate``: Title I allocations from a table of LEA estimates.

The input (CSV, TSV or Parquet) has one row per LEA with ``state`` and ``district`` columns and
the columns described in :mod:`calibopt.allocation.inputs` (``{prefix}_children_eligible``,
``{prefix}_children_total``, ``sppe``, ``prior_{grant}``, ``official_{grant}``, ...). The output
has ``state``, ``district`` and, per estimate kind and grant type, the authorization, the
eligibility flag and the allocation in dollars (whole cents), plus the total. It is written
atomically and never replaces an existing file unless ``--overwrite`` is given.

Example::

    calibopt allocate leas.csv -o allocations.csv --prefix est --grants basic,targeted \\
        --appropriation basic=6.4e9 --appropriation targeted=4.4e9
"""

from __future__ import annotations

import argparse
import sys

from ..allocation import (
    AbowdAllocator,
    HardThresholder,
    SonnenbergAllocator,
    UncertaintyThresholder,
    synthetic_state_minimum_rules,
)
from ..allocation.statute import GRANT_TYPES
from ..errors import InvalidProblemError
from ._json import add_json_argument, emit
from ._tables import read_table, write_table

__all__ = ["register"]


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _appropriations(items: list[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InvalidProblemError(
                f"--appropriation expects GRANT=AMOUNT (e.g. basic=6.4e9), got {item!r}."
            ) from None
    return out


def _run(args: argparse.Namespace) -> int:
    table = read_table(args.input)
    prefixes = _split(args.prefix)
    approps = _appropriations(args.appropriation)
    if args.allocator == "abowd":
        total = args.total_appropriation
        if total is None and approps is not None:
            total = sum(approps.values())
        result = AbowdAllocator().allocate(table, prefixes=prefixes, appropriation=total)
    else:
        if args.thresholder == "hard":
            thresholder = HardThresholder()
        else:
            thresholder = UncertaintyThresholder(z=args.z, mode=args.thresholder)
        rules = (
            synthetic_state_minimum_rules(table, prefixes[0]) if args.scale_state_minimums else None
        )
        allocator = SonnenbergAllocator(
            grant_types=_split(args.grants),
            thresholder=thresholder,
            hold_harmless=not args.no_hold_harmless,
            state_minimum=not args.no_state_minimum,
            state_minimum_rules=rules,
            insufficient=args.insufficient,
        )
        result = allocator.allocate(
            table,
            prefixes=prefixes,
            appropriations=approps,
            total_appropriation=args.total_appropriation,
        )
    write_table(result.table.reset_index(), args.output, overwrite=args.overwrite)
    if not args.quiet:
        diag = result.diagnostics
        print(diag.to_string(index=False), file=sys.stderr)
    if args.json:
        emit(dict(output=args.output, diagnostics=result.diagnostics))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``allocate`` sub-command."""
    p = subparsers.add_parser(
        "allocate",
        help="Title I allocations per LEA from a table of estimates",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("input", help="LEA table (CSV, TSV or Parquet) with state and district columns")
    p.add_argument("-o", "--output", required=True, help="output file (CSV or Parquet)")
    p.add_argument(
        "--prefix", default="est", help="estimate kind(s), comma separated (default: est)"
    )
    p.add_argument("--allocator", choices=("sonnenberg", "abowd"), default="sonnenberg")
    p.add_argument(
        "--grants",
        default=",".join(GRANT_TYPES),
        help="grant types, comma separated (default: all four)",
    )
    p.add_argument(
        "--appropriation",
        action="append",
        metavar="GRANT=AMOUNT",
        help="appropriation of a grant type (repeat); default: sums of official_*",
    )
    p.add_argument(
        "--total-appropriation",
        type=float,
        default=None,
        help="scale the grant types' appropriations to this total",
    )
    p.add_argument("--no-hold-harmless", action="store_true")
    p.add_argument("--no-state-minimum", action="store_true")
    p.add_argument(
        "--scale-state-minimums",
        action="store_true",
        help="scale the state minimums' dollar constants to the table's size "
        "(synthetic or partial countries)",
    )
    p.add_argument(
        "--insufficient",
        choices=("ratable", "raise"),
        default="ratable",
        help="when floors exceed an appropriation (default: ratable reduction)",
    )
    p.add_argument(
        "--thresholder",
        choices=("hard", "lenient", "strict", "expected"),
        default="hard",
        help="eligibility thresholds (uncertainty-aware need a cv column)",
    )
    p.add_argument("--z", type=float, default=1.645, help="confidence bound width (default 1.645)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print the diagnostics")
    add_json_argument(p)
    p.set_defaults(func=_run)
