"""The local-area demo stage: synthetic country -> targets database -> matrix -> calibration.

:func:`local_area_demo` runs the whole pipeline on the embedded synthetic country and prints
(1) the matrix structure, (2) the fit by target group before (design prior) and after
calibration, and (3) a check on a quantity that was *not* a target: each district's SNAP
dollars, estimated with the design prior and with the calibrated weights, against the truth
the synthetic country knows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..calibrate import calibrate
from ..datasets.synthetic import SyntheticCountry, synthetic_country
from ..fit import check_weights
from ..matrix import CalibrationMatrix, MatrixBuilder
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..targets import TargetsDatabase

__all__ = ["LocalAreaDemo", "local_area_demo"]


@dataclass
class LocalAreaDemo:
    """Everything the demo built, for further exploration.

    Attributes
    ----------
    country, database, matrix, problem, result
        The pipeline's objects.
    fit : DataFrame
        Per target group: ``targets``, ``prior_max_rel_error``, ``max_rel_error``,
        ``mean_rel_error`` (absolute relative errors).
    untargeted : DataFrame
        District SNAP dollars (not a target): ``truth``, ``prior`` and ``calibrated``
        estimates per district.
    timings : dict
        Seconds per step.
    """

    country: SyntheticCountry
    database: TargetsDatabase
    matrix: CalibrationMatrix
    problem: CalibrationProblem
    result: CalibrationResult
    fit: pd.DataFrame
    untargeted: pd.DataFrame
    timings: dict[str, float]


def _fit_table(problem: CalibrationProblem, prior: np.ndarray, weights: np.ndarray) -> pd.DataFrame:
    before = np.abs(check_weights(problem, prior).rel_errors)
    after = np.abs(check_weights(problem, weights).rel_errors)
    frame = pd.DataFrame({"group": problem.groups, "before": before, "after": after})
    return (
        frame.groupby("group", sort=False)
        .agg(
            targets=("after", "size"),
            prior_max_rel_error=("before", "max"),
            max_rel_error=("after", "max"),
            mean_rel_error=("after", "mean"),
        )
        .reset_index()
    )


def _district_snap(
    country: SyntheticCountry, matrix: CalibrationMatrix, weights: dict
) -> pd.DataFrame:
    """Each district's SNAP dollars under its state's rules, for several weight vectors."""
    cm = matrix.columns
    rules = country.rules
    out = {"district": cm.geographies}
    values = {}
    for s in np.unique(cm.states):
        values[int(s)] = rules.evaluate(country.dataset, rules.key(int(s) * 100 + 1))["snap"]
    snap = np.stack([values[int(s)] for s in cm.states])
    for name, w in weights.items():
        out[name] = (cm.reshape(w) * snap).sum(axis=1)
    return pd.DataFrame(out)


def local_area_demo(
    size: str = "tiny",
    method: str = "raking",
    *,
    seed: int = 0,
    noise: float = 0.0,
    solver: str | None = None,
    database: str | os.PathLike | None = None,
    out: Callable[[str], Any] = print,
) -> LocalAreaDemo:
    """Run the local-area pipeline on the synthetic country and print what happened.

    Parameters
    ----------
    size
        Synthetic country size: ``"tiny"`` (6 districts, under a second), ``"small"``
        (40 districts), ``"default"`` or ``"full"`` (436 districts; slow with dense methods).
    method, solver
        Passed to :func:`calibopt.calibrate`.
    seed, noise
        Passed to :func:`~calibopt.datasets.synthetic_country` (with ``noise > 0`` the levels
        conflict and exact methods may report infeasibility).
    database
        Where to write the targets database (SQLite path or URL; the country's targets
        replace any already there); default in memory.
    out
        Where the printed lines go.

    Returns
    -------
    LocalAreaDemo
    """
    timings = {}
    t = time.perf_counter()
    country = synthetic_country(size, seed=seed, noise=noise)
    db = TargetsDatabase.create(database or "sqlite://")
    country.write_targets(db, replace=True)
    timings["data"] = time.perf_counter() - t
    out(f"{country}")
    t = time.perf_counter()
    matrix = MatrixBuilder(db, country.dataset, country.geographies, rules=country.rules).build()
    timings["matrix"] = time.perf_counter() - t
    out(
        f"{matrix}: built in {timings['matrix']:.2f} s (benefit rules evaluated once per "
        f"state: {len(matrix.info['rule_calls'])} calls)"
    )
    problem = matrix.to_problem()
    t = time.perf_counter()
    result = calibrate(problem, method=method, solver=solver)
    timings["calibrate"] = time.perf_counter() - t
    out(result.summary())
    fit = _fit_table(problem, problem.initial_weights, result.weights)
    with pd.option_context("display.width", 160, "display.float_format", "{:.3g}".format):
        out(
            "\nFit by target group (absolute relative error; prior = design weights spread "
            "over each state's districts):"
        )
        out(fit.to_string(index=False))
    untargeted = _district_snap(
        country,
        matrix,
        {
            "truth": country.true_weights,
            "prior": problem.initial_weights,
            "calibrated": result.weights,
        },
    )
    err_prior = np.abs(untargeted["prior"] / untargeted["truth"] - 1)
    err_cal = np.abs(untargeted["calibrated"] / untargeted["truth"] - 1)
    out(
        f"\nNot a target: SNAP dollars per district. Mean |relative error| against the truth: "
        f"prior {err_prior.mean():.3f}, calibrated {err_cal.mean():.3f} "
        f"(max {err_prior.max():.3f} -> {err_cal.max():.3f}) over {len(untargeted)} districts."
    )
    return LocalAreaDemo(country, db, matrix, problem, result, fit, untargeted, timings)
