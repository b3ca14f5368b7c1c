"""Per-area problems from a local-area matrix, and a prior that lets every unit serve every area.

Local-area calibration can be solved as one problem over all columns (every unit placed in
every area, national targets tying the areas together) or, as the published area-weighting
workflows do, as one small problem per area: the area's own targets over the area's column
block (all units placed there). :func:`area_problem` cuts that problem out of a built
:class:`~calibopt.matrix.CalibrationMatrix`; :func:`shared_prior` gives the initial weights
that make it meaningful: part of each unit's design weight stays in its home area, the rest
is spread over all areas in proportion to a share (population, returns), so that any unit can
be a donor anywhere with a non-zero prior.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from .calibration_matrix import CalibrationMatrix
from .columns import ColumnMap

__all__ = ["area_problem", "area_rows", "area_shares", "shared_prior"]


def area_shares(
    matrix: CalibrationMatrix, variable: str = "person_count", total: float | None = None
) -> np.ndarray:
    """Each area's share of ``total`` by its domain-free ``variable`` target (e.g.
    population), in column-block order.

    ``total`` defaults to the sum over the matrix's areas; pass the national figure when the
    matrix calibrates only some areas (the shares then add up to less than 1).

    Raises
    ------
    InvalidProblemError
        An area has no such target.
    """
    t = matrix.targets
    geos = matrix.columns.geographies
    pick = t.loc[
        (t["variable"] == variable) & (t["domain_variable"] == "") & (t["geo_level"] != "national")
    ]
    values = dict(zip(pick["geographic_id"].astype(int), pick["value"].astype(float), strict=True))
    missing = [int(g) for g in geos if int(g) not in values]
    if missing:
        raise InvalidProblemError(
            f"area(s) {missing[:10]} have no domain-free {variable!r} target to share by; "
            f"pass shares explicitly."
        )
    v = np.array([values[int(g)] for g in geos])
    return v / (v.sum() if total is None else float(total))


def shared_prior(
    columns: ColumnMap, shares: Sequence[float] | np.ndarray, home_share: float = 0.5
) -> np.ndarray:
    """Initial weights (geography-major): ``d[g, h] = w_h ((1 - a) [home(h) = g] + a s_g)``.

    Parameters
    ----------
    columns
        The matrix's column map (design weights and home states of the units).
    shares
        One share per area (adding up to 1 over all areas; less when only some areas are
        calibrated), e.g. :func:`area_shares`.
    home_share
        ``1 - a``: the part of each unit's weight kept in its home area (state-level
        columns; for district columns the home state's districts split it evenly). 0 gives
        the published workflows' prior (every unit in every area, scaled by the area's share).

    Each unit's weights add up to its design weight over the areas (when the shares add up
    to 1 and its home area is calibrated); area ``g`` starts with ``(1 - a) W_g + a s_g W``.
    """
    if columns.household_weight is None or columns.home_state is None:
        raise InvalidProblemError("shared_prior needs household weights and home states.")
    s = np.asarray(shares, dtype=float)
    if s.shape != (columns.n_geographies,) or np.any(s < 0) or s.sum() > 1 + 1e-9:
        raise InvalidProblemError(
            f"shares must be {columns.n_geographies} non-negative numbers adding up to at most 1."
        )
    if not 0 <= home_share <= 1:
        raise InvalidProblemError(f"home_share must be in [0, 1], got {home_share}.")
    w = columns.household_weight
    states = columns.states
    k = np.array([np.count_nonzero(states == st) for st in states], dtype=float)
    home = (states[:, None] == columns.home_state[None, :]) / k[:, None]
    return (w[None, :] * (home_share * home + (1 - home_share) * s[:, None])).reshape(-1)


def area_rows(matrix: CalibrationMatrix, geography: Any) -> np.ndarray:
    """Row positions of the targets of one area (its ``geographic_id``)."""
    ids = matrix.targets["geographic_id"].astype(str).to_numpy()
    return np.flatnonzero(ids == str(int(geography)))


def area_problem(
    matrix: CalibrationMatrix,
    geography: Any,
    initial_weights: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    ratio_bounds: tuple[Any, Any] | None = (0.0, 10.0),
    bounds: tuple[Any, Any] | None = (0.0, None),
    tolerance: float | np.ndarray | None = None,
) -> CalibrationProblem:
    """The problem of one area: its targets over its column block.

    Parameters
    ----------
    matrix
        A built local-area matrix.
    geography
        The area (a state FIPS code or district GEOID of the matrix's columns).
    initial_weights
        Weights of all the matrix's columns (e.g. :func:`shared_prior`); the area's block
        is taken.
    rows
        Target rows to use (default :func:`area_rows`, the area's own targets).
    ratio_bounds, bounds
        As in :class:`~calibopt.CalibrationProblem`; default ``0 <= w / d <= 10``.
    tolerance
        Relative tolerance (fraction); default the targets' own (0 where none).

    Returns
    -------
    CalibrationProblem
        ``len(rows)`` targets x ``n_households`` units; ``unit_ids`` are the column numbers
        in the full matrix, so ``weights`` go back with ``full[problem.unit_ids] = w``.
    """
    cols = matrix.columns
    block = cols.geography_columns(geography)
    rows = area_rows(matrix, geography) if rows is None else np.asarray(rows)
    if rows.size == 0:
        raise InvalidProblemError(f"area {geography} has no targets in this matrix.")
    d = np.asarray(initial_weights, dtype=float)
    if d.shape != (cols.n_columns,):
        raise InvalidProblemError(
            f"initial_weights has shape {d.shape}, expected ({cols.n_columns},)."
        )
    t = matrix.targets.iloc[rows]
    if tolerance is None:
        tol = t["tolerance"].to_numpy(dtype=float, na_value=np.nan)
        tolerance = np.where(np.isnan(tol), 0.0, tol)
    X = matrix.X[rows][:, block]
    return CalibrationProblem(
        X,
        t["value"].to_numpy(dtype=float),
        initial_weights=d[block],
        bounds=bounds,
        ratio_bounds=ratio_bounds,
        tolerance=tolerance,
        target_names=t["name"].tolist(),
        groups=t["group"].to_numpy(dtype=object),
        unit_ids=np.arange(block.start, block.stop),
    )
