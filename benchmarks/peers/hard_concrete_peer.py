"""Run a Hard-Concrete peer (l0-python or microcalibrate) on a saved problem; print JSON.

Runs inside the peer's own virtual environment (``benchmarks/_venvs/<name>``), started by
``benchmarks/bench_hard_concrete.py``. Usage::

    python hard_concrete_peer.py TOOL PROBLEM.npz EPOCHS LAMBDA_L0 LR LOG_ALPHA0 THREADS

TOOL is ``l0-python`` (with calibopt's penalty, learning rate and starting gates),
``l0-python-defaults`` (the package's own defaults, relative loss) or ``microcalibrate``.

The problem file holds ``indptr``, ``indices``, ``data``, ``shape`` (X, CSR, targets x units),
``targets``, ``initial_weights`` and ``group_codes``. Printed: per-epoch seconds (training
loop only), the deterministic weights' non-zeros and max / mean relative error, and the peak
resident memory of this process.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import scipy.sparse as sp
import torch


def _load(path: str):
    z = np.load(path)
    X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    return X, z["targets"], z["initial_weights"], z["group_codes"]


def _fit_report(X, b, w) -> dict:
    est = X @ w
    rel = np.abs(est - b) / np.where(b != 0, np.abs(b), 1.0)
    return {
        "nnz": int(np.count_nonzero(w)),
        "max_rel_error": float(rel.max()),
        "mean_rel_error": float(rel.mean()),
    }


def run_l0_python(X, b, d, codes, epochs, lam, lr, la0, defaults=False):
    from l0.calibration import SparseCalibrationWeights

    if defaults:  # the package's own defaults (init_keep_prob 0.5, lambda_l0 0.01, lr 0.01)
        model = SparseCalibrationWeights(n_features=X.shape[1], init_weights=d, seed=0)
        opts = {}
    else:  # calibopt's settings: the same starting gates, penalty and learning rate
        model = SparseCalibrationWeights(
            n_features=X.shape[1],
            init_weights=d,
            init_keep_prob=float(1 / (1 + np.exp(-la0))),
            log_alpha_jitter_sd=0.0,
            seed=0,
        )
        opts = {"lambda_l0": lam, "lr": lr}
    # warm-up epoch: builds and caches the torch sparse matrix
    model.fit(M=X, y=b, epochs=1, loss_type="relative", target_groups=codes, **opts)
    t0 = time.perf_counter()
    model.fit(M=X, y=b, epochs=epochs, loss_type="relative", target_groups=codes, **opts)
    secs = time.perf_counter() - t0
    with torch.no_grad():
        w = model.get_weights(deterministic=True).double().numpy()
    return secs / epochs, w


def run_microcalibrate(X, b, d, codes, epochs, lam, lr, la0):
    from microcalibrate.calibration import Calibration

    Xt = torch.sparse_csr_tensor(
        torch.from_numpy(X.indptr.astype(np.int64)),
        torch.from_numpy(X.indices.astype(np.int64)),
        torch.from_numpy(X.data.astype(np.float32)),
        size=X.shape,
    )
    stamps: list[float] = []

    def estimate(w: torch.Tensor) -> torch.Tensor:  # the sparse product (a dense matrix of
        stamps.append(time.perf_counter())  # targets x units would not fit in memory)
        return (Xt @ w.unsqueeze(1)).squeeze(1)

    cal = Calibration(
        weights=d,
        targets=b,
        target_names=np.array([f"t{j}" for j in range(b.size)]),
        estimate_function=estimate,
        epochs=epochs,
        learning_rate=lr,
        regularize_with_l0=True,
        l0_lambda=lam,
        sparse_learning_rate=lr,
        device="cpu",
    )
    cal.calibrate()
    # the L0 stage is the last 2 * epochs calls of the estimate function
    sparse = np.diff(np.asarray(stamps[-2 * epochs :]))
    w = np.asarray(cal.sparse_weights, dtype=np.float64)
    return float(np.median(sparse)), w


def main() -> None:
    tool, path, epochs, lam, lr, la0, threads = sys.argv[1:8]
    torch.set_num_threads(int(threads))
    X, b, d, codes = _load(path)
    args = (X, b, d, codes, int(epochs), float(lam), float(lr), float(la0))
    if tool == "l0-python-defaults":
        per_epoch, w = run_l0_python(*args, defaults=True)
    else:
        per_epoch, w = {"l0-python": run_l0_python, "microcalibrate": run_microcalibrate}[tool](
            *args
        )
    out = {"tool": tool, "seconds_per_epoch": per_epoch, "epochs": int(epochs)}
    out.update(_fit_report(X, b, w))
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
