"""The synthesis demo stage: fit on the synthetic country, generate, calibrate by household,
stack.

:func:`synthesis_demo` fits a :class:`~calibopt.synthesis.HierarchicalSynthesizer` on the
synthetic country's households, generates a new population (``scale`` times as many
households), checks that every hierarchy rule holds, compares it with the real data, calibrates
one weight per household to the targets database (persons and tax units counted into their
household's column) and writes it as a stacked dataset.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..stacking import stack
from ..synthesis import (
    ChildAgeGap,
    HierarchicalSynthesizer,
    SpouseAgeGap,
    calibrate_households,
    quality_report,
)

__all__ = ["synthesis_demo"]

AGGREGATES = {
    "household_size": None,
    "household_income": ["employment_income", "retirement_income"],
    "adjusted_gross_income": ["employment_income", "retirement_income"],
}
RULES = [SpouseAgeGap(max_years=20), ChildAgeGap(min_years=14)]


def synthesis_demo(
    local: Any,
    outdir: str | os.PathLike,
    *,
    scale: int = 5,
    seed: int = 0,
    out: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the synthesis stage on the country of the local-area stage.

    Parameters
    ----------
    local
        The :class:`~calibopt.demo.local_area.LocalAreaDemo` (its country and database).
    outdir
        Directory for ``synthetic_population.h5`` (replaced if present).
    scale
        Synthetic households per real household.
    seed
        Seed of the generation.
    out
        Where lines are printed.

    Returns
    -------
    dict
        ``synthetic`` (the Dataset), ``calibration``, ``quality`` (summary), ``timings``.
    """
    country, database = local.country, local.database
    real = country.dataset
    timings = {}
    t = time.perf_counter()
    synth = HierarchicalSynthesizer(aggregates=AGGREGATES, rules=RULES).fit(
        real, rules=country.rules
    )
    timings["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    population = synth.generate(scale * real.n_households, seed=seed, rules=country.rules)
    timings["generate"] = time.perf_counter() - t
    violations = int(synth.check(population)["violations"].sum())
    out(
        f"Fitted on {real.n_households:,} households in {timings['fit']:.2f} s; generated "
        f"{population} in {timings['generate']:.2f} s; hierarchy rule violations: {violations} "
        f"(repairs during generation: {int(synth.last_report['rows_changed'].sum())} ages)."
    )
    quality = quality_report(real, population, rules=RULES).summary()
    with pd.option_context("display.float_format", "{:.4f}".format):
        out("Synthetic vs real (KS for numbers, total variation for categories):")
        out(pd.Series(quality).to_string())
    t = time.perf_counter()
    cal = calibrate_households(population, database, rules=country.rules)
    timings["calibrate"] = time.perf_counter() - t
    out(
        f"\nHousehold-level calibration ({cal.matrix.X.shape[0]} targets x "
        f"{cal.matrix.X.shape[1]:,} households, each in its home district; every member "
        f"shares its household's weight): {cal.result.status}, max |relative error| "
        f"{cal.result.max_rel_error:.2e}, in {timings['calibrate']:.2f} s."
    )
    geos, W = cal.stack_weights()
    path = Path(outdir) / "synthetic_population.h5"
    stacked = stack(W, geos, population, path, rules=country.rules, overwrite=True)
    out(f"Stacked: {path} ({stacked.dataset.n_households:,} households with a non-zero weight).")
    return {"synthetic": population, "calibration": cal, "quality": quality, "timings": timings}
