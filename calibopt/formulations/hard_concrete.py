"""``hard-concrete``: L0-regularised calibration with Hard Concrete gates, trained in torch.

The program (see ``formulations/hard-concrete.md``)::

    minimise over theta, log_alpha
        E_u[ sum_j omega_j (X_j w - b_j)^2 ]  +  lambda_l0 sum_i P(z_i != 0)
                                              +  lambda_l2 sum_i (w_i / d_i)^2
    with     w_i = exp(theta_i) z_i(log_alpha_i, u_i),
             z_i ~ Hard Concrete(log_alpha_i, beta, gamma, zeta)

by Adam on a single sample of the gates per epoch; the answer uses the deterministic
(median) gates, so unselected units get weights of exactly 0, and is optionally polished on
its support by an exact classical method. torch is imported only when the method runs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InfeasibleError, InvalidProblemError
from ..loss import DEFAULT_EPS, loss_weights
from ..problem import CalibrationProblem
from ..result import STATUS_STOPPED, CalibrationResult
from .registry import register_method

__all__: list[str] = []


def _number(name: str, value: Any, *, low: float | None = None, strict: bool = False) -> float:
    """A finite float option, optionally ``>= low`` (``> low`` if ``strict``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"`{name}` must be a number, got {value!r}.") from None
    if not math.isfinite(v):
        raise InvalidProblemError(f"`{name}` must be finite, got {value!r}.")
    if low is not None and (v <= low if strict else v < low):
        raise InvalidProblemError(f"`{name}` must be {'>' if strict else '>='} {low:g}, got {v!r}.")
    return v


def _count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidProblemError(f"`{name}` must be an integer >= {low}, got {value!r}.")
    return int(value)


def _check_groups(problem: CalibrationProblem) -> None:
    """A group whose targets are all 0 has no scale for a relative error: refuse it."""
    zero = problem.targets == 0
    if not zero.any():
        return
    labels = pd.Series(problem.groups, dtype=object)
    all_zero = zero.astype(float)
    share = pd.Series(all_zero).groupby(labels.to_numpy(), sort=False, dropna=False).mean()
    bad = share.index[share.to_numpy() == 1.0].tolist()
    if bad:
        rows = np.flatnonzero(labels.isin(bad).to_numpy() & zero)
        names = [problem.target_names[j] for j in rows[:5]]
        raise InvalidProblemError(
            f"target group(s) {bad[:5]} have every target equal to 0 (e.g. {names}): the "
            f"relative error has no scale there and the loss would count such a group in the "
            f"units of X. Drop these targets, put them in a group with non-zero targets, or "
            f"remove the units that contribute to them."
        )


def _free_units(problem: CalibrationProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units that can carry weight (d > 0 and upper bound > 0) and their bounds on w."""
    lo, hi = problem.weight_bounds()
    neg = np.flatnonzero(hi < 0)
    if neg.size:
        raise InvalidProblemError(
            f"unit(s) {neg[:5].tolist()} have a negative upper weight bound; 'hard-concrete' "
            f"keeps weights >= 0 (exp(theta) times a gate). Use bounds with upper >= 0."
        )
    free = np.flatnonzero((problem.initial_weights > 0) & (hi > 0))
    if free.size == 0:
        raise InvalidProblemError(
            "no unit can carry weight: 'hard-concrete' starts from the initial weights, so give "
            "positive `initial_weights` (units with d = 0 or upper bound 0 stay at 0)."
        )
    return free, lo[free], hi[free]


def _scale_rows(X: sp.csr_matrix, root: np.ndarray, dtype: Any) -> sp.csr_matrix:
    """``diag(root) X`` with data in ``dtype``, sharing X's index arrays (rows in blocks, so
    the float64 temporaries stay small)."""
    data = np.empty(X.nnz, dtype=dtype)
    step = max(1, X.shape[0] // 16)
    for r0 in range(0, X.shape[0], step):
        r1 = min(X.shape[0], r0 + step)
        a, b = X.indptr[r0], X.indptr[r1]
        data[a:b] = X.data[a:b] * np.repeat(root[r0:r1], np.diff(X.indptr[r0 : r1 + 1]))
    out = sp.csr_matrix((data, X.indices, X.indptr), shape=X.shape, copy=False)
    out.has_sorted_indices = X.has_sorted_indices
    return out


def _check_rows(problem: CalibrationProblem, X_free: sp.csr_matrix) -> None:
    empty = np.flatnonzero((np.diff(X_free.indptr) == 0) & (problem.targets != 0))
    if empty.size:
        names = [problem.target_names[j] for j in empty[:8]]
        raise InfeasibleError(
            f"{empty.size} target(s) have a non-zero total but no unit that can carry weight "
            f"contributes to them, so no weights reach them: {names}. Check X for missing "
            f"entries, or drop these targets.",
            targets=[problem.target_names[j] for j in empty],
        )


@register_method(
    "hard-concrete",
    aliases=("hardconcrete", "l0-hard-concrete", "l0-gradient"),
    solvers=("torch",),
    catalogue="hard-concrete.md",
    summary=(
        "min E[sum_j omega_j (X_j w - b_j)^2] + lambda_l0 sum P(z != 0) + lambda_l2 sum (w/d)^2, "
        "w = exp(theta) z, Hard Concrete gates z (torch, CPU/CUDA); exact zeros; polish"
    ),
    guarantee="approximate",
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    lambda_l0: float = 1e-5,
    lambda_l2: float = 0.0,
    epochs: int = 2000,
    lr: float = 0.1,
    lr_gates: float | None = None,
    init_keep_prob: float = 0.95,
    beta: float = 2.0 / 3.0,
    gamma: float = -0.1,
    zeta: float = 1.1,
    eps: float = DEFAULT_EPS,
    group_normalise: bool = True,
    device: Any = "auto",
    dtype: Any = "float32",
    seed: int = 0,
    threads: int | None = None,
    eval_every: int = 10,
    target_tol: float | None = None,
    patience: int = 20,
    min_delta: float = 1e-4,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 100,
    resume: bool = False,
    callback: Callable[[dict[str, Any]], Any] | None = None,
    polish: str | None = "linear",
    repair: bool = True,
) -> CalibrationResult:
    """Hard-Concrete L0 calibration (Louizos, Welling & Kingma 2017) in torch.

    Parameters
    ----------
    problem
        The calibration problem. Its groups weight the loss (each group counts equally), its
        tolerances drive early stopping and the polish, and its weight bounds apply to the
        non-zero weights (``w_i`` is 0 or within ``[max(lower_i, 0), upper_i]``).
    solver
        None or ``"torch"`` (the only one).
    lambda_l0
        Weight of the expected number of non-zeros, ``>= 0``: the price a unit pays while its
        gate is open, weighed against that unit's share of the fit. The share shrinks as the
        units per target grow, so large problems need smaller values: 1e-4 keeps ~1-2% of a
        100,000-column, 328-target problem; 1e-6 keeps ~1-2% of the 5.2M-column country (see
        ``formulations/hard-concrete.md``).
    lambda_l2
        Weight of ``sum_i (w_i / d_i)^2`` (discourages large weight ratios), ``>= 0``.
    epochs
        Maximum number of epochs (one gate sample, one Adam step each).
    lr, lr_gates
        Adam learning rates of the log-weights and of the gate locations (default: ``lr``).
    init_keep_prob
        Starting ``P(z_i != 0)`` of every gate, in (0, 1).
    beta, gamma, zeta
        Gate temperature and stretch interval (paper defaults 2/3, -0.1, 1.1).
    eps, group_normalise
        The target loss's options (:mod:`calibopt.loss`).
    device
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:<k>"``.
    dtype
        ``"float32"`` (default) or ``"float64"``.
    seed
        Seed of the gate samples: the same seed gives the same weights on the same device and
        thread count.
    threads
        torch CPU threads for this call (default: torch's setting).
    eval_every
        Evaluate the deterministic weights every this many epochs.
    target_tol
        Relative tolerance for early stopping (every target within it and the support
        stable for ``patience`` evaluations); default: the problem's per-target tolerance,
        or 1% where that is 0.
    patience, min_delta
        Stop when the best deterministic objective has not improved by a relative
        ``min_delta`` in ``patience`` evaluations.
    progress
        Show a tqdm bar (loss, max/mean relative error, share of live gates); None: only
        when writing to a terminal.
    checkpoint, checkpoint_every, resume
        Save the run every ``checkpoint_every`` epochs and at the end to this file (atomic);
        with ``resume=True`` continue from it (it must come from the same problem and model
        options). An existing file is never overwritten unless ``resume=True``.
    callback
        Called with each evaluation (a dict); returning True stops the run.
    polish
        ``"linear"`` (default), ``"truncated"``, ``"raking"``, ``"logit"`` or None: re-solve
        the targets on the selected support with that classical method (Newton); reported in
        ``info["polish"]`` with the fit before and after.
    repair
        When the selected support cannot meet the targets, add back the units whose gates were
        closest to opening (largest ``log_alpha``), 25% of the support at a time, until the
        polish succeeds (each attempt is listed in ``info["polish"]["attempts"]``).

    Returns
    -------
    CalibrationResult
        Weights with exact zeros; ``info`` holds ``hard_concrete`` (stop reason, epochs,
        seconds per epoch, device, dtype, best evaluation), ``history`` (DataFrame of the
        evaluations) and ``polish``.
    """
    t0 = time.perf_counter()
    if solver is not None and str(solver).lower() != "torch":
        raise InvalidProblemError(
            f"method 'hard-concrete' has one solver, 'torch'; got solver={solver!r}."
        )
    lambda_l0 = _number("lambda_l0", lambda_l0, low=0.0)
    lambda_l2 = _number("lambda_l2", lambda_l2, low=0.0)
    lr = _number("lr", lr, low=0.0, strict=True)
    lr_gates = lr if lr_gates is None else _number("lr_gates", lr_gates, low=0.0, strict=True)
    init_keep_prob = _number("init_keep_prob", init_keep_prob, low=0.0, strict=True)
    if not init_keep_prob < 1.0:
        raise InvalidProblemError(f"`init_keep_prob` must be < 1, got {init_keep_prob!r}.")
    min_delta = _number("min_delta", min_delta, low=0.0)
    epochs = _count("epochs", epochs, 0)
    eval_every = _count("eval_every", eval_every, 1)
    patience = _count("patience", patience, 1)
    checkpoint_every = _count("checkpoint_every", checkpoint_every, 1)
    seed = _count("seed", seed, 0)
    if threads is not None:
        threads = _count("threads", threads, 1)
    if target_tol is not None:
        target_tol = _number("target_tol", target_tol, low=0.0)
    if polish is not None:
        from ..hardconcrete.polish import POLISH_METHODS

        if not isinstance(polish, str) or polish not in POLISH_METHODS:
            raise InvalidProblemError(
                f"`polish` must be None or one of {list(POLISH_METHODS)}, got {polish!r}."
            )
    if callback is not None and not callable(callback):
        raise InvalidProblemError("`callback` must be callable (it receives a dict).")
    ck_path = None if checkpoint is None else Path(checkpoint)
    if ck_path is not None and ck_path.exists() and not resume:
        raise InvalidProblemError(
            f"checkpoint file {str(ck_path)!r} exists; pass resume=True to continue that run, "
            f"or delete it / choose another path to start afresh."
        )
    if resume and ck_path is None:
        raise InvalidProblemError("`resume=True` needs `checkpoint=<path>`.")

    from ..hardconcrete.backend import require_torch, resolve_device, resolve_dtype

    torch = require_torch()
    dev = resolve_device(torch, device)
    dt = resolve_dtype(torch, dtype)
    from ..hardconcrete.gates import GateSpec

    spec = GateSpec(beta=float(beta), gamma=float(gamma), zeta=float(zeta))

    # ---- data on the host: free units, scaled rows, bounds
    _check_groups(problem)
    omega = loss_weights(problem.targets, problem.groups, eps=eps, group_normalise=group_normalise)
    free, lo, hi = _free_units(problem)
    X_free = problem.X if free.size == problem.n_units else problem.X[:, free]
    X_free = sp.csr_matrix(X_free)
    _check_rows(problem, X_free)
    root = np.sqrt(omega)
    Xs = _scale_rows(X_free, root, np.float32 if dt == torch.float32 else np.float64)
    del X_free
    bs = root * problem.targets
    rel_scale = 1.0 / (root * np.where(problem.targets != 0, np.abs(problem.targets), 1.0))
    d = problem.initial_weights[free]
    with np.errstate(divide="ignore"):
        log_lower = np.log(np.maximum(lo, 0.0)) if np.any(lo > 0) else None
        log_upper = np.log(hi) if np.any(np.isfinite(hi)) else None
    tol = problem.tolerance if target_tol is None else np.full(problem.n_targets, target_tol)
    tol = np.where(tol > 0, tol, 0.01) if target_tol is None else tol
    init_log_alpha = spec.log_alpha_for(init_keep_prob)

    from ..hardconcrete.checkpoint import fingerprint
    from ..hardconcrete.model import HardConcreteModel
    from ..hardconcrete.train import TrainConfig, train

    fp = (
        ""
        if ck_path is None
        else fingerprint(
            [Xs.indptr, Xs.indices, Xs.data, bs, d, free]
            + [a for a in (log_lower, log_upper) if a is not None],
            {
                "beta": spec.beta,
                "gamma": spec.gamma,
                "zeta": spec.zeta,
                "lambda_l0": lambda_l0,
                "lambda_l2": lambda_l2,
                "init_log_alpha": init_log_alpha,
                "dtype": str(dt),
            },
        )
    )
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        t_setup = time.perf_counter()
        model = HardConcreteModel(
            Xs,
            bs,
            rel_scale,
            d,
            log_lower=log_lower,
            log_upper=log_upper,
            spec=spec,
            lambda_l0=lambda_l0,
            lambda_l2=lambda_l2,
            init_log_alpha=init_log_alpha,
            dtype=dt,
            device=dev,
        )
        del Xs
        t_setup = time.perf_counter() - t_setup
        cfg = TrainConfig(
            epochs=epochs,
            lr=lr,
            lr_gates=lr_gates,
            eval_every=eval_every,
            patience=patience,
            min_delta=min_delta,
            seed=seed,
            progress=progress,
            tolerance=torch.as_tensor(tol, dtype=dt, device=dev),
            checkpoint=ck_path,
            checkpoint_every=checkpoint_every,
            resume=bool(resume),
            callback=callback,
            fingerprint=fp,
        )
        out = train(model, cfg)
        device_bytes = model.memory_bytes()
        used_threads = torch.get_num_threads()
        del model
    finally:
        if threads is not None:
            torch.set_num_threads(previous_threads)

    # ---- the answer: deterministic gates in float64 on the host (exact zeros)
    gates = _gates_float64(torch, spec, out.log_alpha)
    w = np.zeros(problem.n_units)
    # (the clip only removes float32 rounding of the log-bound projection)
    w[free] = np.minimum(np.exp(out.log_w) * gates, hi)
    info: dict[str, Any] = {
        "hard_concrete": {
            "stop_reason": out.stop_reason,
            "epochs": out.epochs_run,
            "best_epoch": int(out.best["epoch"]),
            "seconds_per_epoch": out.seconds_per_epoch,
            "seconds_evaluating": out.seconds_evaluating,
            "device": str(dev),
            "dtype": str(dt).replace("torch.", ""),
            "threads": used_threads if dev.type == "cpu" else None,
            "seed": seed,
            "lambda_l0": lambda_l0,
            "lambda_l2": lambda_l2,
            "gates": {"beta": spec.beta, "gamma": spec.gamma, "zeta": spec.zeta},
            "best": {k: v for k, v in out.best.items() if k != "epoch"},
            "device_bytes": device_bytes,
            "resumed_from_epoch": out.resumed_from,
            "notes": out.notes,
        },
        "history": pd.DataFrame(out.history),
    }
    timings = {"setup": t_setup, "training": out.seconds_training}
    message = f"hard-concrete: {out.message}"
    status = None
    if polish is not None:
        from ..hardconcrete.polish import polish_support

        candidates = cand_w = None
        if repair:
            closed = gates == 0
            order = np.argsort(-out.log_alpha[closed], kind="stable")
            candidates = free[closed][order]
            cand_w = np.zeros(problem.n_units)
            cand_w[free] = np.exp(out.log_w)
        w, report = polish_support(
            problem, w, polish, candidates=candidates, candidate_weights=cand_w
        )
        info["polish"] = report
        timings["polish"] = report["seconds"]
        b, a = report["before"], report["after"]
        message += (
            f"; polish ({polish}) {'accepted' if report['accepted'] else 'rejected'}: "
            f"{report['status']}, max |rel error| {b['max_rel_error']:.3g} -> "
            f"{a['max_rel_error']:.3g}, non-zeros {b['nnz']} -> {a['nnz']}"
        )
        if report["status"] == "failed":
            message += f" ({report['message']})"
    if out.stop_reason == "interrupted":
        status = STATUS_STOPPED
    objective = _objective(problem, w, omega, lambda_l0, lambda_l2)
    return CalibrationResult.from_weights(
        problem,
        w,
        method="hard-concrete",
        solver="torch",
        status=status,
        message=message,
        iterations=out.epochs_run,
        objective=objective,
        timings=timings | {"total": time.perf_counter() - t0},
        info=info,
    )


def _gates_float64(torch: Any, spec: Any, log_alpha: np.ndarray) -> np.ndarray:
    """Deterministic gates of float64 parameters, computed on the CPU in float64."""
    from ..hardconcrete.gates import deterministic_gates

    return deterministic_gates(torch.from_numpy(log_alpha), spec).numpy().copy()


def _objective(
    problem: CalibrationProblem, w: np.ndarray, omega: np.ndarray, lam0: float, lam2: float
) -> float:
    """``sum_j omega_j (X_j w - b_j)^2 + lambda_l0 nnz(w) + lambda_l2 sum (w/d)^2``."""
    r = problem.X @ w - problem.targets
    d = problem.initial_weights
    pos = d > 0
    l2 = float(np.sum((w[pos] / d[pos]) ** 2))
    return float(omega @ (r * r)) + lam0 * np.count_nonzero(w) + lam2 * l2
