"""Blocks: splitting, shares, per-block exact L0, global report, failing blocks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import calibopt as co
from calibopt.decomposition.blocks import block_shares, plan_blocks, solve_blocks


def local_area_problem(areas=4, households=30, seed=0, tol=0.01, upper=400.0):
    """Households placed in every area; per-area counts and income, national persons/income."""
    rng = np.random.default_rng(seed)
    H, A = households, areas
    n = A * H
    persons = rng.integers(1, 5, H).astype(float)
    income = rng.lognormal(10, 1, H) * (rng.random(H) < 0.8)
    rows, cols, vals = [], [], []
    for a in range(A):
        c = np.arange(a * H, (a + 1) * H)
        for k, v in enumerate((np.ones(H), persons, income)):
            rows += [3 * a + k] * H
            cols += c.tolist()
            vals += v.tolist()
    rows += [3 * A] * n + [3 * A + 1] * n
    cols += list(range(n)) * 2
    vals += np.tile(persons, A).tolist() + np.tile(income, A).tolist()
    X = sp.csr_matrix((vals, (rows, cols)), shape=(3 * A + 2, n))
    home = rng.integers(0, A, H)
    w_true = np.zeros(n)
    w_true[home * H + np.arange(H)] = rng.uniform(20, 40, H)
    names = [f"area{a}/{v}" for a in range(A) for v in ("households", "persons", "income")]
    names += ["nation/persons", "nation/income"]
    p = co.CalibrationProblem(
        X,
        X @ w_true,
        initial_weights=np.full(n, 10.0),
        bounds=(0, upper),
        tolerance=tol,
        target_names=names,
    )
    return p, np.repeat(np.arange(A), H)


def test_plan_classifies_local_and_spanning_targets():
    p, labels = local_area_problem()
    plan = plan_blocks(p, labels)
    assert plan.n_blocks == 4
    assert [u.size for u in plan.units] == [30] * 4
    assert [loc.tolist() for loc in plan.local] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    assert plan.spanning.tolist() == [12, 13]
    assert all(t.tolist() == [12, 13] for t in plan.touching)
    assert plan.empty.size == 0


def test_shares_add_up_to_the_estimate():
    p, labels = local_area_problem()
    plan = plan_blocks(p, labels)
    w = np.random.default_rng(1).uniform(0, 5, p.n_units)
    shares = np.sum(block_shares(p, plan, w), axis=0)
    np.testing.assert_allclose(shares, (p.X @ w)[plan.spanning], rtol=1e-12)


def test_exact_shares_add_up_to_the_targets():
    p, labels = local_area_problem()
    plan = plan_blocks(p, labels)
    w = np.random.default_rng(2).uniform(0, 50, p.n_units)
    shares = np.sum(block_shares(p, plan, w, exact=True), axis=0)
    np.testing.assert_allclose(shares, p.targets[plan.spanning], rtol=1e-14)


def test_linear_shares():
    p, labels = local_area_problem(seed=1)
    r = co.calibrate(p, method="l0-mip", blocks=labels, share_method="linear")
    assert r.success
    assert "shares from linear with exact targets" in r.info["share_note"]


def test_blocks_solve_to_global_tolerance_with_block_optima():
    p, labels = local_area_problem()
    r = co.calibrate(p, method="l0-mip", blocks=labels, time_limit=20)
    assert r.success
    table = r.info["blocks"]
    assert list(table["status"]) == ["optimal"] * 4
    assert table["proven_optimal"].all()
    assert table["nnz"].sum() == r.nnz
    assert r.info["spanning_targets"] == ["nation/persons", "nation/income"]
    assert "exact spanning targets" in r.info["share_note"]
    # each block's count is the exact optimum of its own problem (its targets and shares)
    plan = plan_blocks(p, labels)
    assert r.diagnostics["within_tolerance"].all()
    assert r.status == "within_tolerance"  # spanning targets: block optima are not a global proof
    for k in range(4):
        U = plan.units[k]
        assert np.count_nonzero(r.weights[U]) == table["nnz"][k]


def test_independent_blocks_are_globally_optimal():
    """Without spanning targets the sum of block optima is the global optimum."""
    p, labels = local_area_problem()
    local = p.subproblem(targets=np.arange(12))
    r_blocks = co.calibrate(local, method="l0-mip", blocks=labels)
    r_whole = co.calibrate(local, method="l0-mip", time_limit=60)
    assert r_blocks.status == "optimal"
    assert r_blocks.info["proven_optimal"]
    assert r_whole.info["proven_optimal"]
    assert r_blocks.nnz == r_whole.nnz


def test_infeasible_block_is_reported_while_the_rest_solves():
    p, labels = local_area_problem()
    local = p.subproblem(targets=np.arange(12))
    # area 2's household count cannot be met: every kept weight lies in [200, 400] but the count
    # band of area 2 is set to [100.5, 101.5]
    b = local.targets.copy()
    b[6] = 101.0
    lower = np.where(labels == 2, 200.0, 0.0)
    bad = co.CalibrationProblem(
        local.X,
        b,
        initial_weights=local.initial_weights,
        bounds=(lower, 400.0),
        tolerance=np.where(np.arange(12) == 6, 0.005, 0.01),
        target_names=local.target_names,
    )
    r = co.calibrate(bad, method="l0-mip", blocks=labels)
    table = r.info["blocks"].set_index("block")
    assert table.loc[2, "status"] == "infeasible"
    assert table.loc[2, "failing_targets"][0] == "area2/households"
    assert (table.drop(index=2)["status"] == "optimal").all()
    assert r.status == "stopped"
    assert "1 block(s) failed (2)" in r.message
    # the other blocks' targets are met; area 2's records are all zero (no continuous solve)
    diag = r.diagnostics.set_index("name")
    others = [nm for nm in local.target_names if not nm.startswith("area2")]
    assert diag.loc[others, "within_tolerance"].all()
    assert np.all(r.weights[labels == 2] == 0)


def test_empty_target_with_nonzero_total_is_infeasible():
    X = sp.csr_matrix(np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    p = co.CalibrationProblem(X, [3.0, 1.0], bounds=(0, 5))
    with pytest.raises(co.InfeasibleError, match="no non-zero entry"):
        solve_blocks(p, [0, 0, 1, 1])


def test_bad_labels():
    p, labels = local_area_problem()
    with pytest.raises(co.InvalidProblemError, match="one label per record"):
        co.calibrate(p, method="l0-mip", blocks=labels[:-1])
    with pytest.raises(co.InvalidProblemError, match="missing label"):
        co.calibrate(p, method="l0-mip", blocks=np.where(labels == 1, np.nan, labels))
