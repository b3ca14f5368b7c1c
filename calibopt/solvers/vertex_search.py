"""Smaller supports from random vertices of the LP relaxation: relaxation-enforced neighbourhoods.

The exact-L0 model (see :mod:`calibopt.formulations.l0_model`) has its count variables ``N_c``
in columns ``[C, 2C)``. Given a support of ``K`` records, a support of at most ``U = K - 1``
is sought in rounds:

1. a **random vertex** of the LP relaxation with the cut-off row ``sum_c N_c <= U``: minimise
   ``r' N`` for costs ``r`` drawn uniformly from ``[0, 1)``. At a vertex most ``N_c`` are 0 or
   at their multiplicity; only as many are fractional as there are binding band and cover
   rows, so the vertex's support is small (about ``U`` plus the number of targets);
2. the **neighbourhood MIP** (RENS, Berthold 2014): the full model with every class outside the
   vertex's support fixed to 0 and the same cut-off row, a MIP over a few dozen integers that
   HiGHS settles within a second or two -- a support of at most ``U`` records, or a proof that
   this neighbourhood has none.

A found support lowers ``U`` and the rounds go on until time runs out or ``U`` falls below a
lower bound on the count (the rounded-up LP bound: no smaller support exists). Different random
costs give different vertices; the LP is kept in one HiGHS object and only its costs and the
cut-off change between rounds (hot-started dual simplex).

Why it pays: on the benchmark blocks the LP bound with the cover rows is often the optimum
(1,000 records x 30 targets: 53), so what keeps the MIP from a proof is an incumbent of that
size. Local search by exchanges stalls one record above it and the branch-and-bound of HiGHS
finds none in minutes; about one random vertex in 20-40 holds one in its neighbourhood (2
threads on 2 cores: 53 found after 21-33 rounds, 19-28 s, in 3 of 4 screening runs of 40 s).
Bigger neighbourhoods (two vertices' supports, or 10-20 classes added by reduced cost) make the
neighbourhood MIPs time out and found none.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from .highs import _highspy, highs_model, run_highs, solve_highs
from .linear_program import LinearProgram

__all__ = ["VertexSearch", "vertex_search"]


@dataclass
class VertexSearch:
    """Outcome of :func:`vertex_search`.

    Attributes
    ----------
    x : ndarray or None
        The smallest-support MIP solution found (model columns), None when none beat the start.
    count : int
        Its number of kept records (the start's count when ``x`` is None).
    rounds : int
        Vertices tried.
    found : int
        Rounds that lowered the count.
    seconds : float
    stopped : str
        ``"bound reached"``, ``"time limit"``, ``"round limit"``, ``"relaxation
        infeasible"`` (no support of ``U`` records exists even fractionally, i.e. the start
        is optimal), ``"solver error"`` (HiGHS refused to run) or ``"interrupted"`` (Ctrl-C).
    """

    x: np.ndarray | None
    count: int
    rounds: int
    found: int
    seconds: float
    stopped: str


def _cut_off(lp: LinearProgram, n_classes: int) -> LinearProgram:
    """``lp`` with one more row, ``sum_c N_c <= U`` (its upper side set per round)."""
    row = np.zeros(lp.n_cols)
    row[n_classes : 2 * n_classes] = 1.0
    return replace(
        lp,
        A=sp.vstack([lp.A, sp.csr_matrix(row)], format="csc"),
        row_lower=np.r_[lp.row_lower, -np.inf],
        row_upper=np.r_[lp.row_upper, np.inf],
    )


class _Shared:
    """What the workers share: the best support so far and how the search ends."""

    def __init__(self, count: int, lower: float, deadline: float, max_rounds: float) -> None:
        self.lock = threading.Lock()
        self.count, self.lower, self.deadline = count, lower, deadline
        self.max_rounds = max_rounds
        self.x: np.ndarray | None = None
        self.rounds = self.found = 0
        self.stopped = ""

    def next_target(self) -> tuple[int, float] | None:
        """The count to beat and the seconds left, or None when the search is over."""
        with self.lock:
            left = self.deadline - time.perf_counter()
            if self.stopped:
                return None
            if self.count - 1 < self.lower:
                self.stopped = "bound reached"
                return None
            if left <= 0.05:
                self.stopped = "time limit"
                return None
            if self.rounds >= self.max_rounds:
                self.stopped = "round limit"
                return None
            self.rounds += 1
            return self.count - 1, left

    def offer(self, x: np.ndarray, kept: int) -> None:
        with self.lock:
            if kept < self.count:
                self.x, self.count = x, kept
                self.found += 1

    def stop(self, why: str) -> None:
        with self.lock:
            self.stopped = self.stopped or why


def _worker(
    h: Any,
    full: LinearProgram,
    C: int,
    shared: _Shared,
    round_limit: float,
    options: dict[str, Any],
    seed: int,
) -> None:
    """Rounds of one worker on its relaxation ``h``: a random vertex, then its neighbourhood."""
    highspy = _highspy()
    MS = highspy.HighsModelStatus
    cut = full.n_rows - 1
    rng = np.random.default_rng(seed)
    cols = np.arange(C, 2 * C, dtype=np.int32)
    while (job := shared.next_target()) is not None:
        target, left = job
        h.changeRowBounds(cut, -highspy.kHighsInf, float(target))
        h.changeColsCost(C, cols, rng.random(C))
        # HiGHS's clock runs over every solve of the object
        h.setOptionValue("time_limit", float(h.getRunTime() + left))
        if run_highs(h, interruptible=False) == highspy.HighsStatus.kError:
            shared.stop("solver error")
            return
        status = h.getModelStatus()
        if status == MS.kInfeasible:
            shared.stop("relaxation infeasible")
            return
        if status != MS.kOptimal:
            continue
        outside = np.asarray(h.getSolution().col_value[C : 2 * C]) <= 1e-7
        upper = full.col_upper.copy()
        upper[:C][outside] = np.minimum(upper[:C][outside], 0.0)
        upper[C : 2 * C][outside] = 0.0
        row_upper = full.row_upper.copy()
        row_upper[cut] = float(target)
        sub = replace(
            full, col_lower=np.minimum(full.col_lower, upper), col_upper=upper, row_upper=row_upper
        )
        # any support within the cut-off will do: stop at the first one (and by the deadline,
        # the LP's time counted)
        left = max(0.01, shared.deadline - time.perf_counter())
        opts = {**options, "time_limit": float(min(round_limit, left))}
        opts["mip_max_improving_sols"] = 1
        out = solve_highs(highs_model(sub, options=opts))
        if out.failed:
            shared.stop("solver error")
            return
        if out.has_solution and out.x is not None:
            shared.offer(out.x, int(np.rint(out.x[C : 2 * C]).sum()))


def vertex_search(
    lp: LinearProgram,
    n_classes: int,
    count: int,
    *,
    time_limit: float,
    stop_at: int | None = None,
    round_limit: float = 3.0,
    workers: int = 1,
    max_rounds: int | None = None,
    options: dict[str, Any] | None = None,
    seed: int = 0,
) -> VertexSearch:
    """Search for a support smaller than ``count`` by random-vertex neighbourhood MIPs.

    Parameters
    ----------
    lp
        The exact-L0 MIP of :func:`calibopt.formulations.l0_model.build_l0_model` (count
        objective): classes' totals in columns ``[0, C)``, their counts in ``[C, 2C)``.
    n_classes
        ``C``.
    count
        The size of the best support known (the search looks for fewer records).
    time_limit
        Seconds for the whole search.
    stop_at
        A lower bound on the count: the search stops once it reaches it.
    round_limit
        Seconds for one neighbourhood MIP (most settle in under a second; the ones that hold a
        support often need two or three).
    workers
        Rounds run at once, one thread each (HiGHS releases the GIL while it solves).
    max_rounds
        Most vertices to try (None: no limit but time).
    options
        Further HiGHS options for the neighbourhood MIPs (tolerances; ``threads`` only as the
        process's other HiGHS runs set it: HiGHS refuses to run with a thread count other than
        the one its scheduler started with).
    seed
        Seed of the random costs (worker ``k`` uses ``seed + k``). With one worker and no round
        stopped by time, the same seed visits the same vertices.
    """
    t0 = time.perf_counter()
    C = n_classes
    workers = max(1, int(workers))
    full = _cut_off(lp, C)
    lower = -np.inf if stop_at is None else float(stop_at)
    rounds = np.inf if max_rounds is None else int(max_rounds)
    shared = _Shared(int(count), lower, t0 + float(time_limit), rounds)
    opts = dict(options or {})
    # the relaxations are built here, in the calling thread (HiGHS prints its banner once per
    # process, from the first object built; calibopt builds that one with stdout silenced)
    relax = replace(full, integer=None)
    threads = {"threads": opts["threads"]} if "threads" in opts else {}
    lps = [highs_model(relax, options=threads) for _ in range(workers)]
    # Ctrl-C ends the search with what it found (the other workers end their round first)
    if workers <= 1:
        try:
            _worker(lps[0], full, C, shared, round_limit, opts, seed)
        except KeyboardInterrupt:
            shared.stop("interrupted")
    else:
        with ThreadPoolExecutor(workers) as pool:
            futures = [
                pool.submit(_worker, lps[k], full, C, shared, round_limit, opts, seed + k)
                for k in range(workers)
            ]
            try:
                for f in futures:
                    f.result()
            except KeyboardInterrupt:
                shared.stop("interrupted")
    return VertexSearch(
        x=shared.x,
        count=shared.count,
        rounds=shared.rounds,
        found=shared.found,
        seconds=time.perf_counter() - t0,
        stopped=shared.stopped or "time limit",
    )
