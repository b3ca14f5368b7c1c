"""Adaptive sparsity: per-unit L0 prices in hard-concrete, record budgets in l0-mip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import calibopt as co
from calibopt.decomposition import per_block


def level_problem(n=30, cap=3.0, seed=2):
    """Counts of a 3-level variable; each weight at most ``cap``: level a needs ceil(n_a / cap)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 3, n)})
    counts = df["a"].value_counts().sort_index()
    p = co.problem_from_margins(df, {"a": counts.astype(float).to_dict()}, bounds=(0, cap))
    need = int(np.sum(np.ceil(counts.to_numpy() / cap)))
    return p, df, need


def test_record_budget_least_error_and_fewest_records():
    p, _, need = level_problem()
    fewest = co.calibrate(p, method="l0-mip")
    assert fewest.status == co.OPTIMAL and fewest.nnz == need
    # with the budget the count optimum needs, the least error is 0 ...
    at = co.calibrate(p, method="l0-mip", objective="error+count", lam=0.0, max_records=need)
    assert at.nnz <= need and at.max_rel_error < 1e-9
    # ... and one record fewer cannot meet every target
    below = co.calibrate(p, method="l0-mip", objective="error+count", lam=0.0, max_records=need - 1)
    assert below.nnz <= need - 1 and below.max_rel_error > 0.05
    with pytest.raises(co.InfeasibleError):
        co.calibrate(p, method="l0-mip", max_records=need - 1)


def test_per_block_budgets():
    _, df, _ = level_problem(n=40)
    block = np.where(np.arange(40) < 20, "A", "B")
    # local targets only: the level counts within each block
    X = np.vstack([((df["a"] == k) & (block == b)).to_numpy(float) for b in "AB" for k in range(3)])
    b = X.sum(axis=1)
    q = co.CalibrationProblem(X, b, bounds=(0, 3.0))
    need = {
        blk: int(np.sum(np.ceil(X[3 * i : 3 * i + 3].sum(axis=1) / 3.0)))
        for i, blk in enumerate("AB")
    }
    budget = per_block({"A": need["A"], "B": need["B"] - 1})
    r = co.calibrate(
        q, method="l0-mip", blocks=block, objective="error+count", lam=0.0, max_records=budget
    )
    table = r.info["blocks"].set_index("block")
    assert table.loc["A", "nnz"] <= need["A"] and table.loc["B", "nnz"] <= need["B"] - 1
    err = np.abs(r.fit.rel_errors)
    assert err[:3].max() < 1e-9 and err[3:].max() > 0.05  # only B is short of records


@pytest.fixture(scope="module")
def tiny_problem(tiny_matrix):
    pytest.importorskip("torch")
    m = tiny_matrix
    labels = np.repeat(m.columns.geographies, m.columns.n_households)
    return m.to_problem(), labels


OPTS = dict(epochs=200, seed=0, threads=1, polish=None, progress=False, lr=0.2)


def test_uniform_per_unit_price_is_the_scalar_price(tiny_problem):
    p, _ = tiny_problem
    a = co.calibrate(p, method="hard-concrete", lambda_l0=1e-5, **OPTS)
    b = co.calibrate(p, method="hard-concrete", lambda_l0=np.full(p.n_units, 1e-5), **OPTS)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    with pytest.raises(co.InvalidProblemError, match="one per"):
        co.calibrate(p, method="hard-concrete", lambda_l0=np.ones(3), **OPTS)


def test_a_higher_area_price_keeps_fewer_records_there(tiny_problem):
    p, labels = tiny_problem
    base = co.calibrate(p, method="hard-concrete", lambda_l0=1e-4, **OPTS)
    price = np.where(labels == 3702, 1e-2, 1e-4)
    tilted = co.calibrate(p, method="hard-concrete", lambda_l0=price, **OPTS)
    here = labels == 3702
    assert np.count_nonzero(tilted.weights[here]) < 0.5 * np.count_nonzero(base.weights[here])
    assert tilted.info["hard_concrete"]["lambda_l0"]["max"] == pytest.approx(1e-2)


def test_adaptive_sparsity_reports_what_it_kept(tiny_problem):
    from calibopt.decomposition.adaptive import adaptive_sparsity

    p, labels = tiny_problem
    out = adaptive_sparsity(
        p, labels, tolerance=0.1, lambda_l0=1e-4, rounds=2, options=dict(OPTS, epochs=150)
    )
    assert len(out.history) == 2
    nz = out.result.weights != 0
    for row in out.areas.itertuples():
        assert row.records == int(nz[labels == row.area].sum())
        assert row.met == (row.error <= row.tolerance)
    assert out.met == bool(out.areas["met"].all())
    assert out.records == int(out.areas["records"].sum())
