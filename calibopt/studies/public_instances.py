"""Study instances from real public data (:mod:`calibopt.datasets.public`).

=====================  ===========================================================================
``api``                R survey's ``api`` population (6,194 California schools): a seeded sample
                       stratified by school type (elementary / middle / high, allocated like R's
                       ``apistrat``: half elementary), design weights ``N_h / n_h``, calibrated
                       to the population's counts of school type, ``sch.wide`` and ``awards``
                       and its totals of ``api99``, ``meals`` and ``ell``; ``0.5 <= g <= 3``
``cps-state``          North Carolina's published targets (IRS SOI AGI bins: returns and AGI;
                       Census age groups; population; the AGI < $1 bin left out, which the CPS
                       cannot reach) over a seeded sample of Tax-Calculator's 280,005 CPS tax
                       units, stratified by AGI bin (at least 30 units per bin; every unit of
                       the AGI >= $1M bin, whose amounts are heavy-tailed), design weights
                       preserving each bin's weighted total, scaled to the state's population;
                       ``0 <= g <= 10``
=====================  ===========================================================================

Sizes: ``api`` tiny 200 / small 600 / medium 2,000 / large 3,755 schools (4,000 asked for;
a stratum gives at most all its schools: every high school); ``cps-state`` tiny 5,000 /
small 25,000 / medium 100,000 tax units plus the ~630 of the AGI >= $1M bin, large all
280,005 (the seed then does not matter). The data are read by the loaders (a missing source
raises :class:`~calibopt.datasets.public.PublicDataError` with the command that fetches it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["API_SIZES", "CPS_SIZES", "CPS_STATE"]

API_SIZES = {"tiny": 200, "small": 600, "medium": 2_000, "large": 4_000}
"""Schools sampled from the api population."""
CPS_SIZES = {"tiny": 5_000, "small": 25_000, "medium": 100_000, "large": None}
"""Tax units sampled from the CPS (None: all of them)."""
CPS_STATE = 37
"""The state of ``cps-state`` (North Carolina, FIPS 37)."""
_API_SHARES = {"E": 0.5, "M": 0.25, "H": 0.25}
_MIN_PER_BIN = 30
_UNREACHABLE = "adjusted_gross_income<1;"


def _api(size: str, seed: int) -> Any:
    import pandas as pd

    from ..datasets.public import load_api
    from ..margins import problem_from_margins

    pop = load_api().apipop
    n = API_SIZES[size]
    rng = np.random.default_rng(seed)
    parts = []
    for stype, share in _API_SHARES.items():
        members = np.flatnonzero((pop["stype"] == stype).to_numpy())
        k = min(round(share * n), members.size)
        pick = np.sort(rng.choice(members, k, replace=False))
        part = pop.iloc[pick].copy()
        part["pw"] = members.size / k
        parts.append(part)
    sample = pd.concat(parts, ignore_index=True)
    margins: dict[str, Any] = {
        v: pop[v].value_counts().to_dict() for v in ("stype", "sch.wide", "awards")
    }
    margins.update({v: float(pop[v].sum()) for v in ("api99", "meals", "ell")})
    problem = problem_from_margins(sample, margins, weights="pw", ratio_bounds=(0.5, 3.0))
    return problem, {"schools": len(sample), "ratio_bounds": [0.5, 3.0], "source": "R survey api"}


def _stratified(
    bins: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator, take_all: int
) -> tuple[np.ndarray, np.ndarray]:
    """A proportional stratified sample of about ``n`` units (at least ``_MIN_PER_BIN`` per
    bin, or the whole bin; all of bin ``take_all``) and the factors that keep each bin's
    weighted total."""
    labels, inverse = np.unique(bins, return_inverse=True)
    sizes = np.bincount(inverse)
    take = np.minimum(sizes, np.maximum(np.round(n * sizes / sizes.sum()), _MIN_PER_BIN))
    take[labels == take_all] = sizes[labels == take_all]
    picked, factor = [], []
    for b, k in enumerate(take.astype(np.int64)):
        members = np.flatnonzero(inverse == b)
        pick = rng.choice(members, k, replace=False)
        picked.append(pick)
        factor.append(np.full(k, weights[members].sum() / weights[pick].sum()))
    order = np.concatenate(picked)
    keep = np.argsort(order)
    return order[keep], np.concatenate(factor)[keep]


def _cps_state(size: str, seed: int) -> Any:
    from ..datasets.public import load_state_targets, load_taxcalc_cps
    from ..matrix import MatrixBuilder
    from ..problem import CalibrationProblem

    units = load_taxcalc_cps(2023)
    matrix = MatrixBuilder(
        load_state_targets(), units, [CPS_STATE], level="state", period=2023
    ).build(progress=False)
    targets = matrix.targets
    rows = np.flatnonzero(~targets["name"].str.contains(_UNREACHABLE, regex=False).to_numpy())
    X = matrix.X.tocsr()[rows]
    b = targets["value"].to_numpy(dtype=np.float64)[rows]
    names = [str(s) for s in targets["name"].iloc[rows]]
    w = np.asarray(units.table("household")["household_weight"], dtype=np.float64)
    n = CPS_SIZES[size]
    if n is None:
        cols, factor = np.arange(X.shape[1]), np.ones(X.shape[1])
    else:
        counts = np.flatnonzero(
            targets["name"].iloc[rows].str.startswith(f"{CPS_STATE}/tax_unit_count|").to_numpy()
        )  # the AGI bins' counts of returns: each filer sits in one (the rest: bin -1)
        Xc = X[counts].tocsc()
        has = np.diff(Xc.indptr) > 0
        bins = np.full(X.shape[1], -1)
        bins[has] = Xc.indices[Xc.indptr[:-1][has]]
        top = counts.size - 1  # AGI >= $1M: heavy-tailed amounts, taken whole (a certainty stratum)
        cols, factor = _stratified(bins, w, n, np.random.default_rng(seed), take_all=top)
    X = X.tocsc()[:, cols].tocsr()
    d = w[cols] * factor
    population = np.flatnonzero(
        (targets["variable"].iloc[rows] == "person_count").to_numpy()
        & (targets["domain_variable"].iloc[rows] == "").to_numpy()
    )[0]
    d *= b[population] / float((X[[population]] @ d)[0])
    problem = CalibrationProblem(
        X, b, initial_weights=d, ratio_bounds=(0.0, 10.0), target_names=names, unit_ids=cols
    )
    params = {
        "state": CPS_STATE,
        "tax_units": int(cols.size),
        "ratio_bounds": [0.0, 10.0],
        "source": "Tax-Calculator CPS 2023, IRS SOI / Census state targets",
    }
    return problem, params
