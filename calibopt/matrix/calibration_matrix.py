"""A built local-area calibration matrix: ``X``, its targets and its columns, and the problem.

:class:`CalibrationMatrix` is what :class:`~calibopt.matrix.MatrixBuilder` returns and
:func:`~calibopt.matrix.storage.load_matrix` reads back. It never solves:
:meth:`CalibrationMatrix.to_problem` hands a :class:`~calibopt.CalibrationProblem` to the
caller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..problem import CalibrationProblem
from .columns import ColumnMap
from .groups import group_table

__all__ = ["CalibrationMatrix"]


@dataclass
class CalibrationMatrix:
    """A built local-area matrix and everything needed to read it.

    Attributes
    ----------
    targets : DataFrame
        Row ``i`` describes row ``i`` of ``X``: the database columns (``target_id``,
        ``stratum_id``, ``variable``, ``period``, ``value``, ``original_value``,
        ``uprating_factor``, ``tolerance`` (a fraction, NaN for none), ``geo_level``,
        ``geographic_id``, ``domain_variable``, ``constraints``, ...) plus ``name``
        (unique), ``group`` (see :mod:`calibopt.matrix.groups`) and ``nnz`` (non-zeros in
        the row).
    X : scipy.sparse.csr_matrix
        ``(n_targets, n_geographies * n_households)``, float64.
    columns : ColumnMap
        Column <-> (household, geography).
    period : int
    info : dict
        Build facts: timings, rule-set calls, dropped targets.
    """

    targets: pd.DataFrame
    X: sp.csr_matrix
    columns: ColumnMap
    period: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> np.ndarray:
        """Group label of every row."""
        return self.targets["group"].to_numpy(dtype=object)

    def group_table(self) -> pd.DataFrame:
        """One row per target group (see :func:`calibopt.matrix.groups.group_table`)."""
        return group_table(self.targets)

    def to_problem(
        self,
        initial_weights: Any = None,
        *,
        outside_share: float = 0.01,
        bounds: tuple[Any, Any] | None = (0.0, None),
        ratio_bounds: tuple[Any, Any] | None = None,
        default_tolerance: float = 0.0,
        consistency: Any = None,
        consistency_tolerance: float = 0.0,
    ) -> CalibrationProblem:
        """The :class:`~calibopt.CalibrationProblem` of this matrix.

        Parameters
        ----------
        initial_weights
            One weight per column; default the design prior
            :meth:`ColumnMap.design_weights` (each household's design weight spread over
            the calibrated districts of its own state, ``outside_share`` of it over the
            others).
        outside_share
            Share of a household's design weight placed outside its own state.
        bounds, ratio_bounds
            As in :class:`~calibopt.CalibrationProblem` (default: non-negative weights).
        default_tolerance
            Relative tolerance (a fraction, 0.01 = 1%) of targets whose ``tolerance`` is
            empty; the others keep their own, already a fraction.
        consistency
            Cross-area consistency (:mod:`calibopt.matrix.consistency`): each household's
            weights across areas add up to its national weight -- ``True`` / ``"design"``
            (the design weights), an array (household row order) or a Series by household id.
            One row per household is appended (names ``consistency/<household id>``, group
            ``"consistency"``): exact methods meet it as a constraint, penalty methods
            (``hard-concrete``, ``gradient``) as a penalty. None (default): no such rows.
        consistency_tolerance
            Relative band of the consistency rows (0: exact; 0.05: within 5%).
        """
        if initial_weights is None:
            initial_weights = self.columns.design_weights(outside_share)
        tol = self.targets["tolerance"].to_numpy(dtype=float, na_value=np.nan)
        tol = np.where(np.isnan(tol), default_tolerance, tol)
        X = self.X
        b = self.targets["value"].to_numpy(dtype=float)
        names = self.targets["name"].tolist()
        groups = self.groups
        if consistency is not None and consistency is not False:
            from ..validate import number
            from .consistency import CONSISTENCY_GROUP, consistency_rows, national_weights

            band = number("consistency_tolerance", consistency_tolerance, low=0.0)
            W = national_weights(self.columns, consistency)
            H = self.columns.n_households
            X = sp.vstack([X, consistency_rows(self.columns)], format="csr")
            b = np.concatenate([b, W])
            tol = np.concatenate([tol, np.full(H, band)])
            names = names + [f"consistency/{i}" for i in self.columns.household_ids]
            groups = np.concatenate([groups, np.full(H, CONSISTENCY_GROUP, dtype=object)])
        return CalibrationProblem(
            X,
            b,
            initial_weights=initial_weights,
            bounds=bounds,
            ratio_bounds=ratio_bounds,
            tolerance=tol,
            target_names=names,
            groups=groups,
        )

    def inconsistency(self, weights: Any, national: Any = True) -> dict[str, Any]:
        """How far each household's area weights are from its national weight (the design
        weight by default); see :func:`calibopt.matrix.consistency.inconsistency`. Weights of
        a problem with consistency rows are the same vector (the rows add no unit)."""
        from .consistency import inconsistency

        return inconsistency(self.columns, weights, national)

    def tracer(self) -> Any:
        """A :class:`~calibopt.matrix.MatrixTracer` over this matrix."""
        from .tracer import MatrixTracer

        return MatrixTracer(self)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        """Write the matrix, targets and column map to one HDF5 file (atomically)."""
        from .storage import save_matrix

        save_matrix(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationMatrix:
        """Read a file written by :meth:`save`."""
        from .storage import load_matrix

        return load_matrix(path)

    def __repr__(self) -> str:
        m, n = self.X.shape
        return (
            f"CalibrationMatrix({m:,} targets x {n:,} columns = {self.columns.n_geographies} "
            f"{self.columns.level}s x {self.columns.n_households:,} households, "
            f"nnz={self.X.nnz:,})"
        )
