"""Dependent targets found block by block (districts, then the states and nation on their Schur
complement) against one pivoted Cholesky of the whole Gram matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from calibopt.solvers import dependence
from calibopt.solvers.kernels import weighted_gram


def nested_matrix(seed: int, n_states: int = 12, per_state: int = 10, n: int = 6000):
    """Rows per district: count, income, two categories adding up to the count; the same rows
    per state (sums of its districts) and for the nation. Dependent: a category per area, each
    state row (of the states' own categories too) and each national row."""
    rng = np.random.default_rng(seed)
    n_districts = n_states * per_state
    district = rng.integers(0, n_districts, n)
    state = district // per_state
    income = rng.lognormal(10, 1, n)
    cat = rng.integers(0, 2, n)
    values = [np.ones(n), income, (cat == 0) * 1.0, (cat == 1) * 1.0]
    rows, cols, vals = [], [], []
    offset = 0
    for area, count in ((district, n_districts), (state, n_states), (np.zeros(n, int), 1)):
        for k, v in enumerate(values):
            nz = np.flatnonzero(v)
            rows.append(offset + 4 * area[nz] + k)
            cols.append(nz)
            vals.append(v[nz])
        offset += 4 * count
    X = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(offset, n)
    )
    X.sort_indices()
    return X, rng.uniform(0.5, 2.0, n)


def test_blocks_find_the_rank_and_combinations_of_one_factorisation(monkeypatch):
    X, d = nested_matrix(0)
    J = weighted_gram(X, d)
    m = J.shape[0]
    monkeypatch.setattr(dependence, "BLOCK_MIN", m + 1)
    keep0, drop0, _ = dependence.dependent_rows(J)
    monkeypatch.setattr(dependence, "BLOCK_MIN", 10)
    assert dependence._blocks(J, dependence._scaling(J), 1e-11) is not None  # the block path
    keep, drop, C = dependence.dependent_rows(J)
    # rank: per area 3 independent rows (count, income, one category); the states and the
    # nation add none
    assert keep.size == keep0.size == 3 * 120
    assert drop.size == drop0.size == m - 3 * 120
    assert np.array_equal(np.sort(np.concatenate([keep, drop])), np.arange(m))
    assert np.linalg.matrix_rank(J[np.ix_(keep, keep)] / np.abs(J).max()) == keep.size
    # the combinations reproduce the dropped rows on every unit
    Xr = X.tocsr()
    err = abs(sp.csr_matrix(C.T) @ Xr[keep] - Xr[drop]).max()
    assert err <= 1e-8 * abs(Xr).max()


def test_dense_gram_without_blocks_falls_back():
    rng = np.random.default_rng(1)
    X = sp.csc_matrix(rng.uniform(0, 1, (40, 500)))
    X = sp.vstack([X, X[:3].sum(axis=0)]).tocsc()  # one dependent row
    X.sort_indices()
    J = weighted_gram(X, np.ones(500))
    assert dependence._blocks(J, dependence._scaling(J), 1e-11) is None  # dense: one factorisation
    keep, drop, C = dependence.dependent_rows(J)
    assert drop.size == 1
    np.testing.assert_allclose(C.T @ X.toarray()[keep], X.toarray()[drop], atol=1e-9)
