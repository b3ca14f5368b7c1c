"""Benchmark: building the local-area calibration matrix of the synthetic country.

For each size (a fresh subprocess each, so peak memory is clean) it measures

* our build (database query + contribution evaluation + CSR fill) and its phases;
* a memory-bandwidth bound: the time to write the output CSR arrays once (12 bytes per
  non-zero), the least any builder must do;
* the usual construction, for comparison: one (targets x households) block per district
  from the same (already cached) contributions, stacked with ``scipy.sparse.hstack``
  (checked equal to ours) — compared with our fill phase, since both only assemble;
* peak memory: the largest traced allocation during the build (``tracemalloc``) and the
  process high-water mark (``VmHWM``).

The goal of issue 3: the full size (436 districts x 12,000 households = 5.2 million
columns, national + state + district targets for several variables) in under 60 s and
4 GiB on 2 cores, cost linear in the number of non-zeros.

Run (it takes a few minutes and up to ~5 GiB for the full-size baseline)::

    flock /tmp/calibopt-heavy.lock .venv/bin/python benchmarks/bench_matrix.py
    .venv/bin/python benchmarks/bench_matrix.py --sizes small default --no-baseline
"""

from __future__ import annotations

import argparse
import json
import mmap
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp
from _memory import vm


def _baseline(builder, matrix) -> tuple[float, bool]:
    """Per-district blocks (targets x households) + scipy.sparse.hstack; equal to ours?"""
    from calibopt.targets import domain_of

    ev = builder.evaluator
    targets = matrix.targets
    cm = matrix.columns
    n_hh = cm.n_households
    levels = targets["geo_level"].to_numpy()
    gids = targets["geographic_id"].to_numpy()
    keys = [
        (v, domain_of(c)) for v, c in zip(targets["variable"], targets["constraints"], strict=True)
    ]
    t0 = time.perf_counter()
    blocks = []
    for geo, state in zip(cm.geographies, cm.states, strict=True):
        rows_in = np.flatnonzero(
            (levels == "national")
            | ((levels == "state") & (gids == str(state)))
            | ((levels == "district") & (gids == str(geo)))
        )
        r_parts, c_parts, v_parts = [], [], []
        for r in rows_in:
            var, dom = keys[r]
            vec = ev.contribution(var, dom, builder.rules.key(geo) if builder.rules else None)
            idx = np.flatnonzero(vec)
            r_parts.append(np.full(idx.size, r))
            c_parts.append(idx)
            v_parts.append(vec[idx])
        block = sp.csr_matrix(
            (np.concatenate(v_parts), (np.concatenate(r_parts), np.concatenate(c_parts))),
            shape=(len(targets), n_hh),
        )
        blocks.append(block)
    X = sp.hstack(blocks, format="csr")
    elapsed = time.perf_counter() - t0
    same = X.shape == matrix.X.shape and (X != matrix.X).nnz == 0
    return elapsed, same


def run_one(size: str, baseline: bool) -> dict:
    """Measure one size in this process; returns a dict (printed as JSON by --one)."""
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    t = time.perf_counter()
    country = synthetic_country(size, seed=0)
    db = country.targets_database()
    t_data = time.perf_counter() - t
    rss_before = vm("VmRSS")
    builder = MatrixBuilder(db, country.dataset, country.geographies, rules=country.rules)
    tracemalloc.start()
    t = time.perf_counter()
    matrix = builder.build()
    t_build = time.perf_counter() - t
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm_build = vm("VmHWM")
    exact = bool(np.array_equal(matrix.X @ country.true_weights, matrix.targets["value"]))
    nnz = int(matrix.X.nnz)
    # the bound: write arrays of the CSR's size once into fresh pages (what any builder of a
    # new matrix pays, page faults included), then again into the same, warm pages
    itemsize = 8 + matrix.X.indices.dtype.itemsize
    buf = mmap.mmap(-1, nnz * itemsize)
    arr = np.frombuffer(buf, dtype=np.uint8)
    t = time.perf_counter()
    arr.fill(1)
    t_bound = time.perf_counter() - t
    t = time.perf_counter()
    arr.fill(2)
    t_warm = time.perf_counter() - t
    del arr
    buf.close()
    out = {
        "size": size,
        "targets": int(matrix.X.shape[0]),
        "columns": int(matrix.X.shape[1]),
        "nnz": nnz,
        "data_s": t_data,
        "build_s": t_build,
        "phases": matrix.info["timings"],
        "bound_s": t_bound,
        "warm_s": t_warm,
        "traced_peak_mib": traced_peak / 2**20,
        "rss_before_mib": rss_before,
        "hwm_build_mib": hwm_build,
        "exact": exact,
        "rule_calls": len(matrix.info["rule_calls"]),
    }
    if baseline:
        out["baseline_s"], out["baseline_equal"] = _baseline(builder, matrix)
        out["hwm_total_mib"] = vm("VmHWM")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "default", "full"])
    parser.add_argument("--no-baseline", action="store_true", help="skip the hstack baseline")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, not args.no_baseline)))
        return 0
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", size]
        if args.no_baseline:
            cmd.append("--no-baseline")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    import os

    print(f"calibopt matrix build, synthetic country; {os.cpu_count()} CPU(s)\n")
    head = (
        f"{'size':8} {'targets':>8} {'columns':>10} {'nnz':>12} {'build s':>8} "
        f"{'query':>6} {'eval':>6} {'fill':>6} {'fill ns/nnz':>11} {'bound s':>8} "
        f"{'warm s':>7} {'x bound':>8} {'traced MiB':>10} {'B/nnz':>6} {'HWM MiB':>8} "
        f"{'hstack s':>9} {'vs fill':>8} exact"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ph = r["phases"]
        base = r.get("baseline_s")
        same = r.get("baseline_equal")
        print(
            f"{r['size']:8} {r['targets']:>8,} {r['columns']:>10,} {r['nnz']:>12,} "
            f"{r['build_s']:>8.2f} {ph['query']:>6.2f} {ph['evaluate']:>6.2f} {ph['fill']:>6.2f} "
            f"{1e9 * ph['fill'] / r['nnz']:>11.1f} {r['bound_s']:>8.3f} {r['warm_s']:>7.3f} "
            f"{r['build_s'] / r['bound_s']:>8.1f} {r['traced_peak_mib']:>10,.0f} "
            f"{r['traced_peak_mib'] * 2**20 / r['nnz']:>6.1f} {r['hwm_build_mib']:>8,.0f} "
            + (
                f"{base:>9.2f} {base / ph['fill']:>7.1f}x"
                if base is not None
                else f"{'-':>9} {'-':>8}"
            )
            + f" {r['exact']}{'' if same in (None, True) else ' (BASELINE DIFFERS)'}"
        )
    print(
        "\nbuild s: MatrixBuilder.build() = query (database) + eval (contributions, per "
        "distinct variable/domain/state) + fill (CSR arrays); fill ns/nnz: fill time per "
        "non-zero (flat = linear in nnz); bound s: writing 12 B/nnz once into fresh pages "
        "(page faults included: the least any builder of a new matrix pays), warm s: the same "
        "into warm pages (pure bandwidth), x bound = build / bound; traced MiB: peak of "
        "NumPy/Python allocations during the build (B/nnz per non-zero; the CSR itself is "
        "12 B/nnz); HWM: process peak RSS after the build (data + database + matrix); hstack: "
        "per-district blocks from the same (cached) contributions + scipy.sparse.hstack, "
        "giving the same matrix, vs fill = hstack time / our fill (both only assemble); "
        "exact: X @ true_weights == every target."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
