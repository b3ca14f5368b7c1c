"""``calibopt demo``: an end-to-end run on the embedded synthetic data.

1. calibrates a synthetic survey sample to population margins with every classical distance
   (Newton and one cvxpy solver) and prints the fit and the bias removed;
2. builds the synthetic country's targets database (SQLite, in --out) and its local-area matrix
   (household x district columns), calibrates it, and prints the fit by target group;
3. writes the calibrated weights as stacked HDF5 datasets (one household record per non-zero
   weight, re-indexed ids, a mapping CSV), reads them back and checks every target;
4. follows the calibrated district estimates to Title I dollars per district;
5. synthesises a new population (household > tax unit > person), calibrates it by household
   and stacks it.

The numba kernels are compiled first, by a tiny calibration, so that no method's reported time
includes the compilation (the time is printed once when it is noticeable).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._json import add_json_argument, emit, human_output
from ._parsers import add_command

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    with human_output(args):
        local = _demo(args)
    if args.json:
        r = local.result
        emit(
            dict(
                out=args.out,
                local_area=dict(
                    status=r.status,
                    method=r.method,
                    max_rel_error=r.max_rel_error,
                    nnz=r.nnz,
                    fit=local.fit,
                    timings=local.timings,
                ),
            )
        )
    return 0


def _demo(args: argparse.Namespace) -> Any:
    from ..demo.allocation import allocation_demo
    from ..demo.local_area import local_area_demo
    from ..demo.stacking import stacking_demo
    from ..demo.survey import survey_demo
    from ..demo.synthesis import synthesis_demo
    from ..demo.warmup import warm_up

    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    warm_up(parallel=args.size != "tiny")
    print("== 1. classical calibration of a survey sample ==")
    survey_demo(seed=args.seed)
    print(f"\n== 2. local-area calibration of the synthetic country ({args.size}) ==")
    local = local_area_demo(
        size=args.size,
        method=args.method,
        seed=args.seed,
        database=str(outdir / "targets.db"),
    )
    print("\n== 3. stacked datasets: one household record per non-zero weight ==")
    stacking_demo(local.country, local.matrix, local.result, outdir / "stacked")
    print("\n== 4. from calibrated district estimates to Title I dollars ==")
    allocation_demo(local, seed=args.seed)
    print("\n== 5. hierarchical synthesis, calibrated by household ==")
    synthesis_demo(local, outdir, seed=args.seed)
    return local


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt demo``."""
    p = add_command(sub, "demo", "end-to-end demo on the embedded synthetic data", __doc__)
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument(
        "--size", default="tiny", help="synthetic country size: tiny, small, default, full"
    )
    p.add_argument("--method", default="raking", help="method of the local-area stage")
    p.add_argument("--out", default="calibopt-demo", help="directory for the demo's files")
    add_json_argument(p)
    p.set_defaults(func=_run)
