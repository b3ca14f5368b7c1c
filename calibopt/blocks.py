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
   L0), on an executor (:mod:`calibopt.parallel`): in process, a process pool or dask.
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

from .errors import CalibrationError, InfeasibleError, InvalidProblemError
from .parallel import run_tasks
from .problem import CalibrationProblem
from .result import STATUS_OPTIMAL, STATUS_STOPPED, STATUS_WITHIN_TOLERANCE, CalibrationResult

__all__ = ["BlockOutcome", "BlockPlan", "block_shares", "plan_blocks", "solve_blocks"]


@dataclass
class BlockPlan:
    """How a problem splits into blocks.

    Attributes
    ----------
    labels : ndarray
        The distinct block labels, in order of first appearance.
    units : list of ndarray
        Record positions of each block.
    local : list of ndarray
        Targets whose non-zeros all lie in the block.
    spanning : ndarray
        Targets with non-zeros in more than one block.
    touching : list of ndarray
        For each block, the spanning targets with a non-zero in it.
    empty : ndarray
        Targets with no non-zero at all.
    """

    labels: np.ndarray
    units: list[np.ndarray]
    local: list[np.ndarray]
    spanning: np.ndarray
    touching: list[np.ndarray]
    empty: np.ndarray

    @property
    def n_blocks(self) -> int:
        """Number of blocks."""
        return len(self.units)


def plan_blocks(problem: CalibrationProblem, labels: Any) -> BlockPlan:
    """Split ``problem``'s records by ``labels`` (one label per record) and classify targets."""
    lab = labels.to_numpy() if isinstance(labels, pd.Series | pd.Index) else np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != problem.n_units:
        raise InvalidProblemError(
            f"`blocks` must give one label per record: got shape {lab.shape}, expected "
            f"({problem.n_units},)."
        )
    codes, uniques = pd.factorize(pd.Series(lab), sort=False)
    if (codes < 0).any():
        first = int(np.flatnonzero(codes < 0)[0])
        raise InvalidProblemError(
            f"`blocks` has {int((codes < 0).sum())} missing label(s), first at record {first}; "
            f"every record needs a block."
        )
    K = uniques.size
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(K + 1))
    units = [order[bounds[k] : bounds[k + 1]] for k in range(K)]
    X = problem.X
    m = problem.n_targets
    entry_rows = np.repeat(np.arange(m), np.diff(X.indptr))
    entry_codes = codes[X.indices]
    cmin = np.full(m, K, dtype=np.int64)
    cmax = np.full(m, -1, dtype=np.int64)
    np.minimum.at(cmin, entry_rows, entry_codes)
    np.maximum.at(cmax, entry_rows, entry_codes)
    empty = np.flatnonzero(cmax < 0)
    is_local = (cmax >= 0) & (cmin == cmax)
    spanning = np.flatnonzero((cmax >= 0) & (cmin != cmax))
    local_rows = np.flatnonzero(is_local)
    lorder = np.argsort(cmin[local_rows], kind="stable")
    lr = local_rows[lorder]
    lb = np.searchsorted(cmin[lr], np.arange(K + 1))
    local = [lr[lb[k] : lb[k + 1]] for k in range(K)]
    # (spanning row, block) pairs
    sel = np.isin(entry_rows, spanning)
    pairs = np.unique(np.stack([entry_codes[sel], entry_rows[sel]]), axis=1)
    pb = np.searchsorted(pairs[0], np.arange(K + 1))
    touching = [pairs[1, pb[k] : pb[k + 1]] for k in range(K)]
    return BlockPlan(
        labels=np.asarray(uniques, dtype=object),
        units=units,
        local=local,
        spanning=spanning,
        touching=touching,
        empty=empty,
    )


def block_shares(
    problem: CalibrationProblem, plan: BlockPlan, weights: np.ndarray, *, exact: bool = False
) -> list[np.ndarray]:
    """Each block's share ``X_jB w_B`` of the spanning targets it touches.

    With ``exact=True`` the shares of each spanning target are then adjusted (in proportion to
    their magnitudes) to add up to the target exactly, removing the continuous solve's
    rounding-level error so that block errors within tolerance keep the total within it.
    """
    out = []
    for k in range(plan.n_blocks):
        rows = plan.touching[k]
        if rows.size == 0:
            out.append(np.zeros(0))
            continue
        U = plan.units[k]
        out.append(problem.X[rows][:, U] @ weights[U])
    if exact and plan.spanning.size:
        m = problem.n_targets
        total = np.zeros(m)
        mass = np.zeros(m)
        for k in range(plan.n_blocks):
            np.add.at(total, plan.touching[k], out[k])
            np.add.at(mass, plan.touching[k], np.abs(out[k]))
        gap = problem.targets - total
        with np.errstate(invalid="ignore", divide="ignore"):
            per_mass = np.where(mass > 0, gap / mass, 0.0)
        out = [s + per_mass[plan.touching[k]] * np.abs(s) for k, s in enumerate(out)]
    return out


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


def _solve_block(task: tuple[int, CalibrationProblem, str, dict[str, Any]]) -> BlockOutcome:
    """Worker: calibrate one block's problem; failures become a report, not an exception."""
    from .calibrate import calibrate

    index, sub, method, options = task
    t0 = time.perf_counter()
    try:
        res = calibrate(sub, method=method, **options)
    except InfeasibleError as exc:
        return BlockOutcome(
            index,
            "infeasible",
            None,
            0,
            False,
            np.inf,
            time.perf_counter() - t0,
            str(exc),
            list(exc.targets),
        )
    except CalibrationError as exc:
        return BlockOutcome(
            index,
            "failed",
            None,
            0,
            False,
            np.inf,
            time.perf_counter() - t0,
            f"{type(exc).__name__}: {exc}",
            [],
        )
    return BlockOutcome(
        index,
        res.status,
        res.weights,
        res.nnz,
        bool(res.info.get("proven_optimal", False)),
        float(res.info.get("mip_gap", np.nan)),
        time.perf_counter() - t0,
        res.message,
        [],
    )


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
    from .calibrate import calibrate
    from .sparse.refit import calibrate_bands, support_problem

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
                res = calibrate(prob, method=share_method, refit=None)
            else:
                res = calibrate_bands(prob, share_method)
        except CalibrationError as exc:
            notes.append(f"{share_method} with {label} failed ({exc})")
            continue
        if res.success:
            return res.weights, f"shares from {share_method} with {label}"
        notes.append(f"{share_method} with {label} stopped ({res.message})")
    res = calibrate(support_problem(problem, np.arange(problem.n_units)), method="gradient")
    notes.append(f"shares from the gradient method (max error {res.max_rel_error:.3g})")
    return res.weights, "; ".join(notes)


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
        The method each block runs and its options (e.g. ``{"time_limit": 60}``).
    executor
        None (in process), ``"process"`` / int (process pool), a ``dask.distributed.Client``,
        ... (see :func:`calibopt.parallel.resolve_executor`).
    share_method
        The continuous method whose solution divides spanning targets into block shares.
    progress
        Progress bar over blocks (None: when stderr is a terminal).

    Returns
    -------
    CalibrationResult
        Global diagnostics; ``info["blocks"]`` (a DataFrame, one row per block),
        ``info["spanning_targets"]``, ``info["share_note"]``.
    """
    t_start = time.perf_counter()
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
    tasks = []
    for k in range(plan.n_blocks):
        rows = np.concatenate([plan.local[k], plan.touching[k]])
        values = problem.targets[rows].copy()
        if shares is not None and plan.touching[k].size:
            values[plan.local[k].size :] = shares[k]
        order = np.argsort(rows, kind="stable")
        if rows.size == 0:
            # a block no target touches: its records can only add non-zeros
            tasks.append((k, None, method, options))
            continue
        sub = problem.subproblem(
            units=plan.units[k], targets=rows[order], target_values=values[order]
        )
        tasks.append((k, sub, method, options))
    run = run_tasks(
        _run_block_task,
        tasks,
        executor,
        progress=progress,
        desc=f"{method} blocks",
        postfix=lambda r: f"{r.status} nnz={r.nnz}",
    )
    timings["blocks"] = time.perf_counter() - t_start - timings.get("shares", 0.0)
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
        elif plan.local[k].size + plan.touching[k].size == 0 and out.status == STATUS_OPTIMAL:
            pass  # no target touches the block: its records stay at 0
        else:
            failed.append(k)
            if w_cont is not None:
                weights[U] = w_cont[U]
        rows_out.append(
            {
                "block": plan.labels[k],
                "units": U.size,
                "local_targets": plan.local[k].size,
                "spanning_targets": plan.touching[k].size,
                "status": out.status,
                "nnz": int(np.count_nonzero(weights[U])),
                "proven_optimal": out.proven_optimal,
                "mip_gap": out.mip_gap,
                "seconds": out.seconds,
                "message": out.message,
                "failing_targets": out.targets,
            }
        )
    table = pd.DataFrame(rows_out)
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
    status = None
    if failed or run.interrupted:
        status = STATUS_STOPPED
    elif all_proven and plan.spanning.size == 0:
        status = STATUS_OPTIMAL  # independent blocks: the sum of block optima is optimal
    else:
        status = STATUS_WITHIN_TOLERANCE
    timings["total"] = time.perf_counter() - t_start
    result = CalibrationResult.from_weights(
        problem,
        weights,
        method=method,
        solver=str(options.get("solver") or "highs"),
        status=status,
        message="; ".join(msg),
        iterations=plan.n_blocks,
        objective=float(np.count_nonzero(weights)),
        timings=timings,
        info={
            "blocks": table,
            "spanning_targets": [problem.target_names[j] for j in plan.spanning],
            "share_note": share_note,
            "executor": run.executor,
            "interrupted": run.interrupted,
            "proven_optimal": all_proven and not failed and plan.spanning.size == 0,
        },
    )
    return result


def _run_block_task(
    task: tuple[int, CalibrationProblem | None, str, dict[str, Any]],
) -> BlockOutcome:
    index, sub = task[0], task[1]
    if sub is None:
        return BlockOutcome(
            index, "optimal", None, 0, True, 0.0, 0.0, "no target touches this block", []
        )
    return _solve_block(task)
