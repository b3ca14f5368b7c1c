"""Target reconciliation: hierarchies add up exactly, with the least weighted change.

References: the closed form of one family, a dense KKT solve (numpy) of the same projection,
and the projection property (when the truth adds up, the reconciled values are no farther
from it than the published ones in the reliability metric).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import calibopt as co
from calibopt.conflicts import reconcile, target_hierarchy


def kkt_reference(b, rules, names, p, fixed=()):
    """min sum p (x - b)^2 s.t. parent = sum children, fixed kept: dense KKT, least squares."""
    pos = {n: j for j, n in enumerate(names)}
    k = len(names)
    C = np.zeros((len(rules), k))
    for r, (parent, kids) in enumerate(rules):
        C[r, pos[parent]] = 1.0
        for c in kids:
            C[r, pos[c]] = -1.0
    free = np.ones(k, bool)
    free[[pos[f] for f in fixed]] = False
    Cf = C[:, free]
    g = -C[:, ~free] @ b[~free]
    # u = sqrt(p) (x - b): minimum-norm solution of Cf diag(p)^-1/2 u = g - Cf b
    B = Cf / np.sqrt(p[free])[None, :]
    u = np.linalg.pinv(B, rcond=1e-13) @ (g - Cf @ b[free])
    x = b.copy()
    x[free] += u / np.sqrt(p[free])
    return x


def test_one_family_closed_form():
    b = pd.Series({"P": 100.0, "a": 30.0, "b": 20.0, "c": 40.0})
    rec = reconcile(b, {"P": ["a", "b", "c"]}, fixed=["P"])
    # relative reliability: x_i = b_i + (P - sum b) b_i^2 / sum b^2
    kids = np.array([30.0, 20.0, 40.0])
    expect = kids + 10.0 * kids**2 / np.sum(kids**2)
    np.testing.assert_allclose(rec.values[["a", "b", "c"]], expect, rtol=1e-14)
    assert rec.values["P"] == 100.0
    assert rec.values[["a", "b", "c"]].sum() == pytest.approx(100.0, rel=1e-15)
    # equal reliability: the gap is split evenly
    rec = reconcile(b, {"P": ["a", "b", "c"]}, reliability="equal")
    # all four move: P down and each child up by 10 / 4
    np.testing.assert_allclose(rec.values.to_numpy(), [97.5, 32.5, 22.5, 42.5], rtol=1e-14)
    assert set(rec.changes.columns) >= {"original", "reconciled", "change", "rel_change"}


def test_bounded_variant_holds_a_child_at_its_bound():
    b = pd.Series({"P": 100.0, "a": 30.0, "b": 30.0, "c": 30.0})
    rec = reconcile(
        b, {"P": ["a", "b", "c"]}, reliability="equal", fixed=["P"], bounds=(None, {"a": 31.0})
    )
    np.testing.assert_allclose(rec.values.to_numpy(), [100.0, 31.0, 34.5, 34.5], rtol=1e-12)
    assert rec.changes.set_index("name").loc["a", "at_bound"]
    assert "qp" in rec.method
    with pytest.raises(co.InfeasibleError):
        reconcile(b, {"P": ["a", "b", "c"]}, fixed=["P"], max_change=0.1)  # at most +9


@pytest.fixture(scope="module")
def countries():
    from calibopt.datasets import synthetic_country

    clean = synthetic_country("small", seed=3)
    noisy = synthetic_country("small", seed=3, noise={"district": 0.03, "state": 0.01})
    for c in (clean, noisy):
        c.targets["name"] = [
            f"{g}/{v}/{i}"
            for i, (g, v) in enumerate(zip(c.targets["geographic_id"], c.targets["variable"]))
        ]
    return clean, noisy


def test_hierarchy_of_the_synthetic_country_adds_up_without_noise(countries):
    clean, _ = countries
    rules = target_hierarchy(clean.targets)
    values = clean.targets.set_index("name")["value"]
    n_states = clean.geography.states.shape[0]
    # every variable has national = sum of states (geo-dependent ones where all states have
    # it) and every state with districts has state = sum of districts for 12 variables
    assert sum(len(k) == n_states for k in rules.values()) >= 12
    assert len(rules) >= 12 + 12 * n_states
    for parent, kids in rules.items():
        assert values[kids].sum() == values[parent]  # integers: exact


def test_noisy_hierarchy_reconciled_exactly_and_minimally(countries):
    clean, noisy = countries
    rules = target_hierarchy(noisy.targets)
    assert rules == target_hierarchy(clean.targets)
    table = noisy.targets
    national = table.loc[table["geo_level"] == "national", "name"].tolist()
    rec = reconcile(table, rules, fixed=national)
    x = rec.values
    for parent, kids in rules.items():
        assert abs(x[kids].sum() - x[parent]) <= 1e-12 * abs(x[parent])
    assert rec.residual < 1e-13
    assert (rec.values[national] == table.set_index("name")["value"][national]).all()
    # the same projection, solved densely
    names = table["name"].tolist()
    b = table["value"].to_numpy(float)
    p = 1.0 / b**2
    ref = kkt_reference(b, list(rules.items()), names, p, fixed=national)
    np.testing.assert_allclose(x.to_numpy(), ref, rtol=1e-9)
    # no more change than the planted noise requires, and no farther from the truth
    t = table["true_value"].to_numpy(float)
    free = ~table["name"].isin(national).to_numpy()
    norm = lambda v: float(np.sqrt(np.sum(p[free] * v[free] ** 2)))  # noqa: E731
    assert norm(x.to_numpy() - b) <= norm(t - b) * (1 + 1e-12)
    assert norm(x.to_numpy() - t) <= norm(b - t) * (1 + 1e-12)
    assert rec.distance == pytest.approx(norm(x.to_numpy() - b) ** 2, rel=1e-12)


def test_reconciled_targets_leave_no_hierarchy_conflict():
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country("tiny", seed=0, noise=0.02)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    p = m.to_problem()
    before = co.diagnose(p)
    assert sum(not s.needs_bounds for s in before.conflicts) >= 20
    rules = target_hierarchy(m)  # families checked on the rows of X
    assert len(rules) > len(target_hierarchy(m.targets))  # the tax without state 2 counts
    rec = reconcile(m.targets, rules)
    after = co.diagnose(rec.apply(p))
    # what is left (if anything) needs the weight bounds: no family contradicts itself
    assert all(s.needs_bounds for s in after.conflicts)
    assert len(after.conflicts) < len(before.conflicts)


def test_bad_inputs():
    b = pd.Series({"P": 1.0, "a": 1.0})
    with pytest.raises(co.InvalidProblemError, match="unknown targets"):
        reconcile(b, {"P": ["a", "zz"]})
    with pytest.raises(co.InvalidProblemError, match="reliability"):
        reconcile(b, {"P": ["a"]}, reliability="sometimes")
    with pytest.raises(co.InvalidProblemError, match="reliability"):
        reconcile(b, {"P": ["a"]}, reliability=np.array([1.0, 0.0]))
    with pytest.raises(co.InvalidProblemError, match="children"):
        reconcile(b, {"P": "a"})
