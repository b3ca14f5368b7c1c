"""Check a stacked dataset against the matrix: every target's total from the file = X @ w.

The file's totals are computed from the file alone: each target's variable and non-geographic
constraints are evaluated on the file's own persons, tax units and households (geography-
dependent variables as stored), multiplied by the stored ``household_weight`` and summed over
the households whose stored ``state_fips`` / ``congressional_district_geoid`` is the target's
geography. The expected totals are ``X @ w`` with the weights of geographies not in the file
set to zero.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from ..datasets.dataset import GEOGRAPHY_VARIABLES
from ..errors import InvalidProblemError
from ..matrix.evaluate import ContributionEvaluator
from ..targets.constraints import domain_of
from .inputs import as_weights
from .stacked import StackedDataset

__all__ = ["file_totals", "verify"]

STATE, DISTRICT = GEOGRAPHY_VARIABLES


def file_totals(stacked: StackedDataset | Any, targets: pd.DataFrame) -> np.ndarray:
    """Each target's weighted total computed from a stacked dataset alone.

    Parameters
    ----------
    stacked
        A :class:`StackedDataset` (or a path to load).
    targets
        A matrix's targets table (``variable``, ``constraints``, ``geo_level``,
        ``geographic_id``), e.g. ``CalibrationMatrix.targets``.
    """
    stacked = _as_stacked(stacked)
    ds = stacked.dataset
    hh = ds.household
    weight = hh["household_weight"].to_numpy(dtype=np.float64)
    geo = {"state": hh[STATE].to_numpy(dtype=np.int64)}
    if DISTRICT in hh.columns:
        geo["district"] = hh[DISTRICT].to_numpy(dtype=np.int64)
    ev = ContributionEvaluator(ds)
    out = np.zeros(len(targets))
    keys = [
        (var, domain_of(cons))
        for var, cons in zip(targets["variable"], targets["constraints"], strict=True)
    ]
    levels = targets["geo_level"].to_numpy()
    gids = targets["geographic_id"].astype(str).to_numpy()
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    for (var, domain), idx in groups.items():
        cw = ev.contribution(var, domain, None, where=f"target {var}") * weight
        sums: dict[str, dict[int, float]] = {}
        for lvl, codes in geo.items():
            uniq, inv = np.unique(codes, return_inverse=True)
            sums[lvl] = dict(zip(uniq.tolist(), np.bincount(inv, weights=cw).tolist()))
        for i in idx:
            lvl = levels[i]
            if lvl == "national":
                out[i] = cw.sum()
            elif lvl not in sums:
                raise InvalidProblemError(
                    f"target {targets['name'].iloc[i] if 'name' in targets else i} is "
                    f"{lvl}-level but the file has no {DISTRICT!r} column."
                )
            else:
                out[i] = sums[lvl].get(int(gids[i]), 0.0)
        ev.clear()
    return out


def verify(stacked: StackedDataset | str | os.PathLike, matrix: Any, weights: Any) -> pd.DataFrame:
    """Per target: the expected total ``X @ w`` (geographies in the file only), the total
    computed from the file, and their difference.

    Parameters
    ----------
    stacked
        A :class:`StackedDataset` or the path of a stacked file.
    matrix
        The :class:`~calibopt.matrix.CalibrationMatrix` (or its file) the weights calibrate.
    weights
        The weights the file was stacked from.

    Returns
    -------
    DataFrame
        ``name``, ``geo_level``, ``geographic_id``, ``expected``, ``file_total``, ``error``
        (file - expected) and ``rel_error`` (``error / |expected|``; 0 when both are 0).
    """
    from ..matrix.calibration_matrix import CalibrationMatrix

    stacked = _as_stacked(stacked)
    if not isinstance(matrix, CalibrationMatrix):
        matrix = CalibrationMatrix.load(matrix)
    columns = matrix.columns
    if not np.array_equal(columns.geographies, stacked.ids.geographies):
        raise InvalidProblemError(
            "the stacked file was built for other calibrated geographies than the matrix's "
            f"({stacked.ids.geographies.size} vs {columns.n_geographies})."
        )
    w = as_weights(weights, columns)
    W = w.reshape(columns.n_geographies, columns.n_households)
    inside = np.zeros_like(W)
    pos = columns.geography_positions(stacked.geographies)
    inside[pos] = W[pos]
    expected = matrix.X @ inside.reshape(-1)
    total = file_totals(stacked, matrix.targets)
    error = total - expected
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(expected != 0, error / np.abs(expected), np.where(error == 0, 0.0, np.inf))
    return pd.DataFrame(
        {
            "name": matrix.targets["name"].to_numpy(),
            "geo_level": matrix.targets["geo_level"].to_numpy(),
            "geographic_id": matrix.targets["geographic_id"].to_numpy(),
            "expected": expected,
            "file_total": total,
            "error": error,
            "rel_error": rel,
        }
    )


def _as_stacked(stacked: Any) -> StackedDataset:
    if isinstance(stacked, StackedDataset):
        return stacked
    if isinstance(stacked, str | os.PathLike):
        from .files import load

        return load(stacked)
    raise InvalidProblemError(
        f"expected a StackedDataset or the path of a stacked file, got {type(stacked).__name__}."
    )
