"""One Hard-Concrete run: host data -> device model -> training -> deterministic gates.

Imports torch at module level: load it after :func:`.backend.require_torch` (the method does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...problem import CalibrationProblem
from .backend import require_torch, resolve_device, resolve_dtype
from .checkpoint import fingerprint
from .data import EngineSettings, HostData, prepare_host
from .gates import GateSpec, deterministic_gates
from .model import HardConcreteModel
from .train import TrainConfig, TrainOutcome, train

__all__ = ["EngineSettings", "HardConcreteFit", "fit_hard_concrete"]


@dataclass
class HardConcreteFit:
    """What a run produced."""

    outcome: TrainOutcome
    host: HostData
    gates: np.ndarray  # deterministic gates of the best parameters, float64 on the host
    report: dict[str, Any]
    history: list[dict[str, float]]
    setup_seconds: float

    def history_frame(self) -> Any:
        """The evaluations as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.history)


def _l0_summary(lam: Any, digest: bool = False) -> Any:
    """``lambda_l0`` for reports and fingerprints: the number, or a summary of per-unit
    values (with a digest of them for fingerprints)."""
    if np.ndim(lam) == 0:
        return float(lam)
    arr = np.asarray(lam, dtype=np.float64)
    out: dict[str, Any] = {"per_unit": True, "min": float(arr.min()), "max": float(arr.max())}
    if digest:
        import hashlib

        out["sha256"] = hashlib.sha256(arr.tobytes()).hexdigest()
    return out


def _stop_tolerance(problem: CalibrationProblem, s: EngineSettings) -> np.ndarray:
    if s.stop_tolerance is not None:
        return np.full(problem.n_targets, s.stop_tolerance)
    return np.where(problem.tolerance > 0, problem.tolerance, 0.01)


def _fingerprint(host: HostData, spec: GateSpec, s: EngineSettings, dt: Any, log_alpha0) -> str:
    if s.checkpoint is None:
        return ""
    return fingerprint(
        [host.Xs.indptr, host.Xs.indices, host.Xs.data, host.bs, host.d, host.free]
        + [a for a in (host.log_lower, host.log_upper) if a is not None],
        {
            "beta": spec.beta,
            "gamma": spec.gamma,
            "zeta": spec.zeta,
            "lambda_l0": _l0_summary(s.lambda_l0, digest=True),
            "lambda_l2": s.lambda_l2,
            "init_log_alpha": log_alpha0,
            "dtype": str(dt),
        },
    )


def fit_hard_concrete(problem: CalibrationProblem, s: EngineSettings) -> HardConcreteFit:
    """Train the Hard-Concrete model of ``problem`` and return its best deterministic gates."""
    import time

    require_torch()
    dev = resolve_device(torch, s.device)
    dt = resolve_dtype(torch, s.dtype)
    spec = GateSpec(beta=float(s.beta), gamma=float(s.gamma), zeta=float(s.zeta))
    host = prepare_host(
        problem, eps=s.eps, group_normalise=s.group_normalise, float32=dt == torch.float32
    )
    log_alpha0 = spec.log_alpha_for(s.init_keep_prob)
    previous_threads = torch.get_num_threads()
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    try:
        t_setup = time.perf_counter()
        model = HardConcreteModel(
            host.Xs,
            host.bs,
            host.rel_scale,
            host.d,
            log_lower=host.log_lower,
            log_upper=host.log_upper,
            spec=spec,
            lambda_l0=s.lambda_l0[host.free] if np.ndim(s.lambda_l0) else s.lambda_l0,
            lambda_l2=s.lambda_l2,
            init_log_alpha=log_alpha0,
            dtype=dt,
            device=dev,
        )
        t_setup = time.perf_counter() - t_setup
        cfg = TrainConfig(
            epochs=s.epochs,
            lr=s.lr,
            lr_gates=s.lr_gates,
            eval_every=s.eval_every,
            patience=s.patience,
            min_delta=s.min_delta,
            seed=s.seed,
            progress=s.progress,
            tolerance=torch.as_tensor(_stop_tolerance(problem, s), dtype=dt, device=dev),
            checkpoint=s.checkpoint,
            checkpoint_every=s.checkpoint_every,
            resume=s.resume,
            callback=s.callback,
            fingerprint=_fingerprint(host, spec, s, dt, log_alpha0),
        )
        out = train(model, cfg)
        device_bytes = model.memory_bytes()
        used_threads = torch.get_num_threads()
        del model
    finally:
        if s.threads is not None:
            torch.set_num_threads(previous_threads)
    # the answer: deterministic gates in float64 on the host (exact zeros)
    gates = deterministic_gates(torch.from_numpy(out.log_alpha), spec).numpy().copy()
    report = {
        "stop_reason": out.stop_reason,
        "epochs": out.epochs_run,
        "best_epoch": int(out.best["epoch"]),
        "seconds_per_epoch": out.seconds_per_epoch,
        "seconds_evaluating": out.seconds_evaluating,
        "device": str(dev),
        "dtype": str(dt).replace("torch.", ""),
        "threads": used_threads if dev.type == "cpu" else None,
        "seed": s.seed,
        "lambda_l0": _l0_summary(s.lambda_l0),
        "lambda_l2": s.lambda_l2,
        "gates": {"beta": spec.beta, "gamma": spec.gamma, "zeta": spec.zeta},
        "best": {k: v for k, v in out.best.items() if k != "epoch"},
        "device_bytes": device_bytes,
        "resumed_from_epoch": out.resumed_from,
        "notes": out.notes,
    }
    return HardConcreteFit(out, host, gates, report, out.history, t_setup)
