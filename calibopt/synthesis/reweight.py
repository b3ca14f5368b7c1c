"""Household-level reweighting: a dataset and a targets database -> one weight per household.

Targets at person, tax-unit and household level become one problem whose columns are
households: :class:`~calibopt.matrix.MatrixBuilder` already evaluates person and tax-unit
strata and counts them into their household's column, so every member of a household shares
its weight. Each household is placed in its own home geography (its
``congressional_district_geoid``, or ``state_fips`` with ``level="state"``): the matrix is
built one home state at a time (that state's households in that state's geographies, national
and state targets kept whole) and the home columns are kept, so memory scales with households
x districts of one state, not with all districts. A person-level weight vector is refused.

>>> from calibopt.datasets import synthetic_country
>>> from calibopt.synthesis import HierarchicalSynthesizer, calibrate_households
>>> country = synthetic_country("tiny")
>>> agg = {"household_size": None}
>>> synth = HierarchicalSynthesizer(aggregates=agg).fit(country.dataset, rules=country.rules)
>>> population = synth.generate(1200, seed=1, rules=country.rules)
>>> cal = calibrate_households(population, country.targets_database(), rules=country.rules,
...                            filter={"variables": ["household_count", "person_count"]})
>>> cal.result.status, cal.weights.shape
('optimal', (1200,))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..calibrate import calibrate
from ..datasets.dataset import GEOGRAPHY_VARIABLES, Dataset
from ..datasets.rules import GeographyRules
from ..errors import InvalidProblemError
from ..matrix import MatrixBuilder
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..targets import TargetFilter, TargetsDatabase
from ..validate import choice, float_vector

__all__ = [
    "HouseholdCalibration",
    "HouseholdMatrix",
    "calibrate_households",
    "household_matrix",
    "household_weights",
]

STATE, DISTRICT = GEOGRAPHY_VARIABLES


def household_weights(dataset: Dataset, weights: Any, name: str = "weights") -> np.ndarray:
    """One finite non-negative weight per household, checked; a person-level vector is
    refused (household calibration gives every member of a household the same weight)."""
    if hasattr(weights, "weights") and not isinstance(weights, np.ndarray):
        weights = weights.weights
    w = np.asarray(weights)
    n_hh, n_p = dataset.n_households, dataset.n_persons
    if w.ndim == 1 and w.size == n_p and n_p != n_hh:
        raise InvalidProblemError(
            f"`{name}` has one value per person ({n_p:,}), but weights here are household "
            f"weights ({n_hh:,} households): every member of a household shares one weight. "
            f"Pass one weight per household in dataset.household order (e.g. the weight of "
            f"each household's head)."
        )
    w = float_vector(w, name, n_hh)
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise InvalidProblemError(f"`{name}` must be finite and non-negative.")
    return w


def _home(dataset: Dataset, level: str) -> np.ndarray:
    col = DISTRICT if level == "district" else STATE
    if col not in dataset.household.columns:
        raise InvalidProblemError(
            f"household calibration at {level} level needs the household column {col!r} (each "
            f"household's home {level})."
        )
    return dataset.household[col].to_numpy(dtype=np.int64)


@dataclass
class HouseholdMatrix:
    """Targets x households: each household in its home geography.

    Attributes
    ----------
    targets : DataFrame
        One row per target (the matrix builder's columns, ``nnz`` recounted), by target id.
    X : scipy.sparse.csr_matrix
        ``(n_targets, n_households)``.
    dataset : Dataset
    dropped : DataFrame
        Targets left out: their geography has no household.
    """

    targets: pd.DataFrame
    X: sp.csr_matrix
    dataset: Dataset
    dropped: pd.DataFrame = field(default_factory=pd.DataFrame)

    def to_problem(
        self,
        initial_weights: Any = None,
        *,
        bounds: tuple[Any, Any] | None = (0.0, None),
        default_tolerance: float = 0.0,
    ) -> CalibrationProblem:
        """The calibration problem (initial weights: the households' ``household_weight``)."""
        if initial_weights is None:
            if "household_weight" not in self.dataset.household.columns:
                raise InvalidProblemError(
                    "the dataset has no household_weight: pass initial_weights (one per household)."
                )
            initial_weights = self.dataset.household["household_weight"].to_numpy()
        d = household_weights(self.dataset, initial_weights, "initial_weights")
        tol = self.targets["tolerance"].to_numpy(dtype=float, na_value=np.nan)
        return CalibrationProblem(
            self.X,
            self.targets["value"].to_numpy(dtype=float),
            initial_weights=d,
            bounds=bounds,
            tolerance=np.where(np.isnan(tol), default_tolerance, tol),
            target_names=self.targets["name"].tolist(),
            groups=self.targets["group"].to_numpy(dtype=object),
        )


def household_matrix(
    database: TargetsDatabase | str | os.PathLike,
    dataset: Dataset,
    *,
    rules: GeographyRules | None = None,
    level: str = "district",
    filter: TargetFilter | dict[str, Any] | None = None,
    period: int | None = None,
) -> HouseholdMatrix:
    """Build the targets x households matrix (see the module docstring).

    Raises
    ------
    InvalidProblemError
        A dataset without home geography columns, a filter by geographic ids (filter by
        level or variable instead), or no target left.
    """
    level = choice("level", level, ("district", "state"))
    if not isinstance(dataset, Dataset):
        raise InvalidProblemError(f"`dataset` must be a Dataset, got {type(dataset).__name__}.")
    db = database if isinstance(database, TargetsDatabase) else TargetsDatabase(database)
    flt = TargetFilter.from_mapping(filter)
    if flt.geographic_ids is not None:
        raise InvalidProblemError(
            "household_matrix takes filters by variable, domain and level, not geographic_ids "
            "(every household is placed in its own geography): subset the dataset instead."
        )
    home = _home(dataset, level)
    state = home // 100 if level == "district" else home
    blocks, frames, dropped = [], [], []
    for s in np.unique(state):
        rows = np.flatnonzero(state == s)
        sub = dataset if rows.size == dataset.n_households else dataset.subset(rows)
        geos = np.unique(home[rows])
        built = MatrixBuilder(
            db, sub, geos, period=period, rules=rules, level=level, partial="keep"
        ).build(flt, progress=False)
        cols = np.searchsorted(geos, home[rows]) * rows.size + np.arange(rows.size)
        block = built.X[:, cols].tocoo()
        ids = built.targets["target_id"].to_numpy()
        blocks.append((ids[block.row], rows[block.col], block.data))
        frames.append(built.targets)
        dropped.append(built.info["dropped_targets"])
    targets = (
        pd.concat(frames, ignore_index=True)
        .drop_duplicates("target_id")
        .sort_values("target_id", kind="stable")
        .reset_index(drop=True)
    )
    index = pd.Index(targets["target_id"])
    r = np.concatenate([index.get_indexer(b[0]) for b in blocks])
    c = np.concatenate([b[1] for b in blocks])
    v = np.concatenate([b[2] for b in blocks])
    X = sp.csr_matrix((v, (r, c)), shape=(len(targets), dataset.n_households))
    X.sum_duplicates()
    targets["nnz"] = np.diff(X.indptr)
    left = pd.concat(dropped, ignore_index=True) if dropped else pd.DataFrame()
    if not left.empty:
        left = left.loc[~left["target_id"].isin(index)].drop_duplicates("target_id")
        left = left.reset_index(drop=True)
    return HouseholdMatrix(targets, X, dataset, left)


@dataclass
class HouseholdCalibration:
    """Calibrated household weights.

    Attributes
    ----------
    weights : ndarray
        One weight per household (dataset order).
    result : CalibrationResult
        The calibration (status, diagnostics from the weights).
    matrix : HouseholdMatrix
    """

    weights: np.ndarray
    result: CalibrationResult
    matrix: HouseholdMatrix

    @property
    def dataset(self) -> Dataset:
        return self.matrix.dataset

    def person_weights(self) -> np.ndarray:
        """Each person's weight: its household's (identical within households)."""
        return self.weights[self.dataset.household_index("person")]

    def to_dataset(self) -> Dataset:
        """The dataset with ``household_weight`` set to the calibrated weights."""
        return self.dataset.assign("household", household_weight=self.weights)

    def stack_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(geographies, (n_geographies, n_households) weights)`` with each household's
        weight in its home geography, for :func:`calibopt.stacking.stack`."""
        level = "district" if DISTRICT in self.dataset.household.columns else "state"
        home = _home(self.dataset, level)
        geos = np.unique(home)
        W = np.zeros((geos.size, home.size))
        W[np.searchsorted(geos, home), np.arange(home.size)] = self.weights
        return geos, W


def calibrate_households(
    dataset: Dataset,
    database: TargetsDatabase | str | os.PathLike,
    *,
    method: str = "raking",
    rules: GeographyRules | None = None,
    level: str = "district",
    filter: TargetFilter | dict[str, Any] | None = None,
    period: int | None = None,
    initial_weights: Any = None,
    bounds: tuple[Any, Any] | None = (0.0, None),
    default_tolerance: float = 0.0,
    solver: str | None = None,
    **options: Any,
) -> HouseholdCalibration:
    """Calibrate one weight per household to a targets database.

    Parameters
    ----------
    dataset
        Households, persons, tax units (e.g. a synthesised population).
    database
        A :class:`~calibopt.targets.TargetsDatabase` or its URL / SQLite path.
    method, solver, **options
        Passed to :func:`calibopt.calibrate`.
    rules, level, filter, period
        As for :class:`~calibopt.matrix.MatrixBuilder`; each household sits in its home
        district (``level="district"``) or state.
    initial_weights
        One per household (default: ``household_weight``); a person-level vector is refused.
    bounds, default_tolerance
        As for :meth:`HouseholdMatrix.to_problem`.

    Returns
    -------
    HouseholdCalibration
    """
    matrix = household_matrix(
        database, dataset, rules=rules, level=level, filter=filter, period=period
    )
    problem = matrix.to_problem(initial_weights, bounds=bounds, default_tolerance=default_tolerance)
    result = calibrate(problem, method=method, solver=solver, **options)
    return HouseholdCalibration(np.asarray(result.weights, dtype=np.float64), result, matrix)
