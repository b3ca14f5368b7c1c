"""``hard-concrete``: L0-regularised calibration with Hard Concrete gates, trained in torch.

The program (see ``formulations/hard-concrete.md``)::

    minimise over theta, log_alpha
        E_u[ sum_j omega_j (X_j w - b_j)^2 ]  +  lambda_l0 sum_i P(z_i != 0)
                                              +  lambda_l2 sum_i (w_i / d_i)^2
    with     w_i = exp(theta_i) z_i(log_alpha_i, u_i),
             z_i ~ Hard Concrete(log_alpha_i, beta, gamma, zeta)

by Adam on a single sample of the gates per epoch (:mod:`calibopt.solvers.hard_concrete`); the
answer uses the deterministic (median) gates, so unselected units get weights of exactly 0,
and is optionally polished on its support by an exact distance method
(:func:`calibopt.formulations.support.polish_support`). torch is imported only when the
method runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from ..solvers.hard_concrete.data import EngineSettings
from ..solvers.loss import DEFAULT_EPS
from ..validate import integer, number
from .registry import register_method
from .support import POLISH_METHODS, polish_support

__all__: list[str] = []


def _lambda_l0(value: Any, n_units: int) -> float | np.ndarray:
    """A number, or one value per unit (adaptive sparsity), each >= 0."""
    if np.ndim(value) == 0:
        return number("lambda_l0", value, low=0.0)
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n_units,) or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InvalidProblemError(
            f"`lambda_l0` must be a number >= 0 or {n_units} finite values >= 0 (one per "
            f"unit), got shape {arr.shape}."
        )
    return arr


def _settings(**o: Any) -> EngineSettings:
    lr = number("lr", o["lr"], low=0.0, strict=True)
    keep = number("init_keep_prob", o["init_keep_prob"], low=0.0, high=1.0, strict=True)
    ck = None if o["checkpoint"] is None else Path(o["checkpoint"])
    if ck is not None and ck.exists() and not o["resume"]:
        raise InvalidProblemError(
            f"checkpoint file {str(ck)!r} exists; pass resume=True to continue that run, "
            f"or delete it / choose another path to start afresh."
        )
    if o["resume"] and ck is None:
        raise InvalidProblemError("`resume=True` needs `checkpoint=<path>`.")
    if o["polish"] is not None and (
        not isinstance(o["polish"], str) or o["polish"] not in POLISH_METHODS
    ):
        raise InvalidProblemError(
            f"`polish` must be None or one of {list(POLISH_METHODS)}, got {o['polish']!r}."
        )
    if o["callback"] is not None and not callable(o["callback"]):
        raise InvalidProblemError("`callback` must be callable (it receives a dict).")
    stop = o["stop_tolerance"]
    return EngineSettings(
        beta=o["beta"],
        gamma=o["gamma"],
        zeta=o["zeta"],
        eps=o["eps"],
        group_normalise=o["group_normalise"],
        device=o["device"],
        dtype=o["dtype"],
        progress=o["progress"],
        callback=o["callback"],
        resume=bool(o["resume"]),
        lambda_l0=_lambda_l0(o["lambda_l0"], o["n_units"]),
        lambda_l2=number("lambda_l2", o["lambda_l2"], low=0.0),
        epochs=integer("epochs", o["epochs"], low=0),
        lr=lr,
        lr_gates=lr
        if o["lr_gates"] is None
        else number("lr_gates", o["lr_gates"], low=0.0, strict=True),
        init_keep_prob=keep,
        min_delta=number("min_delta", o["min_delta"], low=0.0),
        eval_every=integer("eval_every", o["eval_every"], low=1),
        patience=integer("patience", o["patience"], low=1),
        checkpoint_every=integer("checkpoint_every", o["checkpoint_every"], low=1),
        seed=integer("seed", o["seed"], low=0),
        threads=None if o["threads"] is None else integer("threads", o["threads"], low=1),
        stop_tolerance=None if stop is None else number("stop_tolerance", stop, low=0.0),
        checkpoint=ck,
    )


def _polish(problem, w, out, free, gates, polish, repair):
    """Polish on the support, with repair candidates ranked by their gates' log_alpha."""
    candidates = cand_w = None
    if repair:
        closed = gates == 0
        order = np.argsort(-out.log_alpha[closed], kind="stable")
        candidates = free[closed][order]
        cand_w = np.zeros(problem.n_units)
        cand_w[free] = np.exp(out.log_w)
    w, report = polish_support(problem, w, polish, candidates=candidates, candidate_weights=cand_w)
    b, a = report["before"], report["after"]
    message = (
        f"; polish ({polish}) {'accepted' if report['accepted'] else 'rejected'}: "
        f"{report['status']}, max |rel error| {b['max_rel_error']:.3g} -> "
        f"{a['max_rel_error']:.3g}, non-zeros {b['nnz']} -> {a['nnz']}"
    )
    if report["status"] == "failed":
        message += f" ({report['message']})"
    return w, report, message


def _objective(problem: CalibrationProblem, w: np.ndarray, root, lam0: Any, lam2: float) -> float:
    """``sum_j omega_j (X_j w - b_j)^2 + sum_i lambda_l0_i [w_i != 0] + lambda_l2 sum (w/d)^2``."""
    z = root * (problem.X @ w - problem.targets)
    d = problem.initial_weights
    pos = d > 0
    l2 = float(np.sum((w[pos] / d[pos]) ** 2))
    l0 = float(np.sum(lam0[w != 0])) if np.ndim(lam0) else lam0 * np.count_nonzero(w)
    return float(z @ z) + l0 + lam2 * l2


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
    iterations="epochs",
    objective="sum_j omega_j (X_j w - b_j)^2 + lambda_l0 nnz(w) + lambda_l2 sum (w/d)^2",
    sparse=True,
)
def solve(
    problem: CalibrationProblem,
    *,
    solver: str | None = None,
    lambda_l0: float | np.ndarray = 1e-5,
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
    stop_tolerance: float | None = None,
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
        ``formulations/hard-concrete.md``). One value per unit (an array) prices units
        differently, e.g. per area (adaptive sparsity:
        :func:`calibopt.decomposition.adaptive.adaptive_sparsity` chooses them).
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
    stop_tolerance
        Relative error at which training may stop early (every target within it and the
        support stable for ``patience`` evaluations); default: the problem's per-target
        tolerance, or 1% where that is 0. It only ends the training: the status is decided
        by the problem's own tolerance, checked from the returned weights.
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
    if solver is not None and solver.lower() != "torch":
        raise InvalidProblemError(
            f"method 'hard-concrete' has one solver, 'torch'; got solver={solver!r}."
        )
    opt = _settings(
        n_units=problem.n_units,
        **{k: v for k, v in locals().items() if k not in ("problem", "solver", "t0")},
    )
    from ..solvers.hard_concrete.backend import require_torch

    require_torch()  # a clear SolverError when torch is not installed
    from ..solvers.hard_concrete.engine import fit_hard_concrete

    fit = fit_hard_concrete(problem, opt)
    out, host = fit.outcome, fit.host
    w = np.zeros(problem.n_units)
    # (the clip only removes float32 rounding of the log-bound projection)
    w[host.free] = np.minimum(np.exp(out.log_w) * fit.gates, host.hi)
    info: dict[str, Any] = {"hard_concrete": fit.report, "history": fit.history_frame()}
    timings = {"setup": fit.setup_seconds, "training": out.seconds_training}
    message = f"hard-concrete: {out.message}"
    if polish is not None:
        w, info["polish"], note = _polish(problem, w, out, host.free, fit.gates, polish, repair)
        timings["polish"] = info["polish"]["seconds"]
        message += note
    return CalibrationResult.from_weights(
        problem,
        w,
        method="hard-concrete",
        solver="torch",
        proven_optimal=False,
        soft=True,
        completed=out.stop_reason in ("converged", "plateau"),
        sparse=True,
        message=message,
        iterations=out.epochs_run,
        objective=_objective(problem, w, host.root, opt.lambda_l0, opt.lambda_l2),
        timings=timings | {"total": time.perf_counter() - t0},
        info=info,
    )
