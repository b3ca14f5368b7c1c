"""Hard-Concrete L0 calibration at national scale: time per epoch against the memory-traffic
bound and against the peers, memory, convergence, sparsity and the polished fit.

Two problems, both built by calibopt itself (``calibopt.datasets`` + ``calibopt.matrix``):

* **country** — the synthetic country at full size: 436 districts x 12,000 households =
  5,232,000 columns, national, state and district targets of every variable (5,951 targets,
  95.7M non-zeros). Reported for calibopt: seconds per epoch (training loop without the
  evaluations), the memory-traffic lower bound of an epoch and the ratio, peak resident memory
  of the whole run (matrix build included) and the model's own bytes, epochs until the mean
  relative error of the deterministic weights first reaches 1%, the non-zeros, and the fit
  before and after the polish. For l0-python and microcalibrate: seconds per epoch and peak
  memory on the same matrix (each in its own virtual environment under ``benchmarks/_venvs``).
* **100k** — 1 state, 25 districts x 4,000 households = 100,000 columns, 328 targets:
  calibopt with polish vs l0-python for 1,000 epochs: non-zeros, max relative error, seconds.

The bound: an epoch must read X and X' once each (values + column indices + row pointers)
and move at least 16 unit-length vectors (w and X'r written and read; the two parameters'
value, gradient and two Adam moments read, and value and moments written). Bytes / the copy
bandwidth (bytes read + written per second) of a large torch copy, measured in the same run
with the same threads.

Usage::

    python benchmarks/bench_hard_concrete.py [--epochs 1000] [--peer-epochs 5]
        [--peers all|none|l0-python,microcalibrate] [--skip-country] [--skip-100k]
        [--threads N] [--lambda-l0 1e-6] [--lr 0.2] [--lambda-l0-100k 1e-4] [--lr-100k 0.1]
        [--device cpu|cuda] [--dtype float32|float64]

On a GPU, the one prepared command (no peers: they run on the CPU) is::

    python benchmarks/bench_hard_concrete.py --device cuda --peers none --skip-100k

which reports seconds per epoch against the bound at the *device's* copy bandwidth (a torch
copy on the GPU, synchronised), for the README's table.

Each measured run is a child process (peak memory is per process); wrap the whole command in
``flock /tmp/calibopt-heavy.lock`` on a shared machine. Takes ~15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _hard_concrete import first_hit, timed_run  # noqa: E402

VENVS = Path(os.environ.get("CALIBOPT_PEER_VENVS", HERE / "_venvs"))
PEERS = ("l0-python", "microcalibrate")
GIB = 2**30


# ---------------------------------------------------------------------------- problems
def build_problem(which: str):
    """The country or the 100k problem, as a CalibrationProblem (plus build seconds)."""
    from calibopt.datasets import synthetic_country
    from calibopt.matrix import MatrixBuilder

    t0 = time.perf_counter()
    if which == "country":
        c = synthetic_country("full", seed=0)
    else:
        c = synthetic_country("default", seed=0, n_states=1, n_districts=25, n_households=4000)
    m = MatrixBuilder(c.targets_database(), c.dataset, c.geographies, rules=c.rules).build()
    p = m.to_problem()
    del m, c
    return p, time.perf_counter() - t0


def copy_bandwidth(torch, n_bytes: int = 2 * GIB // 5, device: str = "cpu") -> float:
    """Bytes read + written per second by a large torch copy on ``device`` (best of 5)."""
    dev = torch.device(device)
    a = torch.empty(n_bytes // 4, dtype=torch.float32, device=dev).uniform_()
    b = torch.empty_like(a)
    b.copy_(a)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    best = np.inf
    for _ in range(5):
        sync()
        t = time.perf_counter()
        b.copy_(a)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * a.numel() * 4 / best


def epoch_bytes(m: int, n: int, nnz: int, itemsize: int) -> int:
    """Minimal bytes one epoch moves (see the module docstring)."""
    index = 4  # int32 column indices and row pointers
    X = nnz * (itemsize + index) + (m + 1) * index
    XT = nnz * (itemsize + index) + (n + 1) * index
    return X + XT + 16 * n * itemsize


# ---------------------------------------------------------------------------- child runs
def child_ours(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    p, t_build = build_problem(args.problem)
    out: dict = {"build_seconds": t_build, "shape": list(p.X.shape), "nnz": int(p.X.nnz)}
    bw = copy_bandwidth(torch, device=args.device)
    out["copy_bandwidth"] = bw
    itemsize = 8 if args.dtype == "float64" else 4
    out["bound_seconds"] = epoch_bytes(*p.X.shape, p.X.nnz, itemsize) / bw
    out["device"] = args.device
    out["dtype"] = args.dtype
    print("PARTIAL " + json.dumps(out), flush=True)
    r, out["wall_seconds"], _ = timed_run(
        p,
        emit=functools.partial(print, flush=True),
        epochs=args.epochs,
        lambda_l0=args.lambda_l0,
        lr=args.lr,
        threads=args.threads or None,
        device=args.device,
        dtype=args.dtype,
    )
    hc = r.info["hard_concrete"]
    h = r.info["history"]
    hit = first_hit(h.to_dict("records"), "mean_rel_error", 0.01)
    pol = r.info["polish"]
    out.update(
        seconds_per_epoch=hc["seconds_per_epoch"],
        epochs=hc["epochs"],
        setup_seconds=r.timings["setup"],
        polish_seconds=pol["seconds"],
        epochs_to_1pct_mean=None if hit is None else int(hit["epoch"]),
        best_epoch=hc["best_epoch"],
        device_bytes=hc["device_bytes"],
        threads=hc["threads"],
        before=pol["before"],
        after=pol["after"],
        polish_status=pol["status"],
        polish_attempts=[a["support"] for a in pol["attempts"]],
        max_g=float(r.g.max()),
    )
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def _save_for_peers(p, path: Path) -> None:
    codes = np.unique(np.asarray(p.groups, dtype=str), return_inverse=True)[1]
    np.savez(
        path,
        indptr=p.X.indptr,
        indices=p.X.indices,
        data=p.X.data,
        shape=np.array(p.X.shape),
        targets=p.targets,
        initial_weights=p.initial_weights,
        group_codes=codes,
    )


def run_peer(tool: str, npz: Path, epochs: int, args) -> dict:
    venv = VENVS / tool.removesuffix("-defaults")
    py = venv / "bin" / "python"
    if not py.exists():
        return {"tool": tool, "skipped": f"no virtual environment at {venv}"}
    from calibopt.solvers.hard_concrete.gates import GateSpec

    la0 = GateSpec().log_alpha_for(0.95)  # the same starting gates as calibopt's default
    cmd = [
        str(py),
        str(HERE / "peers" / "hard_concrete_peer.py"),
        tool,
        str(npz),
        str(epochs),
        str(args.lambda_l0),
        str(args.lr),
        str(la0),
        str(args.threads or os.cpu_count()),
    ]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    if res.returncode != 0 or not line:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"tool": tool, "skipped": f"failed (rc {res.returncode}): {' | '.join(tail)}"}
    out = json.loads(line[0][7:])
    out["wall_seconds"] = wall
    return out


def run_child(mode: str, args, extra: list[str]) -> dict:
    """Run a child; on timeout, rebuild what it reported (``PARTIAL`` and ``EVAL`` lines)."""
    cmd = [sys.executable, __file__, "--child", mode, *extra]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired as exc:
        text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        lines = text.splitlines()
        part = [json.loads(x[8:]) for x in lines if x.startswith("PARTIAL ")]
        evals = [json.loads(x[5:]) for x in lines if x.startswith("EVAL ")]
        if not part or not evals:
            raise SystemExit(f"child {mode} timed out after {args.timeout} s") from None
        out = part[-1] | {"timed_out": args.timeout, "evals": evals}
        return out
    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    if res.returncode != 0 or not line:
        raise SystemExit(f"child {mode} failed:\n{res.stderr[-3000:]}")
    return json.loads(line[0][7:])


# ---------------------------------------------------------------------------- report
def _fmt_gib(b: float) -> str:
    return f"{b / GIB:.2f} GiB"


def _from_evals(ours: dict) -> None:
    """Training figures from the evaluations a timed-out child reported (per-epoch seconds
    then include the evaluations every 5 epochs: an upper bound)."""
    ev = ours["evals"]
    hit = first_hit(ev, "mean_rel_error", 0.01)
    last = ev[-1]
    fit = {k: last[k] for k in ("max_rel_error", "mean_rel_error")} | {"nnz": last["live"]}
    ours.update(
        seconds_per_epoch=last["elapsed"] / last["epoch"],
        epochs=last["epoch"],
        epochs_to_1pct_mean=None if hit is None else hit["epoch"],
        best_epoch=None,
        device_bytes=float("nan"),
        threads=None,
        setup_seconds=float("nan"),
        polish_seconds=float("nan"),
        polish_status=f"not finished within {ours['timed_out']} s",
        polish_attempts=[],
        before=fit,
        after=fit,
        max_g=float("nan"),
        wall_seconds=last["elapsed"],
        peak_rss_bytes=float("nan"),
    )


def report_country(ours: dict, peers: list[dict]) -> None:
    if "timed_out" in ours:
        _from_evals(ours)
    m, n = ours["shape"]
    print(
        f"\n## Country: {m:,} targets x {n:,} columns, nnz {ours['nnz']:,} "
        f"(matrix built in {ours['build_seconds']:.1f} s)"
    )
    print(
        f"device {ours.get('device', 'cpu')} ({ours.get('dtype', 'float32')}): copy bandwidth "
        f"{ours['copy_bandwidth'] / 1e9:.1f} GB/s (read + write); "
        f"epoch bound {1e3 * ours['bound_seconds']:.0f} ms; {ours['threads']} CPU threads\n"
    )
    print("| tool | s / epoch | x bound | x calibopt | peak memory | notes |")
    print("| --- | --- | --- | --- | --- | --- |")
    s = ours["seconds_per_epoch"]
    print(
        f"| calibopt hard-concrete | {s:.3f} | {s / ours['bound_seconds']:.2f} | 1.00 | "
        f"{_fmt_gib(ours['peak_rss_bytes'])} | model {_fmt_gib(ours['device_bytes'])}; "
        f"setup {ours['setup_seconds']:.1f} s |"
    )
    for pr in peers:
        if "skipped" in pr:
            print(f"| {pr['tool']} | - | - | - | - | skipped: {pr['skipped']} |")
            continue
        ps = pr["seconds_per_epoch"]
        print(
            f"| {pr['tool']} | {ps:.3f} | {ps / ours['bound_seconds']:.2f} | {ps / s:.2f} | "
            f"{_fmt_gib(pr['peak_rss_bytes'])} | {pr['epochs']} epochs timed |"
        )
    b, a = ours["before"], ours["after"]
    print(
        f"\ncalibopt, {ours['epochs']} epochs in {ours['wall_seconds']:.0f} s: mean relative "
        f"error <= 1% first at epoch {ours['epochs_to_1pct_mean']}; best epoch "
        f"{ours['best_epoch']}; non-zeros {b['nnz']:,} of {n:,}; max / mean |rel error| "
        f"{b['max_rel_error']:.2e} / {b['mean_rel_error']:.2e} -> after polish "
        f"({ours['polish_status']}, {ours['polish_seconds']:.1f} s, supports "
        f"{ours['polish_attempts']}) {a['max_rel_error']:.2e} / {a['mean_rel_error']:.2e} "
        f"with {a['nnz']:,} non-zeros; max g = w/d {ours['max_g']:.1f}"
    )


def report_100k(ours: dict, peers: list[dict]) -> None:
    m, n = ours["shape"]
    print(f"\n## 100k: {m} targets x {n:,} columns, nnz {ours['nnz']:,}\n")
    print("| tool | epochs | seconds | s / epoch | non-zeros | max rel error | mean rel error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    b, a = ours["before"], ours["after"]
    print(
        f"| calibopt (before polish) | {ours['epochs']} | {ours['wall_seconds']:.1f} | "
        f"{ours['seconds_per_epoch']:.4f} | {b['nnz']:,} | {b['max_rel_error']:.2e} | "
        f"{b['mean_rel_error']:.2e} |"
    )
    print(
        f"| calibopt + polish | | | | {a['nnz']:,} | {a['max_rel_error']:.2e} | "
        f"{a['mean_rel_error']:.2e} |"
    )
    for peer in peers:
        name = {
            "l0-python": "l0-python (calibopt's settings)",
            "l0-python-defaults": "l0-python (its defaults)",
        }[peer["tool"]]
        if "skipped" in peer:
            print(f"| {name} | skipped: {peer['skipped']} | | | | | |")
            continue
        print(
            f"| {name} | {peer['epochs']} | {peer['wall_seconds']:.1f} | "
            f"{peer['seconds_per_epoch']:.4f} | {peer['nnz']:,} | "
            f"{peer['max_rel_error']:.2e} | {peer['mean_rel_error']:.2e} |"
        )
    for peer in peers:
        if "skipped" not in peer:
            print(
                f"\nnon-zeros: {peer['tool']} / calibopt after polish = "
                f"{peer['nnz'] / max(a['nnz'], 1):.1f}x; per epoch calibopt is "
                f"{peer['seconds_per_epoch'] / ours['seconds_per_epoch']:.1f}x faster"
            )
    print(
        f"calibopt max error after polish {a['max_rel_error']:.1e} (goal <= 1e-3); goal: "
        f">= 10x fewer non-zeros than l0-python's 96,340 measured with its defaults"
    )


def _options(args) -> list[str]:
    """The options a child run of calibopt needs."""
    return [
        "--lambda-l0",
        str(args.lambda_l0),
        "--lr",
        str(args.lr),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--peer-epochs", type=int, default=5)
    ap.add_argument("--peers", default="all")
    ap.add_argument("--skip-country", action="store_true")
    ap.add_argument("--skip-100k", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--lambda-l0", type=float, default=1e-6, help="country problem")
    ap.add_argument("--lr", type=float, default=0.2, help="country problem")
    ap.add_argument("--lambda-l0-100k", type=float, default=1e-4)
    ap.add_argument("--lr-100k", type=float, default=0.1)
    ap.add_argument("--timeout", type=int, default=2400, help="seconds per child run")
    ap.add_argument(
        "--device", default="cpu", help="cpu or cuda[:k]: the device of calibopt's run and bound"
    )
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--child", default=None)
    ap.add_argument("--problem", default="country")
    args = ap.parse_args()
    if args.child == "ours":
        print("RESULT " + json.dumps(child_ours(args)))
        return
    if args.child == "save":
        p, _ = build_problem(args.problem)
        _save_for_peers(p, Path(os.environ["CALIBOPT_BENCH_NPZ"]))
        print("RESULT {}")
        return
    peers = (
        []
        if args.peers == "none"
        else list(PEERS)
        if args.peers == "all"
        else (args.peers.split(","))
    )
    common = _options(args)
    print("# Hard-Concrete benchmark (calibopt vs memory-traffic bound vs peers)")
    with tempfile.TemporaryDirectory(prefix="calibopt-bench-hc-") as tmp:
        npz = Path(tmp) / "problem.npz"
        if not args.skip_country:
            ours = run_child(
                "ours", args, ["--problem", "country", "--epochs", str(args.epochs), *common]
            )
            results = []
            if peers:
                os.environ["CALIBOPT_BENCH_NPZ"] = str(npz)
                run_child("save", args, ["--problem", "country"])
                results = [run_peer(t, npz, args.peer_epochs, args) for t in peers]
                npz.unlink()
            report_country(ours, results)
        if not args.skip_100k:
            args.lambda_l0, args.lr = args.lambda_l0_100k, args.lr_100k
            common = _options(args)
            ours = run_child("ours", args, ["--problem", "100k", "--epochs", "1000", *common])
            results = []
            if "l0-python" in peers:
                os.environ["CALIBOPT_BENCH_NPZ"] = str(npz)
                run_child("save", args, ["--problem", "100k"])
                results = [
                    run_peer(t, npz, 1000, args) for t in ("l0-python-defaults", "l0-python")
                ]
            report_100k(ours, results)


if __name__ == "__main__":
    main()
