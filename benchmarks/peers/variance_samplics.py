"""samplics side of benchmarks/bench_variance.py, run inside samplics' own virtual environment.

Usage: <venv>/bin/python variance_samplics.py <dir> <replicates>
Reads <dir>/units.npz (stratum, psu, d, Y: n x k); prints one JSON line per step with the
seconds taken (arrays in memory) and the SEs found. samplics has no calibration-aware
linearisation and its raking takes categorical margins only (the benchmark's problem has
continuous totals too), so it runs the design-based (Horvitz-Thompson) Taylor SEs and
uncalibrated bootstrap replicates.
"""

import json
import sys
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")
folder, reps = sys.argv[1], int(sys.argv[2])
data = np.load(f"{folder}/units.npz")
stratum, psu, d, Y = data["stratum"], data["psu"], data["d"], data["Y"]

from samplics.estimation import ReplicateEstimator, TaylorEstimator  # noqa: E402
from samplics.utils.types import PopParam, RepMethod  # noqa: E402
from samplics.weighting import ReplicateWeight  # noqa: E402


def emit(step, secs, se=None, note=""):
    print(json.dumps({"step": step, "seconds": secs, "se": se, "note": note}), flush=True)


t0 = time.perf_counter()
se = []
for j in range(Y.shape[1]):
    est = TaylorEstimator(PopParam.total)
    est.estimate(Y[:, j], d, stratum=stratum, psu=psu)
    se.append(float(est.stderror))
emit("ht_se", time.perf_counter() - t0, se)
if reps > 0:
    t0 = time.perf_counter()
    rw = ReplicateWeight(RepMethod.bootstrap, strat=True, nb_reps=reps, rand_seed=1)
    frame = rw.replicate(d, psu, stratum, rep_prefix="rw")
    W = frame[[c for c in frame.columns if str(c).startswith("rw")]].to_numpy()
    emit("replicates_make", time.perf_counter() - t0, note=f"{reps} bootstrap replicates")
    t0 = time.perf_counter()
    se = []
    for j in range(Y.shape[1]):
        est = ReplicateEstimator(RepMethod.bootstrap, PopParam.total)
        # samplics 0.6 leaves rw.rep_coefs empty: pass its documented bootstrap default 1/R
        est.estimate(Y[:, j], d, W, rep_coefs=np.full(reps, 1.0 / reps))
        se.append(float(est.stderror))
    emit("replicates_se", time.perf_counter() - t0, se, note="uncalibrated replicates")
