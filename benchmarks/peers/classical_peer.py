"""Python peers of benchmarks/bench_classical.py, run inside each peer's own virtual environment.

Usage: <venv>/bin/python classical_peer.py <dir> <kind> <tool> [repeat]
Reads <dir>/units.npz (codes: n x 4 ints, cont: n x 2, d) and <dir>/margins.json; writes
<dir>/py_<tool>.npy (weights) and prints a JSON line with the seconds from in-memory arrays to
weights, including whatever conversion the tool needs (unit-level data in, weights out).
"""

import json
import sys
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")
folder, kind, tool = sys.argv[1], sys.argv[2], sys.argv[3]
repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1
data = np.load(f"{folder}/units.npz")
codes, cont, d = data["codes"], data["cont"], data["d"]
margins = json.load(open(f"{folder}/margins.json"))
cat_vars = ["v0", "v1", "v2", "v3"]
note = ""


def control():
    return {v: {int(k): float(t) for k, t in margins[v].items()} for v in cat_vars}


# imports stay outside the timed region (a cold import of a peer can take seconds)
if tool == "samplics":
    from samplics.weighting import SampleWeight
elif tool in ("balance", "weightipy"):
    import pandas as pd

    if tool == "balance":
        from balance.weighting_methods.rake import rake
    else:
        import weightipy as wp
elif tool == "ipfn":
    from ipfn import ipfn

secs = float("inf")
for _ in range(repeat):  # best of `repeat`, as for calibopt
    t0 = time.perf_counter()
    if tool == "samplics":
        sw = SampleWeight()
        if kind == "raking":
            w = sw.rake(d, {v: codes[:, k] for k, v in enumerate(cat_vars)}, control=control())
        else:
            # calibrate: one dummy per level (drop the first of each variable) + continuous
            cols = [np.ones(len(d))]
            tot = [sum(margins["v0"].values())]
            for k, v in enumerate(cat_vars):
                for lev, t in list(control()[v].items())[1:]:
                    cols.append((codes[:, k] == lev).astype(float))
                    tot.append(t)
            cols += [cont[:, 0], cont[:, 1]]
            tot += [margins["c0"], margins["c1"]]
            X = np.column_stack(cols)
            w = sw.calibrate(d, X, dict(enumerate(tot)))
    elif tool == "balance":
        sample = pd.DataFrame({v: codes[:, k].astype(str) for k, v in enumerate(cat_vars)})
        tm = {v: {str(k): t for k, t in control()[v].items()} for v in cat_vars}
        out = rake(
            sample,
            pd.Series(d),
            None,
            None,
            variables=cat_vars,
            target_margins=tm,
            transformations=None,
        )
        w = out["weight"].to_numpy()
        note = "balance rescales to the population total"
    elif tool == "ipfn":
        shape = tuple(int(codes[:, k].max()) + 1 for k in range(4))
        cell = np.ravel_multi_index(codes.T, shape)
        seed = np.bincount(cell, weights=d, minlength=int(np.prod(shape))).reshape(shape)
        aggs = [
            np.array([control()[v][lev] for lev in range(shape[k])]) for k, v in enumerate(cat_vars)
        ]
        fitted = ipfn.ipfn(
            seed, aggs, [[0], [1], [2], [3]], convergence_rate=1e-10, max_iteration=1000
        ).iteration()
        factor = np.where(seed > 0, fitted / np.where(seed > 0, seed, 1), 0.0).ravel()
        w = d * factor[cell]
    elif tool == "weightipy":
        df = pd.DataFrame({v: codes[:, k] for k, v in enumerate(cat_vars)})
        total = sum(margins["v0"].values())
        targets = {v: {int(k): 100.0 * t / total for k, t in margins[v].items()} for v in cat_vars}
        scheme = wp.scheme_from_dict(targets)
        out = wp.weight_dataframe(df, scheme, weight_column="w_out")
        w = out["w_out"].to_numpy() * total / out["w_out"].sum()
        note = "takes no design weights (rakes from 1); targets as shares, rescaled"
    else:
        raise SystemExit(f"unknown tool {tool}")
    secs = min(secs, time.perf_counter() - t0)
np.save(f"{folder}/py_{tool}.npy", np.asarray(w, dtype=float))
print(json.dumps({"tool": tool, "seconds": secs, "note": note}))
