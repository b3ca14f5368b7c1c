"""Exact dual Newton at national scale, with Clarabel and hard-concrete on the same problem.

The problem is the synthetic country's local-area matrix (``--sizes``: ``small`` 80,000
columns x 605 targets, ``default``, ``full`` 5,232,000 x 5,951 with 95.7M non-zeros). Each case
runs in a fresh subprocess, so peak memory is the case's own; the matrix is built once per size
and noise level and cached as .npz (with its target groups beside it), not timed.

calibopt's dual Newton (``--cases newton``):

* ``exact-linear``, ``exact-raking`` -- noiseless targets, every target exact, ``w >= 0``;
* ``bands-noiseless-<method>`` -- noiseless targets, 1% bands (nested geographies: the band
  rows are linearly dependent, the case where an active-set loop stalled);
* ``bands-truncated``, ``bands-raking`` -- the realistic case of issue 17: 2% noise between
  levels, 1% bands, ratio bounds (0, 20); either every band and bound met or infeasibility
  certified;
* ``passes`` -- no fit: the seconds of one raking pass of each kind (with the Newton matrix on
  every row, on the rows an exact fit keeps, without it, the plain weighted Gram).

Narrow bands (``--cases narrow``, not part of ``all``): ``bands-narrow-<linear|raking>`` (0.1%)
and ``bands-narrower-<linear|raking>`` (0.01%), noiseless, ``fallback=None`` as every case here:
where the interior point's steps stay short, the answer is the exact solution at the bands'
middles (``within_tolerance``); run them on the ``small`` and ``default`` sizes.

With ``--baseline`` the two checkouts run in turns (``--repeat`` pairs, median): the first
process of a pair runs measurably slower on a virtual machine (fresh pages), so each goes
first every other time. ``--again K`` (Newton cases) calibrates ``K`` more times in the same
process and reports the fastest of those calls as well (``again s``): the memory a fit needs
is then already mapped, so it shows the solver's own time without the virtual machine's cost
of fresh pages (about 1 s per GB here, a third of a first national fit).

Peers on the same noiseless problem (``--cases peers``); each child runs under an address-space
cap (``--mem-cap-gib``, RLIMIT_AS, default 14 GiB) and ``--peer-timeout`` (default 600 s), and a
capped or stopped run is reported as such:

* ``clarabel-exact-linear``, ``clarabel-exact-raking``, ``clarabel-bands-noiseless-linear`` --
  the very program calibopt builds for the method (``calibrate(p, method, solver="CLARABEL")``:
  a QP for linear, an exponential-cone program for raking), compiled by cvxpy and solved by
  Clarabel with calibopt's accurate settings (tolerances 1e-11, 400 iterations);
* ``hard-concrete-exact`` -- ``method="hard-concrete"`` (torch, CPU, float32) on the same
  problem with the matrix's target groups (the loss normalisation), evaluated every 5 epochs
  and never stopped early, then its default exact polish (linear Newton on the support).
  ``--hc-epochs`` (2000), ``--hc-lambda-l0`` and ``--hc-lr`` (default 1e-6 and 0.2 at full
  size, as benchmarks/bench_hard_concrete.py; 1e-4 and 0.1 at the other sizes).
  ``--hc-no-repair`` polishes the trained support only (``repair=False``). (Before this
  benchmark existed, the default repair screened the trained support with a phase-1 LP first,
  which at full size ran for minutes where Newton alone takes about 2 s; the trained support
  now goes to Newton first.)

Each row: seconds of ``calibrate`` (the problem built beforehand; cvxpy's compilation
included), iterations (Newton steps, Clarabel iterations, epochs), status, the largest band
violation relative to ``|b|`` (0 inside the band; on the exact cases the largest relative
target error), non-zero weights, peak resident memory of the process, and the seconds until
that error first reached 1% and 1e-9. Newton and Clarabel return one answer (no intermediate
weights), so both columns show their finishing time when the final error is within the level
(for 1% an upper bound) and "not reached" otherwise. For hard-concrete, "to 1%" is the first
evaluation whose *max* error is <= 1% (seconds since the call began, setup and evaluations
included; the notes give the same for the *mean* error), and "to 1e-9" the whole call with the
polish, when the polished weights reach it. With ``--baseline PATH`` every case also runs with
the package at PATH (e.g. the main checkout) in the same run, and the table shows the ratio.

Usage::

    flock /tmp/calibopt-heavy.lock python benchmarks/bench_national.py
        [--sizes small default full] [--cases all|newton|peers|narrow|LIST]
        [--baseline /path/to/other/checkout] [--baseline-cases exact-linear,exact-raking]
        [--timeout 300] [--peer-timeout 600] [--mem-cap-gib 14] [--cache DIR] [--again K]
        [--hc-epochs 2000] [--hc-lambda-l0 X] [--hc-lr X] [--hc-no-repair]

The peer rows were measured with (small: every case finishes; full: the peers only)::

    ... bench_national.py --sizes small
            --cases exact-linear,exact-raking,bands-noiseless-linear,peers
    ... bench_national.py --sizes full --cases hard-concrete-exact
    ... bench_national.py --sizes full --cases clarabel-exact-linear,clarabel-exact-raking

The baseline runs only the exact cases by default: before issue 17 the band cases at full
size ran an LP certificate over every column first (minutes, up to 18 GB).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _hard_concrete import timed_run  # noqa: E402
from _national_report import hc_fields, progress, table  # noqa: E402

GIB = 2**30


class Case(NamedTuple):
    noise: float
    tolerance: float
    method: str
    ratio: tuple[float, float] | None
    solver: str | None = None  # None: calibopt's own (Newton); a peer otherwise


CASES = {
    "exact-linear": Case(0.0, 0.0, "linear", None),
    "exact-raking": Case(0.0, 0.0, "raking", None),
    "bands-noiseless-linear": Case(0.0, 0.01, "linear", None),
    "bands-noiseless-raking": Case(0.0, 0.01, "raking", None),
    "bands-truncated": Case(0.02, 0.01, "truncated", (0, 20)),
    "bands-raking": Case(0.02, 0.01, "raking", (0, 20)),
    "passes": Case(0.0, 0.0, "passes", None),
    "clarabel-exact-linear": Case(0.0, 0.0, "linear", None, "CLARABEL"),
    "clarabel-exact-raking": Case(0.0, 0.0, "raking", None, "CLARABEL"),
    "clarabel-bands-noiseless-linear": Case(0.0, 0.01, "linear", None, "CLARABEL"),
    "hard-concrete-exact": Case(0.0, 0.0, "hard-concrete", None, "torch"),
}
GROUPS = {
    "all": list(CASES),
    "newton": [k for k, c in CASES.items() if c.solver is None],
    "peers": [k for k, c in CASES.items() if c.solver is not None],
}
# narrow bands, where the interior point's steps stay short and the bands' middles answer
# (not in "all": run them by name or as "narrow", e.g. on the small and default sizes)
NARROW = {
    "bands-narrow-linear": Case(0.0, 0.001, "linear", None),
    "bands-narrow-raking": Case(0.0, 0.001, "raking", None),
    "bands-narrower-linear": Case(0.0, 0.0001, "linear", None),
    "bands-narrower-raking": Case(0.0, 0.0001, "raking", None),
}
GROUPS["narrow"] = list(NARROW)
CASES |= NARROW


# ---------------------------------------------------------------------------- matrices
def matrix_file(cache: Path, size: str, noise: float, groups: bool = False) -> Path:
    """Build (once, in a subprocess) and cache the country's matrix, targets, design weights;
    with ``groups``, also the target groups beside it (for caches built without them)."""
    path = cache / f"country_{size}_{noise:g}.npz"
    todo = [] if path.exists() else ["--build"]
    if groups and not groups_file(path).exists():
        todo.append("--build-groups")
    for flag in todo:
        subprocess.run(
            [sys.executable, __file__, flag, str(path), size, str(noise)],
            env=dict(os.environ, PYTHONPATH=str(REPO)), check=True,
        )  # fmt: skip
    return path


def groups_file(path: Path) -> Path:
    return path.with_suffix(".groups.npy")


def build(path: Path, size: str, noise: float, groups_only: bool = False) -> None:
    """Build the country's matrix into ``path`` and its groups beside it (called with --build);
    with ``groups_only``, check the names against ``path`` and write only the groups."""
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    c = synthetic_country(size, seed=0, noise=noise)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    p = m.to_problem()
    X = p.X
    if groups_only:
        if list(np.load(path)["names"]) != list(p.target_names):
            raise SystemExit(f"{path}: the cached target names differ from a fresh build")
    else:
        tmp = path.with_suffix(".part.npz")
        np.savez(
            tmp, data=X.data, indices=X.indices, indptr=X.indptr, shape=np.array(X.shape),
            targets=p.targets, d=p.initial_weights, names=np.array(p.target_names),
        )  # fmt: skip
        tmp.replace(path)
    tmp = path.with_suffix(".part.npy")
    np.save(tmp, np.asarray(p.groups, dtype=str))
    tmp.replace(groups_file(path))


# ---------------------------------------------------------------------------- one case
def emit(kind: str, obj: dict) -> None:
    print(f"{kind} {json.dumps(obj)}", flush=True)


def _hard_concrete(p, size: str, args) -> tuple:
    """Hard-concrete on ``p``: (result, iterations, extra row fields)."""
    full = size == "full"
    opts = dict(
        epochs=args.hc_epochs,
        lambda_l0=args.hc_lambda_l0 or (1e-6 if full else 1e-4),
        lr=args.hc_lr or (0.2 if full else 0.1),
        device="cpu",
        repair=not args.hc_no_repair,
    )
    r, _, evals = timed_run(p, emit=lambda line: print(line, flush=True), **opts)
    hc, pol = r.info["hard_concrete"], r.info["polish"]
    extra = hc_fields(evals) | {
        "settings": opts,
        "s_per_epoch": hc["seconds_per_epoch"],
        "training_s": r.timings["training"],
        "polish_s": pol["seconds"],
        "polish_status": pol["status"],
        "polish_supports": [a["support"] for a in pol["attempts"]],
        "before": pol["before"],
        "after": pol["after"],
    }
    return r, hc["epochs"], extra


def run_one(args) -> dict:
    """One case in this process (called with --one NPZ CASE SIZE)."""
    import scipy.sparse as sp
    from _memory import settle, vm

    import calibopt as co

    path, case, size = args.one
    c = CASES[case]
    if c.method == "passes":
        return _passes(Path(path))
    cap = None
    if c.solver is not None and args.mem_cap_gib > 0:
        cap = int(args.mem_cap_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    z = np.load(path)
    X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    groups = np.load(groups_file(Path(path))) if c.method == "hard-concrete" else None
    p = co.CalibrationProblem(
        X, z["targets"], initial_weights=z["d"], tolerance=c.tolerance, ratio_bounds=c.ratio,
        target_names=list(z["names"]), groups=groups,
    )  # fmt: skip
    # compile the kernels and import the peers' packages outside the timed call
    co.calibrate(co.CalibrationProblem(np.ones((2, 3)) + np.eye(2, 3), [3.0, 4.0]), method="raking")
    if c.solver == "CLARABEL":
        import cvxpy  # noqa: F401
    elif c.solver == "torch":
        import torch  # noqa: F401
    settle()
    row = {"case": case, "n": X.shape[1], "targets": X.shape[0], "nnz": X.nnz}
    row |= {"problem_gib": vm("VmRSS") / 1024, "mem_cap_gib": args.mem_cap_gib if cap else None}
    emit("STAGE", row | {"started": time.time()})  # the timed call starts now
    extra: dict = {}
    fit: dict = {"iterations": None, "violation": None, "nonzeros": None, "message": ""}
    t0 = time.perf_counter()
    try:
        if c.method == "hard-concrete":
            r, fit["iterations"], extra = _hard_concrete(p, size, args)
        else:
            verbose = c.solver is not None  # cvxpy's and Clarabel's logs tell how far they got
            r = co.calibrate(p, method=c.method, solver=c.solver, fallback=None, verbose=verbose)
            fit["iterations"] = r.iterations
        fit |= {"status": r.status, "message": r.message, "violation": violation(p, r.weights)}
        fit["nonzeros"] = int(np.count_nonzero(r.weights))
    except co.InfeasibleError as exc:
        fit |= {"status": "infeasible (certified)", "message": str(exc)}
    except MemoryError:
        fit["status"] = f"out of memory at cap {args.mem_cap_gib:g} GiB"
    except co.CalibrationError as exc:
        fit |= {"status": f"error: {type(exc).__name__}", "message": str(exc)}
    fit["seconds"] = time.perf_counter() - t0
    fit["again_s"] = again(p, c, args.again)
    fit["peak_gib"] = vm("VmHWM") / 1024
    return row | extra | fit | {"message": fit["message"][:300]}


def again(p, c: Case, times: int) -> float | None:
    """The fastest of ``times`` more calls of calibrate on ``p`` in this process (Newton cases
    only; None without them): the same work with the memory already mapped (calibrate alone,
    without the band check the first call's seconds include)."""
    import calibopt as co

    if times <= 0 or c.solver is not None:
        return None
    best = float("inf")
    for _ in range(times):
        t0 = time.perf_counter()
        with contextlib.suppress(co.CalibrationError):  # (an infeasible case raises each time)
            co.calibrate(p, method=c.method, fallback=None)
        best = min(best, time.perf_counter() - t0)
    return best


def _passes(path: Path) -> dict:
    """Seconds of one raking pass over the national matrix, each kind the best of 5: with
    the Newton matrix on every row (``seconds``), on the rows an exact fit keeps in play
    (the nation's and states' rows left out, as the dependence search leaves them out),
    without it, the plain weighted Gram, and cutting the segments (where the code has them)."""
    import scipy.sparse as sp

    from calibopt.solvers import kernels
    from calibopt.solvers.distances import get_distance
    from calibopt.solvers.evaluate import Evaluator

    z = np.load(path)
    X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    Xc, d, m = kernels.to_csc(X), z["d"], X.shape[0]
    lam = np.random.default_rng(0).normal(0, 0.02, m) / kernels.row_absmax(Xc)
    ev = Evaluator(Xc, d, None, None, get_distance("raking"))

    def best(f) -> float:
        f()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return min(times)

    cut = None
    if hasattr(kernels, "row_segments"):
        t0 = time.perf_counter()
        kernels.row_segments(Xc)
        cut = time.perf_counter() - t0
    every = best(lambda: ev(lam, 0, gram=True))
    plain = best(lambda: ev(lam, 0, gram=False))
    gram = best(lambda: ev.weighted_gram(d))
    district = np.array(["/" in n and len(n.split("/")[0]) > 2 for n in z["names"]])
    ev.set_rows(np.flatnonzero(district))
    in_play = best(lambda: ev(lam, 0, gram=True))
    status = (
        f"{int(district.sum())} rows in play {in_play:.3f} s; plain pass {plain:.3f} s; "
        f"weighted Gram {gram:.3f} s; segments " + ("none" if cut is None else f"{cut:.3f} s")
    )
    return {"case": "passes", "n": X.shape[1], "targets": m, "nnz": X.nnz, "seconds": every} | {
        "status": status,
        "iterations": None,
        "violation": None,
        "nonzeros": None,
    }


def violation(p, w: np.ndarray) -> float:
    """The largest band violation relative to ``|b|`` (0 inside every band)."""
    lo, hi = p.target_bands()
    est = p.X @ w
    scale = np.where(p.targets != 0, np.abs(p.targets), 1.0)
    return max(float(np.max(np.maximum(lo - est, est - hi) / scale, initial=0.0)), 0.0)


# ---------------------------------------------------------------------------- parent
OOM = (
    "MemoryError",
    "memory allocation of",
    "can't allocate memory",
    "bad_alloc",
    "Cannot allocate",
)


def partial(case: str, stdout: str, stderr: str, why: str, epochs: int) -> dict:
    """A row for a child that did not finish, from what it printed: its problem, the hard-
    concrete evaluations, how far cvxpy and Clarabel got."""
    stage = [json.loads(x[6:]) for x in stdout.splitlines() if x.startswith("STAGE ")]
    row = {"case": case, **(stage[-1] if stage else {}), "status": why}
    evals = [json.loads(x[5:]) for x in stdout.splitlines() if x.startswith("EVAL ")]
    notes = [progress(stdout, stderr)]
    if evals:
        row |= hc_fields(evals) | {"iterations": evals[-1]["epoch"]}
        if stage:
            after = time.time() - stage[-1]["started"] - evals[-1]["elapsed"]
            what = "training done, polish running" if evals[-1]["epoch"] >= epochs else "training"
            notes.append(f"stopped {after:.0f} s after the last evaluation ({what})")
    row["notes"] = "; ".join(x for x in notes if x)
    return row


def spawn(code: Path, path: Path, case: str, size: str, timeout: float, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code))
    cmd = [sys.executable, __file__, "--one", str(path), case, size, *child_options(args)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        text = [x.decode() if isinstance(x, bytes) else x or "" for x in (exc.stdout, exc.stderr)]
        return partial(case, *text, f"stopped after {timeout:g} s", args.hc_epochs)
    done = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if out.returncode == 0 and done:
        return json.loads(done[-1][7:]) | {"notes": progress(out.stdout, out.stderr)}
    tail = out.stderr.strip().splitlines()[-1:]
    why = f"error (exit {out.returncode}): {tail}"
    if any(s in out.stderr for s in OOM):
        why = f"out of memory at cap {args.mem_cap_gib:g} GiB (exit {out.returncode})"
    return partial(case, out.stdout, out.stderr, why, args.hc_epochs)


def child_options(args) -> list[str]:
    out = ["--mem-cap-gib", str(args.mem_cap_gib), "--hc-epochs", str(args.hc_epochs)]
    out += ["--again", str(args.again)]
    for flag, value in (("--hc-lambda-l0", args.hc_lambda_l0), ("--hc-lr", args.hc_lr)):
        if value:
            out += [flag, str(value)]
    if args.hc_no_repair:
        out.append("--hc-no-repair")
    return out


def _median_run(runs: list[dict]) -> dict:
    """The run with the median seconds (a failed run counts as the slowest)."""
    ranked = sorted(runs, key=lambda r: (r.get("seconds") is None, r.get("seconds") or 0.0))
    return ranked[(len(ranked) - 1) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=3, metavar=("NPZ", "CASE", "SIZE"), help=argparse.SUPPRESS)
    ap.add_argument("--build", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--build-groups", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", nargs="+", default=["default", "full"])
    ap.add_argument(
        "--cases", default="all", help="all, newton, peers, narrow or case names (comma list)"
    )
    ap.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    ap.add_argument("--baseline-cases", default="exact-linear,exact-raking")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per Newton case")
    ap.add_argument("--peer-timeout", type=float, default=600.0, help="seconds per peer case")
    ap.add_argument("--mem-cap-gib", type=float, default=14.0, help="peers' RLIMIT_AS (0: none)")
    ap.add_argument("--hc-epochs", type=int, default=2000)
    ap.add_argument("--hc-lambda-l0", type=float, default=None)
    ap.add_argument("--hc-lr", type=float, default=None)
    ap.add_argument(
        "--hc-no-repair", action="store_true", help="polish the trained support only (repair=False)"
    )
    ap.add_argument("--cache", type=Path, help="folder for the built matrices (kept)")
    ap.add_argument(
        "--repeat", type=int, default=1, help="side-by-side runs per case (median, in turns)"
    )
    ap.add_argument(
        "--again", type=int, default=0, help="Newton cases: more calls in the same process"
    )
    args = ap.parse_args(argv)
    if args.one:
        emit("RESULT", run_one(args))
        return 0
    if args.build or args.build_groups:
        path, size, noise = args.build or args.build_groups
        build(Path(path), size, float(noise), groups_only=bool(args.build_groups))
        return 0
    cases = [c for x in args.cases.split(",") for c in GROUPS.get(x, [x])]
    cache = args.cache or Path(tempfile.mkdtemp(prefix="calibopt-national-"))
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        for case in cases:
            c = CASES[case]
            path = matrix_file(cache, size, c.noise, groups=c.method == "hard-concrete")
            timeout = args.timeout if c.solver is None else args.peer_timeout
            if args.baseline is None or case not in args.baseline_cases.split(","):
                rows.append(spawn(REPO, path, case, size, timeout, args) | {"size": size})
                print(json.dumps(rows[-1]), flush=True)
                continue
            # side by side, in turns: the first process of a pair runs measurably slower on
            # this virtual machine (its fresh pages), so each goes first every other time
            ours, theirs = [], []
            for k in range(args.repeat):
                first = (len(rows) + k) % 2 == 0
                for mine in (first, not first):
                    got = spawn(REPO if mine else args.baseline, path, case, size, timeout, args)
                    (ours if mine else theirs).append(got)
            row = _median_run(ours) | {"size": size}
            base = _median_run(theirs)
            row["baseline_s"] = base.get("seconds")
            row["baseline_status"] = base.get("status")
            row["seconds_all"] = [r.get("seconds") for r in ours]
            row["baseline_s_all"] = [r.get("seconds") for r in theirs]
            row["baseline_again_s"] = base.get("again_s")
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    table(rows, args.baseline is not None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
