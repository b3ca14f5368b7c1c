"""Checking what :func:`~calibopt.stacking.stack` is given: dataset, geographies, weights, subset.

Every problem becomes an :class:`~calibopt.InvalidProblemError` that says what is wrong, where
(the column, geography and household of a bad weight) and how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import Dataset
from ..datasets.rules import GeographyRules
from ..errors import InvalidProblemError
from ..matrix.columns import ColumnMap

__all__ = ["as_columns", "as_dataset", "as_weights", "subset_positions"]


def as_dataset(dataset: Any, rules: GeographyRules | None) -> tuple[Dataset, GeographyRules | None]:
    """A :class:`Dataset` from a Dataset, an HDF5 path, ``{entity: DataFrame}`` or an object
    with a ``dataset`` (and ``rules``) attribute such as a synthetic country."""
    if isinstance(dataset, Dataset):
        ds = dataset
    elif isinstance(dataset, str | os.PathLike):
        ds = Dataset.from_hdf5(dataset)
    elif isinstance(dataset, Mapping):
        ds = Dataset(dataset)
    elif isinstance(getattr(dataset, "dataset", None), Dataset):
        ds = dataset.dataset
        if rules is None:
            rules = getattr(dataset, "rules", None)
    else:
        raise InvalidProblemError(
            f"`dataset` must be a calibopt Dataset, the path of a dataset HDF5 file, or "
            f"{{entity: DataFrame}}; got {type(dataset).__name__}."
        )
    if rules is not None and not isinstance(rules, GeographyRules):
        raise InvalidProblemError(
            f"`rules` must be a calibopt.datasets.GeographyRules, got {type(rules).__name__}."
        )
    return ds, rules


def as_columns(geographies: Any, dataset: Dataset, level: str | None) -> ColumnMap:
    """The column map of the weights: from a CalibrationMatrix, a ColumnMap, or the list of
    calibrated geographies in column-block order (level inferred: all < 100 means states)."""
    columns = getattr(geographies, "columns", geographies)
    if isinstance(columns, ColumnMap):
        if level is not None and level != columns.level:
            raise InvalidProblemError(
                f"level={level!r} but the matrix has {columns.level}-level columns."
            )
        ids = dataset.ids("household")
        if columns.n_households != ids.size or not np.array_equal(columns.household_ids, ids):
            raise InvalidProblemError(
                f"the matrix columns were built on other households ({columns.n_households:,} "
                f"households) than the dataset's ({ids.size:,}, or in another order); stack "
                f"with the dataset the matrix was built from."
            )
    else:
        codes = np.atleast_1d(np.asarray(geographies, dtype=object)).tolist()
        if not codes or np.ndim(geographies) > 1:
            raise InvalidProblemError(
                "`geographies` must be a CalibrationMatrix, a ColumnMap or a non-empty list of "
                "district GEOIDs / state FIPS codes in column-block order."
            )
        if level is None:
            try:
                level = "state" if max(int(str(g).strip()) for g in codes) < 100 else "district"
            except ValueError:
                level = "district"  # the column map says what is wrong with the codes
        columns = ColumnMap(codes, dataset.ids("household"), level=level)
    return columns


def as_weights(weights: Any, columns: ColumnMap) -> np.ndarray:
    """The flat float64 weight vector, checked: length, finite, non-negative.

    Accepts a vector over the columns, a ``(n_geographies, n_households)`` array, or a
    :class:`~calibopt.CalibrationResult`.
    """
    if hasattr(weights, "weights") and not isinstance(weights, np.ndarray):
        weights = weights.weights
    if isinstance(weights, pd.Series | pd.DataFrame):
        weights = weights.to_numpy()
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidProblemError(f"weights must be numbers ({exc}).") from None
    n_geo, n_hh = columns.n_geographies, columns.n_households
    if w.ndim == 2 and w.shape == (n_geo, n_hh):
        w = w.reshape(-1)
    if w.ndim != 1 or w.size != columns.n_columns:
        raise InvalidProblemError(
            f"weights have shape {w.shape} but the calibration has {n_geo:,} {columns.level}s "
            f"x {n_hh:,} households = {columns.n_columns:,} columns (geography-major: column "
            f"g * {n_hh:,} + h); pass the weight vector of the matrix these geographies "
            f"belong to."
        )
    lo, hi = (float(np.min(w)), float(np.max(w))) if w.size else (0.0, 0.0)
    if np.isnan(lo) or np.isnan(hi) or np.isinf(hi) or lo < 0:
        if np.isnan(lo) or np.isnan(hi):
            what, bad = "NaN", np.flatnonzero(np.isnan(w))
        elif np.isinf(hi):
            what, bad = "infinite", np.flatnonzero(np.isinf(w))
        else:
            what, bad = "negative", np.flatnonzero(w < 0)
        where = columns.locate(bad[:3])
        examples = "; ".join(
            f"column {r.column} ({columns.level} {r.geography}, household {r.household_id}) "
            f"= {w[r.column]!r}"
            for r in where.itertuples()
        )
        raise InvalidProblemError(
            f"{bad.size:,} weight(s) are {what}, e.g. {examples}; weights must be finite and "
            f">= 0 (a household with weight 0 is left out of the file)."
        )
    return w


def subset_positions(subset: Any, columns: ColumnMap) -> np.ndarray:
    """Sorted block positions of the geographies to write.

    ``None`` or ``"all"``: every calibrated geography. Otherwise one or more GEOIDs / FIPS
    codes (ints or digit strings); with district columns a state FIPS code (< 100) stands
    for every calibrated district of that state.
    """
    geos = columns.geographies
    if subset is None or (isinstance(subset, str) and subset.strip().lower() == "all"):
        return np.arange(geos.size)
    items = [subset] if isinstance(subset, str | int | np.integer) else list(subset)
    if not items:
        raise InvalidProblemError("subset is empty; pass None (all) or some geographies.")
    codes = []
    for item in items:
        try:
            codes.append(int(str(item).strip()) if isinstance(item, str) else int(item))
        except (TypeError, ValueError):
            raise InvalidProblemError(
                f"subset item {item!r} is not a GEOID or FIPS code (an integer)."
            ) from None
    states = columns.states
    positions = []
    unknown = []
    for code in codes:
        if columns.level == "district" and code < 100:
            pos = np.flatnonzero(states == code)
        else:
            pos = np.flatnonzero(geos == code)
        if pos.size == 0:
            unknown.append(code)
        positions.append(pos)
    if unknown:
        shown = geos[:12].tolist()
        raise InvalidProblemError(
            f"subset names {unknown[:10]}, not among the calibrated {columns.level}s"
            f"{' (or their states)' if columns.level == 'district' else ''}: {shown}"
            f"{' ...' if geos.size > 12 else ''} ({geos.size} in all)."
        )
    return np.unique(np.concatenate(positions))
