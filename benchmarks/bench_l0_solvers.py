"""Exact L0 on one block: HiGHS (our default) vs SCIP and Gurobi on the same MIP.

The blocks are ``bench_sparse.block_problem`` (households x count and lognormal amount rows,
1% bands, g <= 20). Every solver gets the same model (``calibopt.formulations.l0_model``:
tightest big-M, identical-record classes, cardinality covers) and the same reweighted-L1
warm start; HiGHS through highspy, SCIP (pyscipopt) and Gurobi (gurobipy; the pip package's
size-limited licence refuses models above 2,000 variables or constraints, reported as such)
through cvxpy. Each run has the same time limit.

Usage::

    flock /tmp/calibopt-heavy.lock python benchmarks/bench_l0_solvers.py [--sizes 1000x30 1000x50]
        [--time-limit 60] [--solvers highs,cvxpy:SCIP,cvxpy:GUROBI] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sparse

import calibopt as co


def run(p, solver: str, time_limit: float) -> dict:
    t0 = time.perf_counter()
    try:
        r = co.calibrate(p, method="l0-mip", solver=solver, time_limit=time_limit, seed=0)
    except Exception as exc:  # a refused licence or a solver error: say so in the table
        return {"solver": solver, "note": f"{type(exc).__name__}: {str(exc)[:90]}"}
    info = r.info
    return {
        "solver": solver,
        "seconds": time.perf_counter() - t0,
        "nnz": r.nnz,
        "proven": info["proven_optimal"],
        "bound": info["mip_bound"],
        "status": r.status,
        "from": info["weights_from"],
        "note": info["mip_status"],
        "cols": info["model"]["mip_cols"],
        "rows": info["model"]["mip_rows"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", nargs="+", default=["1000x30", "1000x50"])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--solvers", default="highs,cvxpy:SCIP,cvxpy:GUROBI")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print("| block | solver | MIP cols x rows | seconds | nnz | proven | bound | weights | note |")
    print("| --- | --- | --- | ---: | ---: | --- | ---: | --- | --- |")
    for size in args.sizes:
        n, m = (int(x) for x in size.split("x"))
        p = bench_sparse.block_problem(n, m, args.seed)
        for solver in args.solvers.split(","):
            r = run(p, solver, args.time_limit)
            if "nnz" not in r:
                print(f"| {n:,} x {m} | {solver} | | | | | | | {r['note']} |", flush=True)
                continue
            print(
                f"| {n:,} x {m} | {solver} | {r['cols']:,} x {r['rows']:,} | {r['seconds']:.1f} | "
                f"{r['nnz']} | {'yes' if r['proven'] else 'no'} | {r['bound']:.4g} | "
                f"{r['from']} | {r['note']} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
