"""Normalisation with hold-harmless floors and state minimums, solved exactly.

The problem
-----------
LEA ``i`` has an authorization ``a_i >= 0`` (its formula amount), a floor ``f_i >= 0`` (its
hold-harmless amount) and belongs to state ``s(i)``, which may have a minimum aggregate
``m_s``. An appropriation ``A`` must be split so that

* every LEA gets at least its floor and otherwise an amount proportional to its authorization,
* every state gets at least its minimum, and states *at* their minimum share it in proportion
  to authorizations above their LEAs' floors,
* the allocations sum to ``A``.

The solution has a closed form: one national level ``t`` and, for each state, a level
``tau_s`` at which the state on its own would reach its minimum,

    x_i = max(f_i, max(t, tau_s(i)) * a_i),

where ``tau_s`` solves ``sum_{i in s} max(f_i, tau_s a_i) = m_s`` (0 when the floors alone
reach ``m_s``) and ``t`` solves ``sum_s max(m_s, sum_{i in s} max(f_i, t a_i)) = A``. Both
left-hand sides are continuous, non-decreasing and piecewise linear in the level, with
breakpoints at ``f_i / a_i`` and ``tau_s``; they are inverted exactly by sorting the
breakpoints and scanning cumulative sums (water-filling), in O(n log n) for n LEAs, with no
iteration cap and no tolerance. With no state minimums this is the classical water-filling
``x_i = max(f_i, t a_i)``; ``t`` is also the optimum of the linear program "maximise ``t``
subject to ``x >= f``, ``x >= t a``, ``sum x = A``", which the tests use as an independent
check (cvxpy + HiGHS).

If the floors and minimums alone need more than ``A``
(``sum_s max(m_s, sum_{i in s} f_i) > A``) there is no solution:
:class:`~calibopt.InfeasibleError` says by how much. (The statute then ratably reduces the
hold-harmless amounts, 20 U.S.C. 6332(d); :func:`ratable_reduction` finds that factor.)

Module map: the inputs are checked by :mod:`~calibopt.allocation.provision_inputs`, the levels
found by :mod:`~calibopt.allocation.water_filling`, the result rounded by
:mod:`~calibopt.allocation.cents` (see there for the rounding rules), and the classical
recursive procedure, for comparison, is :mod:`~calibopt.allocation.recursive`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, InvalidProblemError
from ._checks import nonnegative_scalar, nonnegative_vector
from .cents import round_to_cents, to_cents
from .provision_inputs import (
    like_input,
    minimums_by_state,
    parse_provisions,
    state_codes,
    tiebreak_ranks,
)
from .water_filling import invert_levels

__all__ = [
    "ProvisionsResult",
    "apply_floors",
    "ratable_reduction",
    "solve_provisions",
]


@dataclass
class ProvisionsResult:
    """The exact solution of a normalisation with floors and state minimums.

    Attributes
    ----------
    allocations : ndarray
        Allocation per LEA (whole cents when solved with ``cents=True``).
    exact : ndarray
        The unrounded float64 solution ``max(f, max(t, tau_s) a)``.
    level : float
        The national level ``t`` (dollars per unit of authorization).
    state_levels : ndarray
        ``tau_s`` per state (0 where the floors alone reach the minimum).
    at_floor : ndarray of bool
        LEAs held at their floor (``f_i >= level_i a_i``).
    states : Index
        State labels (one entry ``None`` when no states were given).
    state_minimums : ndarray
        Minimum per state (rounded up to cents with ``cents=True``).
    state_at_minimum : ndarray of bool
        States whose total is raised to their minimum.
    """

    allocations: np.ndarray
    exact: np.ndarray
    level: float
    state_levels: np.ndarray
    at_floor: np.ndarray
    states: pd.Index
    state_minimums: np.ndarray
    state_at_minimum: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def state_totals(self) -> pd.Series:
        """Total allocation per state."""
        codes = self.info["state_codes"]
        return pd.Series(
            np.bincount(codes, self.allocations, minlength=len(self.states)),
            index=self.states,
            name="allocation",
        )


def solve_provisions(
    authorizations: Any,
    appropriation: float,
    floors: Any = None,
    *,
    states: Any = None,
    state_minimums: Any = None,
    cents: bool = True,
) -> ProvisionsResult:
    """Split ``appropriation`` in proportion to ``authorizations`` above floors and minimums.

    Parameters
    ----------
    authorizations
        Formula amounts per LEA (>= 0): array-like or Series.
    appropriation
        Amount to distribute (dollars, >= 0).
    floors
        Hold-harmless floor per LEA (>= 0): scalar, array-like, or Series aligned on the
        authorizations' index. Default 0.
    states
        State label per LEA, needed for ``state_minimums``.
    state_minimums
        Minimum aggregate per state: a mapping/Series by state label, a scalar for all
        states, or one value per LEA (constant within each state).
    cents
        Round to whole cents preserving the total, the floors and the minimums (default).

    Returns
    -------
    ProvisionsResult

    Raises
    ------
    InfeasibleError
        When the floors and minimums alone exceed the appropriation.
    InvalidProblemError
        On malformed input, or when money cannot be placed: a state minimum above the
        state's floors in a state with no authorization, or all authorizations zero with
        money left over.
    """
    a, A, f, codes, uniques, m = parse_provisions(
        authorizations, appropriation, floors, states, state_minimums
    )
    n, k = a.size, len(uniques)
    if cents:
        A_c = int(to_cents(A))
        f_c = to_cents(f, "up")
        m_c = to_cents(m, "up")
        A, f, m = A_c / 100.0, f_c / 100.0, m_c / 100.0
    F = np.bincount(codes, f, minlength=k)
    if cents:
        need_c = int(np.maximum(m_c, np.bincount(codes, f_c, minlength=k)).sum())
        need, short = need_c / 100.0, need_c > A_c
    else:
        need = float(np.maximum(m, F).sum())
        short = need > A * (1 + 1e-12)
    _check_money_can_be_placed(a, A, m, F, codes, uniques, need, short)
    tau, t = _levels(a, A, f, m, F, codes)
    if not np.isfinite(t):
        raise InvalidProblemError(
            f"the appropriation ({A:,.2f}) exceeds what the floors and minimums need "
            f"({need:,.2f}) but every authorization is 0, so the rest cannot be distributed."
        )
    level = np.maximum(t, tau[codes])
    x = np.maximum(f, level * a)
    at_floor = f >= level * a
    bound = tau > t
    info: dict[str, Any] = {"state_codes": codes}
    if cents:
        alloc_c = round_to_cents(
            x, f_c, m_c, A_c, at_floor, bound, codes, tiebreak_ranks(authorizations, n)
        )
        allocations = alloc_c / 100.0
        info["cents"] = alloc_c
    else:
        allocations = x
    return ProvisionsResult(
        allocations=allocations,
        exact=x,
        level=t,
        state_levels=tau,
        at_floor=at_floor,
        states=uniques,
        state_minimums=m,
        state_at_minimum=bound,
        info=info,
    )


def _check_money_can_be_placed(
    a: np.ndarray,
    A: float,
    m: np.ndarray,
    F: np.ndarray,
    codes: np.ndarray,
    uniques: pd.Index,
    need: float,
    short: bool,
) -> None:
    """Refuse floors and minimums that need more than ``A``, and minimums with nothing to
    distribute them over."""
    if short:
        raise InfeasibleError(
            f"the hold-harmless floors and state minimums alone need {need:,.2f} but the "
            f"appropriation is {A:,.2f} (short by {need - A:,.2f}); reduce the floors ratably "
            f"(calibopt.allocation.ratable_reduction) or raise the appropriation.",
            certificate={"required": need, "appropriation": A},
        )
    a_state = np.bincount(codes, a, minlength=m.size)
    stuck = (m > F) & (a_state <= 0)
    if stuck.any():
        raise InvalidProblemError(
            f"state(s) {list(uniques[stuck][:5])} have a minimum above their LEAs' floors but no "
            f"authorization to distribute it over; set their minimum to 0 or give them LEAs."
        )


def _levels(
    a: np.ndarray, A: float, f: np.ndarray, m: np.ndarray, F: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, float]:
    """The state levels ``tau_s`` and the national level ``t`` (``inf`` when no LEA has an
    authorization to take the money left after the floors and minimums)."""
    k = m.size
    pos = a > 0
    b = np.where(pos, f / np.where(pos, a, 1.0), np.inf)
    # tau_s: the level at which state s alone reaches its minimum
    tau = np.zeros(k)
    raise_s = m > F
    if raise_s.any():
        sel = pos & raise_s[codes]
        tau = invert_levels(codes[sel], b[sel], -f[sel], a[sel], F, np.where(raise_s, m, F))
        tau[~raise_s] = 0.0
    # national level t: events at tau_s (state constant F_s - m_s) and at max(b_i, tau_s(i))
    ev_t = np.r_[tau, np.maximum(b[pos], tau[codes[pos]])]
    ev_c = np.r_[F - m, -f[pos]]
    ev_p = np.r_[np.zeros(k), a[pos]]
    t = float(
        invert_levels(
            np.zeros(ev_t.size, dtype=np.int64),
            ev_t,
            ev_c,
            ev_p,
            np.array([m.sum()]),
            np.array([A]),
        )[0]
    )
    return tau, t


def apply_floors(
    authorizations: Any,
    appropriation: float,
    floors: Any = None,
    *,
    states: Any = None,
    state_minimums: Any = None,
    cents: bool = True,
) -> np.ndarray | pd.Series:
    """Allocate ``appropriation`` in proportion to ``authorizations`` with floors, exactly.

    Every LEA gets ``max(floor_i, t * a_i)`` for the one level ``t`` at which the
    allocations sum to the appropriation (water-filling, O(n log n)); with ``states`` and
    ``state_minimums``, states below their minimum are raised to it (see
    :func:`solve_provisions`).

    Parameters
    ----------
    authorizations
        Formula amounts per LEA (>= 0): array-like or Series.
    appropriation
        Amount to distribute.
    floors
        Hold-harmless floor per LEA (scalar, array-like or Series aligned on the index).
    states, state_minimums
        Optional state label per LEA and minimum aggregate per state.
    cents
        Round to whole cents so the total equals the appropriation to the cent (default).

    Returns
    -------
    ndarray or Series
        The allocations, of the same type as ``authorizations`` (a Series keeps its index).

    Raises
    ------
    InfeasibleError
        When the floors (and minimums) alone exceed the appropriation.

    Examples
    --------
    >>> apply_floors([100, 200, 700], 500)
    array([ 50., 100., 350.])
    >>> apply_floors([100, 200, 700], 500, [90, 150, 0])
    array([ 90., 150., 260.])
    """
    res = solve_provisions(
        authorizations,
        appropriation,
        floors,
        states=states,
        state_minimums=state_minimums,
        cents=cents,
    )
    return like_input(authorizations, res.allocations)


def ratable_reduction(
    floors: Any, appropriation: float, *, states: Any = None, state_minimums: Any = None
) -> float:
    """The factor ``r`` <= 1 by which hold-harmless floors are ratably reduced (6332(d)).

    ``r = 1`` when the floors and minimums fit in the appropriation; otherwise the largest
    ``r`` with ``sum_s max(m_s, r * sum_{i in s} f_i) <= appropriation``.

    Raises
    ------
    InfeasibleError
        When the state minimums alone exceed the appropriation.
    """
    f = nonnegative_vector(floors, "floors")
    A = nonnegative_scalar(appropriation, "appropriation")
    codes, uniques = state_codes(states, f.size)
    m = minimums_by_state(state_minimums, codes, uniques)
    F = np.bincount(codes, f, minlength=len(uniques))
    if np.maximum(m, F).sum() <= A:
        return 1.0
    if m.sum() > A:
        raise InfeasibleError(
            f"the state minimums alone need {m.sum():,.2f} but the appropriation is {A:,.2f}.",
            certificate={"required": float(m.sum()), "appropriation": A},
        )
    # sum_s max(m_s, r F_s) = A: water-filling over states with authorizations F_s
    res = solve_provisions(F, A, m, cents=False)
    return float(min(res.level, 1.0))
