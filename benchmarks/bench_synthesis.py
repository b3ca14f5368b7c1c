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
* ``peers``: SDV's ``HMASynthesizer`` and ``GaussianCopulaSynthesizer`` (the flattened
  persons), and ``microplex`` (its Synthesizer on the flattened persons), each in its own venv
  under ``benchmarks/_venvs/<name>`` (made with ``python -m venv benchmarks/_venvs/sdv &&
  benchmarks/_venvs/sdv/bin/pip install sdv pyarrow``, and the same for ``microplex``); a
  missing venv is skipped and said so. SDV community (2.0) refuses our three-table schema
  (households > tax units > persons: depth 3, its limit is 2); that is recorded and HMA runs on
  households > persons with the tax-unit variables joined onto persons. Same training data,
  same held-out data and the same metric functions (:func:`quality_report`, on the
  person-level frame for every output and per table for outputs with households), fit +
  sample time, violations (``check_generated``) for every output with households.

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

from calibopt.datasets import Dataset, synthetic_country
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
IDS = ["person_id", "household_id", "tax_unit_id"]
PERSON_METRICS = [
    "max_ks",
    "mean_ks",
    "max_tv",
    "max_zero_share_diff",
    "mean_corr_diff",
    "max_corr_diff",
    "identical_share",
    "dcr_ratio",
]
TABLE_METRICS = ["max_ks", "mean_ks", "max_tv", "max_zero_share_diff"]
OUTPUTS = {
    "calibopt (cart)": "households > tax units > persons (3 tables, rules repaired)",
    "sdv_hma (3 tables)": "none: SDV community refuses the schema (see below)",
    "sdv_hma (2 tables)": "households > persons, tax-unit variables on persons (SDV's "
    "deepest accepted schema); tax unit = (household, generated unit number), unit "
    "variables from its head",
    "sdv_copula": "person rows, no households (all person, tax-unit and household columns)",
    "microplex": "person rows, no households (the 5 income/age numbers, given the role)",
}


def _cast_like(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """A peer's columns in the dtypes of ours (categories, booleans, integers), so that the
    metrics compare values, not representations."""
    out = frame.copy()
    for c in out.columns:
        if c not in like.columns:
            continue
        dtype = like[c].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(str).astype(dtype)
        elif pd.api.types.is_bool_dtype(dtype):
            if not pd.api.types.is_bool_dtype(out[c].dtype):
                out[c] = out[c].astype(str).map({"True": True, "False": False, "1": True})
                out[c] = out[c].fillna(False).astype(bool)
        elif pd.api.types.is_integer_dtype(dtype) and not out[c].isna().any():
            out[c] = np.round(out[c].to_numpy(dtype=float)).astype(dtype)
    return out


def _person_view(frame: pd.DataFrame) -> Dataset:
    """A person-level frame as a Dataset of one-person households with no household
    variables: :func:`quality_report` then compares the person-level columns with the very
    functions it uses for ours (KS, TV, zero shares, correlations, privacy)."""
    persons = frame.drop(columns=[c for c in IDS if c in frame.columns]).reset_index(drop=True)
    ids = np.arange(1, len(persons) + 1, dtype=np.int64)
    return Dataset(
        {
            "household": pd.DataFrame({"household_id": ids}),
            "person": persons.assign(person_id=ids, household_id=ids),
        }
    )


def _person_metrics(hold: Dataset, train: Dataset, frame: pd.DataFrame) -> dict:
    """Held-out metrics of a person-level frame (ours flattened, or a peer's rows): the
    columns it has, each compared over all persons; privacy on those columns."""
    real, base = flatten(hold, "all"), flatten(train, "all")
    frame = _cast_like(frame, real)
    cols = [c for c in base.columns if c in frame.columns and c not in IDS]
    rep = quality_report(_person_view(real), _person_view(frame), train=_person_view(base[cols]))
    s = rep.summary()
    if not (rep.marginals["kind"] == "category").any():
        s["max_tv"] = np.nan  # no categories in the output: nothing compared
    return {k: s.get(k, np.nan) for k in PERSON_METRICS}


def _table_metrics(hold: Dataset, ds: Dataset) -> dict:
    """Held-out metrics per table (households, tax units, persons), as in ``--part models``."""
    s = quality_report(hold, ds).summary()
    return {f"tables_{k}": s[k] for k in TABLE_METRICS}


def _violations(synth, ds: Dataset, extra=()) -> pd.Series:
    """Violations per rule: the checks generated data must pass (``check_generated``)."""
    table = check_generated(synth.spec, ds, RULES)
    rows = [*zip(table["rule"], table["violations"]), *extra]
    return pd.Series({r: int(v) for r, v in rows})


def _hma_dataset(d: Path, like: Dataset) -> tuple[Dataset, list[tuple[str, int]]]:
    """HMA's two tables as our three: the tax unit is (household, ``tax_unit_no``); the unit
    variables, generated per person, are taken from the unit's head (its first person if it
    has none). Households without persons are dropped and counted, as are units whose
    persons disagree on a unit variable."""
    hh = pd.read_parquet(d / "hma_households.parquet")
    p = pd.read_parquet(d / "hma_persons.parquet")
    extra = []
    empty = ~hh["household_id"].isin(p["household_id"])
    extra.append(("household has persons", int(empty.sum())))
    hh = hh[~empty.to_numpy()]
    key = p["household_id"].astype(str) + ":" + p["tax_unit_no"].astype(str)
    p["tax_unit_id"] = pd.factorize(key)[0].astype(np.int64) + 1
    unit_vars = [c for c in like.table("tax_unit").columns if c not in IDS]
    differs = p.groupby("tax_unit_id")[unit_vars].nunique(dropna=False).gt(1).any(axis=1)
    extra.append(("tax-unit variables identical in the unit", int(differs.sum())))
    first = p.assign(_not_head=p["role"].astype(str) != "head").sort_values(
        ["tax_unit_id", "_not_head"], kind="stable"
    )
    units = first.drop_duplicates("tax_unit_id")[["tax_unit_id", "household_id", *unit_vars]]
    persons = p.drop(columns=[*unit_vars, "tax_unit_no"])
    tables = {"household": hh, "person": persons, "tax_unit": units}
    tables = {
        e: _cast_like(f, like.table(e))[[c for c in like.table(e).columns if c in f.columns]]
        for e, f in tables.items()
    }
    return Dataset(tables, name="SDV HMA (2 tables)"), extra


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as strings (SDV and microplex run pandas 2)."""
    cats = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.assign(**{c: frame[c].astype(str) for c in cats})


def _run_peer(peer: str, venv: str, tmp: str, timeout: int) -> dict | None:
    py = HERE / "_venvs" / venv / "bin" / "python"
    if not py.exists():
        print(f"skipped {peer}: no venv at {py.parent.parent} (see the module docstring)")
        return None
    try:
        subprocess.run(
            [str(py), str(HERE / "peers" / "synthesis_peer.py"), peer, tmp],
            check=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        print(f"skipped {peer}: longer than {timeout} s")
        return None
    res = json.loads((Path(tmp) / f"{peer}.json").read_text())
    if "error" in res:
        print(f"skipped {peer}: {res['error']}\n{res.get('trace', '')}")
        return None
    return res


def part_peers(args) -> pd.DataFrame:
    country, train, hold = _split(args.train_households)
    rows: dict[str, dict] = {}
    rules: dict[str, pd.Series] = {}
    synth, fit = _fit(country, train)
    t = time.perf_counter()
    ours = synth.generate(train.n_households, seed=1, rules=country.rules)
    gen = time.perf_counter() - t
    rules["calibopt (cart)"] = _violations(synth, ours)
    rows["calibopt (cart)"] = {
        "households": ours.n_households,
        "persons": ours.n_persons,
        "fit_s": fit,
        "sample_s": gen,
        "violations": rules["calibopt (cart)"].sum(),
        **_person_metrics(hold, train, flatten(ours, "all")),
        **_table_metrics(hold, ours),
    }
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        plain = {e: _plain(f) for e, f in train.entities.items()}
        plain["household"].to_parquet(d / "households.parquet")
        plain["tax_unit"].to_parquet(d / "tax_units.parquet")
        plain["person"].to_parquet(d / "persons.parquet")
        _plain(flatten(train, "all").drop(columns=IDS)).to_parquet(d / "flat.parquet")
        numeric = [
            "age",
            "employment_income",
            "retirement_income",
            "household_income",
            "adjusted_gross_income",
        ]
        (d / "spec.json").write_text(json.dumps({"n_persons": train.n_persons, "numeric": numeric}))
        for peer, venv in (("hma", "sdv"), ("sdv_copula", "sdv"), ("microplex", "microplex")):
            res = _run_peer(peer, venv, tmp, args.peer_timeout)
            if res is None:
                continue
            row = {"fit_s": res["fit_s"], "sample_s": res["sample_s"]}
            if peer == "hma":
                n = res["notes"]
                rows["sdv_hma (3 tables)"] = {}
                notes += [
                    "sdv_hma (3 tables): SDV 2.0.0 detected "
                    + "; ".join(n["detected_relationships"])
                    + f" (depth {n['detected_depth']}); declared "
                    + "; ".join(n["declared_relationships"])
                    + f" (depth {n['declared_depth']}, counted in tables): refused by SDV "
                    f"community: {n['refused_3_tables']!r}",
                    f"sdv_hma (2 tables): {n['schema']} (depth {n['depth']})",
                ]
                ds, extra = _hma_dataset(d, train)
                rules["sdv_hma (2 tables)"] = _violations(synth, ds, extra)
                rows["sdv_hma (2 tables)"] = {
                    "households": ds.n_households,
                    "persons": ds.n_persons,
                    **row,
                    "violations": rules["sdv_hma (2 tables)"].sum(),
                    **_person_metrics(hold, train, flatten(ds, "all")),
                    **_table_metrics(hold, ds),
                }
            else:
                frame = pd.read_parquet(d / f"{peer}_flat.parquet")
                rows[peer] = {
                    "households": np.nan,
                    "persons": len(frame),
                    **row,
                    "violations": np.nan,
                    **_person_metrics(hold, train, frame),
                }
    table = pd.DataFrame(rows).T
    table["time_ratio_vs_ours"] = (table["fit_s"] + table["sample_s"]) / (fit + gen)
    table.insert(0, "output", [OUTPUTS[r] for r in table.index])
    wide = pd.option_context("display.width", 250, "display.max_columns", 50)
    fmt = {"float_format": lambda v: f"{v:.4f}"}
    print(
        f"\n## Peers: same {train.n_households:,} training households ({train.n_persons:,} "
        f"persons), metrics against the same {hold.n_households:,} held-out households "
        f"({hold.n_persons:,} persons)"
    )
    with wide:
        print("\nOutput of each synthesizer:")
        for name, text in table["output"].items():
            print(f"  {name:20s} {text}")
        for line in notes:
            print(f"  {line}")
        head = ["households", "persons", "fit_s", "sample_s", "time_ratio_vs_ours", "violations"]
        print("\nTime and hierarchy violations (NaN: the output has no households to check)")
        print(table[head].to_string(**fmt))
        print(
            "\nPerson-level metrics (quality_report on one row per person, household and tax-"
            "unit variables joined on; each output's own columns; NaN max_tv: no categories)"
        )
        print(table[PERSON_METRICS].to_string(**fmt))
        cols = [f"tables_{k}" for k in TABLE_METRICS]
        print(
            "\nPer-table metrics (quality_report on the households, tax units and persons "
            "tables, as in --part models; NaN: no tables)"
        )
        print(table[cols].to_string(**fmt))
        print("\nViolations per check (check_generated; HMA: plus the two-table checks)")
        print(pd.DataFrame(rules).fillna(0).astype(int).to_string())
    return table


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
