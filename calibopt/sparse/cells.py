"""Cross-category cells of records and exact proportional apportionment of a sample size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InvalidProblemError

__all__ = ["apportion", "cell_labels", "sample_cells"]


def cell_labels(X_cat: sp.spmatrix) -> np.ndarray:
    """Cell of each record: records with the same pattern of categorical rows share a cell.

    ``X_cat`` holds the categorical targets' rows (targets x records); a record's cell is the
    set of rows it has a non-zero in (the cross product of its categories). Patterns are
    compared through two independent random projections of the 0/1 pattern.

    Returns
    -------
    ndarray of int
        Cell code per record, ``0..n_cells-1`` in order of first appearance.
    """
    P = sp.csc_matrix(X_cat, dtype=np.float64, copy=True)
    P.data[:] = 1.0
    rng = np.random.default_rng(7)
    r = rng.standard_normal((P.shape[0], 2))
    h = P.T @ r
    codes, _ = pd.factorize(pd.MultiIndex.from_arrays([h[:, 0], h[:, 1]]), sort=False)
    return codes.astype(np.int64)


def apportion(sizes: np.ndarray, k: int) -> np.ndarray:
    """Split ``k`` over cells in proportion to ``sizes``, each cell in ``[1, size]``.

    Largest-remainder apportionment of the quotas ``sizes * lam`` with the multiplier ``lam``
    found by bisection so that the floors (clipped to ``[1, size]``) sum to at most ``k``; the
    remaining seats go to the largest fractional parts. The total is exactly ``k``.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    C = sizes.size
    n = int(sizes.sum())
    if not (C <= k <= n):
        raise InvalidProblemError(
            f"cannot keep {k} records from {C} cells of {n} records: keeping at least one per "
            f"cell needs k >= {C}, and k <= {n}."
        )

    def seats(lam: float) -> np.ndarray:
        return np.clip(np.floor(sizes * lam), 1, sizes).astype(np.int64)

    lo, hi = 0.0, 1.0
    while seats(hi).sum() < k:  # pragma: no cover - hi = 1 already gives n seats
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if seats(mid).sum() <= k:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    a = seats(lo)
    rest = k - int(a.sum())
    if rest > 0:
        frac = sizes * hi - np.floor(sizes * lo)
        frac = np.where(a < sizes, frac, -np.inf)
        order = np.argsort(-frac, kind="stable")[:rest]
        a[order] += 1
    return a


def sample_cells(
    cells: np.ndarray,
    quota: np.ndarray,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Positions of ``quota[c]`` records drawn without replacement from each cell ``c``.

    Uniform within a cell, or with probability proportional to ``weights`` (Efraimidis-Spirakis
    keys ``log(u) / weight``). Vectorised: one sort of all records.
    """
    u = rng.random(cells.size)
    if weights is None:
        key = u
    else:
        with np.errstate(divide="ignore"):
            key = np.where(weights > 0, np.log(u) / weights, -np.inf)
    order = np.lexsort((-key, cells))
    sorted_cells = cells[order]
    start = np.searchsorted(sorted_cells, sorted_cells, side="left")
    rank = np.arange(cells.size) - start
    keep = rank < quota[sorted_cells]
    return np.sort(order[keep])
