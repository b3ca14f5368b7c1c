"""Classical calibration, side by side: calibopt vs R survey/sampling, samplics, balance, ipfn.

Unit-level data in, unit-level weights out: every tool's time includes whatever it needs to
build its input from the unit data (for calibopt: ``problem_from_margins`` + ``calibrate``).
Every tool's weights are scored the same way, by the max relative error over all margins.

Problems (issue 2):
  (a) raking to 4 categorical variables of 5, 10, 50 and 4 levels (69 margin cells), design
      weights uniform on [0.5, 2], totals from a hidden weight vector;
  (b) linear: the same margins plus 2 continuous (lognormal) totals;
  per-area: 215,000 records x 92 targets with ratio bounds on g (truncated linear), the size
      tax-microdata area weighting solves with Clarabel.

Usage:
  python benchmarks/bench_classical.py [--sizes 10000 100000 1000000] [--peers all|none|LIST]
      [--cvxpy-max-n 100000] [--repeat 3] [--no-per-area]

Peers run in their own virtual environments (numpy ranges clash): ``$CALIBOPT_PEER_VENVS/<name>``
(default ``benchmarks/_venvs``, git-ignored) for samplics, balance, ipfn (with weightipy); R
through ``Rscript`` with the survey and sampling packages. A missing peer is skipped and the
table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import calibopt as co

HERE = Path(__file__).resolve().parent
LEVELS = (5, 10, 50, 4)
VENVS = Path(os.environ.get("CALIBOPT_PEER_VENVS", HERE / "_venvs"))
PY_PEERS = {"samplics": "samplics", "balance": "balance", "ipfn": "ipfn", "weightipy": "ipfn"}
R_TOOLS = ("survey", "survey_sparse", "rake", "sampling")


def make_units(n: int, kind: str, seed: int = 0):
    """Unit data (codes, continuous), design weights and margins from a hidden weight vector."""
    rng = np.random.default_rng(seed)
    codes = np.column_stack([rng.integers(0, k, n) for k in LEVELS])
    cont = rng.lognormal(10.0, 1.0, (n, 2)) * np.array([1.0, 3.0])
    d = rng.uniform(0.5, 2.0, n)
    hidden = d * np.exp(0.15 * rng.standard_normal(n)) * (1 + 0.02 * codes[:, 0])
    margins = {}
    for k, L in enumerate(LEVELS):
        margins[f"v{k}"] = {j: float(t) for j, t in enumerate(np.bincount(codes[:, k], hidden, L))}
    if kind == "linear":
        margins["c0"] = float(hidden @ cont[:, 0])
        margins["c1"] = float(hidden @ cont[:, 1])
    return codes, cont, d, margins


def frame(codes, cont, kind):
    df = pd.DataFrame({f"v{k}": codes[:, k] for k in range(len(LEVELS))})
    if kind == "linear":
        df["c0"], df["c1"] = cont[:, 0], cont[:, 1]
    return df


def margin_error(w, codes, cont, margins) -> float:
    """Max relative error over every margin cell and continuous total."""
    errs = []
    for k, L in enumerate(LEVELS):
        est = np.bincount(codes[:, k], w, L)
        tgt = np.array([margins[f"v{k}"][j] for j in range(L)])
        errs.append(np.abs(est / tgt - 1))
    for j, name in enumerate(("c0", "c1")):
        if name in margins:
            errs.append(np.array([abs(w @ cont[:, j] / margins[name] - 1)]))
    return float(np.max(np.concatenate(errs)))


def run_ours(df, d, margins, kind, solver="newton"):
    method = "raking" if kind == "raking" else "linear"
    t0 = time.perf_counter()
    problem = co.problem_from_margins(df, margins, weights=d)
    result = co.calibrate(problem, method=method, solver=solver)
    return time.perf_counter() - t0, result.weights, result


def write_inputs(folder: Path, codes, cont, d, margins, with_r: bool):
    np.savez(folder / "units.npz", codes=codes, cont=cont, d=d)
    (folder / "margins.json").write_text(json.dumps(margins))
    if with_r:
        df = pd.DataFrame({f"v{k}": codes[:, k] for k in range(len(LEVELS))})
        df["c0"], df["c1"], df["d"] = cont[:, 0], cont[:, 1], d
        df.to_csv(folder / "units.csv", index=False)
        rows = [
            (v, str(lev), t)
            for v, m in margins.items()
            if isinstance(m, dict)
            for lev, t in m.items()
        ]
        rows += [(v, "", t) for v, t in margins.items() if not isinstance(t, dict)]
        pd.DataFrame(rows, columns=["variable", "level", "total"]).to_csv(
            folder / "margins.csv", index=False
        )


def run_python_peer(tool, folder, kind, timeout, repeat=1):
    python = VENVS / PY_PEERS[tool] / "bin" / "python"
    if not python.exists():
        return None, f"skipped: no venv at {python.parent.parent}"
    try:
        out = subprocess.run(
            [
                str(python),
                str(HERE / "peers" / "classical_peer.py"),
                str(folder),
                kind,
                tool,
                str(repeat),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not line:
        err = (out.stderr.strip().splitlines() or ["failed"])[-1]
        return None, "failed: " + ("out of memory" if "MemoryError" in out.stderr else err[:80])
    rec = json.loads(line[-1])
    return (rec["seconds"], np.load(folder / f"py_{tool}.npy")), rec.get("note", "")


def run_r(folder, kind, tools, timeout, repeat=1):
    if shutil.which("Rscript") is None:
        return {t: (None, "skipped: Rscript not found") for t in tools}
    try:
        out = subprocess.run(
            [
                "Rscript",
                str(HERE / "peers" / "classical.R"),
                str(folder),
                kind,
                ",".join(tools),
                str(repeat),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {t: (None, f"timed out after {timeout} s") for t in tools}
    res = {t: (None, "failed: no output") for t in tools}
    for ln in out.stdout.splitlines():
        if not ln.startswith("{"):
            continue
        rec = json.loads(ln)
        if "error" in rec:
            res[rec["tool"]] = (None, "failed: " + rec["error"][:80])
        else:
            w = pd.read_csv(folder / f"r_{rec['tool']}.csv")["w"].to_numpy()
            res[rec["tool"]] = ((rec["seconds"], w), rec.get("note", ""))
    return res


def per_area_problem(n=215_000, seed=0):
    """Tax-microdata-shaped area problem: 92 targets, ratio bounds on g."""
    rng = np.random.default_rng(seed)
    agi_bin = np.minimum(rng.geometric(0.18, n) - 1, 17)
    status = rng.integers(0, 4, n)
    agi = np.exp(rng.normal(10.3, 1.1, n)) * (1 + agi_bin / 6)
    cols = {"n": np.ones(n)}
    for b in range(18):
        cols[f"agi_bin{b}_n"] = (agi_bin == b).astype(float)
        cols[f"agi_bin{b}_amt"] = np.where(agi_bin == b, agi, 0.0)
    for s in range(4):
        cols[f"status{s}_n"] = (status == s).astype(float)
    for v in range(51):
        share = rng.uniform(0.03, 0.8)
        cols[f"amount{v}"] = np.where(rng.random(n) < share, rng.lognormal(8, 1.5, n), 0.0)
    X = np.vstack(list(cols.values()))
    d = rng.lognormal(4.0, 0.5, n) * 0.02  # national weights x an area share
    # the area's composition differs from the nation's: richer, so g grows with the AGI bin
    g_hidden = np.clip(rng.lognormal(0.0, 0.35, n) * np.exp(0.5 * (agi_bin - 4)), 0.0, 9.0)
    b = X @ (d * g_hidden)
    import scipy.sparse as sp

    return co.CalibrationProblem(
        sp.csc_matrix(X),
        b,
        initial_weights=d,
        ratio_bounds=(0.0, 10.0),
        target_names=list(cols),
    )


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--peers", default="all", help="all, none, or a comma list")
    ap.add_argument("--cvxpy-max-n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs of every tool")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per peer run")
    ap.add_argument("--no-per-area", action="store_true")
    args = ap.parse_args(argv)
    peers = (
        set(PY_PEERS) | set(R_TOOLS)
        if args.peers == "all"
        else (set() if args.peers == "none" else set(args.peers.split(",")))
    )
    warnings.simplefilter("ignore")
    # warm up numba's compiled kernels (loaded from cache after the first install)
    c, k, d, m = make_units(2000, "linear")
    run_ours(frame(c, k, "linear"), d, m, "linear")
    rows = []
    for kind in ("raking", "linear"):
        for n in args.sizes:
            codes, cont, d, margins = make_units(n, kind)
            df = frame(codes, cont, kind)
            times = []
            for _ in range(args.repeat):
                secs, w, res = run_ours(df, d, margins, kind)
                times.append(secs)
            ours = min(times)
            rows.append(
                dict(
                    problem=kind,
                    n=n,
                    tool="calibopt newton",
                    seconds=ours,
                    err=margin_error(w, codes, cont, margins),
                    note=f"{res.iterations} Newton steps",
                )
            )
            if n <= args.cvxpy_max_n:
                secs, w, res = run_ours(df, d, margins, kind, solver="CLARABEL")
                rows.append(
                    dict(
                        problem=kind,
                        n=n,
                        tool="cvxpy + Clarabel (our model)",
                        seconds=secs,
                        err=margin_error(w, codes, cont, margins),
                        note=res.status,
                    )
                )
            else:
                rows.append(
                    dict(
                        problem=kind,
                        n=n,
                        tool="cvxpy + Clarabel (our model)",
                        seconds=None,
                        err=None,
                        note=f"skipped above n={args.cvxpy_max_n}",
                    )
                )
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                r_tools = [
                    t for t in R_TOOLS if t in peers and not (t == "rake" and kind != "raking")
                ]
                write_inputs(folder, codes, cont, d, margins, with_r=bool(r_tools))
                for tool, (out, note) in run_r(
                    folder, kind, r_tools, args.timeout, args.repeat
                ).items():
                    label = {
                        "survey": "R survey::calibrate",
                        "survey_sparse": "R survey::calibrate sparse",
                        "rake": "R survey::rake",
                        "sampling": "R sampling::calib",
                    }[tool]
                    rows.append(
                        dict(
                            problem=kind,
                            n=n,
                            tool=label,
                            seconds=None if out is None else out[0],
                            err=None if out is None else margin_error(out[1], codes, cont, margins),
                            note=note,
                        )
                    )
                for tool in ("samplics", "balance", "ipfn", "weightipy"):
                    if tool not in peers or (kind == "linear" and tool != "samplics"):
                        continue
                    if kind == "linear" and n > 10_000:
                        rows.append(
                            dict(
                                problem=kind,
                                n=n,
                                tool=tool,
                                seconds=None,
                                err=None,
                                note="skipped: forms an n x n matrix (OOM at 1e5)",
                            )
                        )
                        continue
                    out, note = run_python_peer(tool, folder, kind, args.timeout, args.repeat)
                    rows.append(
                        dict(
                            problem=kind,
                            n=n,
                            tool=tool,
                            seconds=None if out is None else out[0],
                            err=None if out is None else margin_error(out[1], codes, cont, margins),
                            note=note,
                        )
                    )
            print(f"done {kind} n={n}", file=sys.stderr, flush=True)
    if not args.no_per_area:
        p = per_area_problem()
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = co.calibrate(p, method="truncated")
            times.append(time.perf_counter() - t0)
        rows.append(
            dict(
                problem="per-area 215k x 92",
                n=p.n_units,
                tool="calibopt newton",
                seconds=min(times),
                err=r.max_rel_error,
                note=f"{r.iterations} steps, {int(np.sum(r.g <= 1e-12))} g at 0",
            )
        )
        t0 = time.perf_counter()
        rc = co.calibrate(p, method="truncated", solver="CLARABEL")
        rows.append(
            dict(
                problem="per-area 215k x 92",
                n=p.n_units,
                tool="cvxpy + Clarabel (our model)",
                seconds=time.perf_counter() - t0,
                err=rc.max_rel_error,
                note=rc.status,
            )
        )
    table = pd.DataFrame(rows)
    ours = table[table.tool == "calibopt newton"].set_index(["problem", "n"])["seconds"]
    table["ratio"] = [
        None if s is None or np.isnan(s) else s / ours[(p, n)]
        for p, n, s in zip(table.problem, table.n, table.seconds)
    ]
    print()
    print("| problem | n | tool | seconds | time / calibopt | max rel margin error | note |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    for r in table.itertuples():
        ratio = r.ratio
        print(
            f"| {r.problem} | {r.n:,} | {r.tool} | {fmt(r.seconds, '.3f')} | "
            f"{fmt(ratio, '.1f')} | {fmt(r.err, '.1e')} | {r.note} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
