"""Title I provisions and weighting, side by side: exact solver vs recursion vs LP vs a sort.

For LEA counts n (13,000 is about the number of U.S. school districts), random authorizations,
hold-harmless floors (on 60% of LEAs) and state minimums (52 states), the table gives, measured
in one run:

* ``exact``: :func:`calibopt.allocation.solve_provisions` (water-filling, cents rounding);
* ``recursive``: the classical recursive procedure with the usual cap of 10 rounds, and with
  no cap (``max_rounds=n``), and whether it converged;
* ``LP``: the same problem as a linear program through cvxpy + HiGHS (maximise the national
  level; floors only, the LP's optimum is then the unique allocation), up to ``--lp-max-n``;
* ``sort``: ``np.argsort`` of n floats, the lower bound of any O(n log n) method;
* ``max |diff|``: largest difference between the exact allocation and the LP's (dollars).

A second table times the targeted-grant weighted child count: vectorised exact integer
arithmetic vs the per-row ``DataFrame.apply`` of a scalar function (the reference
implementation's pattern).

There is no peer package for Title I allocation on PyPI; the recursion is the reference
procedure's algorithm.

Usage:
  python benchmarks/bench_allocation.py [--sizes 1000 13000 100000 1000000] [--lp-max-n 13000]

(cvxpy + HiGHS needs about 300 s for n = 100,000, hence the default LP limit.)
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction
from functools import partial

import numpy as np
import pandas as pd

from calibopt.allocation import (
    TARGETED_LEA,
    apply_floors_recursive,
    solve_provisions,
    weighted_child_count,
)


def case(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = rng.gamma(0.6, 2e5, size=n)
    prior = a * rng.lognormal(0.0, 0.25, size=n)
    f = np.where(rng.random(n) < 0.6, 0.9 * prior, 0.0)
    states = rng.integers(0, 52, size=n)
    A = float(0.97 * a.sum())
    F = np.bincount(states, f, minlength=52)
    mins = {k: float(F[k] + 0.002 * A) if k < 6 else 0.0 for k in range(52)}
    return a, f, A, states, mins


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def lp(a, f, A):
    import cvxpy as cp

    x, t = cp.Variable(a.size), cp.Variable()
    prob = cp.Problem(cp.Maximize(t), [x >= f, x >= t * a, cp.sum(x) == A])
    prob.solve(solver="HIGHS")
    return x.value


def weighting_scalar(e: int, n: int) -> float:
    """Per-LEA scalar weighting, in the style of a row-wise ``apply``."""
    t = TARGETED_LEA

    def banded(x, edges, weights):
        out, prev = 0.0, 0.0
        for w, edge in zip(weights, [*edges, None]):
            cur = x if edge is None else min(x, edge)
            out += float(Fraction(w)) * (cur - prev)
            prev = cur
        return out

    return max(
        banded(e, t.number_edges, t.number_weights),
        banded(e, [float(Fraction(p)) * n for p in t.percent_edges], t.percent_weights),
    )


def _row_weighting(row: pd.Series) -> float:
    return weighting_scalar(row.e, row.n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 13000, 100000, 1000000])
    ap.add_argument("--lp-max-n", type=int, default=13000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for n in args.sizes:
        a, f, A, states, mins = case(n)
        t_exact, res = best_of(
            partial(solve_provisions, a, A, f, states=states, state_minimums=mins), args.repeat
        )
        t_floor, res_f = best_of(partial(solve_provisions, a, A, f, cents=False), args.repeat)
        t_rec, rec = best_of(
            partial(apply_floors_recursive, a, A, f, states=states, state_minimums=mins),
            args.repeat,
        )
        t_rec_full, rec_full = best_of(
            partial(
                apply_floors_recursive, a, A, f, states=states, state_minimums=mins, max_rounds=n
            ),
            1,
        )
        t_sort, _ = best_of(partial(np.argsort, a / np.maximum(f, 1e-300)), args.repeat)
        row = {
            "n": n,
            "exact (s)": t_exact,
            "exact floors only (s)": t_floor,
            "recursive cap 10 (s)": t_rec,
            "converged": rec.converged,
            "rounds": rec.rounds,
            "recursive no cap (s)": t_rec_full,
            "rounds no cap": rec_full.rounds,
            "sort (s)": t_sort,
            "exact / sort": t_exact / t_sort,
        }
        if n <= args.lp_max_n:
            t_lp, x_lp = best_of(partial(lp, a, f, A), 1)
            row["LP HiGHS (s)"] = t_lp
            row["LP / exact (floors)"] = t_lp / t_floor
            row["max |diff| vs LP ($)"] = float(np.abs(res_f.exact - x_lp).max())
        else:
            row["LP HiGHS (s)"] = np.nan
        rows.append(row)
        del res
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print("Provisions (hold-harmless floors + state minimums), best of", args.repeat)
    print(pd.DataFrame(rows).set_index("n").to_string(float_format=lambda v: f"{v:.4g}"))

    rows = []
    for n in [s for s in args.sizes if s <= 100000]:
        rng = np.random.default_rng(1)
        tot = rng.integers(20, 200000, size=n)
        eli = (tot * rng.uniform(0.02, 0.5, size=n)).astype(np.int64)
        df = pd.DataFrame({"e": eli, "n": tot})
        t_vec, w = best_of(partial(weighted_child_count, eli, tot), args.repeat)
        t_row, w_row = best_of(partial(df.apply, _row_weighting, axis=1), 1)
        rows.append(
            {
                "n": n,
                "vectorised exact (s)": t_vec,
                "row-wise apply (s)": t_row,
                "speed-up": t_row / t_vec,
                "max |diff|": float(np.abs(w - w_row.to_numpy()).max()),
            }
        )
    print("\nTargeted-grant weighted child count")
    print(pd.DataFrame(rows).set_index("n").to_string(float_format=lambda v: f"{v:.4g}"))
    cascade_table()


def cascade_table() -> None:
    """LEAs that the recursion pins one per round: it stops after 10 rounds with a floor
    violated; the exact solver meets every floor."""
    rows = []
    for k in (5, 10, 15, 30):
        h = 1.0 / (4 * k)
        a = [1.0]
        for _ in range(k):
            a.insert(0, 2 * sum(a))
        a = np.array(a)
        f = np.r_[[(1 - 2 * (j - 1) * h + h) * a[j - 1] for j in range(1, k + 1)], 0.0]
        rec = apply_floors_recursive(a, a.sum(), f, max_rounds=10)
        exact = solve_provisions(a, a.sum(), f, cents=False).exact
        rows.append(
            {
                "cascade length": k,
                "recursive converged": rec.converged,
                "rounds": rec.rounds,
                "LEAs below floor (recursive)": rec.below_floor,
                "shortfall (recursive, $)": rec.max_shortfall,
                "LEAs below floor (exact)": int((exact < f * (1 - 1e-12)).sum()),
                "|total - A| (exact, $)": abs(exact.sum() - a.sum()),
            }
        )
    print("\nPinning cascades (recursion capped at 10 rounds)")
    print(
        pd.DataFrame(rows).set_index("cascade length").to_string(float_format=lambda v: f"{v:.4g}")
    )


if __name__ == "__main__":
    main()
