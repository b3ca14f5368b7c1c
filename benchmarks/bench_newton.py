"""Classical Newton at the limit: the user path vs peers, per-iteration time vs the memory-traffic
bound, and the first call in a fresh environment.

Three parts, each printed as a table measured in this run:

* ``user`` -- raking to 4 categorical variables (5, 10, 50, 4 levels: 69 cells) and linear
  (the same + 2 continuous totals) at each size, by the user path
  (``problem_from_margins`` + ``calibrate``; the DataFrame built beforehand, as for the
  peers), best of ``--repeat``; the peers of ``bench_classical.py`` (balance, samplics, ipfn,
  weightipy in their own venvs under ``benchmarks/_venvs``, R survey and sampling) up to
  ``--peer-max-n`` units.
* ``iteration`` -- the fused Newton pass (weights, estimates, conjugate and the Newton matrix
  in one pass over X) on the full, uncollapsed matrix, against the memory-traffic bound of
  one pass: X once (values, row indices, column pointers), ``d`` read and ``g`` written, at
  the best copy bandwidth measured in the same run (NumPy and a threaded numba copy). The
  entry-wise pass (every pair of a unit's entries) beside the pass Newton runs, which uses
  the one-hot cells of the categorical margins when it finds them
  (:mod:`calibopt.solvers.onehot`; the time to find them is shown).
  Also the whole Newton solve (as ``calibrate`` runs it, redundant targets left out), with and
  without merging identical units, split into its one-off setup (finding the cells, the
  redundancy check's Gram) and Newton's own time per iteration (``DualNewton.solve`` from its
  first pass to its last, divided by the iterations), beside the whole time / iterations.
* ``first`` -- a fresh process with an empty numba cache (``NUMBA_CACHE_DIR`` a new temp
  folder): import + the first ``calibrate`` vs the second, with the default kernels (NumPy
  until the background compile has cached numba's) and with ``CALIBOPT_KERNELS=numba``
  (compiling in the foreground, the behaviour before).

Usage::

    flock /tmp/calibopt-heavy.lock python benchmarks/bench_newton.py
        [--part all|user|iteration|first]
        [--sizes 1000000 10000000] [--peer-max-n 1000000] [--repeat 3] [--peers all|none|LIST]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
os.environ.setdefault("CALIBOPT_PEER_VENVS", str(HERE / "_venvs"))
sys.path.insert(0, str(HERE))

import bench_classical as bc  # noqa: E402

import calibopt as co  # noqa: E402

PY_PEERS = ("balance", "samplics", "ipfn", "weightipy")
R_LABELS = {
    "survey": "R survey::calibrate",
    "rake": "R survey::rake",
    "sampling": "R sampling::calib",
}


def best(fn, repeat: int):
    out, secs = None, np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        secs = min(secs, time.perf_counter() - t0)
    return secs, out


def part_user(sizes, repeat, peer_max_n, peers) -> list[dict]:
    rows = []
    for kind in ("raking", "linear"):
        for n in sizes:
            codes, cont, d, margins = bc.make_units(n, kind)
            df = bc.frame(codes, cont, kind)
            secs, (w, res) = best(lambda a=(df, d, margins, kind): bc.run_ours(*a)[1:], repeat)
            err = bc.margin_error(w, codes, cont, margins)
            rows.append(dict(kind=kind, n=n, tool="calibopt", seconds=secs, err=err,
                             note=f"{res.iterations} Newton steps"))  # fmt: skip
            if n > peer_max_n:
                rows.append(dict(kind=kind, n=n, tool="peers", seconds=None, err=None,
                                 note=f"skipped above n={peer_max_n:,}"))  # fmt: skip
                continue
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                r_tools = [t for t in ("survey", "rake", "sampling") if t in peers]
                if kind != "raking":
                    r_tools = [t for t in r_tools if t != "rake"]
                bc.write_inputs(folder, codes, cont, d, margins, with_r=bool(r_tools))
                for tool, (out, note) in bc.run_r(folder, kind, r_tools, 900, repeat).items():
                    rows.append(dict(kind=kind, n=n, tool=R_LABELS[tool],
                                     seconds=None if out is None else out[0],
                                     err=None if out is None
                                     else bc.margin_error(out[1], codes, cont, margins),
                                     note=note))  # fmt: skip
                for tool in PY_PEERS:
                    if tool not in peers or kind != "raking":
                        continue
                    out, note = bc.run_python_peer(tool, folder, kind, 900, repeat)
                    rows.append(dict(kind=kind, n=n, tool=tool,
                                     seconds=None if out is None else out[0],
                                     err=None if out is None
                                     else bc.margin_error(out[1], codes, cont, margins),
                                     note=note))  # fmt: skip
            print(f"done {kind} n={n}", file=sys.stderr, flush=True)
    return rows


def bandwidth() -> float:
    """Best read + write bytes per second of a large copy (NumPy, and numba threads)."""
    from calibopt.solvers.kernels import compiled

    a = np.random.default_rng(0).random(50_000_000)
    b = np.empty_like(a)
    bw = []
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        bw.append(2 * a.nbytes / (time.perf_counter() - t0))
    if compiled() is not None:
        import numba

        @numba.njit(parallel=True, cache=False)
        def pcopy(src, dst):  # pragma: no cover - compiled
            for i in numba.prange(src.size):
                dst[i] = src[i]

        pcopy(a, b)
        for _ in range(5):
            t0 = time.perf_counter()
            pcopy(a, b)
            bw.append(2 * a.nbytes / (time.perf_counter() - t0))
    return max(bw)


def part_iteration(sizes, repeat) -> list[dict]:
    from calibopt.formulations.distance_prepare import prepare
    from calibopt.solvers.active_set import newton_exact
    from calibopt.solvers.distances import get_distance
    from calibopt.solvers.evaluate import Evaluator
    from calibopt.solvers.newton import DualNewton
    from calibopt.solvers.onehot import make_evaluator

    bw = bandwidth()
    rows = []
    for kind in ("raking", "linear"):
        for n in sizes:
            codes, cont, d, margins = bc.make_units(n, kind)
            p = co.problem_from_margins(bc.frame(codes, cont, kind), margins, weights=d)
            dist = get_distance(kind)
            for collapse in (False, True):
                prep = prepare(p, dist, kind, collapse=collapse)
                if collapse and prep.labels is None:
                    continue
                X = prep.Xc
                bytes_pass = X.nnz * (X.data.itemsize + X.indices.itemsize) + X.indptr.nbytes
                bytes_pass += 2 * 8 * X.shape[1]  # d read, g written
                bound = bytes_pass / bw
                lo, hi = prep.glo, prep.ghi  # as DualNewton passes them
                lo = lo if np.any(lo > dist.domain_lower) else None
                hi = hi if np.any(np.isfinite(hi)) else None
                lam = np.random.default_rng(1).normal(size=X.shape[0]) * 1e-3
                plain = Evaluator(X, prep.d, lo, hi, dist)
                plain(lam, 0, gram=True)
                t_plain, _ = best(lambda e=plain, x=lam: e(x, 0, gram=True), repeat)
                t_find, ev = best(
                    lambda X=X, d=prep.d, lo=lo, hi=hi, f=dist: make_evaluator(X, d, lo, hi, f),
                    repeat,
                )
                cells = getattr(ev, "cells", None)
                ev(lam, 0, gram=True)
                t_pass, _ = best(lambda e=ev, x=lam: e(x, 0, gram=True), repeat)
                t_eval, _ = best(lambda e=ev, x=lam: e(x, 0, gram=False), repeat)
                b = prep.scaled(p.targets)

                def solve(prep=prep, X=X, dist=dist, b=b, names=p.target_names):
                    # as calibrate runs it: redundant targets (one per categorical variable
                    # beyond the first) left out, so the system has a Cholesky factor
                    eng = DualNewton(X, prep.d, prep.glo, prep.ghi, dist)
                    return newton_exact(
                        eng, b, names, prep.glo, prep.ghi, epsilon=1e-10, max_iter=100
                    )[0]

                t_solve, newton = np.inf, np.inf
                for _ in range(repeat):  # the best whole solve, and the best Newton part
                    t0 = time.perf_counter()
                    out = solve()
                    t_solve = min(t_solve, time.perf_counter() - t0)
                    newton = min(newton, out.seconds)
                rows.append(dict(kind=kind, n=n, columns=X.shape[1], nnz=X.nnz,
                                 collapsed=collapse, bound=bound, plain=t_plain, fused=t_pass,
                                 trial=t_eval, find=t_find,
                                 cells=None if cells is None else cells.ncells,
                                 per_iter=t_solve / max(out.iterations, 1),
                                 setup=max(t_solve - newton, 0.0),
                                 newton_iter=newton / max(out.iterations, 1),
                                 iterations=out.iterations, bandwidth=bw))  # fmt: skip
    return rows


FIRST = """
import time, sys
t0 = time.perf_counter()
sys.path.insert(0, {bench!r})
import bench_classical as bc
import calibopt as co
codes, cont, d, margins = bc.make_units({n}, "raking")
df = bc.frame(codes, cont, "raking")
t1 = time.perf_counter()
import calibopt.formulations  # the methods' modules (pandas, scipy.optimize): not compiling
t2 = time.perf_counter()
out = []
for _ in range(3):
    t = time.perf_counter()
    p = co.problem_from_margins(df, margins, weights=d)
    r = co.calibrate(p, method="raking")
    out.append(time.perf_counter() - t)
print({{"import": t1 - t0, "methods_import": t2 - t1, "calls": out, "status": r.status}})
"""


def part_first(n: int) -> list[dict]:
    rows = []
    for mode in ("auto", "numba"):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache, CALIBOPT_KERNELS=mode)
            env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
            code = FIRST.format(bench=str(HERE), n=n)
            done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                  text=True, timeout=600)  # fmt: skip
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "{}"
            rec = eval(line, {}) if line.startswith("{") else {"error": done.stderr[-300:]}
            rows.append(dict(mode=mode, n=n, **rec))
            time.sleep(1)
    return rows


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--part", default="all", choices=["all", "user", "iteration", "first"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--peer-max-n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default="all")
    ap.add_argument("--first-n", type=int, default=100_000)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    peers = (set(PY_PEERS) | {"survey", "rake", "sampling"} if args.peers == "all"
             else set() if args.peers == "none" else set(args.peers.split(",")))  # fmt: skip
    if args.part in ("all", "first"):
        print("\n## First call in a fresh process, empty numba cache")
        print("| kernels | n | import calibopt + data s | import methods s | 1st call s | 2nd s | "
              "3rd s | extra on 1st s |")  # fmt: skip
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in part_first(args.first_n):
            c = r.get("calls", [np.nan] * 3)
            print(f"| {r['mode']} | {r['n']:,} | {r.get('import', np.nan):.2f} | "
                  f"{r.get('methods_import', np.nan):.2f} | {c[0]:.3f} | "
                  f"{c[1]:.3f} | {c[2]:.3f} | {c[0] - min(c[1:]):.3f} |")  # fmt: skip
    # warm: compile (or load) the kernels before anything is timed
    c, k, d, m = bc.make_units(300_000, "linear")
    os.environ["CALIBOPT_KERNELS"] = "numba"
    bc.run_ours(bc.frame(c, k, "linear"), d, m, "linear")
    bc.run_ours(bc.frame(c, k, "raking"), d, {x: m[x] for x in m if x.startswith("v")}, "raking")
    if args.part in ("all", "iteration"):
        rows = part_iteration(args.sizes, args.repeat)
        print(f"\n## Newton per iteration vs one pass's memory traffic "
              f"(copy bandwidth {rows[0]['bandwidth'] / 1e9:.1f} GB/s)")  # fmt: skip
        print(
            "| problem | n | columns | nnz | units merged | bound ms "
            "| entry-wise pass ms (x bound) | one-hot cells (found in ms) "
            "| fused pass ms (x bound) | trial pass ms | setup ms | Newton ms/iteration (x bound) "
            "| whole solve ms/iteration (x bound) | iterations |"
        )
        print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: |")  # fmt: skip
        for r in rows:
            found = "-" if r["cells"] is None else f"{r['cells']:,} ({1e3 * r['find']:.1f})"
            print(f"| {r['kind']} | {r['n']:,} | {r['columns']:,} | {r['nnz']:,} | "
                  f"{'yes' if r['collapsed'] else 'no'} | {1e3 * r['bound']:.2f} | "
                  f"{1e3 * r['plain']:.2f} ({r['plain'] / r['bound']:.1f}) | {found} | "
                  f"{1e3 * r['fused']:.2f} ({r['fused'] / r['bound']:.1f}) | "
                  f"{1e3 * r['trial']:.2f} | {1e3 * r['setup']:.1f} | "
                  f"{1e3 * r['newton_iter']:.2f} ({r['newton_iter'] / r['bound']:.1f}) | "
                  f"{1e3 * r['per_iter']:.2f} ({r['per_iter'] / r['bound']:.1f}) | "
                  f"{r['iterations']} |")  # fmt: skip
    if args.part in ("all", "user"):
        rows = part_user(args.sizes, args.repeat, args.peer_max_n, peers)
        print("\n## User path: problem_from_margins + calibrate (best of "
              f"{args.repeat}) vs peers")  # fmt: skip
        print("| problem | n | tool | seconds | time / calibopt | max rel margin error | note |")
        print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
        ours = {(r["kind"], r["n"]): r["seconds"] for r in rows if r["tool"] == "calibopt"}
        for r in rows:
            ratio = None if r["seconds"] is None else r["seconds"] / ours[(r["kind"], r["n"])]
            print(f"| {r['kind']} | {r['n']:,} | {r['tool']} | {fmt(r['seconds'], '.3f')} | "
                  f"{fmt(ratio, '.1f')} | {fmt(r['err'], '.1e')} | {r['note']} |")  # fmt: skip
    print(json.dumps({"done": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
