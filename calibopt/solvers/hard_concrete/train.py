"""The training loop: Adam epochs, evaluation, early stopping, progress, Ctrl-C, checkpoints.

Every ``eval_every`` epochs the deterministic weights (test-time gates) are evaluated; the best
of them by the deterministic objective ``fit + lambda_l0 * live + lambda_l2 * l2`` is kept and
returned. The run stops at the first of:

* ``converged`` — every target within its tolerance (relative, per target) and the number of
  live gates unchanged (to 0.1%) over the last ``patience`` evaluations;
* ``plateau`` — the best objective has not improved by a relative ``min_delta`` for
  ``patience`` evaluations;
* ``epochs`` — the epoch budget is spent;
* ``interrupted`` — Ctrl-C (the epoch in progress is finished first; a second Ctrl-C stops
  at once) or a ``KeyboardInterrupt`` raised by the callback;
* ``callback`` — the user's callback returned True.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .model import HardConcreteModel

__all__ = ["TrainConfig", "TrainOutcome", "train"]


@dataclass
class TrainConfig:
    """Options of the training loop (validated by the method before they get here)."""

    epochs: int
    lr: float
    lr_gates: float
    eval_every: int
    patience: int
    min_delta: float
    seed: int
    progress: bool | None
    tolerance: Any  # per-target relative tolerance (tensor on the device) or None
    checkpoint: Path | None
    checkpoint_every: int
    resume: bool
    callback: Callable[[dict[str, Any]], Any] | None
    fingerprint: str


@dataclass
class TrainOutcome:
    """What training produced: the best parameters and how the run went."""

    log_w: Any  # float64 numpy arrays of the best parameters
    log_alpha: Any
    best: dict[str, float]
    epochs_run: int
    stop_reason: str
    message: str
    history: list[dict[str, float]]
    seconds_training: float
    seconds_per_epoch: float
    seconds_evaluating: float
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)


class _Interrupt:
    """SIGINT -> a flag checked at the end of each epoch; a second SIGINT raises at once."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[_Interrupt]:
    flag = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers only work in the main thread: plain KeyboardInterrupt
        return
    previous = signal.signal(signal.SIGINT, flag.handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _make_optimizer(model: HardConcreteModel, cfg: TrainConfig) -> torch.optim.Adam:
    groups = [
        {"params": [model.log_w], "lr": cfg.lr},
        {"params": [model.log_alpha], "lr": cfg.lr_gates},
    ]
    try:
        return torch.optim.Adam(groups, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device/dtype
        return torch.optim.Adam(groups, foreach=True)


def _fmt_postfix(ev: dict[str, float], n: int) -> dict[str, str]:
    return {
        "loss": f"{ev['objective']:.4g}",
        "max": f"{100 * ev['max_rel_error']:.3g}%",
        "mean": f"{100 * ev['mean_rel_error']:.3g}%",
        "live": f"{100 * ev['live'] / max(n, 1):.3g}%",
    }


class _Trainer:
    """The state of one training run: parameters, optimiser, random stream, best evaluation."""

    def __init__(self, model: HardConcreteModel, cfg: TrainConfig) -> None:
        self.model, self.cfg = model, cfg
        self.device = model.device
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(int(cfg.seed))
        self.opt = _make_optimizer(model, cfg)
        self.history: list[dict[str, float]] = []
        self.notes: list[str] = []
        self.epoch = 0
        self.best: dict[str, float] | None = None
        self.best_params: tuple[torch.Tensor, torch.Tensor] | None = None
        self.since_improved = 0
        self.live_window: list[int] = []
        self.resumed_from: int | None = None
        self.eval_seconds = 0.0

    def resume(self) -> None:
        """Continue from the checkpoint (same problem and options, checked by fingerprint)."""
        cfg, model, device = self.cfg, self.model, self.device
        ck = load_checkpoint(cfg.checkpoint, cfg.fingerprint)
        model.load_state(ck["log_w"], ck["log_alpha"])
        self.opt.load_state_dict(ck["optimizer"])
        if ck["device_type"] == device.type:
            self.gen.set_state(ck["generator"])
        else:
            self.gen.manual_seed(int(cfg.seed) + int(ck["epoch"]))
            self.notes.append(
                f"resumed on {device.type} from a {ck['device_type']} checkpoint: the random "
                f"stream was reseeded, so the run differs from an uninterrupted one"
            )
        self.epoch = self.resumed_from = int(ck["epoch"])
        self.best = dict(ck["best"])
        self.best_params = (
            ck["best_log_w"].to(device, model.dtype),
            ck["best_log_alpha"].to(device, model.dtype),
        )
        self.history = list(ck["history"])
        self.since_improved = int(ck["since_improved"])
        self.live_window = list(ck["live_window"])

    def snapshot(self) -> dict[str, Any]:
        """Everything a checkpoint holds."""
        assert self.best is not None and self.best_params is not None
        return {
            "fingerprint": self.cfg.fingerprint,
            "epoch": self.epoch,
            "device_type": self.device.type,
            "log_w": self.model.log_w.detach().cpu(),
            "log_alpha": self.model.log_alpha.detach().cpu(),
            "optimizer": self.opt.state_dict(),
            "generator": self.gen.get_state(),
            "best": self.best,
            "best_log_w": self.best_params[0].cpu(),
            "best_log_alpha": self.best_params[1].cpu(),
            "history": self.history,
            "since_improved": self.since_improved,
            "live_window": self.live_window,
        }

    def evaluate(self) -> dict[str, float]:
        """Evaluate the deterministic weights, record them and update the best."""
        cfg, model = self.cfg, self.model
        te = time.perf_counter()
        ev = model.evaluate(cfg.tolerance)
        ev["epoch"] = self.epoch
        self.history.append(ev)
        best = self.best
        improved = best is None or ev["objective"] < best["objective"]
        significant = best is None or ev["objective"] < best["objective"] - cfg.min_delta * abs(
            best["objective"]
        )
        if improved:
            self.best = dict(ev)
            self.best_params = (model.log_w.detach().clone(), model.log_alpha.detach().clone())
        self.since_improved = 0 if significant else self.since_improved + 1
        self.live_window.append(ev["live"])
        del self.live_window[: -(cfg.patience + 1)]
        self.eval_seconds += time.perf_counter() - te
        return ev

    def epoch_step(self) -> None:
        """One gate sample, one gradient, one Adam step, one projection onto the bounds."""
        self.model.sample_uniform_(self.gen)
        self.model.step_gradient()
        self.opt.step()
        self.model.project_()
        self.epoch += 1

    def loop(self, bar: Any, interrupt: _Interrupt) -> tuple[str, str]:
        """Epochs until a stopping rule; returns ``(stop_reason, message)``."""
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            self.epoch_step()
            bar.update(1)
            if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs or interrupt.requested:
                ev = self.evaluate()
                bar.set_postfix(_fmt_postfix(ev, self.model.n), refresh=False)
                reason = _stop_check(ev, self.live_window, self.since_improved, cfg)
                if reason is not None:
                    return reason
                if cfg.callback is not None and cfg.callback(dict(ev)):
                    return "callback", "stopped by the callback"
            if cfg.checkpoint is not None and self.epoch % cfg.checkpoint_every == 0:
                save_checkpoint(cfg.checkpoint, self.snapshot())
            if interrupt.requested:
                return (
                    "interrupted",
                    f"interrupted (Ctrl-C) after epoch {self.epoch}; best result so far",
                )
        return "epochs", f"epoch limit ({cfg.epochs}) reached"


def train(model: HardConcreteModel, cfg: TrainConfig) -> TrainOutcome:
    """Run Adam on the model's parameters; return the best evaluated parameters.

    Parameters
    ----------
    model
        The model, with its parameters at their starting values.
    cfg
        Loop options.
    """
    tr = _Trainer(model, cfg)
    if cfg.resume and cfg.checkpoint is not None and cfg.checkpoint.exists():
        tr.resume()
    if tr.best is None:
        tr.evaluate()
    tr.eval_seconds = 0.0
    first_epoch = tr.epoch
    bar = tqdm(
        total=cfg.epochs,
        initial=tr.epoch,
        desc="hard-concrete",
        unit="epoch",
        disable=(not cfg.progress) if cfg.progress is not None else None,
        dynamic_ncols=True,
    )
    t0 = time.perf_counter()
    consistent = True
    try:
        with _deferred_interrupt() as interrupt:
            stop_reason, message = tr.loop(bar, interrupt)
    except KeyboardInterrupt:
        # raised mid-epoch: the current parameters may be half-updated, so the last periodic
        # checkpoint is kept as it is
        consistent = False
        stop_reason = "interrupted"
        message = f"interrupted during epoch {tr.epoch + 1}; best result so far"
    finally:
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        seconds = time.perf_counter() - t0
        bar.close()
    if cfg.checkpoint is not None and consistent:
        save_checkpoint(cfg.checkpoint, tr.snapshot())
    assert tr.best is not None and tr.best_params is not None
    ran = tr.epoch - first_epoch
    return TrainOutcome(
        log_w=tr.best_params[0].to("cpu", torch.float64).numpy().copy(),
        log_alpha=tr.best_params[1].to("cpu", torch.float64).numpy().copy(),
        best=tr.best,
        epochs_run=tr.epoch,
        stop_reason=stop_reason,
        message=message,
        history=tr.history,
        seconds_training=seconds,
        seconds_per_epoch=(seconds - tr.eval_seconds) / ran if ran else math.nan,
        seconds_evaluating=tr.eval_seconds,
        resumed_from=tr.resumed_from,
        notes=tr.notes,
    )


def _stop_check(
    ev: dict[str, float], live_window: list[int], since_improved: int, cfg: TrainConfig
) -> tuple[str, str] | None:
    if ev.get("within_tolerance") and len(live_window) > cfg.patience:
        lo, hi = min(live_window), max(live_window)
        if hi - lo <= max(1, 1e-3 * hi):
            return (
                "converged",
                f"every target within tolerance and {ev['live']} live gates stable over "
                f"{cfg.patience} evaluations",
            )
    if since_improved >= cfg.patience:
        return (
            "plateau",
            f"objective not improved by {cfg.min_delta:g} (relative) in {cfg.patience} evaluations",
        )
    return None
