"""Run a peer synthesizer in its own virtual environment (called by bench_synthesis.py).

Usage: python synthesis_peer.py PEER DIR

Reads ``households.parquet``, ``tax_units.parquet``, ``persons.parquet`` and ``flat.parquet``
(training data) and ``spec.json`` from DIR, fits the peer, samples, and writes
``<peer>_*.parquet`` and ``<peer>.json`` (fit and sample seconds, or the error, plus notes).

Peers:

* ``hma``: SDV ``HMASynthesizer``. First the three tables with the relationships declared
  explicitly (households > tax_units > persons; SDV's detection adds persons > households as
  well). SDV community refuses any schema deeper than 2 tables (``_get_max_schema_depth``
  counts the tables on the longest chain: this one is 3), so the refusal is recorded
  (``refused_3_tables``) and HMA runs on the deepest schema it accepts: households > persons,
  the tax-unit variables joined onto persons and the tax unit kept as the person's unit
  number inside the household (``tax_unit_no``). Writes ``hma_households.parquet`` and
  ``hma_persons.parquet``.
* ``sdv_copula``: SDV ``GaussianCopulaSynthesizer`` on the flattened persons (one table,
  named ``persons``; SDV 2.0 fits on and samples ``{"persons": frame}``). Writes
  ``sdv_copula_flat.parquet``.
* ``microplex``: its Synthesizer on the flattened persons, the numbers conditioned on the
  person's role. Writes ``microplex_flat.parquet``.

SDV's detection marks ``state_fips`` and ``state_income_tax`` as personal information
(``administrative_unit``, anonymised: replaced by fake values on sampling); the columns'
sdtypes are therefore set explicitly (geography: categorical; money: numerical).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

CATEGORICAL = {"state_fips", "congressional_district_geoid", "role", "filing_status",
               "is_household_head", "tax_unit_no"}  # fmt: skip
IDS = {"household_id", "tax_unit_id", "person_id"}


def _sdtypes(meta, table: str, frame: pd.DataFrame) -> None:
    """Explicit sdtypes: categories as categorical, other non-id columns numerical."""
    for col in frame.columns:
        if col in IDS:
            continue
        kind = "categorical" if col in CATEGORICAL else "numerical"
        meta.update_column(col, table_name=table, sdtype=kind)


def _metadata(data: dict[str, pd.DataFrame], relationships: list[tuple[str, str, str]]):
    from sdv.metadata import Metadata

    meta = Metadata.detect_from_dataframes(data, infer_keys="primary_only")
    for table, frame in data.items():
        _sdtypes(meta, table, frame)
    for parent, child, key in relationships:
        meta.add_relationship(parent, child, key, key)
    meta.validate()
    return meta


def _hma(d: Path, spec: dict) -> dict:
    from sdv.errors import SynthesizerInputError
    from sdv.metadata import Metadata
    from sdv.multi_table import HMASynthesizer

    households = pd.read_parquet(d / "households.parquet")
    tax_units = pd.read_parquet(d / "tax_units.parquet")
    persons = pd.read_parquet(d / "persons.parquet")
    notes: dict = {}

    # 1. the three tables, as detected and as declared
    three = {"households": households, "tax_units": tax_units, "persons": persons}
    detected = Metadata.detect_from_dataframes(three)
    notes["detected_relationships"] = [
        f"{r['parent_table_name']} > {r['child_table_name']} ({r['child_foreign_key']})"
        for r in detected.relationships
    ]
    notes["detected_depth"] = detected._get_max_schema_depth()
    three["persons"] = persons.drop(columns=["household_id"])  # reached through the tax unit
    meta3 = _metadata(
        three,
        [("households", "tax_units", "household_id"), ("tax_units", "persons", "tax_unit_id")],
    )
    notes["declared_relationships"] = [
        f"{r['parent_table_name']} > {r['child_table_name']} ({r['child_foreign_key']})"
        for r in meta3.relationships
    ]
    notes["declared_depth"] = meta3._get_max_schema_depth()
    try:
        HMASynthesizer(meta3, verbose=False).fit(three)
    except SynthesizerInputError as exc:
        notes["refused_3_tables"] = str(exc).splitlines()[0]
    else:  # a version that accepts it: the benchmark would need a three-table path
        notes["refused_3_tables"] = ""
        raise RuntimeError("SDV accepted the 3-table schema; update the benchmark to use it")

    # 2. households > persons, tax-unit variables on persons
    unit_no = persons.groupby("household_id", sort=False)["tax_unit_id"].rank(method="dense")
    flat = persons.assign(tax_unit_no=(unit_no.astype(int) - 1).astype(str)).merge(
        tax_units.drop(columns=["household_id"]), on="tax_unit_id", how="left"
    )
    two = {"households": households, "persons": flat.drop(columns=["tax_unit_id"])}
    meta2 = _metadata(two, [("households", "persons", "household_id")])
    notes["schema"] = "households > persons (tax-unit variables joined onto persons)"
    notes["depth"] = meta2._get_max_schema_depth()
    t = time.perf_counter()
    synth = HMASynthesizer(meta2, verbose=False)
    synth.fit(two)
    fit = time.perf_counter() - t
    t = time.perf_counter()
    out = synth.sample(num_rows=len(households), main_table_name="households")
    sample = time.perf_counter() - t
    for name, frame in out.items():
        frame.to_parquet(d / f"hma_{name}.parquet")
    return {"fit_s": fit, "sample_s": sample, "notes": notes}


def _sdv_copula(d: Path, spec: dict) -> dict:
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    flat = pd.read_parquet(d / "flat.parquet")
    meta = Metadata.detect_from_dataframes({"persons": flat}, infer_keys=None)
    _sdtypes(meta, "persons", flat)
    meta.validate()
    t = time.perf_counter()
    synth = GaussianCopulaSynthesizer(meta)
    synth.fit({"persons": flat})  # SDV 2.0: {table name: frame}, also for one table
    fit = time.perf_counter() - t
    t = time.perf_counter()
    out = synth.sample(num_rows=spec["n_persons"])["persons"]
    sample = time.perf_counter() - t
    out.to_parquet(d / "sdv_copula_flat.parquet")
    return {"fit_s": fit, "sample_s": sample, "notes": {"tables": list(meta.tables)}}


def _microplex(d: Path, spec: dict) -> dict:
    from microplex import Synthesizer

    flat = pd.read_parquet(d / "flat.parquet")
    targets = [c for c in spec["numeric"] if c in flat.columns]
    synth = Synthesizer(target_vars=targets, condition_vars=["role_code"])
    flat["role_code"] = flat["role"].astype("category").cat.codes.astype(float)
    t = time.perf_counter()
    synth.fit(flat, weight_col=None, verbose=False)
    fit = time.perf_counter() - t
    conditions = flat[["role_code"]].sample(n=spec["n_persons"], replace=True, random_state=0)
    t = time.perf_counter()
    out = synth.generate(conditions.reset_index(drop=True), seed=0)
    sample = time.perf_counter() - t
    out.to_parquet(d / "microplex_flat.parquet")
    return {"fit_s": fit, "sample_s": sample}


def main() -> None:
    peer, d = sys.argv[1], Path(sys.argv[2])
    spec = json.loads((d / "spec.json").read_text())
    try:
        result = {"hma": _hma, "sdv_copula": _sdv_copula, "microplex": _microplex}[peer](d, spec)
    except Exception as exc:  # report any failure to the benchmark
        result = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:]}
    (d / f"{peer}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
