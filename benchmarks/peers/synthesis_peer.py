"""Run a peer synthesizer in its own virtual environment (called by bench_synthesis.py).

Usage: python synthesis_peer.py PEER DIR

Reads ``households.parquet``, ``tax_units.parquet``, ``persons.parquet`` and ``flat.parquet``
(training data) and ``spec.json`` from DIR, fits the peer, samples, and writes
``<peer>_*.parquet`` and ``<peer>.json`` (fit and sample seconds, or the error).
Peers: ``hma`` (SDV HMASynthesizer on the three tables), ``sdv_copula`` (SDV
GaussianCopulaSynthesizer on the flattened persons), ``microplex`` (its Synthesizer on the
flattened persons, conditioned on the person's role).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import pandas as pd


def _hma(d: Path, spec: dict) -> dict:
    from sdv.metadata import Metadata
    from sdv.multi_table import HMASynthesizer

    data = {
        "households": pd.read_parquet(d / "households.parquet"),
        "tax_units": pd.read_parquet(d / "tax_units.parquet"),
        "persons": pd.read_parquet(d / "persons.parquet"),
    }
    meta = Metadata.detect_from_dataframes(data)
    t = time.perf_counter()
    synth = HMASynthesizer(meta)
    synth.fit(data)
    fit = time.perf_counter() - t
    t = time.perf_counter()
    out = synth.sample(scale=spec["scale"])
    sample = time.perf_counter() - t
    for name, frame in out.items():
        frame.to_parquet(d / f"hma_{name}.parquet")
    return {"fit_s": fit, "sample_s": sample}


def _sdv_copula(d: Path, spec: dict) -> dict:
    from sdv.metadata import Metadata
    from sdv.single_table import GaussianCopulaSynthesizer

    flat = pd.read_parquet(d / "flat.parquet")
    meta = Metadata.detect_from_dataframe(flat, table_name="persons")
    t = time.perf_counter()
    synth = GaussianCopulaSynthesizer(meta)
    synth.fit(flat)
    fit = time.perf_counter() - t
    t = time.perf_counter()
    out = synth.sample(num_rows=spec["n_persons"])
    sample = time.perf_counter() - t
    out.to_parquet(d / "sdv_copula_flat.parquet")
    return {"fit_s": fit, "sample_s": sample}


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
