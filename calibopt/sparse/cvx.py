"""The same array-built (MI)LP as a cvxpy model, so any installed cvxpy solver can take it."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["cvxpy_from_arrays"]


def cvxpy_from_arrays(
    cost: np.ndarray,
    col_lower: np.ndarray,
    col_upper: np.ndarray,
    A: sp.spmatrix,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    integer: np.ndarray | None = None,
    *,
    parametric_cost: bool = False,
) -> tuple[Any, Any, Any, Any]:
    """``min cost'x : row_lower <= A x <= row_upper, col bounds, x_I integer`` in cvxpy.

    Parameters
    ----------
    parametric_cost
        Make the cost a non-negative ``cvxpy.Parameter`` (set ``.value`` and re-solve).

    Returns
    -------
    problem : cvxpy.Problem
    x_cont, x_int : cvxpy.Variable
        Continuous and integer parts (the integer part may be None); columns keep their
        order through :func:`assemble`: ``x[~integer] = x_cont``, ``x[integer] = x_int``.
    cost : cvxpy.Parameter or None
        The cost parameter when ``parametric_cost``.
    """
    import cvxpy as cp

    n = cost.size
    integer = np.zeros(n, bool) if integer is None else np.asarray(integer, bool)
    ci = np.flatnonzero(~integer)
    ii = np.flatnonzero(integer)
    A = sp.csc_matrix(A)
    xc = cp.Variable(ci.size, name="x")
    xi = cp.Variable(ii.size, integer=True, name="n") if ii.size else None
    c = cp.Parameter(n, nonneg=True, value=cost) if parametric_cost else cost
    expr = A[:, ci] @ xc
    obj = c[ci] @ xc
    if xi is not None:
        expr = expr + A[:, ii] @ xi
        obj = obj + c[ii] @ xi
    cons = []
    for idx, var in ((ci, xc), (ii, xi)):
        if var is None:
            continue
        lo, hi = col_lower[idx], col_upper[idx]
        if np.isfinite(lo).any():
            k = np.flatnonzero(np.isfinite(lo))
            cons.append(var[k] >= lo[k])
        if np.isfinite(hi).any():
            k = np.flatnonzero(np.isfinite(hi))
            cons.append(var[k] <= hi[k])
    fl = np.isfinite(row_lower)
    fu = np.isfinite(row_upper)
    eq = fl & fu & (row_lower == row_upper)
    for mask, kind in ((eq, "eq"), (fl & ~eq, "ge"), (fu & ~eq, "le")):
        if mask.any():
            k = np.flatnonzero(mask)
            if kind == "eq":
                cons.append(expr[k] == row_lower[k])
            elif kind == "ge":
                cons.append(expr[k] >= row_lower[k])
            else:
                cons.append(expr[k] <= row_upper[k])
    return cp.Problem(cp.Minimize(obj), cons), xc, xi, (c if parametric_cost else None)


def assemble(n: int, integer: np.ndarray, x_cont: Any, x_int: Any) -> np.ndarray | None:
    """Column values in model order from the cvxpy variables (None without a solution)."""
    if x_cont.value is None:
        return None
    x = np.zeros(n)
    x[np.flatnonzero(~integer)] = x_cont.value
    if x_int is not None:
        if x_int.value is None:
            return None
        x[np.flatnonzero(integer)] = x_int.value
    return x
