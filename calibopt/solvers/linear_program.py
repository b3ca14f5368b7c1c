"""One data class for the linear and mixed-integer programs calibopt builds.

``min cost' x  s.t.  row_lower <= A x <= row_upper,  col_lower <= x <= col_upper,
x_i integer where integer[i]``. Infinite entries are absent bounds. The HiGHS bridge
(:mod:`calibopt.solvers.highs`) and the cvxpy bridge (:mod:`calibopt.solvers.cvx`) both take
this object, so a model is built once and solved by any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

__all__ = ["LinearProgram"]


@dataclass(frozen=True)
class LinearProgram:
    """A (mixed-integer) linear program in row-bound form.

    Attributes
    ----------
    cost, col_lower, col_upper : ndarray
        Objective and column bounds (length ``n_cols``).
    A : scipy.sparse.csc_matrix
        Constraint matrix (``n_rows x n_cols``).
    row_lower, row_upper : ndarray
        Row bounds (length ``n_rows``).
    integer : ndarray of bool or None
        Integer columns (None: a pure LP).
    """

    cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    A: sp.csc_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    integer: np.ndarray | None = None

    def __post_init__(self) -> None:
        m, n = self.A.shape
        for name, arr, size in (
            ("cost", self.cost, n),
            ("col_lower", self.col_lower, n),
            ("col_upper", self.col_upper, n),
            ("row_lower", self.row_lower, m),
            ("row_upper", self.row_upper, m),
        ):
            if np.shape(arr) != (size,):
                raise ValueError(f"LinearProgram.{name} has shape {np.shape(arr)}, not ({size},)")

    @property
    def n_cols(self) -> int:
        """Number of columns (variables)."""
        return self.A.shape[1]

    @property
    def n_rows(self) -> int:
        """Number of rows (constraints)."""
        return self.A.shape[0]

    @property
    def is_mip(self) -> bool:
        """True when some column is integer."""
        return self.integer is not None and bool(np.any(self.integer))

    def with_cost(self, cost: np.ndarray) -> LinearProgram:
        """The same program with another objective."""
        return replace(self, cost=np.asarray(cost, dtype=np.float64))
