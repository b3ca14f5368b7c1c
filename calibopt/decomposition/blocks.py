"""Solve a sparse calibration block by block (by geography, or any label of the records).

1. **Split.** Records are grouped by a user label. A target whose non-zeros all lie in one
   block is *local* to it; a target with non-zeros in several blocks (national, state) *spans*.
2. **Shares.** If some targets span, one continuous solve of the whole problem with the
   spanning targets exact (``share_method``: ``"reweighted-l1"``, the default, whose sparse LP
   solution restricted to a block is already a small support for that block; or a core method
   such as the chi-square ``"linear"``) gives weights ``w*``; block ``B``'s share of a spanning
   target ``j`` is ``X_jB w*_B``, adjusted so that the shares add up to the target exactly.
3. **Blocks.** Each block solves its own problem -- its records, its local targets and its
   shares of the spanning ones (same relative tolerance) -- with the block method (e.g. exact
   L0), on an executor (:mod:`calibopt.decomposition.executors`): in process, a process pool
   or dask. Methods are run through the registry (:func:`run_method`).
4. **Report.** The weights are assembled and the result's diagnostics give the *global* target
   errors; ``result.info["blocks"]`` has one row per block (status, non-zeros, MIP gap, time).

A block that fails (e.g. infeasible: its tolerance is too tight for any support) is reported in
its row while the others solve; its records keep the continuous weights (or 0 when there was no
continuous solve), and the overall status says so. Shares with mixed signs can add block errors
up beyond the tolerance; the global diagnostics show it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import status as st
from ..errors import CalibrationError, InfeasibleError, InvalidProblemError
from ..formulations.registry import get_method, run_method
from ..formulations.support import calibrate_bands, support_problem
from ..problem import CalibrationProblem
from ..result import CalibrationResult
from .executors import run_tasks
from .plan import BlockPlan, PerBlock, block_shares, per_block, plan_blocks

__all__ = [
    "BlockOutcome",
    "BlockPlan",
    "PerBlock",
    "block_row",
    "block_shares",
    "per_block",
    "plan_blocks",
    "solve_blocks",
]


@dataclass
class BlockOutcome:
    """What one block returned (small and picklable, so it travels back from workers)."""

    index: int
    status: str
    weights: np.ndarray | None
    nnz: int
    proven_optimal: bool
    mip_gap: float
    seconds: float
    message: str
    targets: list[str]
    iterations: int | None = None
    objective: float = float("nan")


def block_row(
    label: Any, units: int, local: int, spanning: int, out: BlockOutcome, nnz: int
) -> dict[str, Any]:
    """One row of ``result.info["blocks"]``."""
    return {
        "block": label,
        "units": units,
        "local_targets": local,
        "spanning_targets": spanning,
        "status": out.status,
        "nnz": nnz,
        "proven_optimal": out.proven_optimal,
        "mip_gap": out.mip_gap,
        "iterations": out.iterations,
        "seconds": out.seconds,
        "message": out.message,
        "failing_targets": out.targets,
    }


def outcome_of(index: int, res: CalibrationResult, seconds: float) -> BlockOutcome:
    """A block outcome from a method's result."""
    return BlockOutcome(
        index,
        res.status,
        res.weights,
        res.nnz,
        bool(res.info.get("proven_optimal", res.status == st.OPTIMAL)),
        float(res.info.get("mip_gap", np.nan)),
        seconds,
        res.message,
        [],
        res.iterations,
        res.objective,
    )


def _failed(index: int, exc: CalibrationError, seconds: float) -> BlockOutcome:
    if isinstance(exc, InfeasibleError):
        return BlockOutcome(
            index, st.INFEASIBLE, None, 0, False, np.inf, seconds, str(exc), list(exc.targets)
        )
    status = st.INVALID if isinstance(exc, InvalidProblemError) else st.FAILED
    return BlockOutcome(
        index, status, None, 0, False, np.inf, seconds, f"{type(exc).__name__}: {exc}", []
    )


def _solve_block(task: tuple[int, CalibrationProblem, str, dict[str, Any]]) -> BlockOutcome:
    """Worker: calibrate one block's problem; failures become a report, not an exception."""
    index, sub, method, options = task
    t0 = time.perf_counter()
    try:
        res = run_method(sub, method, **options)
    except CalibrationError as exc:
        return _failed(index, exc, time.perf_counter() - t0)
    return outcome_of(index, res, time.perf_counter() - t0)


SPARSE_SHARES = ("reweighted-l1",)


def _continuous(
    problem: CalibrationProblem, share_method: str, spanning: np.ndarray
) -> tuple[np.ndarray, str]:
    """Weights of one continuous calibration of the whole problem (kept-record bounds).

    The spanning targets are met exactly (then the block shares add up to them and a block
    error within the tolerance of its share keeps the total within its tolerance); local
    targets keep their bands. Tried in order: that problem; the problem's own bands; and -- for
    conflicting targets or bounds -- the least-squares trade-off of the ``gradient`` method.
    ``share_method="reweighted-l1"`` uses the sparse LP solution (whose restriction to a block
    is a sparse solution of the block's problem, so block supports can only shrink).
    """
    sparse = share_method in SPARSE_SHARES
    full = problem if sparse else support_problem(problem, np.arange(problem.n_units))
    tol = full.tolerance.copy()
    tol[spanning] = 0.0
    notes = []
    tries = [("exact spanning targets", full.with_options(tolerance=tol))]
    if not sparse and np.any(tol > 0):
        # Newton with exact targets only (no band active set) first
        tries.insert(0, ("exact targets", full.with_options(tolerance=0.0)))
    if np.any(problem.tolerance[spanning] > 0):
        tries.append(("tolerance bands", full))
    for label, prob in tries:
        try:
            if sparse:
                res = run_method(prob, share_method, refit=None)
            else:
                res = calibrate_bands(prob, share_method)
        except CalibrationError as exc:
            notes.append(f"{share_method} with {label} failed ({exc})")
            continue
        if res.success:
            return res.weights, f"shares from {share_method} with {label}"
        notes.append(f"{share_method} with {label} stopped ({res.message})")
    res = run_method(support_problem(problem, np.arange(problem.n_units)), "gradient")
    notes.append(f"shares from the gradient method (max error {res.max_rel_error:.3g})")
    return res.weights, "; ".join(notes)


def _tasks(problem, plan, shares, method, options) -> list:
    tasks = []
    for k in range(plan.n_blocks):
        # options given with per_block(...) take this block's value (None: the default)
        label = plan.labels[k]
        mine = {o: v.get(label) if isinstance(v, PerBlock) else v for o, v in options.items()}
        rows = np.concatenate([plan.local[k], plan.touching[k]])
        if rows.size == 0:
            # a block no target touches: its records can only add non-zeros
            tasks.append((k, None, method, mine))
            continue
        values = problem.targets[rows].copy()
        if shares is not None and plan.touching[k].size:
            values[plan.local[k].size :] = shares[k]
        order = np.argsort(rows, kind="stable")
        sub = problem.subproblem(
            units=plan.units[k], targets=rows[order], target_values=values[order]
        )
        tasks.append((k, sub, method, mine))
    return tasks


def _assemble(problem, plan, run, w_cont):
    """Weights from the blocks (failed blocks keep the continuous weights) and the table."""

    weights = np.zeros(problem.n_units)
    rows_out = []
    failed = []
    for k in range(plan.n_blocks):
        out: BlockOutcome | None = run.results[k]
        U = plan.units[k]
        if out is None:
            out = BlockOutcome(k, "not run", None, 0, False, np.inf, 0.0, "interrupted", [])
        if out.weights is not None:
            weights[U] = out.weights
        elif plan.local[k].size + plan.touching[k].size == 0 and out.status == st.OPTIMAL:
            pass  # no target touches the block: its records stay at 0
        else:
            failed.append(k)
            if w_cont is not None:
                weights[U] = w_cont[U]
        rows_out.append(
            block_row(
                plan.labels[k],
                U.size,
                plan.local[k].size,
                plan.touching[k].size,
                out,
                int(np.count_nonzero(weights[U])),
            )
        )
    return weights, pd.DataFrame(rows_out), failed


def solve_blocks(
    problem: CalibrationProblem,
    labels: Any,
    *,
    method: str = "l0-mip",
    options: dict[str, Any] | None = None,
    executor: Any = None,
    share_method: str = "reweighted-l1",
    progress: bool | None = None,
) -> CalibrationResult:
    """Calibrate ``problem`` block by block; see the module docstring.

    Parameters
    ----------
    labels
        One block label per record (e.g. the geography of each column).
    method, options
        The method each block runs and its options (e.g. ``{"time_limit": 60}``); a value
        wrapped in :func:`per_block` differs by block.
    executor
        None (in process), ``"process"`` / int (process pool), a ``dask.distributed.Client``,
        ... (see :func:`calibopt.decomposition.executors.resolve_executor`).
    share_method
        The continuous method whose solution divides spanning targets into block shares.
    progress
        Progress bar over blocks (None: when stderr is a terminal).

    Returns
    -------
    CalibrationResult
        Global diagnostics; ``iterations`` and ``objective`` summed over blocks;
        ``info["blocks"]`` (a DataFrame, one row per block), ``info["spanning_targets"]``,
        ``info["share_note"]``.
    """
    t_start = time.perf_counter()
    spec = get_method(method)
    options = dict(options or {})
    plan = plan_blocks(problem, labels)
    nonzero_empty = plan.empty[problem.targets[plan.empty] != 0]
    if nonzero_empty.size:
        names = [problem.target_names[j] for j in nonzero_empty[:10]]
        raise InfeasibleError(
            f"target(s) {names} have no non-zero entry in X but a non-zero total; no weights "
            f"can reach them.",
            targets=names,
        )
    timings: dict[str, float] = {}
    w_cont = None
    share_note = "no spanning targets: blocks are independent"
    if plan.spanning.size:
        t0 = time.perf_counter()
        w_cont, share_note = _continuous(problem, share_method, plan.spanning)
        timings["shares"] = time.perf_counter() - t0
    shares = block_shares(problem, plan, w_cont, exact=True) if w_cont is not None else None
    run = run_tasks(
        _run_block_task,
        _tasks(problem, plan, shares, spec.name, options),
        executor,
        progress=progress,
        desc=f"{spec.name} blocks",
        postfix=lambda r: f"{r.status} nnz={r.nnz}",
    )
    timings["blocks"] = time.perf_counter() - t_start - timings.get("shares", 0.0)
    weights, table, failed = _assemble(problem, plan, run, w_cont)
    all_proven = bool(table["proven_optimal"].all()) if len(table) else False
    msg = [f"{plan.n_blocks} block(s) on {run.executor}", share_note]
    if failed:
        fill = "continuous weights" if w_cont is not None else "zero weights"
        which = ", ".join(str(plan.labels[k]) for k in failed[:10])
        msg.append(f"{len(failed)} block(s) failed ({which}) and keep {fill}; see info['blocks']")
    if run.interrupted:
        msg.append("interrupted: blocks not run keep the continuous weights")
    if all_proven and not failed:
        msg.append("every block proven optimal")
    # independent blocks: the sum of block optima is optimal
    proven = all_proven and not failed and not run.interrupted and plan.spanning.size == 0
    its = [r for r in table["iterations"] if r is not None and not _isna(r)]
    timings["total"] = time.perf_counter() - t_start
    return CalibrationResult.from_weights(
        problem,
        weights,
        method=spec.name,
        solver=str(options.get("solver") or (spec.solvers[0] if spec.solvers else "default")),
        proven_optimal=proven,
        sparse=spec.sparse,
        message="; ".join(msg),
        iterations=int(sum(its)) if its else None,
        objective=float(
            sum(o.objective for o in run.results if o is not None and np.isfinite(o.objective))
        ),
        timings=timings,
        info={
            "blocks": table,
            "spanning_targets": [problem.target_names[j] for j in plan.spanning],
            "share_note": share_note,
            "executor": run.executor,
            "interrupted": run.interrupted,
            "proven_optimal": proven,
        },
    )


def _isna(value: Any) -> bool:
    """True for None and NaN."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def _run_block_task(
    task: tuple[int, CalibrationProblem | None, str, dict[str, Any]],
) -> BlockOutcome:
    index, sub = task[0], task[1]
    if sub is None:
        return BlockOutcome(
            index, st.OPTIMAL, None, 0, True, 0.0, 0.0, "no target touches this block", [], 0, 0.0
        )
    return _solve_block(task)
