"""Smaller feasible supports by local search: drop moves and two-for-one swaps, each an LP.

The problem is the feasibility system of the exact-L0 model with its integer part fixed::

    lo <= A W <= hi,    N_c a_c <= W_c <= N_c b_c    (N_c kept copies of class c, 0 <= N_c <= k_c)

A support ``N`` is feasible when the phase-one LP ``min sum(s_lo + s_hi)`` subject to
``lo <= A W + s_lo - s_hi <= hi`` and the bounds above reaches 0. Starting from a feasible
``N``, :func:`shrink_support` applies, until no move succeeds or time runs out:

* **drop**: one copy less of a class (least-used classes first);
* **two for one**: one copy less of two of the ``width`` least-used classes, one copy more of
  a third, chosen among the classes whose reduced cost in the phase-one LP promises the largest
  decrease of the violation (at most ``candidates`` of them).

Every accepted move keeps the support feasible, so the count never increases and the result is
a support at least as small as the start, with the weights of the last feasible LP. One HiGHS
model is kept and only column bounds change between moves (hot-started dual simplex).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .highs import _highspy, highs_model
from .linear_program import LinearProgram

__all__ = ["SupportSearch", "shrink_support"]


@dataclass
class SupportSearch:
    """Outcome of :func:`shrink_support`.

    Attributes
    ----------
    counts : ndarray of int
        Kept copies per class (feasible).
    values : ndarray
        The class totals ``W`` of the last feasible phase-one LP.
    drops, swaps, lps : int
        Accepted drop moves and two-for-one swaps; LPs solved.
    seconds : float
    stopped : str
        ``"local optimum"`` (no move succeeds), ``"bound reached"`` (``stop_at``) or
        ``"time limit"``.
    """

    counts: np.ndarray
    values: np.ndarray
    drops: int
    swaps: int
    lps: int
    seconds: float
    stopped: str


class _PhaseOne:
    """The phase-one LP over the class totals, with bounds set from the copies kept."""

    def __init__(self, A: sp.spmatrix, lo, hi, a, b, counts) -> None:
        m, C = A.shape
        eye = sp.identity(m, format="csc")
        self.a, self.b, self.C = np.asarray(a, float), np.asarray(b, float), C
        lp = LinearProgram(
            cost=np.r_[np.zeros(C), np.ones(2 * m)],
            col_lower=np.r_[counts * self.a, np.zeros(2 * m)],
            col_upper=np.r_[counts * self.b, np.full(2 * m, np.inf)],
            A=sp.hstack([sp.csc_matrix(A), eye, -eye], format="csc"),
            row_lower=np.asarray(lo, float),
            row_upper=np.asarray(hi, float),
        )
        self.h = highs_model(lp)
        self.lps = 0

    def set(self, c: int, k: int) -> None:
        self.h.changeColBounds(int(c), float(k * self.a[c]), float(k * self.b[c]))

    def violation(self) -> float:
        self.lps += 1
        self.h.run()
        if self.h.getModelStatus() != _highspy().HighsModelStatus.kOptimal:
            return np.inf
        return float(self.h.getInfo().objective_function_value)

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Class totals and their reduced costs in the last LP."""
        sol = self.h.getSolution()
        return np.asarray(sol.col_value[: self.C]), np.asarray(sol.col_dual[: self.C])


def shrink_support(
    A: sp.spmatrix,
    lo: np.ndarray,
    hi: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    multiplicity: np.ndarray,
    counts: np.ndarray,
    *,
    time_limit: float | None = 10.0,
    candidates: int = 3,
    width: int = 40,
    tol: float = 1e-9,
    seed: int = 0,
    stop_at: int | None = None,
) -> SupportSearch:
    """A feasible support with fewer kept copies, by drop and two-for-one moves.

    Parameters
    ----------
    A, lo, hi
        Band rows over the class totals (scale them so that ``tol`` means the same on every
        row, e.g. in units of each band).
    a, b
        The interval of one kept copy of each class (``a <= 0 <= b`` or a forced sign).
    multiplicity
        Copies available per class.
    counts
        A feasible start (kept copies per class).
    time_limit
        Seconds; None runs to a local optimum.
    candidates
        Classes tried as the "one in" of a two-for-one swap.
    width
        The "two out" of a swap are drawn from this many least-used kept classes (the pass
        costs about ``width**2 / 2`` LPs).
    tol
        Largest phase-one violation taken as feasible.
    seed
        Breaks ties in the order moves are tried.
    stop_at
        A lower bound on the count (e.g. the rounded-up LP bound of the MIP): the search stops
        as soon as it reaches it, since no feasible support is smaller.
    """
    t0 = time.perf_counter()
    N = np.asarray(counts, dtype=np.int64).copy()
    mult = np.asarray(multiplicity, dtype=np.int64)
    lp = _PhaseOne(A, lo, hi, a, b, N)
    rng = np.random.default_rng(seed)
    drops = swaps = 0
    values = np.zeros(N.size)
    if lp.violation() > tol:
        raise ValueError("shrink_support needs a feasible starting support")
    values = lp.columns()[0]

    def out_of_time() -> bool:
        return time_limit is not None and time.perf_counter() - t0 > time_limit

    def by_usage() -> np.ndarray:
        kept = np.flatnonzero(N > 0)
        span = np.maximum(np.abs(a[kept]), np.abs(b[kept])) * N[kept]
        use = np.abs(values[kept]) / np.where(span > 0, span, 1.0)
        return kept[np.lexsort((rng.random(kept.size), use))]

    def try_drop() -> bool:
        nonlocal drops, values
        for c in by_usage():
            if out_of_time():
                return False
            lp.set(c, N[c] - 1)
            if lp.violation() <= tol:
                N[c] -= 1
                drops += 1
                values = lp.columns()[0]
                return True
            lp.set(c, N[c])
        return False

    def enter(out: list[int]) -> int | None:
        """With one copy of each class in ``out`` removed: the class whose extra copy makes
        the support feasible (tried in order of promised gain), or None."""
        for c in out:
            lp.set(c, N[c] - 1)
        lp.violation()
        _, r = lp.columns()
        gain = np.maximum(-r * b, -r * a)
        gain[N >= mult] = -np.inf
        gain[out] = -np.inf
        for k in np.argsort(-gain)[:candidates]:
            if gain[k] <= 0:
                break
            lp.set(k, N[k] + 1)
            if lp.violation() <= tol:
                return int(k)
            lp.set(k, N[k])
        for c in out:
            lp.set(c, N[c])
        return None

    def accept(out: list[int], k: int) -> None:
        nonlocal values
        N[out] -= 1
        N[k] += 1
        values = lp.columns()[0]

    def try_swap() -> bool:
        nonlocal swaps
        order = by_usage()[:width]
        for p in range(order.size):
            for q in range(p + 1, order.size):
                if out_of_time():
                    return False
                k = enter([order[p], order[q]])
                if k is not None:
                    accept([order[p], order[q]], k)
                    swaps += 1
                    return True
        return False

    def at_bound() -> bool:
        return stop_at is not None and int(N.sum()) <= stop_at

    while not out_of_time() and not at_bound():
        if not (try_drop() or try_swap()):
            break
    stopped = "bound reached" if at_bound() else "time limit" if out_of_time() else "local optimum"
    # the LP's bounds may lag after an interrupted move: re-solve on the accepted support
    for c in range(N.size):
        lp.set(c, N[c])
    if lp.violation() <= tol:
        values = lp.columns()[0]
    return SupportSearch(
        counts=N,
        values=values,
        drops=drops,
        swaps=swaps,
        lps=lp.lps,
        seconds=time.perf_counter() - t0,
        stopped=stopped,
    )
