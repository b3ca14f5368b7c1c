"""``calibopt methods``: the registered methods, their aliases, and their solvers here.

One line per method: its name, aliases, the solvers it takes (the first is its default;
those not installed on this machine are marked ``(missing)``), what it guarantees
(exact, optimal, approximate) and its program in a few words. Each method's exact program
is its catalogue page, ``formulations/<method>.md``.

Example::

    calibopt methods
    calibopt methods --json | jq '.[] | select(.sparse) | .method'
"""

from __future__ import annotations

import argparse

import pandas as pd

from ..formulations import get_method, methods
from ..studies.solvers import installed_solvers
from ._json import add_json_argument, emit
from ._parsers import add_command

__all__ = ["register"]


def method_rows() -> list[dict]:
    """One record per method: aliases, solvers (installed or not), guarantee, summary."""
    rows = []
    for name in methods():
        spec = get_method(name)
        here = installed_solvers(spec)
        rows.append(
            dict(
                method=name,
                aliases=list(spec.aliases),
                solvers=list(spec.solvers),
                installed_solvers=here,
                missing_solvers=[s for s in spec.solvers if s not in here],
                default_solver=spec.solvers[0] if spec.solvers else None,
                guarantee=spec.guarantee,
                sparse=spec.sparse,
                summary=spec.summary,
                options=[o for o in spec.options if o != "solver"],
                catalogue=f"formulations/{spec.catalogue}",
            )
        )
    return rows


def _run(args: argparse.Namespace) -> int:
    rows = method_rows()
    if args.json:
        emit(rows)
        return 0
    table = pd.DataFrame(
        {
            "method": r["method"],
            "aliases": ", ".join(r["aliases"]),
            "solvers": ", ".join(
                s if s in r["installed_solvers"] else f"{s} (missing)" for s in r["solvers"]
            ),
            "guarantee": r["guarantee"],
            "summary": r["summary"],
        }
        for r in rows
    )
    widths = {c: max(len(c), table[c].str.len().max()) for c in table.columns[:-1]}
    print("  ".join(c.ljust(w) for c, w in widths.items()) + "  summary")
    for _, r in table.iterrows():
        summary = r["summary"] if len(r["summary"]) <= 90 else r["summary"][:87] + "..."
        print("  ".join(str(r[c]).ljust(w) for c, w in widths.items()) + "  " + summary)
    print(f"\n{len(rows)} methods; exact programs in formulations/<method>.md")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt methods``."""
    p = add_command(sub, "methods", "list the methods, their aliases and solvers", __doc__)
    add_json_argument(p)
    p.set_defaults(func=_run)
