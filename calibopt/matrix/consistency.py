"""Cross-area consistency: one household's weights across areas add up to its national weight.

A local-area matrix places every household in every area (column ``g * H + h``); calibrating
the areas independently lets a household's area weights add up to anything -- the published
area-weighting workflow only reports the inconsistency (up to 16.6x). Here it is a constraint:
one row per household, ``sum_g w_(g,h) = W_h`` (or within ``tol`` of it), added to the
problem by :meth:`CalibrationMatrix.to_problem` with ``consistency=``. The exact methods meet
it like any target (to their accuracy); penalty methods (``hard-concrete``, ``gradient``)
trade it off like any target. :func:`inconsistency` measures it on any weights. Nothing here
solves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import InvalidProblemError
from .columns import ColumnMap

__all__ = ["CONSISTENCY_GROUP", "consistency_rows", "inconsistency", "national_weights"]

CONSISTENCY_GROUP = "consistency"
"""Group label of the consistency rows."""


def national_weights(columns: ColumnMap, national: Any) -> np.ndarray:
    """One national weight per household (row order) from ``national``.

    ``True`` or ``"design"``: the households' design weights; an array in household row
    order; or a pandas Series indexed by household id.
    """
    if national is True or (isinstance(national, str) and national == "design"):
        if columns.household_weight is None:
            raise InvalidProblemError(
                "consistency with the design weights needs each household's weight; build "
                "the matrix from a dataset with 'household_weight', or pass the national "
                "weights (one per household)."
            )
        W = columns.household_weight
    elif hasattr(national, "index") and hasattr(national, "reindex"):
        W = national.reindex(columns.household_ids).to_numpy(dtype=float)
        if np.isnan(W).any():
            missing = columns.household_ids[np.isnan(W)][:5].tolist()
            raise InvalidProblemError(f"national weights missing for household id(s) {missing}.")
    else:
        W = np.asarray(national, dtype=float)
    W = np.asarray(W, dtype=np.float64)
    if W.shape != (columns.n_households,):
        raise InvalidProblemError(
            f"national weights: give one per household ({columns.n_households}), got shape "
            f"{W.shape}."
        )
    if not np.all(np.isfinite(W)) or np.any(W < 0):
        raise InvalidProblemError("national weights must be finite and >= 0.")
    return W


def consistency_rows(columns: ColumnMap) -> sp.csr_matrix:
    """The ``H x (G H)`` matrix whose row ``h`` sums household ``h``'s weights over areas."""
    G, H = columns.n_geographies, columns.n_households
    indices = (np.arange(G, dtype=np.int64)[None, :] * H + np.arange(H)[:, None]).ravel()
    indptr = np.arange(0, G * H + 1, G, dtype=np.int64)
    idx_type = np.int32 if G * H < 2**31 else np.int64
    return sp.csr_matrix(
        (np.ones(G * H), indices.astype(idx_type), indptr.astype(idx_type)), shape=(H, G * H)
    )


def inconsistency(columns: ColumnMap, weights: Any, national: Any = True) -> dict[str, Any]:
    """How far each household's area weights are from its national weight.

    Returns
    -------
    dict
        ``factor`` (per household ``sum_g w_(g,h) / W_h``, NaN where ``W_h = 0``),
        ``max_factor``, ``min_factor``, ``worst`` (``max(max_factor, 1 / min_factor)`` over
        households kept somewhere), ``dropped`` (households with ``W_h > 0`` whose area
        weights are all 0), ``max_abs_rel_error`` (``max |f - 1|``).
    """
    W = national_weights(columns, national)
    total = columns.reshape(np.asarray(weights, dtype=np.float64)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(W > 0, total / W, np.nan)
    pos = W > 0
    kept = pos & (total > 0)
    mx = float(np.nanmax(f[kept])) if kept.any() else float("nan")
    mn = float(np.nanmin(f[kept])) if kept.any() else float("nan")
    return {
        "factor": f,
        "max_factor": mx,
        "min_factor": mn,
        "worst": max(mx, 1.0 / mn) if kept.any() else float("nan"),
        "dropped": int(np.sum(pos & (total == 0))),
        "max_abs_rel_error": float(np.nanmax(np.abs(f[pos] - 1.0))) if pos.any() else 0.0,
    }
