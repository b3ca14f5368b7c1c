"""Standard errors of calibrated totals at scale, side by side: calibopt vs R survey, samplics.

The problem (issue 14): a stratified cluster sample of 1,000,000 units (1,000 strata x 50 PSUs x
20 units), raked to 70 targets (six categorical margins of 20, 15, 10, 10, 8 and 4 levels and
three continuous totals), 20 variables of interest. Steps:

* ``ht_se``: design-based SEs of the 20 totals (no calibration);
* ``calibrate``: the raking itself (for scale);
* ``linearised_se``: the SEs of the 20 calibrated totals (residual method; goal < 1 s);
* ``replicates``: 100 Rao-Wu bootstrap replicates, each re-calibrated by raking, on 2 worker
  processes (goal < 60 s), then their SEs (``replicates_se``).

Peers: R survey (``svytotal`` on the calibrated ``svydesign``, and ``calibrate`` +
``svytotal`` on ``as.svrepdesign(type="subbootstrap")``; R's replicates are slow, so it runs
``--r-replicates`` of them and the table gives the time per replicate too), and samplics
(Taylor SEs and uncalibrated bootstrap replicates: it has neither calibrated linearisation nor
raking to continuous totals) in its own venv (``benchmarks/_venvs/samplics``). A missing peer is
skipped and the table says so.

Usage:
  flock /tmp/calibopt-heavy.lock python benchmarks/bench_variance.py [--strata 1000]
      [--replicates 100] [--workers 2] [--r-replicates 5] [--peers all|none|r,samplics]
      [--repeat 3]
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
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import calibopt as co
import calibopt.variance as cv

HERE = Path(__file__).resolve().parent
LEVELS = (20, 15, 10, 10, 8, 4)
N_CONT = 3


def make(n_strata: int, psu_per: int = 50, per_psu: int = 20, n_y: int = 20, seed: int = 0):
    """Units, design columns, the calibration matrix (targets x units), targets and y's."""
    rng = np.random.default_rng(seed)
    n = n_strata * psu_per * per_psu
    stratum = np.repeat(np.arange(n_strata), psu_per * per_psu)
    psu = np.repeat(np.arange(n_strata * psu_per), per_psu)
    cats = np.stack([rng.integers(0, k, n) for k in LEVELS], axis=1)
    cont = np.stack(
        [rng.gamma(2.0, 1.0, n), rng.normal(5.0, 1.0, n) ** 2, rng.exponential(1.0, n)], axis=1
    )
    d = rng.uniform(50.0, 150.0, n)
    rows, offset = [], 0
    for j, k in enumerate(LEVELS):
        rows.append(offset + cats[:, j])
        offset += k
    rows += [np.full(n, offset + j) for j in range(N_CONT)]
    data = np.concatenate([np.ones(n * len(LEVELS)), cont.T.reshape(-1)])
    units = np.tile(np.arange(n), len(LEVELS) + N_CONT)
    X = sp.csr_matrix((data, (np.concatenate(rows), units)), shape=(offset + N_CONT, n))
    b = (X @ d) * rng.uniform(0.97, 1.03, X.shape[0])
    total_n = d.sum() * 1.01
    offset = 0
    for k in LEVELS:  # every margin sums to the same population size
        b[offset : offset + k] *= total_n / b[offset : offset + k].sum()
        offset += k
    Y = np.stack(
        [cont[:, j % N_CONT] * rng.uniform(0.5, 2.0) + rng.normal(0.0, 1.0, n) for j in range(n_y)],
        axis=1,
    )
    return dict(stratum=stratum, psu=psu, cats=cats, cont=cont, d=d, X=X, b=b, Y=Y)


def best(fn, repeat):
    secs, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        secs = min(secs, time.perf_counter() - t0)
    return secs, out


def warm_up() -> None:
    """Compile numba's kernels before anything is timed (in the foreground: otherwise a fresh
    checkout runs the NumPy fallbacks while a background process compiles), and pay the
    imports; worker processes inherit the setting and load the compiled kernels."""
    os.environ["CALIBOPT_KERNELS"] = "numba"
    for per_psu in (30, 500):  # below and above the kernels' serial/parallel switch
        u = make(5, psu_per=10, per_psu=per_psu)
        design = cv.Design(None, weights=u["d"], strata=u["stratum"], psu=u["psu"])
        problem = co.CalibrationProblem(u["X"], u["b"], initial_weights=u["d"])
        cv.total(u["Y"], design.calibrate(problem, "raking"))


def run_ours(u, replicates, workers, repeat):
    res = {}
    res["design"], design = best(
        lambda: cv.Design(None, weights=u["d"], strata=u["stratum"], psu=u["psu"]), 1
    )
    problem = co.CalibrationProblem(u["X"], u["b"], initial_weights=u["d"])
    res["ht_se"], ht = best(lambda: cv.total(u["Y"], design), repeat)
    res["calibrate"], cal = best(lambda: design.calibrate(problem, "raking"), 1)
    assert cal.result.status == "optimal", cal.result.summary()
    res["linearised_se"], lin = best(lambda: cv.total(u["Y"], cal), repeat)
    ses = {"ht_se": ht.se, "linearised_se": lin.se}
    if replicates:
        t0 = time.perf_counter()
        reps = cal.replicates(
            "bootstrap", replicates=replicates, seed=1, executor=workers, progress=False
        )
        res["replicates_calibrate"] = time.perf_counter() - t0
        res["replicates_se"], rep = best(lambda: cv.total(u["Y"], reps), repeat)
        ses["replicates_se"] = rep.se
        bad = [s for s in reps.info["replicate_status"] if s != "optimal"]
        res["replicate_failures"] = len(bad)
    return res, ses


def write_inputs(folder: Path, u) -> None:
    n = u["d"].size
    cols = ["stratum", "psu", "d"] + [f"c{j + 1}" for j in range(len(LEVELS))]
    cols += [f"x{j + 1}" for j in range(N_CONT)] + [f"y{j + 1}" for j in range(u["Y"].shape[1])]
    mat = np.column_stack([u["stratum"], u["psu"], u["d"], u["cats"], u["cont"], u["Y"]])
    np.asfortranarray(mat, dtype=np.float64).ravel(order="F").tofile(folder / "units.bin")
    (folder / "columns.txt").write_text("\n".join(cols) + "\n")
    (folder / "n.txt").write_text(f"{n}\n")
    # R's model.matrix(~c1+...+c6+x1+x2+x3): intercept, levels 2..k of each factor, totals
    names, totals, offset = ["(Intercept)"], [float(u["b"][: LEVELS[0]].sum())], 0
    for j, k in enumerate(LEVELS):
        names += [f"c{j + 1}{lev}" for lev in range(1, k)]
        totals += list(u["b"][offset + 1 : offset + k])
        offset += k
    names += [f"x{j + 1}" for j in range(N_CONT)]
    totals += list(u["b"][offset:])
    pd.DataFrame({"name": names, "total": totals}).to_csv(folder / "population.csv", index=False)
    np.savez(folder / "units.npz", stratum=u["stratum"], psu=u["psu"], d=u["d"], Y=u["Y"])


def run_peer(cmd, timeout):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {}, f"timed out after {timeout} s"
    steps = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            steps[rec["step"]] = rec
    note = "" if out.returncode == 0 else f"failed: {out.stderr.strip().splitlines()[-1:]}"
    return steps, note


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strata", type=int, default=1000, help="strata of 50 PSUs x 20 units")
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--r-replicates", type=int, default=5)
    ap.add_argument("--peers", default="all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=3600)
    args = ap.parse_args(argv)
    peers = {"r", "samplics"} if args.peers == "all" else set(filter(None, args.peers.split(",")))
    peers -= {"none"}
    t0 = time.perf_counter()
    warm_up()
    print(f"warm-up (numba kernels compiled or loaded, imports): {time.perf_counter() - t0:.1f} s")
    u = make(args.strata)
    n, p, k = u["d"].size, u["X"].shape[0], u["Y"].shape[1]
    print(
        f"{n:,} units in {args.strata} strata x 50 PSUs, {p} targets, {k} variables; "
        f"{args.replicates} bootstrap replicates on {args.workers} workers"
    )
    ours, our_se = run_ours(u, args.replicates, args.workers, args.repeat)
    r_steps, r_note, s_steps, s_note = {}, "not run", {}, "not run"
    with tempfile.TemporaryDirectory(prefix="bench_variance_") as tmp:
        folder = Path(tmp)
        write_inputs(folder, u)
        if "r" in peers:
            if shutil.which("Rscript") is None:
                r_note = "skipped: Rscript not found"
            else:
                r_steps, r_note = run_peer(
                    [
                        "Rscript",
                        str(HERE / "peers" / "variance.R"),
                        str(folder),
                        str(args.r_replicates),
                    ],
                    args.timeout,
                )
        venv = Path(os.environ.get("CALIBOPT_PEER_VENVS", HERE / "_venvs")) / "samplics"
        if "samplics" in peers:
            python = venv / "bin" / "python"
            if not python.exists():
                s_note = f"skipped: no venv at {venv}"
            else:
                s_steps, s_note = run_peer(
                    [
                        str(python),
                        str(HERE / "peers" / "variance_samplics.py"),
                        str(folder),
                        str(args.replicates),
                    ],
                    args.timeout,
                )
    rows = []
    for step in ("ht_se", "calibrate", "linearised_se", "replicates_calibrate", "replicates_se"):
        if step not in ours:
            continue
        r = r_steps.get(step, {}).get("seconds")
        s = s_steps.get(step, {}).get("seconds")
        agree = []
        for peer, steps in (("R", r_steps), ("samplics", s_steps)):
            if step in our_se and steps.get(step, {}).get("se") and step != "replicates_se":
                diff = np.max(np.abs(our_se[step] / np.asarray(steps[step]["se"]) - 1))
                agree.append(f"max |SE/{peer} - 1| = {diff:.1e}")
        agree = "; ".join(agree)
        rows.append((step, ours[step], r, s, agree))
    print(
        f"\n{'step':22s} {'calibopt s':>11s} {'R survey s':>11s} {'samplics s':>11s} "
        f"{'R/calibopt':>10s}  check"
    )
    for step, ours_s, r, s, agree in rows:
        ratio = f"{r / ours_s:10.1f}" if r is not None else f"{'-':>10s}"
        print(
            f"{step:22s} {ours_s:11.3f} {r if r is not None else float('nan'):11.3f} "
            f"{s if s is not None else float('nan'):11.3f} {ratio}  {agree}"
        )
    if args.replicates and "replicates_calibrate" in r_steps and args.r_replicates:
        per_ours = ours["replicates_calibrate"] / args.replicates
        per_r = r_steps["replicates_calibrate"]["seconds"] / args.r_replicates
        print(
            f"\nper re-calibrated replicate: calibopt {per_ours:.3f} s (wall, {args.workers} "
            f"workers), R survey {per_r:.3f} s (1 core, {args.r_replicates} replicates run): "
            f"R/calibopt {per_r / per_ours:.1f}; R would take ~{per_r * args.replicates:.0f} s "
            f"for {args.replicates}"
        )
    if args.replicates:
        ratio = our_se["replicates_se"] / our_se["linearised_se"]
        print(
            f"bootstrap SE / linearised SE over the {k} totals: median {np.median(ratio):.3f} "
            f"(range {ratio.min():.3f}-{ratio.max():.3f}); replicate calibrations not optimal: "
            f"{ours['replicate_failures']}"
        )
    print(
        f"\ngoals: linearised SEs {ours['linearised_se']:.3f} s (< 1 s: "
        f"{'met' if ours['linearised_se'] < 1 else 'NOT met'})",
        end="",
    )
    if args.replicates:
        met = "met" if ours["replicates_calibrate"] < 60 else "NOT met"
        print(
            f"; {args.replicates} replicates {ours['replicates_calibrate']:.1f} s (< 60 s: {met})"
        )
    else:
        print()
    print(
        f"R survey: {r_note or 'ran'}; samplics: {s_note or 'ran'} "
        f"(Taylor HT SEs and uncalibrated replicates only)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
