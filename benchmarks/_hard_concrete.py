"""One measured hard-concrete run, shared by the benchmark scripts.

:func:`timed_run` calls ``calibrate(method="hard-concrete")`` with an evaluation of the
deterministic weights every 5 epochs and no early stop, and records each evaluation with the
wall-clock seconds since the call began (setup and the evaluations included); each record is
also emitted as an ``EVAL <json>`` line, so a parent process can rebuild the progress of a run
it had to stop. :func:`first_hit` reads the first evaluation at or below an error level.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

EVAL_EVERY = 5
EVAL_KEYS = ("epoch", "live", "max_rel_error", "mean_rel_error")


def timed_run(
    problem: Any, emit: Callable[[str], Any] | None = print, **options: Any
) -> tuple[Any, float, list[dict[str, float]]]:
    """Hard-concrete on ``problem``; returns ``(result, wall seconds, evaluations)``.

    Each evaluation holds ``epoch``, ``live`` (non-zeros), ``max_rel_error``,
    ``mean_rel_error`` and ``elapsed`` (seconds since the call began). ``options`` go to
    ``calibrate`` (``epochs``, ``lambda_l0``, ``lr``, ``threads``, ``device``, ``dtype``...).
    """
    import calibopt as co

    evals: list[dict[str, float]] = []
    t = time.perf_counter()

    def report(ev: dict) -> None:
        row = {k: ev[k] for k in EVAL_KEYS} | {"elapsed": time.perf_counter() - t}
        evals.append(row)
        if emit is not None:
            emit("EVAL " + json.dumps(row))

    r = co.calibrate(
        problem,
        method="hard-concrete",
        eval_every=EVAL_EVERY,
        patience=10**6,
        progress=False,
        callback=report,
        **options,
    )
    return r, time.perf_counter() - t, evals


def first_hit(evals: list[dict[str, Any]], key: str, level: float) -> dict[str, Any] | None:
    """The first evaluation whose ``key`` (``max_rel_error`` or ``mean_rel_error``) is
    ``<= level``, or None."""
    return next((e for e in evals if e[key] <= level), None)
