"""Synthesizer and HierarchicalSynthesizer on the synthetic country: rules hold, quality on
held-out data, seeds, files, bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from calibopt import CalibrationError
from calibopt.datasets import Dataset, synthetic_country
from calibopt.synthesis import (
    THRESHOLDS,
    ChildAgeGap,
    HierarchicalSynthesizer,
    SpouseAgeGap,
    Synthesizer,
    check_hierarchy,
    quality_report,
)
from calibopt.synthesis.cart import tree_arrays, walk

AGGREGATES = {
    "household_size": None,
    "household_income": ["employment_income", "retirement_income"],
    "adjusted_gross_income": ["employment_income", "retirement_income"],
}
RULES = [SpouseAgeGap(max_years=20), ChildAgeGap(min_years=14)]


def _digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    for e, frame in ds.entities.items():
        h.update(e.encode())
        h.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def split():
    country = synthetic_country("small", seed=0, n_households=12_000)
    ds = country.dataset
    test = np.random.default_rng(0).random(ds.n_households) < 0.25
    return country, ds.subset(~test), ds.subset(test)


@pytest.fixture(scope="module")
def fitted(split):
    country, train, _ = split
    return HierarchicalSynthesizer(aggregates=AGGREGATES, rules=RULES).fit(
        train, rules=country.rules
    )


# ---------------------------------------------------------------------------- Synthesizer
def test_tree_walk_matches_scikit_learn():
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 4)).round(1)
    y = X[:, 0] * 2 + (X[:, 1] > 0) + rng.normal(size=3000)
    tree = DecisionTreeRegressor(min_samples_leaf=7, random_state=0).fit(X, y)
    new = rng.normal(size=(5000, 4)).round(1)
    assert np.array_equal(walk(tree_arrays(tree, 0), 0, new), tree.apply(new))


def test_cart_keeps_zero_masses_and_non_monotone_dependence(split):
    _, train, hold = split
    p_train, p_hold = train.person, hold.person
    targets = ["age", "employment_income", "retirement_income"]
    out = {}
    for model in ("cart", "copula"):
        s = Synthesizer(targets, ["role"], model=model).fit(p_train)
        g = s.generate(p_hold[["role"]], seed=3)
        assert g.dtypes.tolist() == p_train[targets].dtypes.tolist()
        working = g["age"].between(18, 64)
        out[model] = (
            abs((g["employment_income"] == 0).mean() - (p_hold["employment_income"] == 0).mean()),
            (g.loc[g["age"] < 15, "employment_income"] > 0).mean(),
            (g.loc[working, "employment_income"] > 0).mean(),
        )
    truth_working = (p_hold.loc[p_hold["age"].between(18, 64), "employment_income"] > 0).mean()
    # sequential trees: no earnings under 15 (none in the data), the working share kept
    assert out["cart"][1] == 0.0
    assert abs(out["cart"][2] - truth_working) < 0.03
    assert out["cart"][0] < 0.02
    # the copula knows only monotone dependence: children earn, workers are missing
    assert out["copula"][1] > 0.2 and abs(out["copula"][2] - truth_working) > 0.15


def test_synthesizer_save_load_identical(tmp_path, split):
    _, train, hold = split
    for model in ("cart", "copula"):
        s = Synthesizer(["employment_income", "role"], ["age"], model=model).fit(train.person)
        path = tmp_path / f"{model}.npz"
        s.save(path)
        back = Synthesizer.load(path)
        a = s.generate(hold.person[["age"]], seed=9)
        assert a.equals(back.generate(hold.person[["age"]], seed=9))
        assert not a.equals(s.generate(hold.person[["age"]], seed=10))
        with pytest.raises(CalibrationError, match="already exists"):
            s.save(path)


def test_synthesizer_bad_input(split):
    _, train, _ = split
    person = train.person
    with pytest.raises(CalibrationError, match="empty"):
        Synthesizer(["age"]).fit(person.iloc[:0])
    with pytest.raises(CalibrationError, match="column 'wage' is missing"):
        Synthesizer(["wage"]).fit(person)
    with pytest.raises(CalibrationError, match="both targets and conditions"):
        Synthesizer(["age"], ["age"])
    with pytest.raises(CalibrationError, match="`model` must be one of"):
        Synthesizer(["age"], model="gan")
    s = Synthesizer(["age"], ["role"]).fit(person)
    with pytest.raises(CalibrationError, match="categories the model has not seen"):
        s.generate(pd.DataFrame({"role": ["boss"]}))
    with pytest.raises(CalibrationError, match="seed"):
        s.generate(person[["role"]], seed=-1)


# ---------------------------------------------------------------------------- hierarchy
def test_hierarchical_zero_violations_and_quality_on_held_out(split, fitted):
    country, train, hold = split
    synth = fitted.generate(3 * hold.n_households, seed=1, rules=country.rules)
    checks = fitted.check(synth)
    assert len(checks) == 8 and checks["violations"].sum() == 0
    # the rules also hold when checked by the generic checker, and the state rules were
    # applied under each household's home state
    assert check_hierarchy(synth.person, rules=RULES)["violations"].sum() == 0
    home = synth.household["state_fips"].to_numpy()
    nc = np.flatnonzero(home == 37)[:50]
    expected = country.rules.evaluate(synth.subset(nc), 37)["snap"]
    assert np.array_equal(synth.household["snap"].to_numpy()[nc], expected)
    report = quality_report(hold, synth, train=train, rules=RULES)
    assert report.failures() == {}, report.summary()
    summary = report.summary()
    baseline = quality_report(hold, train).summary()
    # within sampling noise of a second real sample
    assert summary["max_ks"] < baseline["max_ks"] + 0.02
    assert summary["mean_corr_diff"] < baseline["mean_corr_diff"] + 0.01
    assert summary["identical_share"] < 0.02
    assert set(THRESHOLDS) <= set(summary)


def test_hierarchical_batches_and_seeds(fitted, split):
    country = split[0]
    one = fitted.generate(500, seed=4, batch_size=500)
    again = fitted.generate(500, seed=4, batch_size=500)
    other = fitted.generate(500, seed=5, batch_size=500)
    assert one.equals(again) and not one.equals(other)
    parts = list(fitted.batches(1000, seed=4, batch_size=300))
    assert [p.n_households for p in parts] == [300, 300, 300, 100]
    ids = np.concatenate([p.ids("person") for p in parts])
    assert np.array_equal(ids, np.arange(1, ids.size + 1))
    whole = fitted.generate(1000, seed=4, batch_size=300, rules=country.rules)
    assert whole.n_persons == sum(p.n_persons for p in parts)
    assert fitted.check(whole)["violations"].sum() == 0


def test_same_seed_same_data_across_processes(tmp_path, fitted):
    path = tmp_path / "model.npz"
    fitted.save(path)
    here = _digest(fitted.generate(300, seed=8, batch_size=120))
    loaded = HierarchicalSynthesizer.load(path)
    assert _digest(loaded.generate(300, seed=8, batch_size=120)) == here
    code = (
        "import sys, hashlib, pandas as pd\n"
        "from calibopt.synthesis import HierarchicalSynthesizer\n"
        f"ds = HierarchicalSynthesizer.load({str(path)!r}).generate(300, seed=8, batch_size=120)\n"
        "h = hashlib.sha256()\n"
        "for e, f in ds.entities.items():\n"
        "    h.update(e.encode())\n"
        "    rows = pd.util.hash_pandas_object(f.astype(str), index=False)\n"
        "    h.update(rows.to_numpy().tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == here


def test_hierarchical_bad_input(split):
    _, train, _ = split
    with pytest.raises(CalibrationError, match="no 'spm_unit' table"):
        HierarchicalSynthesizer(group="spm_unit").fit(train)
    with pytest.raises(CalibrationError, match="lacks the role column 'relation'"):
        HierarchicalSynthesizer(role="relation").fit(train)
    with pytest.raises(CalibrationError, match="aggregate 'age' lives on 'person'"):
        HierarchicalSynthesizer(aggregates={"age": None}).fit(train)
    two_heads = train.person.copy()
    two_heads["role"] = two_heads["role"].cat.set_categories(["head", "spouse", "dependant"])
    two_heads.loc[two_heads["role"] == "spouse", "role"] = "head"
    bad = Dataset(
        {"household": train.household, "person": two_heads, "tax_unit": train.table("tax_unit")}
    )
    with pytest.raises(CalibrationError, match="exactly one role == 'head'"):
        HierarchicalSynthesizer().fit(bad)
    with pytest.raises(CalibrationError, match="not fitted"):
        HierarchicalSynthesizer().generate(10)
