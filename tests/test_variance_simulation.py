"""Simulation: repeated stratified samples from a seeded finite population, calibrated by raking.

The mean of the estimated variances (linearised; bootstrap replicates re-calibrated) must be
within 10% of the Monte Carlo variance of the calibrated total, and nominal 95% intervals must
cover the true total in 93-97% of the samples.
"""

from __future__ import annotations

import numpy as np
import pytest

import calibopt as co
import calibopt.variance as cv

SIZES = np.array([3000, 4000, 5000, 6000])  # population units per stratum
N_H = 60  # sampled per stratum (simple random sampling without replacement)
S_LINEARISED = 1000  # samples for the linearised variance (and the Monte Carlo variance)
S_REPLICATES = 200  # of those, samples whose replicate variance is estimated too
REPLICATES = 50  # Rao-Wu bootstrap replicates per sample, each re-calibrated
Z95 = 1.959963984540054


def _population(seed: int = 2024) -> dict:
    rng = np.random.default_rng(seed)
    stratum = np.repeat(np.arange(SIZES.size), SIZES)
    n = SIZES.sum()
    region = rng.integers(0, 3, n)
    x = rng.gamma(2.0, 10.0, n) + 5.0 * stratum
    noise = rng.normal(0.0, 12.0, n) * (1.0 + 0.3 * stratum)
    y = 20.0 + 1.5 * x + 8.0 * (region == 2) + noise
    X = np.vstack([np.ones(n), region == 1, region == 2, x]).astype(float)
    return {"stratum": stratum, "X": X, "y": y, "totals": X.sum(axis=1)}


def _sample(pop: dict, rng: np.random.Generator, replicates: int | None):
    strata = pop["stratum"]
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(strata == h), N_H, replace=False) for h in range(SIZES.size)]
    )
    size = SIZES[strata[idx]].astype(float)
    design = cv.Design(None, weights=size / N_H, strata=strata[idx], fpc=size)
    problem = co.CalibrationProblem(pop["X"][:, idx], pop["totals"], initial_weights=design.weights)
    cal = design.calibrate(problem, "raking")
    assert cal.result.status == "optimal"
    y = pop["y"][idx]
    est = cv.total(y, cal)
    out = [est.estimate[0], est.variance[0], np.nan]
    if replicates:
        reps = cal.replicates(
            "bootstrap", replicates=replicates, seed=int(rng.integers(2**31)), fpc=True
        )
        out[2] = cv.total(y, reps).variance[0]
    return out


@pytest.fixture(scope="module")
def simulation():
    pop = _population()
    rng = np.random.default_rng(7)
    runs = np.array(
        [_sample(pop, rng, REPLICATES if s < S_REPLICATES else None) for s in range(S_LINEARISED)]
    )
    return pop["y"].sum(), runs


def _cover(truth, estimates, variances):
    return float(np.mean(np.abs(estimates - truth) <= Z95 * np.sqrt(variances)))


def test_linearised_variance_matches_monte_carlo(simulation):
    truth, runs = simulation
    mc = runs[:, 0].var(ddof=1)
    assert abs(runs[:, 0].mean() - truth) < 0.1 * np.sqrt(mc)  # the calibrated total is unbiased
    assert runs[:, 1].mean() / mc == pytest.approx(1.0, abs=0.10)
    assert 0.93 <= _cover(truth, runs[:, 0], runs[:, 1]) <= 0.97


def test_replicate_variance_matches_monte_carlo(simulation):
    truth, runs = simulation
    mc = runs[:, 0].var(ddof=1)
    rep = runs[:S_REPLICATES]
    assert rep[:, 2].mean() / mc == pytest.approx(1.0, abs=0.10)
    assert 0.93 <= _cover(truth, rep[:, 0], rep[:, 2]) <= 0.97
