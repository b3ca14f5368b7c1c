"""The classical recursive normalisation, kept as a reference to compare the exact solver with.

:func:`apply_floors_recursive` is the classical recursive procedure (rescale, pin the LEAs
below their floor, rescale again, ...), capped at ``max_rounds`` rounds as in common
implementations. Each round pins at least one more LEA, so with a cap of 10 it stops
unconverged whenever the pinning cascades more than 10 times, leaving floors violated; the
exact solver has no such failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .provision_inputs import like_input, parse_provisions

__all__ = ["RecursiveResult", "apply_floors_recursive"]


@dataclass
class RecursiveResult:
    """Outcome of :func:`apply_floors_recursive`.

    Attributes
    ----------
    allocations : ndarray or Series
        Allocations after the last round (like the authorizations' type).
    rounds : int
        Rounds run.
    converged : bool
        Whether a round found no LEA below its floor and no state below its minimum.
    below_floor : int
        LEAs still below their floor at the end.
    states_below_minimum : int
        States still below their minimum at the end.
    max_shortfall : float
        Largest amount by which an LEA is below its floor.
    """

    allocations: Any
    rounds: int
    converged: bool
    below_floor: int
    states_below_minimum: int
    max_shortfall: float


def apply_floors_recursive(
    authorizations: Any,
    appropriation: float,
    floors: Any = None,
    *,
    states: Any = None,
    state_minimums: Any = None,
    max_rounds: int = 10,
) -> RecursiveResult:
    """The classical recursive normalisation, kept as a reference to compare against.

    Each round rescales the unpinned LEAs so the total is the appropriation (states pinned at
    their minimum share it among their own unpinned LEAs), then pins every LEA found below its
    floor at the floor and every state found below its minimum at the minimum, and repeats.
    It stops after ``max_rounds`` rounds even if floors are still violated, as the
    implementations it mirrors do. Use :func:`~calibopt.allocation.apply_floors` for the
    exact answer.
    """
    a, A, f, codes, uniques, m = parse_provisions(
        authorizations, appropriation, floors, states, state_minimums
    )
    n, k = a.size, len(uniques)
    held = np.zeros(n, dtype=bool)
    bound = np.zeros(k, dtype=bool)
    x = a.copy()
    rounds = 0
    converged = False
    rel = 1.0 - 1e-12  # below a floor by more than float noise
    while True:
        # budget per segment: each bound state its minimum, the rest what is left
        seg = np.where(bound[codes], codes + 1, 0)
        budget = np.r_[A - m[bound].sum(), np.where(bound, m, 0.0)]
        pinned = np.bincount(seg, np.where(held, f, 0.0), minlength=k + 1)
        free_auth = np.bincount(seg, np.where(held, 0.0, a), minlength=k + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(free_auth > 0, (budget - pinned) / free_auth, 0.0)
        x = np.where(held, f, a * np.maximum(scale[seg], 0.0))
        rounds += 1
        new_held = ~held & (x < f * rel)
        totals = np.bincount(codes, x, minlength=k)
        new_bound = ~bound & (totals < m * rel)
        if not new_held.any() and not new_bound.any():
            converged = True
            break
        if rounds >= max_rounds:
            break
        held |= new_held
        bound |= new_bound
    short = np.maximum(f - x, 0.0)
    totals = np.bincount(codes, x, minlength=k)
    return RecursiveResult(
        allocations=like_input(authorizations, x),
        rounds=rounds,
        converged=converged,
        below_floor=int((x < f * rel).sum()),
        states_below_minimum=int((totals < m * rel).sum()),
        max_shortfall=float(short.max(initial=0.0)),
    )
