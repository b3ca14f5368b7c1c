"""Real local-area calibration: Tax-Calculator's CPS tax units x the published state targets.

Two parts, both on real public data loaded by :mod:`calibopt.datasets.public` (fetch them
first: ``python -m calibopt.datasets.public fetch``):

* **states** -- the per-area form the published area-weighting workflows use: one
  bounded-ratio QP per state (``min sum d (g - 1)^2 / 2`` s.t. the state's targets, ``0 <= g
  <= U``; all 280,005 tax units placed in the state, prior :func:`shared_prior`), for all 51
  states, on two target sets: *published* (every state target: 10 AGI bins x returns and AGI,
  18 age groups, population) and *usable* (without the AGI < $1 bin, which the CPS cannot
  reach: it has almost no negative incomes). Reported: total time, share solved, share
  certified infeasible (with the targets named), worst relative error of the solved states,
  and the same QPs through cvxpy + Clarabel on a few states, side by side. Anchor: the
  published workflow needs ~40 s per area with Clarabel and solves ~80% of the areas.
* **national** -- the stacked problem: 51 states x 280,005 units = 14,280,255 columns, the
  usable state targets plus the national returns and AGI in a 5% band (the national table and
  the sum of the state file differ by 1.1-1.7%, and the CPS cannot represent the 2.2M returns
  with AGI below $1 that the national count includes). Reported: matrix build time and memory,
  non-zeros; the exact per-state bounded linear solves assembled into the 14.3M weights
  (national targets checked, not imposed: ``calibrate(..., blocks=)`` would first solve the
  whole problem for the national shares, and a national target the state file contradicts
  sends it to the phase-1 LP certificate, minutes at this size today); hard-concrete seconds
  per epoch against its memory-traffic bound and the fit after the polish; l0-mip on three
  small states (``--skip-l0`` to leave it out); a stacked file for one state, verified.

Usage::

    flock /tmp/calibopt-heavy.lock python benchmarks/bench_real.py [--part states|national|all]
        [--upper 10] [--home-share 0.0] [--clarabel-states 3] [--epochs 200]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _memory import settle, vm  # noqa: E402

NEGATIVE_BIN = "adjusted_gross_income<1;"  # the AGI < $1 bin (count and amount)


def load(home_share: float):
    from calibopt.datasets.public import load_state_targets, load_taxcalc_cps
    from calibopt.matrix import MatrixBuilder
    from calibopt.matrix.areas import area_shares, shared_prior

    t0 = time.perf_counter()
    ds = load_taxcalc_cps(2023)
    db = load_state_targets()
    t_load = time.perf_counter() - t0
    settle()
    rss0 = vm("VmRSS")
    t0 = time.perf_counter()
    m = MatrixBuilder(db, ds, None, level="state", period=2023).build(progress=False)
    t_build = time.perf_counter() - t0
    facts = {
        "load_s": t_load,
        "build_s": t_build,
        "build_peak_mib": vm("VmHWM") - rss0,
        "csr_mib": (m.X.data.nbytes + m.X.indices.nbytes + m.X.indptr.nbytes) / 2**20,
        "shape": m.X.shape,
        "nnz": m.X.nnz,
    }
    d = shared_prior(m.columns, area_shares(m), home_share=home_share)
    return ds, m, d, facts


# ---------------------------------------------------------------------------- states
def usable_rows(m, state):
    """The state's targets without the AGI < $1 bin, and without the population where the age
    groups are there: it equals their sum to the person in 49 states and differs by one person
    in Kansas (2,940,546 vs 2,940,547), which no weights can meet exactly."""
    from calibopt.matrix.areas import area_rows

    rows = area_rows(m, state)
    t = m.targets.iloc[rows]
    keep = ~t["name"].str.contains(NEGATIVE_BIN, regex=False).to_numpy()
    has_age = (t["domain_variable"] == "age").any()
    population = ((t["variable"] == "person_count") & (t["domain_variable"] == "")).to_numpy()
    return rows[keep & ~(population & has_age)]


def solve_state(m, d, state, rows, upper, solver=None, weights=None):
    import calibopt as co
    from calibopt.matrix.areas import area_problem

    p = area_problem(m, state, d, rows=rows, ratio_bounds=(0.0, upper))
    t = time.perf_counter()
    try:
        r = co.calibrate(p, method="truncated", solver=solver)
    except co.InfeasibleError as exc:
        return {
            "state": state,
            "status": "certified infeasible",
            "seconds": time.perf_counter() - t,
            "max_rel_error": np.nan,
            "targets": exc.targets,
        }
    if weights is not None:
        weights[p.unit_ids] = r.weights
    return {
        "state": state,
        "status": r.status,
        "seconds": time.perf_counter() - t,
        "max_rel_error": r.max_rel_error,
        "targets": [],
        "max_g": float(np.max(r.weights / np.where(p.initial_weights > 0, p.initial_weights, 1))),
    }


def part_states(m, d, args) -> None:
    from calibopt.matrix.areas import area_rows

    states = [int(s) for s in m.columns.geographies]
    solve_state(m, d, states[0], area_rows(m, states[0])[:3], args.upper)  # numba warm-up
    for label in ("published", "usable"):
        rows_of = {
            s: area_rows(m, s) if label == "published" else usable_rows(m, s) for s in states
        }
        t0 = time.perf_counter()
        out = [solve_state(m, d, s, rows_of[s], args.upper) for s in states]
        total = time.perf_counter() - t0
        frame = pd.DataFrame(out)
        if "max_g" not in frame:
            frame["max_g"] = np.nan
        solved = frame["status"].isin(["optimal", "within tolerance"])
        cert = frame["status"] == "certified infeasible"
        named = pd.Series([t for ts in frame["targets"] for t in ts]).str.split("/", n=1).str[1]
        print(
            f"\n## per-state bounded QPs, {label} targets (0 <= g <= {args.upper:g}, "
            f"home share {args.home_share:g})\n"
        )
        print(
            f"states {len(states)}, targets per state {min(map(len, rows_of.values()))}-"
            f"{max(map(len, rows_of.values()))}; total {total:.1f} s "
            f"(median {frame['seconds'].median():.2f} s, max {frame['seconds'].max():.2f} s); "
            f"solved {solved.sum()} ({100 * solved.mean():.0f}%), certified infeasible "
            f"{cert.sum()} ({100 * cert.mean():.0f}%), other {(~solved & ~cert).sum()}; "
            f"worst relative error of the solved {frame.loc[solved, 'max_rel_error'].max():.2e}"
            f"; max g {frame.loc[solved, 'max_g'].max():.2f}"
        )
        if cert.any():
            print(
                "targets named by the certificates (count over states):",
                named.value_counts().head(6).to_dict(),
            )
            slow = frame.loc[cert].nlargest(3, "seconds")[["state", "seconds"]]
            print("slowest certificates:", slow.round(2).to_dict("records"))
    k = args.clarabel_states
    if k:
        print(
            f"\n## side by side on {k} states, usable targets: calibopt Newton vs "
            f"cvxpy + Clarabel (same QP)\n"
        )
        print("| state | newton s | clarabel s | ratio | newton err | clarabel err | status |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for s in states[:k]:
            rows = usable_rows(m, s)
            a = solve_state(m, d, s, rows, args.upper)
            b = solve_state(m, d, s, rows, args.upper, solver="CLARABEL")
            print(
                f"| {s} | {a['seconds']:.2f} | {b['seconds']:.2f} | "
                f"{b['seconds'] / a['seconds']:.0f}x | {a['max_rel_error']:.1e} | "
                f"{b['max_rel_error']:.1e} | {a['status']} / {b['status']} |"
            )


# ---------------------------------------------------------------------------- national
def national_problem(m, d, upper, tolerance_national):
    import calibopt as co

    t = m.targets
    national = np.flatnonzero((t["geo_level"] == "national").to_numpy())
    rows = np.sort(
        np.concatenate([national, *(usable_rows(m, int(s)) for s in m.columns.geographies)])
    )
    tol = np.where(t["geo_level"] == "national", tolerance_national, 0.0)
    return co.CalibrationProblem(
        m.X[rows],
        t["value"].to_numpy()[rows],
        initial_weights=d,
        ratio_bounds=(0.0, upper),
        tolerance=tol[rows],
        target_names=t["name"].iloc[rows].tolist(),
        groups=t["group"].to_numpy(dtype=object)[rows],
    )


def fit_by_group(p, w) -> pd.DataFrame:
    est = p.X @ w
    err = np.abs(est - p.targets) / np.maximum(np.abs(p.targets), 1.0)
    frame = pd.DataFrame({"group": p.groups, "err": err})
    return frame.groupby("group", sort=False)["err"].agg(["size", "max", "mean"])


def part_national(m, d, facts, args) -> None:
    import calibopt as co

    p = national_problem(m, d, args.upper, args.national_band)
    print(f"\n## the {p.n_units:,}-column problem ({p.n_targets:,} targets, nnz {p.nnz:,})\n")
    print(
        f"load {facts['load_s']:.1f} s; matrix build {facts['build_s']:.1f} s, build peak "
        f"+{facts['build_peak_mib']:.0f} MiB (CSR {facts['csr_mib']:.0f} MiB, "
        f"{facts['csr_mib'] * 2**20 / facts['nnz']:.1f} B/nnz)"
    )
    # exact per-state bounded linear, assembled: each state's QP on its own block (the
    # national targets span the blocks; they are checked, not imposed: the state file and the
    # national table differ by 1.1-1.7%, so they hold only within a band)
    if args.skip_states:
        return part_hard_concrete(p.with_options(ratio_bounds=(0.0, args.hc_upper)), args)
    t = time.perf_counter()
    w = np.zeros(p.n_units)
    status = []
    for s in m.columns.geographies:
        out = solve_state(m, d, int(s), usable_rows(m, int(s)), args.upper, weights=w)
        status.append(out["status"])
    r = co.CalibrationResult.from_weights(
        p, w, method="truncated", solver="newton by state", proven_optimal=False
    )
    print(
        f"exact per-state bounded linear, 51 blocks assembled: {time.perf_counter() - t:.1f} s, "
        f"states {pd.Series(status).value_counts().to_dict()}, overall status {r.status}, "
        f"max rel error {r.max_rel_error:.2e}, nnz {r.nnz:,}"
    )
    print(fit_by_group(p, r.weights).to_string(float_format=lambda x: f"{x:.2e}"))
    if args.epochs:
        # a sparse fit keeps ~2% of the columns, so each kept weight carries ~50 priors: the
        # dense problem's g <= U would make it infeasible; hard-concrete gets g <= hc_upper
        part_hard_concrete(p.with_options(ratio_bounds=(0.0, args.hc_upper)), args)
    if not args.skip_l0:
        part_l0_blocks(m, d, args)
    part_stack(m, r.weights)


def part_hard_concrete(p, args) -> None:
    import torch
    from bench_hard_concrete import copy_bandwidth, epoch_bytes

    import calibopt as co

    bw = copy_bandwidth(torch)
    bound = epoch_bytes(*p.X.shape, p.X.nnz, 4) / bw
    t = time.perf_counter()
    r = co.calibrate(
        p,
        method="hard-concrete",
        epochs=args.epochs,
        lambda_l0=args.lambda_l0,
        lr=args.lr,
        eval_every=10,
        patience=10**6,
        progress=False,
        repair=False,  # repair checks each support by a phase-1 LP first: minutes at this size
    )
    hc, pol = r.info["hard_concrete"], r.info["polish"]
    print(
        f"\nhard-concrete, {args.epochs} epochs in {time.perf_counter() - t:.0f} s: "
        f"{hc['seconds_per_epoch']:.3f} s/epoch vs bound {bound:.3f} s "
        f"({hc['seconds_per_epoch'] / bound:.2f}x; copy bandwidth {bw / 1e9:.1f} GB/s); "
        f"before polish {pol['before']}; after polish {pol['after']} ({pol['status']}, "
        f"{pol['seconds']:.0f} s); status {r.status}; peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB"
    )


def part_l0_blocks(m, d, args) -> None:
    import calibopt as co
    from calibopt.matrix.areas import area_problem

    print("\nl0-mip per state (usable targets, 0.5% bands, g <= U, 60 s per state):")
    for s in (10, 50, 56):
        p = area_problem(
            m, s, d, rows=usable_rows(m, s), ratio_bounds=(0.0, args.upper), tolerance=0.005
        )
        t = time.perf_counter()
        try:
            r = co.calibrate(p, method="l0-mip", time_limit=60)
        except co.CalibrationError as exc:
            print(f"  {s}: {type(exc).__name__} after {time.perf_counter() - t:.0f} s: {exc}")
            continue
        b = r.info["blocks"].iloc[0]
        print(
            f"  {s}: nnz {r.nnz:,} of {p.n_units:,}, max rel error {r.max_rel_error:.2e}, "
            f"proven {bool(b['proven_optimal'])}, gap {b['mip_gap']:.2g}, "
            f"{time.perf_counter() - t:.0f} s"
        )


def part_stack(m, w) -> None:
    from calibopt.stacking import load as load_stacked
    from calibopt.stacking import stack, verify

    ds = m.columns  # geographies and ids; the dataset comes from the loader below
    from calibopt.datasets.public import load_taxcalc_cps

    data = load_taxcalc_cps(2023)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        out = Path(tmp) / "de.h5"
        stack(w, ds.geographies, data, out, subset=[10], level="state")
        check = verify(load_stacked(out), m, w)
        print(
            f"\nstacked Delaware ({time.perf_counter() - t:.1f} s): max |file - X w| / |X w| "
            f"over its targets = {check['rel_error'].abs().max():.1e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["states", "national", "all"], default="all")
    ap.add_argument("--upper", type=float, default=10.0)
    ap.add_argument("--home-share", type=float, default=0.0)
    ap.add_argument("--clarabel-states", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--lambda-l0", type=float, default=1e-6)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--national-band", type=float, default=0.05)
    ap.add_argument("--skip-l0", action="store_true")
    ap.add_argument("--hc-upper", type=float, default=np.inf)
    ap.add_argument("--skip-states", action="store_true")
    args = ap.parse_args()
    print("# Real local-area calibration: CPS tax units x published state targets")
    _, m, d, facts = load(args.home_share)
    print(
        f"matrix {facts['shape'][0]:,} x {facts['shape'][1]:,}, nnz {facts['nnz']:,}, "
        f"built in {facts['build_s']:.1f} s"
    )
    if args.part in ("states", "all") and not args.skip_states:
        part_states(m, d, args)
    if args.part in ("national", "all"):
        part_national(m, d, facts, args)


if __name__ == "__main__":
    main()
