"""Benchmark: hierarchical synthesis (issue 12), ratios measured side by side in one run.

Parts (``--part``, default all):

* ``models``: the candidate Synthesizer models (sequential CART, Gaussian copula) fitted on
  80% of the synthetic country's households and compared with the held-out 20% (quality
  report), next to the same numbers for the training data itself (sampling noise);
* ``enforce``: :func:`enforce_hierarchy` on ~1,000,000 persons (a generated population with
  broken shared incomes, spouse and dependant ages, and sums) against the per-household loop
  of the users' design notes, run on a 2,000-household sample of the same data, scaled, and
  checked equal to ours on that sample;
* ``generate``: ~1,000,000 persons in batches of 50,000 households: wall time, and the peak
  memory (growth of the peak RSS) for 1, 2, 4 and 8 batches, each in a fresh process;
* ``peers``: SDV's ``HMASynthesizer`` (three tables) and ``GaussianCopulaSynthesizer`` (the
  flattened persons), and ``microplex`` (its Synthesizer on the flattened persons), each in
  its own venv under ``benchmarks/_venvs/<name>`` (made with
  ``python -m venv benchmarks/_venvs/sdv && benchmarks/_venvs/sdv/bin/pip install sdv pyarrow``,
  and the same for ``microplex``); a missing venv is skipped and said so. Same training data,
  same held-out metrics, fit + sample time, rule violations.

Run::

    flock /tmp/calibopt-heavy.lock .venv/bin/python benchmarks/bench_synthesis.py
    .venv/bin/python benchmarks/bench_synthesis.py --part models --train-households 5000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _memory import settle, vm

from calibopt.datasets import synthetic_country
from calibopt.synthesis import (
    ChildAgeGap,
    HierarchicalSynthesizer,
    SpouseAgeGap,
    SumTo,
    enforce_hierarchy,
    flatten,
    quality_report,
)
from calibopt.synthesis.assemble import check_generated

HERE = Path(__file__).resolve().parent
AGGREGATES = {
    "household_size": None,
    "household_income": ["employment_income", "retirement_income"],
    "adjusted_gross_income": ["employment_income", "retirement_income"],
}
RULES = [SpouseAgeGap(max_years=20), ChildAgeGap(min_years=14)]
SUMMARY = [
    "max_ks",
    "mean_ks",
    "max_tv",
    "max_zero_share_diff",
    "mean_corr_diff",
    "max_corr_diff",
    "violation_share",
    "identical_share",
    "dcr_ratio",
]


def _split(n_households: int):
    country = synthetic_country("small", seed=0, n_households=n_households)
    ds = country.dataset
    test = np.random.default_rng(0).random(ds.n_households) < 0.2
    return country, ds.subset(~test), ds.subset(test)


def _fit(country, train, model="cart") -> tuple[HierarchicalSynthesizer, float]:
    t = time.perf_counter()
    synth = HierarchicalSynthesizer(aggregates=AGGREGATES, rules=RULES, model=model)
    synth.fit(train, rules=country.rules)
    return synth, time.perf_counter() - t


# ---------------------------------------------------------------------------- models
def part_models(args) -> pd.DataFrame:
    country, train, hold = _split(args.train_households)
    rows = {"real training data (noise floor)": quality_report(hold, train, rules=RULES).summary()}
    for model in ("cart", "copula"):
        synth, fit = _fit(country, train, model)
        t = time.perf_counter()
        g = synth.generate(hold.n_households * 3, seed=1, rules=country.rules)
        gen = time.perf_counter() - t
        s = quality_report(hold, g, train=train, rules=RULES).summary()
        s |= {
            "fit_s": fit,
            "generate_s": gen,
            "repairs": int(synth.last_report["rows_changed"].sum()),
        }
        rows[model] = s
    table = pd.DataFrame(rows).T
    print(
        f"\n## Synthesizer models: {train.n_households:,} training households, "
        f"{hold.n_households:,} held out (3x as many generated)"
    )
    print(
        table[[c for c in [*SUMMARY, "fit_s", "generate_s", "repairs"] if c in table]].to_string(
            float_format=lambda v: f"{v:.4f}"
        )
    )
    return table


# ---------------------------------------------------------------------------- enforce
def _notes_loop(flat: pd.DataFrame) -> pd.DataFrame:
    """The per-household loop of the users' design notes (shared income as the mean, spouse
    and dependant ages clipped), plus the tax-unit sum, one household at a time."""
    out = []
    for _, group in flat.groupby("household_id", sort=False):
        hh = group.copy()
        hh["household_income"] = hh["household_income"].mean()
        for unit, members in hh.groupby("tax_unit_id", sort=False):
            head = members.loc[members["role"] == "head", "age"]
            if len(head):
                h = head.iloc[0]
                spouse = members.index[members["role"] == "spouse"]
                hh.loc[spouse, "age"] = hh.loc[spouse, "age"].clip(h - 20, h + 20)
                parents = hh.loc[members.index][
                    hh.loc[members.index, "role"].isin(["head", "spouse"])
                ]
                young = parents["age"].min() - 14
                kids = members.index[members["role"] == "dependant"]
                hh.loc[kids, "age"] = np.minimum(hh.loc[kids, "age"], max(young, 0))
            del unit
        units = hh.drop_duplicates("tax_unit_id")
        hh["household_income"] = units["adjusted_gross_income"].sum()
        out.append(hh)
    return pd.concat(out)


def part_enforce(args) -> pd.DataFrame:
    country, train, _ = _split(args.train_households)
    synth, _ = _fit(country, train)
    n_hh = int(args.persons / (train.n_persons / train.n_households))
    pop = synth.generate(n_hh, seed=3)
    flat = flatten(pop, ["household_income", "adjusted_gross_income"])
    rng = np.random.default_rng(7)
    n = len(flat)
    noisy = rng.random(n) < 0.1
    flat.loc[noisy, "household_income"] *= 1 + rng.random(int(noisy.sum()))
    spouse = (flat["role"] == "spouse").to_numpy() & (rng.random(n) < 0.05)
    flat.loc[spouse, "age"] += 30
    kids = (flat["role"] == "dependant").to_numpy() & (rng.random(n) < 0.05)
    flat.loc[kids, "age"] += 25
    rules = [*RULES, SumTo("household_income", "adjusted_gross_income")]
    shared = {"household_income": "mean"}
    times = []
    for _ in range(3):
        t = time.perf_counter()
        _fixed, report = enforce_hierarchy(flat, shared=shared, rules=rules)
        times.append(time.perf_counter() - t)
    ours = min(times)
    sample_ids = rng.choice(flat["household_id"].unique(), 2000, replace=False)
    sample = flat[flat["household_id"].isin(sample_ids)].reset_index(drop=True)
    t = time.perf_counter()
    looped = _notes_loop(sample)
    loop = (time.perf_counter() - t) * flat["household_id"].nunique() / 2000
    mine, _ = enforce_hierarchy(sample, shared=shared, rules=rules)
    same = np.array_equal(mine["age"].to_numpy(), looped["age"].to_numpy()) and np.allclose(
        mine["household_income"], looped["household_income"], rtol=1e-12
    )
    print(
        f"\n## enforce_hierarchy on {n:,} persons ({flat['household_id'].nunique():,} households)"
    )
    print(report.to_string(index=False))
    table = pd.DataFrame(
        {
            "persons": [n],
            "ours_s": [ours],
            "notes_loop_s (scaled from 2,000 households)": [loop],
            "speed-up": [loop / ours],
            "loop equals ours on the sample": [same],
        }
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table


# ---------------------------------------------------------------------------- generate
_CHILD = """
import sys, time, json
sys.path.insert(0, {bench!r})
from _memory import settle, vm
from calibopt.synthesis import HierarchicalSynthesizer
synth = HierarchicalSynthesizer.load({model!r})
synth.generate(2000, seed=0)  # warm up imports
settle(); base = vm("VmHWM")
t = time.perf_counter(); persons = 0
for ds in synth.batches({n} * {size}, seed=1, batch_size={size}):
    persons += ds.n_persons
print(json.dumps({{"seconds": time.perf_counter() - t, "persons": persons,
                  "peak_growth_mib": vm("VmHWM") - base}}))
"""


def part_generate(args) -> pd.DataFrame:
    country, train, _ = _split(args.train_households)
    synth, _ = _fit(country, train)
    size = 50_000
    per_hh = train.n_persons / train.n_households
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = str(Path(tmp) / "model.npz")
        synth.save(model)
        full = int(np.ceil(args.persons / per_hh / size))
        for n in sorted({1, 2, 4, 8, full}):
            code = _CHILD.format(bench=str(HERE), model=model, n=n, size=size)
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(
                {
                    "batches": n,
                    "households": n * size,
                    **r,
                    "persons_per_s": r["persons"] / r["seconds"],
                }
            )
    table = pd.DataFrame(rows)
    print(f"\n## Generation in batches of {size:,} households (fresh process per row)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    return table


# ---------------------------------------------------------------------------- peers
def _flat_quality(hold, frame: pd.DataFrame) -> dict:
    from scipy.stats import ks_2samp

    from calibopt.synthesis.quality import total_variation

    real = flatten(hold, "all")
    skip = {"person_id", "household_id", "tax_unit_id", "household_weight"}
    ks, tv = [], []
    for c in real.columns:
        if c in skip or c not in frame.columns:
            continue
        if (
            c in ("state_fips", "congressional_district_geoid")
            or not pd.api.types.is_numeric_dtype(real[c].dtype)
            or real[c].dtype == bool
        ):
            tv.append(total_variation(real[c].astype(str), frame[c].astype(str)))
        else:
            ks.append(ks_2samp(real[c].astype(float), frame[c].astype(float)).statistic)
    num = [
        c
        for c in real.columns
        if c not in skip
        and c in frame.columns
        and pd.api.types.is_numeric_dtype(real[c].dtype)
        and real[c].dtype != bool
        and c not in ("state_fips", "congressional_district_geoid")
    ]
    ca = real[num].astype(float).corr().to_numpy()
    cb = frame[num].astype(float).corr().to_numpy()
    i, j = np.triu_indices(len(num), 1)
    diff = np.abs(ca[i, j] - cb[i, j])
    return {
        "flat_max_ks": max(ks),
        "flat_max_tv": max(tv) if tv else np.nan,
        "flat_mean_corr_diff": float(np.nanmean(diff)),
    }


def part_peers(args) -> pd.DataFrame:
    country, train, hold = _split(args.train_households)
    rows = {}
    synth, fit = _fit(country, train)
    t = time.perf_counter()
    ours = synth.generate(train.n_households, seed=1, rules=country.rules)
    gen = time.perf_counter() - t
    rows["calibopt (cart)"] = {
        "fit_s": fit,
        "sample_s": gen,
        "violations": int(check_generated(synth.spec, ours, RULES)["violations"].sum()),
        **_flat_quality(hold, flatten(ours, "all")),
    }
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        plain = {
            e: f.assign(
                **{
                    c: f[c].astype(str)
                    for c in f.columns
                    if isinstance(f[c].dtype, pd.CategoricalDtype)
                }
            )
            for e, f in train.entities.items()
        }
        plain["household"].to_parquet(d / "households.parquet")
        plain["tax_unit"].to_parquet(d / "tax_units.parquet")
        plain["person"].to_parquet(d / "persons.parquet")
        flat = flatten(train, "all").drop(columns=["person_id", "household_id", "tax_unit_id"])
        flat = flat.assign(
            **{
                c: flat[c].astype(str)
                for c in flat.columns
                if isinstance(flat[c].dtype, pd.CategoricalDtype)
            }
        )
        flat.to_parquet(d / "flat.parquet")
        numeric = [
            "age",
            "employment_income",
            "retirement_income",
            "household_income",
            "adjusted_gross_income",
        ]
        (d / "spec.json").write_text(
            json.dumps({"scale": 1.0, "n_persons": train.n_persons, "numeric": numeric})
        )
        for peer, venv in (("hma", "sdv"), ("sdv_copula", "sdv"), ("microplex", "microplex")):
            py = HERE / "_venvs" / venv / "bin" / "python"
            if not py.exists():
                print(f"skipped {peer}: no venv at {py.parent.parent} (see the module docstring)")
                continue
            try:
                subprocess.run(
                    [str(py), str(HERE / "peers" / "synthesis_peer.py"), peer, tmp],
                    check=True,
                    timeout=args.peer_timeout,
                )
            except subprocess.TimeoutExpired:
                print(f"skipped {peer}: longer than {args.peer_timeout} s")
                continue
            res = json.loads((d / f"{peer}.json").read_text())
            if "error" in res:
                print(f"skipped {peer}: {res['error']}")
                continue
            rows[peer] = {"fit_s": res["fit_s"], "sample_s": res["sample_s"]}
            if peer == "hma":
                rows[peer] |= _hma_quality(synth, hold, d)
            else:
                rows[peer] |= {
                    "violations": np.nan,
                    **_flat_quality(hold, pd.read_parquet(d / f"{peer}_flat.parquet")),
                }
    table = pd.DataFrame(rows).T
    table["time_ratio_vs_ours"] = (table["fit_s"] + table["sample_s"]) / (fit + gen)
    print(
        f"\n## Peers: same {train.n_households:,} training households, held-out metrics "
        f"on the person-level frame (violations: hierarchy checks; NaN = no households)"
    )
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return table


def _hma_quality(synth, hold, d: Path) -> dict:
    from calibopt.datasets import Dataset

    tables = {
        "household": pd.read_parquet(d / "hma_households.parquet"),
        "person": pd.read_parquet(d / "hma_persons.parquet"),
        "tax_unit": pd.read_parquet(d / "hma_tax_units.parquet"),
    }
    tables["person"]["role"] = pd.Categorical(
        tables["person"]["role"], categories=["head", "spouse", "dependant"]
    )
    try:
        ds = Dataset(tables)
        violations = int(check_generated(synth.spec, ds, RULES)["violations"].sum())
    except Exception as exc:  # HMA tables that do not even form a dataset
        print(f"HMA output is not a valid hierarchy: {exc}")
        return {"violations": np.nan}
    return {"violations": violations, **_flat_quality(hold, flatten(ds, "all"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--part", default="all", choices=["all", "models", "enforce", "generate", "peers"]
    )
    p.add_argument("--train-households", type=int, default=20_000)
    p.add_argument("--persons", type=int, default=1_000_000)
    p.add_argument("--peer-timeout", type=int, default=1800)
    args = p.parse_args()
    settle()
    print(f"python {sys.version.split()[0]}, start RSS {vm('VmRSS'):.0f} MiB")
    for part in ("models", "enforce", "generate", "peers"):
        if args.part in ("all", part):
            globals()[f"part_{part}"](args)


if __name__ == "__main__":
    main()
