"""A synthetic country of school districts for tests, examples and demonstrations.

:func:`synthetic_leas` draws states and LEAs with realistic shapes (heavy-tailed district
sizes, beta-distributed poverty rates, state spending and income levels), true and estimated
formula-child counts (estimates noisier in small districts, with their coefficient of
variation), last year's allocations for the hold-harmless floors, this year's "official"
allocations whose sums are the appropriations, and the per-state and per-LEA inputs of EFIG.
Every column the allocators read is there, so ``SonnenbergAllocator().allocate(df,
prefixes=("true", "est"))`` runs as is. Same seed, same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from . import inputs, statute

__all__ = [
    "DOLLARS_PER_FORMULA_CHILD",
    "household_children",
    "synthetic_lea_inputs",
    "synthetic_leas",
    "synthetic_state_minimum_rules",
]

DOLLARS_PER_FORMULA_CHILD: dict[str, float] = {
    "basic": 585.0,
    "concentration": 123.0,
    "targeted": 395.0,
    "efig": 395.0,
}
"""Appropriation per formula child by grant type, roughly FY 2021 (Title I-A $16.5 billion
for about 11 million formula children, split basic 39%, concentration 8%, targeted and EFIG
26% each); used to size the synthetic appropriations."""


def synthetic_leas(
    n_states: int = 12,
    leas_per_state: tuple[int, int] = (5, 80),
    *,
    seed: int = 0,
    estimate_cv: float = 0.25,
    drift: float = 0.12,
    dollars_per_child: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Draw a synthetic table of LEAs ready for the allocators.

    Parameters
    ----------
    n_states
        Number of states (FIPS-like codes 1, 2, ...; Puerto Rico's 72 is never used).
    leas_per_state
        Range (inclusive) of the number of LEAs per state.
    seed
        Random seed.
    estimate_cv
        Coefficient of variation of the formula-child estimate of a district with 1,000
        children aged 5-17 (it scales as ``population ** -0.5``, capped at 1).
    drift, dollars_per_child
        Passed to :func:`synthetic_lea_inputs`.

    Returns
    -------
    DataFrame
        Indexed by (state, district), with ``true_``/``est_`` ``children_eligible`` and
        ``children_total``, ``cv`` and the columns of :func:`synthetic_lea_inputs`.
    """
    if n_states < 1 or leas_per_state[0] < 1 or leas_per_state[1] < leas_per_state[0]:
        raise InvalidProblemError(
            f"need n_states >= 1 and 1 <= leas_per_state[0] <= leas_per_state[1], got "
            f"{n_states}, {leas_per_state}."
        )
    rng = np.random.default_rng(seed)
    sizes = rng.integers(leas_per_state[0], leas_per_state[1] + 1, size=n_states)
    state = np.repeat(np.arange(1, n_states + 1), sizes)
    district = np.concatenate([np.arange(1, s + 1) for s in sizes]) + 10_000 * state
    n = state.size
    # districts: 5-17 populations lognormal (median ~1,500, a few over 100,000)
    total = np.maximum(np.round(rng.lognormal(np.log(1500), 1.5, size=n)), 20).astype(np.int64)
    mean = rng.uniform(0.10, 0.24, size=n_states)[state - 1]
    kappa = 12.0  # beta concentration: poverty rates spread around the state's level
    true_e = rng.binomial(total, rng.beta(mean * kappa, (1 - mean) * kappa))
    cv = np.minimum(estimate_cv * np.sqrt(1000.0 / total), 1.0)
    est_e = np.maximum(np.round(true_e * (1 + cv * rng.standard_normal(n))), 0).astype(np.int64)
    counts = pd.DataFrame(
        {
            inputs.eligible_column("true"): true_e,
            inputs.total_column("true"): total,
            inputs.eligible_column("est"): np.minimum(est_e, total),
            inputs.total_column("est"): total,
            inputs.CV: cv,
        },
        index=pd.MultiIndex.from_arrays([state, district], names=list(inputs.INDEX_NAMES)),
    )
    return synthetic_lea_inputs(
        counts, seed=seed + 1, drift=drift, dollars_per_child=dollars_per_child
    )


def synthetic_lea_inputs(
    counts: pd.DataFrame,
    *,
    prefix: str = "true",
    seed: int = 0,
    drift: float = 0.12,
    dollars_per_child: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Add synthetic spending, income, last year's and official amounts to LEA counts.

    Parameters
    ----------
    counts
        Indexed by (state, district) with ``{prefix}_children_eligible`` and
        ``{prefix}_children_total`` (the "true" counts that size the appropriations and the
        official allocations); other columns are kept.
    prefix
        Estimate kind of the true counts.
    seed
        Random seed.
    drift
        Log-scale standard deviation of the change of each LEA's formula children since last
        year (last year's amounts drive the hold-harmless floors).
    dollars_per_child
        Appropriation per true formula child by grant type (default
        :data:`DOLLARS_PER_FORMULA_CHILD`).

    Returns
    -------
    DataFrame
        ``counts`` plus ``sppe``, ``per_capita_income`` (per state), ``expenditure`` and
        ``enrollment`` (per LEA, for the EFIG equity factor), ``prior_{grant}`` (last year's
        formulas on drifted counts with a 5% smaller appropriation, no provisions) and
        ``official_{grant}`` (this year's full procedure on the true counts, whose sums are the
        appropriations), for the four grant types.
    """
    from .sonnenberg import SonnenbergAllocator  # the generator runs the formulas themselves

    df = inputs.lea_indexed(counts, "counts").copy()
    e_col, n_col = inputs.eligible_column(prefix), inputs.total_column(prefix)
    missing = [c for c in (e_col, n_col) if c not in df.columns]
    if missing:
        raise InvalidProblemError(f"`counts` lacks column(s) {missing}.")
    bad = ~np.isfinite(df[[e_col, n_col]].to_numpy(dtype=float)) | (df[[e_col, n_col]] < 0)
    if np.asarray(bad).any():
        raise InvalidProblemError(f"`counts` columns {e_col!r}, {n_col!r} must be finite, >= 0.")
    rng = np.random.default_rng(seed)
    rates = dict(DOLLARS_PER_FORMULA_CHILD if dollars_per_child is None else dollars_per_child)
    codes, states = pd.factorize(df.index.get_level_values(0), sort=True)
    k, n = len(states), len(df)
    total = df[n_col].to_numpy(dtype=float)
    true_e = df[e_col].to_numpy(dtype=float)
    sppe = np.round(rng.uniform(9_000, 22_000, size=k), 2)
    pci = np.round(sppe * rng.uniform(3.2, 4.2, size=k), 2)
    enrollment = np.round(total * rng.uniform(0.8, 0.95, size=n))
    spread = rng.uniform(0.03, 0.25, size=k)[codes]
    df[inputs.SPPE] = sppe[codes]
    df[inputs.PCI] = pci[codes]
    df[inputs.ENROLLMENT] = enrollment
    df[inputs.EXPENDITURE] = np.round(enrollment * sppe[codes] * rng.lognormal(0.0, spread), 2)
    appropriations = {g: round(rates[g] * float(true_e.sum()), 2) for g in statute.GRANT_TYPES}
    prior = df.copy()
    prior[e_col] = np.minimum(np.round(true_e * rng.lognormal(0.0, drift, size=n)), total)
    last = SonnenbergAllocator(hold_harmless=False, state_minimum=False).allocate(
        prior, prefixes=(prefix,), appropriations={g: 0.95 * a for g, a in appropriations.items()}
    )
    for g in statute.GRANT_TYPES:
        df[inputs.prior_column(g)] = last.table[f"{prefix}_grant_{g}"]
    official = SonnenbergAllocator(
        state_minimum_rules=synthetic_state_minimum_rules(df, prefix)
    ).allocate(df, prefixes=(prefix,), appropriations=appropriations)
    for g in statute.GRANT_TYPES:
        df[inputs.official_column(g)] = official.table[f"{prefix}_grant_{g}"]
    return df


def synthetic_state_minimum_rules(
    estimates: pd.DataFrame, prefix: str = "true"
) -> dict[str, statute.StateMinimumRule]:
    """The default state-minimum rules scaled to the size of a synthetic country.

    The dollar constants (fiscal year 2001 base amounts, the $340,000 floor) are multiplied
    by the country's formula children over :data:`~calibopt.allocation.statute.US_FORMULA_CHILDREN`.
    """
    factor = float(estimates[inputs.eligible_column(prefix)].sum()) / statute.US_FORMULA_CHILDREN
    return {g: r.scaled(factor) for g, r in statute.STATE_MINIMUM_RULES.items()}


def household_children(dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per household: children aged 5-17, and those of them in poverty (formula children).

    The poverty line is the 2024 HHS guideline for the 48 states ($15,060 plus $5,380 per
    additional person), applied to household income.
    """
    hh = dataset.household
    line = 15_060 + 5_380 * (hh["household_size"].to_numpy() - 1)
    poor = hh["household_income"].to_numpy() < line
    age = dataset.get("age")
    kids = dataset.map_to(((age >= 5) & (age <= 17)).astype(float), "person", "household")
    return kids, kids * poor
