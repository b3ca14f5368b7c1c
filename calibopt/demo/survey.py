"""The survey stage of ``calibopt demo``: a synthetic survey sample calibrated to population
margins with every classical distance (Newton and one cvxpy solver), with the fit, the spread of
the g-weights and the bias removed from a variable that is not a calibration target."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..calibrate import calibrate
from ..datasets.survey import survey_sample
from ..margins import problem_from_margins

__all__ = ["survey_demo"]


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
