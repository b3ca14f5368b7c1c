"""Standard instances of calibration studies: seeded generators with a size.

=====================  ===========================================================================
``survey-margins``     a stratified survey sample (unequal sampling fractions, non-response)
                       calibrated to population margins of region, sex and age group plus an
                       income total; ratio bounds ``0.2 <= g <= 5``
``local-area``         the synthetic country's targets database built into its local-area
                       matrix (household x district columns) by :class:`calibopt.matrix.
                       MatrixBuilder`; exact targets
``sparse-recovery``    independent blocks of records (counts and lognormal amounts) whose
                       targets come from a *sparse* planted weight vector (one record in ten,
                       ``g`` in [2, 10]); 1% bands, ``0 <= g <= 20``: sparse methods should find
                       about as few non-zeros as were planted
``bounded-qp``         per-area blocks (each area its own households and targets) with tight
                       ratio bounds ``0.5 <= g <= 2`` and exact targets from a dense planted
                       ``g`` in [0.7, 1.4]: a bounded QP per area
``conflicting``        the local-area problem with 2% noise on every published total: the
                       levels disagree (districts no longer sum to their state), so exact
                       methods must report infeasibility and soft methods trade targets off
``infeasible``         the survey-margins problem with ``0.97 <= g <= 1.03``: no weights exist
=====================  ===========================================================================

Sizes are ``tiny`` (tests, well under a second to solve), ``small``, ``medium`` and
``large`` (hundreds of thousands to millions of columns). The same (kind, size, seed) gives
the same problem, byte for byte.

Real public data: ``api`` (R survey's California schools) and ``cps-state`` (Tax-Calculator's
CPS tax units to North Carolina's published targets), see
:mod:`calibopt.studies.public_instances`. More plug in through :func:`register_instance`: a
loader module registers a kind whose generator reads public files; studies, the command line
and benchopt then see it like the synthetic kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from .public_instances import _api, _cps_state

__all__ = [
    "SIZES",
    "STANDARD",
    "Instance",
    "instance_kinds",
    "make_instance",
    "register_instance",
    "standard_instances",
]

SIZES = ("tiny", "small", "medium", "large")
"""The sizes every generator takes."""
STANDARD = ("survey-margins", "local-area", "sparse-recovery", "bounded-qp", "conflicting")
"""The five kinds of :func:`standard_instances`."""


@dataclass(frozen=True)
class Instance:
    """A named problem with its provenance.

    Attributes
    ----------
    name : str
        Name in a study's table (``"local-area-small"``).
    problem : CalibrationProblem
    provenance : dict
        How to make it again: ``kind``, ``size``, ``seed``, the generator's parameters.
    """

    name: str
    problem: CalibrationProblem
    provenance: dict[str, Any] = field(default_factory=dict)


Generator = Callable[[str, int], tuple[CalibrationProblem, dict[str, Any]]]
_GENERATORS: dict[str, tuple[Generator, str]] = {}


def register_instance(kind: str, generator: Generator, description: str) -> None:
    """Register a kind of instance (the hook for real-data instances).

    Parameters
    ----------
    kind
        Name, e.g. ``"acs-local-area"``.
    generator
        ``generator(size, seed) -> (problem, parameters)``: the problem of that size and the
        parameters that made it (saved as provenance).
    description
        One line for ``calibopt compare --list-instances``.
    """
    if kind in _GENERATORS:
        raise InvalidProblemError(f"instance kind {kind!r} is registered already.")
    _GENERATORS[kind] = (generator, description)


def instance_kinds() -> dict[str, str]:
    """Registered instance kinds and their one-line descriptions."""
    return {k: d for k, (_, d) in sorted(_GENERATORS.items())}


def make_instance(kind: str, size: str = "small", seed: int = 0) -> Instance:
    """The instance of ``kind`` at ``size`` drawn with ``seed`` (see the module docstring)."""
    if kind not in _GENERATORS:
        raise InvalidProblemError(
            f"unknown instance kind {kind!r}; available: {', '.join(sorted(_GENERATORS))}."
        )
    if size not in SIZES:
        raise InvalidProblemError(f"size {size!r} is not one of {', '.join(SIZES)}.")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InvalidProblemError(f"`seed` must be a non-negative integer, got {seed!r}.")
    generator, _ = _GENERATORS[kind]
    problem, params = generator(size, int(seed))
    provenance = {"kind": kind, "size": size, "seed": int(seed), **params}
    return Instance(f"{kind}-{size}", problem, provenance)


def standard_instances(
    size: str = "small", seed: int = 0, kinds: tuple[str, ...] = STANDARD
) -> list[Instance]:
    """The standard instance set (five kinds by default) at one size."""
    return [make_instance(k, size, seed) for k in kinds]


# ----------------------------------------------------------------------------- generators
_SURVEY = {"tiny": 300, "small": 2_000, "medium": 20_000, "large": 200_000}


def _survey(size: str, seed: int, ratio_bounds: tuple[float, float]) -> Any:
    from ..datasets.survey import survey_sample
    from ..margins import problem_from_margins

    n = _SURVEY[size]
    s = survey_sample(n_population=max(30_000, 10 * n), sample_size=n, seed=seed)
    margins = dict(s.margins, income=s.income_total)
    problem = problem_from_margins(s.sample, margins, weights="pw", ratio_bounds=ratio_bounds)
    return problem, {"sample_size": n, "ratio_bounds": list(ratio_bounds)}


def _survey_margins(size: str, seed: int) -> Any:
    return _survey(size, seed, (0.2, 5.0))


def _infeasible(size: str, seed: int) -> Any:
    return _survey(size, seed, (0.97, 1.03))


_COUNTRY = {"tiny": "tiny", "small": "small", "medium": "default", "large": "full"}


def _country(size: str, seed: int, noise: float) -> Any:
    from ..datasets.synthetic import synthetic_country
    from ..matrix import MatrixBuilder

    country = synthetic_country(_COUNTRY[size], seed=seed, noise=noise)
    matrix = MatrixBuilder(
        country.targets_database(), country.dataset, country.geographies, rules=country.rules
    ).build()
    params = {"country": _COUNTRY[size], "noise": noise, "districts": len(country.geographies)}
    return matrix.to_problem(), params


def _local_area(size: str, seed: int) -> Any:
    return _country(size, seed, 0.0)


def _conflicting(size: str, seed: int) -> Any:
    return _country(size, seed, 0.02)


def _block(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    """One block's rows: households, persons, 0/1 categories, then lognormal amounts."""
    n_amount = m // 2
    n_count = m - n_amount
    persons = rng.integers(1, 7, n).astype(float)
    rows = [np.ones(n), persons]
    while len(rows) < n_count:
        level = rng.integers(0, 4, n)
        rows += [(level == k).astype(float) for k in range(min(4, n_count - len(rows)))]
    zeros = (0.1, 0.7, 0.85)
    rows += [
        rng.lognormal(9 + k % 3, 1.0, n) * (rng.random(n) >= zeros[k % 3]) for k in range(n_amount)
    ]
    return np.vstack(rows[:m])


def _blocks(size: str, seed: int, shapes: dict[str, tuple[int, int, int]], sparse_truth: bool):
    blocks, n, m = shapes[size]
    rng = np.random.default_rng([seed, 7_919 if sparse_truth else 104_729])
    mats = [sp.csr_matrix(_block(rng, n, m)) for _ in range(blocks)]
    X = sp.block_diag(mats, format="csr")
    N = X.shape[1]
    d = np.full(N, 100.0)
    if sparse_truth:
        g = np.where(rng.random(N) < 0.1, rng.uniform(2.0, 10.0, N), 0.0)
    else:
        g = rng.uniform(0.7, 1.4, N)
    names = [f"area{a:03d}/row{j:02d}" for a in range(blocks) for j in range(m)]
    groups = [f"row{j:02d}" for _ in range(blocks) for j in range(m)]
    return X, X @ (d * g), d, names, groups, {"blocks": blocks, "records": n, "rows": m}


_SPARSE = {"tiny": (2, 150, 10), "small": (4, 500, 16), "medium": (20, 2_000, 24),
           "large": (100, 5_000, 30)}  # fmt: skip
_QP = {"tiny": (3, 120, 8), "small": (10, 600, 12), "medium": (50, 2_000, 16),
       "large": (200, 5_000, 20)}  # fmt: skip


def _sparse_recovery(size: str, seed: int) -> Any:
    X, b, d, names, groups, params = _blocks(size, seed, _SPARSE, True)
    problem = CalibrationProblem(
        X, b, d, ratio_bounds=(0.0, 20.0), tolerance=0.01, target_names=names, groups=groups
    )
    return problem, {**params, "planted_nonzeros_share": 0.1}


def _bounded_qp(size: str, seed: int) -> Any:
    X, b, d, names, groups, params = _blocks(size, seed, _QP, False)
    problem = CalibrationProblem(
        X, b, d, ratio_bounds=(0.5, 2.0), target_names=names, groups=groups
    )
    return problem, params


register_instance("survey-margins", _survey_margins, "survey sample to population margins")
register_instance("local-area", _local_area, "synthetic country, household x district columns")
register_instance("sparse-recovery", _sparse_recovery, "blocks with a sparse planted truth")
register_instance("bounded-qp", _bounded_qp, "per-area blocks, tight ratio bounds, exact")
register_instance("conflicting", _conflicting, "local-area with 2% noise: levels disagree")
register_instance("infeasible", _infeasible, "survey margins with 0.97 <= g <= 1.03")
register_instance("api", _api, "R survey's api schools: stratified sample to population margins")
register_instance("cps-state", _cps_state, "CPS tax units to North Carolina's published targets")
