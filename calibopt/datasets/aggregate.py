"""Moving values between entities: the group-by aggregations behind :meth:`Dataset.map_to`."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidProblemError

__all__ = ["AGGREGATIONS", "aggregate", "is_up"]

AGGREGATIONS = ("sum", "any", "all", "count", "min", "max", "mean")
"""The aggregations of :meth:`Dataset.map_to` (``how=``)."""


def is_up(source: str, target: str) -> bool:
    """True for an aggregation (person -> group, group -> household)."""
    return source != target and (source == "person" or target == "household")


def aggregate(
    vals: np.ndarray, index: np.ndarray, n: int, how: str, mask: np.ndarray | None
) -> np.ndarray:
    """Group-by ``index`` (positions into ``n`` groups) with one of the named aggregations."""
    if how not in AGGREGATIONS:
        raise InvalidProblemError(f"map_to: how={how!r} is not one of {list(AGGREGATIONS)}.")
    if mask is not None:
        vals, index = vals[mask], index[mask]
    if how == "sum":
        return np.bincount(index, weights=vals.astype(np.float64, copy=False), minlength=n)
    if how in ("any", "count"):
        hits = np.bincount(index, weights=(vals != 0).astype(np.float64), minlength=n)
        return hits > 0 if how == "any" else hits
    if how == "all":
        misses = np.bincount(index, weights=(vals == 0).astype(np.float64), minlength=n)
        return misses == 0
    if how == "mean":
        total = np.bincount(index, weights=vals.astype(np.float64, copy=False), minlength=n)
        count = np.bincount(index, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), 0.0)
    out = np.zeros(n)
    ufunc = np.minimum if how == "min" else np.maximum
    if vals.size:
        order = np.argsort(index, kind="stable")
        idx_sorted = index[order]
        starts = np.flatnonzero(np.r_[True, idx_sorted[1:] != idx_sorted[:-1]])
        out[idx_sorted[starts]] = ufunc.reduceat(vals[order].astype(np.float64), starts)
    return out
