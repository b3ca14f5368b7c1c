"""``calibopt demo``: an end-to-end run on the embedded synthetic data.

1. calibrates a synthetic survey sample to population margins with every classical distance
   (Newton and one cvxpy solver) and prints the fit and the bias removed;
2. builds the synthetic country's targets database (SQLite, in --out) and its local-area matrix
   (household x district columns), calibrates it, and prints the fit by target group;
3. writes the calibrated weights as stacked HDF5 datasets (one household record per non-zero
   weight, re-indexed ids, a mapping CSV), reads them back and checks every target;
4. follows the calibrated district estimates to Title I dollars per district.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..calibrate import calibrate
from ..datasets.survey import survey_sample
from ..margins import problem_from_margins

__all__ = ["register", "survey_demo"]


def survey_demo(seed: int = 0, out: Callable[[str], None] = print) -> pd.DataFrame:
    """Calibrate the embedded survey sample with each classical distance; return the table."""
    s = survey_sample(seed=seed)
    margins = dict(s.margins)
    margins["income"] = s.income_total
    base = problem_from_margins(s.sample, margins, weights="pw")
    out(
        f"Survey sample: {len(s.sample):,} respondents from a population of "
        f"{s.population_size:,}; {base.n_targets} margins (region, sex, age group, income)."
    )
    rows = []
    d = base.initial_weights
    y = s.sample["employed"].to_numpy()
    truth = s.truth["employed"]
    rows.append(
        {
            "method": "design weights",
            "solver": "-",
            "status": "-",
            "iterations": 0,
            "seconds": 0.0,
            "max_rel_error": float(np.max(np.abs(base.X @ d / base.targets - 1))),
            "g_min": 1.0,
            "g_max": 1.0,
            "employed_bias": float(d @ y / truth - 1),
        }
    )
    for method, solver, bounds in [
        ("linear", "newton", None),
        ("raking", "newton", None),
        ("logit", "newton", (0.3, 3.0)),
        ("truncated", "newton", (0.5, 2.6)),
        ("raking", "CLARABEL", None),
    ]:
        problem = base if bounds is None else base.with_options(ratio_bounds=bounds)
        t0 = time.perf_counter()
        r = calibrate(problem, method=method, solver=solver)
        rows.append(
            {
                "method": method + (f" {bounds}" if bounds else ""),
                "solver": r.solver,
                "status": r.status,
                "iterations": r.iterations,
                "seconds": time.perf_counter() - t0,
                "max_rel_error": r.max_rel_error,
                "g_min": float(r.g.min()),
                "g_max": float(r.g.max()),
                "employed_bias": float(r.weights @ y / truth - 1),
            }
        )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 140, "display.float_format", "{:.4g}".format):
        out(table.to_string(index=False))
    out(
        "employed_bias: relative error of the estimated number employed (not a calibration "
        "target) against the population truth."
    )
    return table


def _run(args: argparse.Namespace) -> int:
    from ..allocation.demo import allocation_demo
    from ..demo.local_area import local_area_demo
    from ..stacking.demo import stacking_demo

    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
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
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``calibopt demo``."""
    p = sub.add_parser(
        "demo", help="end-to-end demo on the embedded synthetic data", description=__doc__
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument(
        "--size", default="tiny", help="synthetic country size: tiny, small, default, full"
    )
    p.add_argument("--method", default="raking", help="method of the local-area stage")
    p.add_argument("--out", default="calibopt-demo", help="directory for the demo's files")
    p.set_defaults(func=_run)
