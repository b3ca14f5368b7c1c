"""An embedded synthetic survey: a seeded population, a stratified sample and its margins.

The population has regions, sex, age groups, employment and income; the sample is
stratified by region with unequal sampling fractions and age-related non-response, so the
design-weighted estimates are biased and calibration to the population margins removes
most of the bias. Used by ``calibopt demo``, the docs and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["SurveySample", "survey_sample"]

REGIONS = ("North", "South", "East", "West")
AGE_GROUPS = ("16-24", "25-34", "35-44", "45-54", "55-64", "65+")


@dataclass
class SurveySample:
    """A sample with design weights, the population margins, and the population truth.

    Attributes
    ----------
    sample : DataFrame
        One row per respondent: ``region``, ``sex``, ``age_group``, ``employed``, ``income``,
        and the design weight ``pw``.
    margins : dict
        Population counts per level of ``region``, ``sex`` and ``age_group``.
    income_total : float
        Population total of ``income`` (a continuous margin for linear calibration).
    truth : dict
        Population totals of ``employed`` and ``income``, to judge estimates.
    population_size : int
    """

    sample: pd.DataFrame
    margins: dict
    income_total: float
    truth: dict
    population_size: int


def survey_sample(
    n_population: int = 200_000, sample_size: int = 4_000, seed: int = 0
) -> SurveySample:
    """Generate the population, draw the sample, and return both with the margins.

    Parameters
    ----------
    n_population
        Population size.
    sample_size
        Expected number of respondents (after non-response).
    seed
        Seed of every random draw; the same seed gives the same sample.
    """
    rng = np.random.default_rng(seed)
    region = rng.choice(len(REGIONS), size=n_population, p=[0.32, 0.28, 0.24, 0.16])
    sex = rng.integers(0, 2, n_population)
    age = rng.choice(len(AGE_GROUPS), size=n_population, p=[0.14, 0.18, 0.17, 0.17, 0.16, 0.18])
    employ_p = np.array([0.55, 0.82, 0.85, 0.83, 0.68, 0.12])[age] - 0.04 * sex
    employed = rng.random(n_population) < employ_p
    log_mean = 9.6 + 0.25 * np.minimum(age, 3) + 0.15 * (region == 0) - 0.1 * (region == 3)
    income = np.where(
        employed,
        rng.lognormal(log_mean, 0.7),
        rng.lognormal(8.2, 0.9) * (age == 5) + rng.lognormal(6.5, 1.0) * (age < 5),
    )
    pop = pd.DataFrame(
        {
            "region": np.asarray(REGIONS)[region],
            "sex": np.where(sex == 1, "M", "F"),
            "age_group": np.asarray(AGE_GROUPS)[age],
            "employed": employed.astype(int),
            "income": np.round(income, 2),
        }
    )
    # stratified selection by region (unequal fractions) and age-related response
    fraction = np.array([0.012, 0.02, 0.03, 0.05])
    response = np.array([0.45, 0.6, 0.75, 0.8, 0.85, 0.9])
    scale = sample_size / float(np.sum(fraction[region] * response[age]))
    p_select = fraction[region] * scale
    selected = rng.random(n_population) < p_select * response[age]
    sample = pop.loc[selected].reset_index(drop=True)
    sample["pw"] = 1.0 / p_select[selected]
    margins = {
        "region": pop["region"].value_counts().reindex(REGIONS).astype(float).to_dict(),
        "sex": pop["sex"].value_counts().reindex(["F", "M"]).astype(float).to_dict(),
        "age_group": pop["age_group"].value_counts().reindex(AGE_GROUPS).astype(float).to_dict(),
    }
    return SurveySample(
        sample=sample,
        margins=margins,
        income_total=float(pop["income"].sum()),
        truth={"employed": float(pop["employed"].sum()), "income": float(pop["income"].sum())},
        population_size=n_population,
    )
