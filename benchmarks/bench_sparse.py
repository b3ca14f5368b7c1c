"""Sparse calibration, side by side: the exact-L0 frontier and sparsity vs fit (issue 4).

Part ``frontier`` -- the largest blocks (records x targets, 1% tolerance, count and lognormal
amount rows, g <= 20) the L0 MIP proves optimal within the time limit, with each modelling idea
switched on in turn: the textbook model (one big-M for every record, no aggregation, no cuts,
no warm start), + tightest big-M per record, + aggregation of identical records (symmetry),
+ cardinality covers (valid inequalities), + warm start, + support search (the warm start's
support shrunk by drop / two-for-one moves, each checked by an LP), + vertex search (after a
first MIP without a proof: random vertices of the LP relaxation under the cut-off, each one's
support searched by a small MIP; the full default). Also the same MIP through cvxpy against
highspy directly.

Part ``solvers`` -- the same model and start (defaults) solved by HiGHS, SCIP (cvxpy) and Gurobi
(gurobipy; its pip licence: at most 2,000 variables and rows), same time limit, on 1,000 x 30 and
1,000 x 50 (or ``--sizes``); a solver that is missing is skipped and said so.

Part ``pareto`` -- a local-area-shaped problem (100 areas in 4 states x 1,000 households =
100,000 columns; 316 targets: households, persons and income per area, state SNAP amount, SNAP
households and income, national totals), feasible by construction (the planted truth puts each
household in its home area with g = 1), tolerance 0.1%, bounds 0 <= g <= 20 where the design
weight of a column is its household's survey weight. Non-zeros, max and median relative error,
max g, time for: an LP vertex (HiGHS simplex on X w = b, w >= 0 -- no cap), reweighted-l1,
l0-mip (whole problem; blocks by area), cross-category (paper; + linear refine), gradient,
and the peers l0-python and microcalibrate when their virtual environments exist
(``$CALIBOPT_PEER_VENVS/<name>``, default ``benchmarks/_venvs``); a missing peer is skipped and
said so.

Usage:
  python benchmarks/bench_sparse.py [--part frontier|solvers|pareto|all] [--time-limit 60] [--quick]
      [--sizes 1000x30 1000x50] [--variants "+ warm start" "+ support search (default)"]
      [--peers all|none|l0-python,microcalibrate] [--peer-epochs 1000] [--workers 2]
Long: run under ``flock /tmp/calibopt-heavy.lock``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import calibopt as co
from calibopt.solvers.highs import highs_model, solve_highs
from calibopt.solvers.linear_program import LinearProgram

VENVS = Path(os.environ.get("CALIBOPT_PEER_VENVS", Path(__file__).resolve().parent / "_venvs"))
G_MAX = 20.0

_NO_VS = dict(vertex_search=0)
VARIANTS = {
    "textbook big-M": dict(
        big_m="uniform", aggregate=False, cuts=False, warm_start=False, **_NO_VS
    ),
    "+ tightest big-M": dict(aggregate=False, cuts=False, warm_start=False, **_NO_VS),
    "+ identical-record classes": dict(cuts=False, warm_start=False, **_NO_VS),
    "+ cardinality covers": dict(warm_start=False, **_NO_VS),
    "+ warm start": dict(support_search=0, **_NO_VS),
    "+ support search": dict(**_NO_VS),
    "+ vertex search (default)": dict(),
}


# ----------------------------------------------------------------------------- instances
def block_problem(n: int, m: int, seed: int = 0) -> co.CalibrationProblem:
    """One area's block: households x (count rows, lognormal amount rows), 1% bands, g <= 20.

    Count rows: households, persons (1-6), children, then 0/1 indicators of 4-level
    categorical variables; amount rows: independent lognormal amounts with 10% / 70% / 85%
    zeros in turn (income-like and benefit-like). Every household has the same design weight
    (no meaningful initial weights, as in synthesis), so records with identical columns are
    interchangeable. Targets come from a dense hidden weight vector (g in [0.5, 1.5]).
    """
    rng = np.random.default_rng(seed)
    n_amount = m // 2
    n_count = m - n_amount
    persons = rng.integers(1, 7, n).astype(float)
    counts = [np.ones(n), persons, np.minimum(rng.poisson(0.6, n), persons - 1).astype(float)]
    while len(counts) < n_count:
        lev = rng.integers(0, 4, n)
        counts += [(lev == k).astype(float) for k in range(min(4, n_count - len(counts)))]
    zeros = (0.1, 0.7, 0.85)
    amounts = [
        rng.lognormal(9 + k % 3, 1.0, n) * (rng.random(n) >= zeros[k % 3]) for k in range(n_amount)
    ]
    X = sp.csr_matrix(np.vstack(counts[:n_count] + amounts))
    d = np.full(n, 100.0)
    b = X @ (d * rng.uniform(0.5, 1.5, n))
    return co.CalibrationProblem(X, b, initial_weights=d, ratio_bounds=(0, G_MAX), tolerance=0.01)


def local_area_problem(
    n_states: int = 4, areas_per_state: int = 25, households: int = 1000, seed: int = 0
) -> tuple[co.CalibrationProblem, np.ndarray]:
    """The 100,000-column local-area problem; returns it and each column's area (its block)."""
    rng = np.random.default_rng(seed)
    S, A, H = n_states, n_states * areas_per_state, households
    state_of_area = np.repeat(np.arange(S), areas_per_state)
    hw = rng.lognormal(np.log(1000), 0.7, H)
    persons = rng.integers(1, 7, H).astype(float)
    income = rng.lognormal(10.5, 1.0, H) * (rng.random(H) < 0.9)
    thr = rng.uniform(8000, 14000, S)
    maxb = rng.uniform(2000, 3500, S)
    # a SNAP-like benefit whose rules depend on the state the household is placed in
    snap = np.maximum(0, maxb[:, None] * persons - 0.3 * income) * (income < thr[:, None] * persons)
    home = rng.choice(A, size=H, p=rng.dirichlet(np.full(A, 5.0)))
    n = A * H
    col_area = np.repeat(np.arange(A), H)
    col_hh = np.tile(np.arange(H), A)
    col_state = state_of_area[col_area]
    col_snap = snap[col_state, col_hh]
    per_col = {
        "households": np.ones(n),
        "persons": persons[col_hh],
        "income": income[col_hh],
        "snap": col_snap,
        "snap_households": (col_snap > 0).astype(float),
    }
    rows, cols, vals, names, groups = [], [], [], [], []

    def add(name: str, group: str, mask: np.ndarray, values: np.ndarray) -> None:
        idx = np.flatnonzero(mask & (values != 0))
        rows.append(np.full(idx.size, len(names)))
        cols.append(idx)
        vals.append(values[idx])
        names.append(name)
        groups.append(group)

    for a in range(A):
        for v in ("households", "persons", "income"):
            add(f"area{a:03d}/{v}", f"area/{v}", col_area == a, per_col[v])
    for s in range(S):
        for v in ("snap", "snap_households", "income"):
            add(f"state{s}/{v}", f"state/{v}", col_state == s, per_col[v])
    for v in ("households", "persons", "income", "snap"):
        add(f"nation/{v}", f"nation/{v}", np.ones(n, bool), per_col[v])
    X = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(names), n)
    )
    w_true = np.zeros(n)
    w_true[home * H + np.arange(H)] = hw
    problem = co.CalibrationProblem(
        X,
        X @ w_true,
        initial_weights=hw[col_hh],
        ratio_bounds=(0, G_MAX),
        tolerance=0.001,
        target_names=names,
        groups=groups,
    )
    return problem, col_area


# ----------------------------------------------------------------------------- part 1
def warm_up() -> None:
    """First calls pay for imports and JIT compilation (numba kernels, cvxpy); not timed."""
    p = block_problem(60, 6, seed=1)
    co.calibrate(p, method="l0-mip", time_limit=10)
    co.calibrate(p, method="reweighted-l1", solver="CLARABEL")
    co.calibrate(p, method="gradient")


def run_frontier(
    sizes: list[tuple[int, int]], time_limit: float, seeds: int, variants: list[str] | None = None
) -> pd.DataFrame:
    """Each size x model variant, with HiGHS random seeds 0..seeds-1 (MIP times vary with the
    search path): median seconds, how many runs proved optimality, best count and bound."""
    rows = []
    for n, m in sizes:
        p = block_problem(n, m)
        for label, opts in VARIANTS.items():
            if variants and label not in variants:
                continue
            runs = []
            for seed in range(seeds):
                t0 = time.perf_counter()
                try:
                    r = co.calibrate(p, method="l0-mip", time_limit=time_limit, seed=seed, **opts)
                    runs.append(
                        (
                            time.perf_counter() - t0,
                            r.info["proven_optimal"],
                            r.nnz,
                            r.info["mip_bound"],
                            r.info["model"]["aggregated_records"],
                        )
                    )
                except co.CalibrationError:
                    runs.append((time.perf_counter() - t0, False, np.nan, np.nan, np.nan))
                if not runs[-1][1] and time.perf_counter() - t0 >= 0.95 * time_limit:
                    break  # a run that hit the limit unproven: more seeds only repeat it
            secs, proven, nnz, bound, agg = map(np.array, zip(*runs))
            row = dict(
                size=f"{n} x {m}",
                model=label,
                runs=len(runs),
                median_seconds=float(np.median(secs)),
                proven=f"{int(proven.sum())}/{len(runs)}",
                nnz=float(np.nanmin(nnz)),
                bound=float(np.nanmax(bound)),
                aggregated=float(np.nanmax(agg)),
            )
            rows.append(row)
            print(_fmt_row(row), flush=True)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    """A Markdown table (numbers to 4 significant digits), without extra dependencies."""

    def cell(v: object) -> str:
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.4g}"
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _fmt_row(row: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def run_cvxpy_vs_direct(n: int, m: int, time_limit: float) -> pd.DataFrame:
    p = block_problem(n, m)
    out = []
    for solver in ("highs", "cvxpy:HIGHS"):
        t0 = time.perf_counter()
        r = co.calibrate(p, method="l0-mip", solver=solver, time_limit=time_limit, warm_start=False)
        out.append(
            dict(
                size=f"{n} x {m}",
                route=solver,
                seconds=time.perf_counter() - t0,
                nnz=r.nnz,
                proven=r.info["proven_optimal"],
                cvxpy_compile=r.info.get("compile_seconds", 0.0),
            )
        )
    return pd.DataFrame(out)


MIP_SOLVERS = {
    "HiGHS (highspy)": "highs",
    "SCIP (cvxpy)": "cvxpy:SCIP",
    "Gurobi (gurobipy)": "gurobi",
}


def run_solvers(sizes: list[tuple[int, int]], time_limit: float) -> pd.DataFrame:
    """The same model (default options: warm start and support search included) solved by
    HiGHS, SCIP (through cvxpy) and Gurobi (gurobipy directly: its pip licence is limited to
    2,000 variables and rows); a solver not installed, or whose licence refuses the size, is
    reported and skipped."""
    import cvxpy as cp

    have = set(cp.installed_solvers())
    rows = []
    for n, m in sizes:
        p = block_problem(n, m)
        for label, solver in MIP_SOLVERS.items():
            if solver.upper().split(":")[-1] not in have | {"HIGHS"}:
                print(f"{label}: not installed, skipped")
                continue
            t0 = time.perf_counter()
            try:
                r = co.calibrate(p, method="l0-mip", solver=solver, time_limit=time_limit, seed=0)
            except co.CalibrationError as exc:
                print(f"{label} on {n} x {m}: {type(exc).__name__}: {str(exc)[:160]}")
                continue
            bound = r.info["mip_bound"]
            row = dict(
                size=f"{n} x {m}",
                solver=label,
                seconds=time.perf_counter() - t0,
                proven=r.info["proven_optimal"],
                nnz=r.nnz,
                bound=bound if np.isfinite(bound) else np.nan,
                start_nnz=r.info.get("support_search_nnz", r.info["warm_start_nnz"]),
                vertex_nnz=r.info.get("vertex_search_nnz", np.nan),
            )
            rows.append(row)
            print(_fmt_row(row), flush=True)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- part 2
def lp_vertex(p: co.CalibrationProblem) -> np.ndarray:
    """A basic solution of X w = b, w >= 0 (HiGHS dual simplex, rows scaled, no cap on g)."""
    s = 1.0 / np.abs(p.targets)
    lp = LinearProgram(
        cost=np.zeros(p.n_units),
        col_lower=np.zeros(p.n_units),
        col_upper=np.full(p.n_units, np.inf),
        A=sp.csc_matrix(sp.diags(s) @ p.csc),
        row_lower=np.ones(p.n_targets),
        row_upper=np.ones(p.n_targets),
    )
    h = highs_model(lp, options={"presolve": "off"})
    return solve_highs(h).x


def score(
    p: co.CalibrationProblem, name: str, w: np.ndarray, seconds: float, note: str = ""
) -> dict:
    est = p.X @ w
    rel = np.abs(est - p.targets) / np.abs(p.targets)
    g = w / p.initial_weights
    return dict(
        method=name,
        nnz=int(np.count_nonzero(w)),
        max_rel_error=float(rel.max()),
        median_rel_error=float(np.median(rel)),
        max_g=float(g.max()),
        min_w=float(w.min()),
        within_bounds=bool(g.max() <= G_MAX * (1 + 1e-9) and w.min() >= 0),
        seconds=seconds,
        note=note,
    )


PEER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, torch
    torch.manual_seed(0)
    tool, path, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    z = np.load(path + "/problem.npz", allow_pickle=True)
    shape = tuple(int(v) for v in z["shape"])
    b, d, groups = z["b"], z["d"], z["groups"]
    t0 = time.perf_counter()
    if tool == "l0-python":
        import scipy.sparse as sp
        from l0.calibration import SparseCalibrationWeights
        X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=shape)
        # the package's own defaults (init_keep_prob 0.5, lambda_l0 0.01, lr 0.01), with its
        # relative loss normalised by target group
        model = SparseCalibrationWeights(n_features=shape[1], init_weights=d, seed=0)
        model.fit(M=X, y=b, epochs=epochs, loss_type="relative", target_groups=groups)
        w = model.get_weights(deterministic=True).detach().cpu().numpy().astype(float)
        note = f"{epochs} epochs, package defaults, relative loss by group"
    else:
        from microcalibrate.calibration import Calibration
        Xt = torch.sparse_csr_tensor(torch.tensor(z["indptr"]), torch.tensor(z["indices"]),
                                     torch.tensor(z["data"], dtype=torch.float32), size=shape)
        est = lambda w: torch.mv(Xt, w)
        names = np.array([f"t{j}" for j in range(len(b))])
        cal = Calibration(weights=d.astype(np.float32), targets=b.astype(np.float32),
                          target_names=names, estimate_function=est, epochs=epochs,
                          regularize_with_l0=True, learning_rate=1e-3)
        cal.calibrate()
        w = np.asarray(cal.sparse_weights if cal.sparse_weights is not None else cal.weights,
                       dtype=float)
        note = f"{epochs} epochs, defaults, regularize_with_l0=True (sparse weights)"
    secs = time.perf_counter() - t0
    np.save(path + "/w.npy", w)
    print(json.dumps({"seconds": secs, "note": note}))
    """
)


def run_peer(tool: str, p: co.CalibrationProblem, epochs: int) -> dict | str:
    python = VENVS / tool / "bin" / "python"
    if not python.exists():
        return f"{tool}: skipped (no virtual environment at {python.parent.parent})"
    with tempfile.TemporaryDirectory() as tmp:
        X = p.X
        codes = pd.factorize(pd.Series(p.groups))[0]
        np.savez(
            f"{tmp}/problem.npz",
            data=X.data,
            indices=X.indices,
            indptr=X.indptr,
            shape=np.array(X.shape),
            b=p.targets,
            d=p.initial_weights,
            groups=codes,
        )
        script = Path(tmp) / "peer.py"
        script.write_text(PEER_SCRIPT)
        proc = subprocess.run(
            [str(python), str(script), tool, tmp, str(epochs)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
            return f"{tool}: failed ({why})"
        meta = json.loads(proc.stdout.strip().splitlines()[-1])
        w = np.load(f"{tmp}/w.npy")
    return score(p, tool, w, meta["seconds"], meta["note"])


def run_pareto(
    time_limit: float, peers: list[str], epochs: int, workers: int
) -> tuple[pd.DataFrame, dict]:
    t0 = time.perf_counter()
    p, areas = local_area_problem()
    facts = {"problem": repr(p), "build_seconds": time.perf_counter() - t0}
    rows = []

    def add(row: dict) -> None:
        rows.append(row)
        print(_fmt_row(row), flush=True)

    t0 = time.perf_counter()
    w = lp_vertex(p)
    add(score(p, "LP vertex (HiGHS simplex, no cap)", w, time.perf_counter() - t0))
    facts["lp_vertex_nnz"] = rows[-1]["nnz"]
    runs = [
        ("reweighted-l1", dict(method="reweighted-l1")),
        ("l0-mip, whole problem", dict(method="l0-mip", time_limit=time_limit)),
        (
            "l0-mip, blocks by area (reweighted-l1 shares)",
            dict(
                method="l0-mip",
                blocks=areas,
                share_method="reweighted-l1",
                time_limit=10,
                executor=workers,
            ),
        ),
        (
            "l0-mip, blocks by area (linear shares)",
            dict(
                method="l0-mip",
                blocks=areas,
                share_method="linear",
                time_limit=10,
                executor=workers,
            ),
        ),
        (
            "cross-category (paper: IPF on counts)",
            dict(method="cross-category", n_keep=2 * facts["lp_vertex_nnz"]),
        ),
        (
            "cross-category + linear refine",
            dict(method="cross-category", n_keep=2 * facts["lp_vertex_nnz"], refine="linear"),
        ),
        (
            "cross-category + linear refine, 5,000 kept",
            dict(method="cross-category", n_keep=5000, refine="linear"),
        ),
        ("gradient", dict(method="gradient")),
    ]
    for label, kw in runs:
        t0 = time.perf_counter()
        try:
            r = co.calibrate(p, **kw)
            add(score(p, label, r.weights, time.perf_counter() - t0, r.status))
        except co.CalibrationError as exc:
            add(
                dict(
                    method=label,
                    note=f"{type(exc).__name__}: {str(exc)[:120]}",
                    seconds=time.perf_counter() - t0,
                )
            )
    for tool in peers:
        out = run_peer(tool, p, epochs)
        if isinstance(out, str):
            print(out)
            facts[f"peer_{tool}"] = out
        else:
            add(out)
    table = pd.DataFrame(rows)
    lp_nnz = facts["lp_vertex_nnz"]
    table["meets_goal"] = (
        (table["nnz"] <= 2 * lp_nnz)
        & (table["max_rel_error"] <= 0.001 * (1 + 1e-8))
        & table["within_bounds"].fillna(False).astype(bool)
    )
    return table, facts


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--part", choices=["frontier", "solvers", "pareto", "all"], default="all")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--peers", default="all")
    ap.add_argument("--peer-epochs", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3, help="HiGHS seeds per frontier cell")
    ap.add_argument("--sizes", nargs="+", help="frontier sizes, e.g. 1000x30 (default: all)")
    ap.add_argument("--variants", nargs="+", help=f"frontier model variants: {list(VARIANTS)}")
    args = ap.parse_args(argv)
    warm_up()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.max_colwidth", 60)
    if args.part in ("frontier", "all"):
        sizes = (
            [(200, 10), (1000, 10)]
            if args.quick
            else [(200, 10), (1000, 10), (5000, 10), (1000, 20), (2000, 20), (1000, 30), (1000, 50)]
        )
        if args.sizes:
            sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
        print(f"## Exact-L0 frontier (1% bands, g <= 20, time limit {args.time_limit:g} s)\n")
        table = run_frontier(sizes, args.time_limit, args.seeds, args.variants)
        print()
        print(markdown(table))
        print("\n## The same MIP through cvxpy vs highspy directly\n")
        print(markdown(run_cvxpy_vs_direct(1000, 10, args.time_limit)))
    if args.part in ("solvers", "all"):
        sizes = [(1000, 30), (1000, 50)]
        if args.sizes:
            sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
        print(f"\n## The same L0 MIP: HiGHS vs SCIP vs Gurobi (time limit {args.time_limit:g} s)\n")
        print(markdown(run_solvers(sizes, args.time_limit)))
    if args.part in ("pareto", "all"):
        peers = (
            []
            if args.peers == "none"
            else (["l0-python", "microcalibrate"] if args.peers == "all" else args.peers.split(","))
        )
        print("\n## Sparsity vs fit: local-area problem (100,000 columns x 316 targets)\n")
        table, facts = run_pareto(args.time_limit, peers, args.peer_epochs, args.workers)
        print()
        print(json.dumps(facts, indent=1))
        print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
