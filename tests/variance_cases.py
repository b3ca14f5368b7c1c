"""Shared inputs of the variance tests: the synthetic samples and their R references.

The samples are committed synthetic data (``tests/fixtures/r_variance/make_data.py``); the
references come from R survey (``make_references.R``). The api references use the design of
the shared R oracle fixtures (``../shared/fixtures/r_oracle``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

import calibopt as co
import calibopt.variance as cv

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "r_variance"

# the R designs of make_references.R, as calibopt designs
DESIGNS = {
    "strat_cluster_nofpc": dict(psu="psu", strata="stratum", weights="weight"),
    "strat_cluster_fpc": dict(psu="psu", strata="stratum", weights="weight", fpc="N1"),
    "strat_cluster_fraction": dict(psu="psu", strata="stratum", weights="weight", fpc="f1"),
    "strat_nested_labels": dict(
        psu="psu_local", strata="stratum", weights="weight", fpc="N1", nest=True
    ),
    "twostage_fpc": dict(psu=["psu", "ssu"], strata="stratum", weights="weight", fpc=["N1", "N2"]),
    "twostage_fraction": dict(psu=["psu", "ssu"], strata="stratum", fpc=["f1", "f2"]),
    "twostage_nofpc": dict(psu=["psu", "ssu"], strata="stratum", weights="weight"),
    "cluster_fpc": dict(psu="psu", weights="weight_cluster", fpc="Npsu"),
    "cluster_twostage_fpc": dict(psu=["psu", "ssu"], fpc=["Npsu", "N2"]),
    "units_strat_fpc": dict(strata="stratum", weights="weight", fpc="Nunits"),
}
# calibration -> (method, ratio bounds on g)
CALIBRATIONS = {
    "linear": ("linear", None),
    "raking": ("raking", None),
    "logit": ("logit", (0.4, 2.5)),
    "linear_bounded": ("linear", (0.93, 1.13)),
}
API_CALIBRATIONS = {
    "i_linear": ("linear", None),
    "ii_raking": ("raking", None),
    "iii_logit": ("logit", (0.5, 2.0)),
    "iv_linear_bounded": ("linear", (0.6, 1.6)),
    "v_linear_binding": ("linear", (0.72, 1.42)),
}


@cache
def references() -> dict:
    return json.loads((FIXTURES / "references.json").read_text())


@cache
def sample(name: str = "sample") -> pd.DataFrame:
    return pd.read_csv(FIXTURES / f"{name}.csv")


def design(name: str, data: pd.DataFrame | None = None, **extra) -> cv.Design:
    return cv.Design(sample() if data is None else data, **DESIGNS[name], **extra)


def model_matrix(data: pd.DataFrame) -> np.ndarray:
    """R's model.matrix(~region + x): intercept, regionR2, regionR3, x (targets x units)."""
    return np.vstack(
        [
            np.ones(len(data)),
            (data["region"] == "R2").to_numpy(float),
            (data["region"] == "R3").to_numpy(float),
            data["x"].to_numpy(float),
        ]
    )


def problem(des: cv.Design, data: pd.DataFrame, calibration: str, population=None):
    """The calibration problem of ``make_references.R`` (R's population totals)."""
    refs = references()
    if population is None:
        population = [refs["population"][k] for k in refs["population_names"]]
    bounds = CALIBRATIONS[calibration][1]
    return co.CalibrationProblem(
        model_matrix(data),
        np.asarray(population, dtype=float),
        initial_weights=des.weights,
        ratio_bounds=bounds,
        bounds=None,
    )


def rel(a, b) -> float:
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    return float(np.max(np.abs(a - b) / np.abs(b)))
