"""Exact dual Newton at national scale: the synthetic country's local-area problem.

Cases (each in a fresh subprocess, so peak memory is the case's own; the matrix is built once
per size and noise level and cached as .npz, not timed):

* ``exact-linear``, ``exact-raking`` -- noiseless targets, every target exact, ``w >= 0``;
* ``bands-noiseless-<method>`` -- noiseless targets, 1% bands (nested geographies: the band
  rows are linearly dependent, the case where an active-set loop stalled);
* ``bands-truncated``, ``bands-raking`` -- the realistic case of issue 17: 2% noise between
  levels, 1% bands, ratio bounds (0, 20); either every band and bound met or infeasibility
  certified.

Each row: seconds of ``calibrate`` (the problem built beforehand), Newton iterations, status,
largest band violation (0 inside the band), peak resident memory of the process. With
``--baseline PATH`` every case also runs with the package at PATH (e.g. the main checkout) in
the same run, and the table shows the ratio.

Usage::

    flock /tmp/calibopt-heavy.lock python benchmarks/bench_national.py
        [--sizes default full] [--cases all|LIST] [--baseline /path/to/other/checkout]
        [--baseline-cases exact-linear,exact-raking] [--timeout 300] [--cache DIR]

The baseline runs only the exact cases by default: before issue 17 the band cases at full
size ran an LP certificate over every column first (minutes, up to 18 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

CASES = {
    # name: (noise, tolerance, method, ratio bounds)
    "exact-linear": (0.0, 0.0, "linear", None),
    "exact-raking": (0.0, 0.0, "raking", None),
    "bands-noiseless-linear": (0.0, 0.01, "linear", None),
    "bands-noiseless-raking": (0.0, 0.01, "raking", None),
    "bands-truncated": (0.02, 0.01, "truncated", (0, 20)),
    "bands-raking": (0.02, 0.01, "raking", (0, 20)),
}


def matrix_file(cache: Path, size: str, noise: float) -> Path:
    """Build (once, in a subprocess) and cache the country's matrix, targets, design weights."""
    path = cache / f"country_{size}_{noise:g}.npz"
    if not path.exists():
        subprocess.run(
            [sys.executable, __file__, "--build", str(path), size, str(noise)],
            env=dict(os.environ, PYTHONPATH=str(REPO)), check=True,
        )  # fmt: skip
    return path


def build(path: Path, size: str, noise: float) -> None:
    """Build the country's matrix into ``path`` (called with --build)."""
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country(size, seed=0, noise=noise)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    p = m.to_problem()
    X = p.X
    tmp = path.with_suffix(".part.npz")
    np.savez(
        tmp, data=X.data, indices=X.indices, indptr=X.indptr, shape=np.array(X.shape),
        targets=p.targets, d=p.initial_weights, names=np.array(p.target_names),
    )  # fmt: skip
    tmp.replace(path)


def run_one(path: str, case: str) -> dict:
    """One case in this process (called with --one)."""
    import scipy.sparse as sp
    from _memory import settle, vm

    import calibopt as co

    _, tol, method, ratio = CASES[case]
    z = np.load(path)
    X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    p = co.CalibrationProblem(
        X, z["targets"], initial_weights=z["d"], tolerance=tol, ratio_bounds=ratio,
        target_names=list(z["names"]),
    )  # fmt: skip
    # compile the kernels outside the timed call
    co.calibrate(co.CalibrationProblem(np.ones((2, 3)) + np.eye(2, 3), [3.0, 4.0]), method="raking")
    settle()
    base = vm("VmRSS")
    t0 = time.perf_counter()
    try:
        r = co.calibrate(p, method=method, fallback=None)
        status, iters, msg = r.status, r.iterations, r.message
        lo, hi = p.target_bands()
        est = X @ r.weights
        scale = np.where(p.targets != 0, np.abs(p.targets), 1.0)
        viol = float(np.max(np.maximum(lo - est, est - hi) / scale, initial=0.0))
        viol = max(viol, 0.0)
    except co.InfeasibleError as exc:
        status, iters, msg, viol = "infeasible (certified)", None, str(exc), None
    seconds = time.perf_counter() - t0
    return {
        "case": case, "n": X.shape[1], "targets": X.shape[0], "nnz": X.nnz,
        "seconds": seconds, "status": status, "iterations": iters, "violation": viol,
        "peak_gib": vm("VmHWM") / 1024, "problem_gib": base / 1024, "message": msg[:300],
    }  # fmt: skip


def spawn(code: Path, path: Path, case: str, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(path), case],
            env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"case": case, "status": f"stopped after {timeout:g} s"}
    if out.returncode != 0:
        return {"case": case, "status": f"error: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(x, spec: str) -> str:
    return "" if x is None else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=2, metavar=("NPZ", "CASE"), help=argparse.SUPPRESS)
    ap.add_argument("--build", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", nargs="+", default=["default", "full"])
    ap.add_argument("--cases", default="all")
    ap.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    ap.add_argument("--baseline-cases", default="exact-linear,exact-raking")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    ap.add_argument("--cache", type=Path, help="folder for the built matrices (kept)")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return 0
    if args.build:
        build(Path(args.build[0]), args.build[1], float(args.build[2]))
        return 0
    cases = list(CASES) if args.cases == "all" else args.cases.split(",")
    cache = args.cache or Path(tempfile.mkdtemp(prefix="calibopt-national-"))
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        for case in cases:
            path = matrix_file(cache, size, CASES[case][0])
            row = spawn(REPO, path, case, args.timeout)
            row["size"] = size
            if args.baseline is not None and case in args.baseline_cases.split(","):
                base = spawn(args.baseline, path, case, args.timeout)
                row["baseline_s"] = base.get("seconds")
                row["baseline_status"] = base.get("status")
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    head = "| size | case | n | targets | s | iterations | status | max band violation | peak GiB |"
    if args.baseline is not None:
        head += " baseline s | baseline status | speed-up |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for r in rows:
        line = (
            f"| {r['size']} | {r['case']} | {r.get('n', '')} | {r.get('targets', '')} | "
            f"{fmt(r.get('seconds'), '.2f')} | {r.get('iterations', '')} | {r['status']} | "
            f"{fmt(r.get('violation'), '.1e')} | {fmt(r.get('peak_gib'), '.2f')} |"
        )
        if args.baseline is not None:
            ratio = (
                r["baseline_s"] / r["seconds"] if r.get("baseline_s") and r.get("seconds") else None
            )
            line += (
                f" {fmt(r.get('baseline_s'), '.2f')} | {r.get('baseline_status')} | "
                f"{fmt(ratio, '.2f')} |"
            )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
