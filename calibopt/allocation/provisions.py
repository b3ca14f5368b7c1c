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

Money to the cent
-----------------
With ``cents=True`` (default) the appropriation is rounded to the nearest cent, floors and
minimums are rounded *up* to whole cents (an LEA is owed at least its floor), the exact
solution is computed in float64, and then rounded by largest remainders in two stages:
state totals first (states at their minimum get exactly it, the other states never drop below
their minimum or their floors), then LEAs within each state (never below their floor). The
result sums to the appropriation to the cent. Ties between equal remainders go to the earlier
label (Series) or position (arrays). Raising the appropriation never lowers the exact
allocation of any LEA; after rounding, an LEA can move by at most one cent against it.

A reference
-----------
:func:`apply_floors_recursive` is the classical recursive procedure (rescale, pin the LEAs
below their floor, rescale again, ...), capped at ``max_rounds`` rounds as in common
implementations. Each round pins at least one more LEA, so with a cap of 10 it stops
unconverged whenever the pinning cascades more than 10 times, leaving floors violated; the
exact solver has no such failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, InvalidProblemError, SolverError
from ._checks import nonnegative_scalar, nonnegative_vector

__all__ = [
    "ProvisionsResult",
    "RecursiveResult",
    "apply_floors",
    "apply_floors_recursive",
    "ratable_reduction",
    "solve_provisions",
    "to_cents",
]


# ------------------------------------------------------------------------------ inputs
def _aligned(value: Any, template: Any, name: str, n: int) -> np.ndarray:
    """A per-LEA vector, aligned on ``template``'s index when both are Series."""
    if value is None:
        return np.zeros(n)
    if isinstance(value, pd.Series) and isinstance(template, pd.Series):
        if not value.index.equals(template.index):
            missing = template.index.difference(value.index)
            if len(missing):
                raise InvalidProblemError(
                    f"`{name}` has no entry for {len(missing)} LEA(s) of `authorizations`, e.g. "
                    f"{missing[0]!r}."
                )
            value = value.reindex(template.index)
    return nonnegative_vector(value, name, n, allow_scalar=True)


def _parse(
    authorizations: Any, appropriation: Any, floors: Any, states: Any, state_minimums: Any
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, pd.Index, np.ndarray]:
    """Validated (a, A, f, state codes, state labels, minimum per state)."""
    a = nonnegative_vector(authorizations, "authorizations")
    A = nonnegative_scalar(appropriation, "appropriation")
    f = _aligned(floors, authorizations, "floors", a.size)
    if state_minimums is not None and states is None:
        raise InvalidProblemError("`state_minimums` needs `states` (one state label per LEA).")
    codes, uniques = _state_codes(states, a.size)
    return a, A, f, codes, uniques, _state_minimums(state_minimums, codes, uniques)


def _tiebreak(template: Any, n: int) -> np.ndarray:
    """Rank of each entry for breaking rounding ties: label order for Series, else position."""
    if isinstance(template, pd.Series):
        try:
            return np.argsort(np.argsort(template.index.to_numpy(), kind="stable"), kind="stable")
        except TypeError:  # unorderable labels
            pass
    return np.arange(n)


def _state_codes(states: Any, n: int) -> tuple[np.ndarray, pd.Index]:
    if states is None:
        return np.zeros(n, dtype=np.int64), pd.Index([None])
    labels = states.to_numpy() if isinstance(states, pd.Series | pd.Index) else np.asarray(states)
    if labels.shape != (n,):
        raise InvalidProblemError(
            f"`states` must have one label per LEA ({n}), got {labels.shape}."
        )
    if pd.isna(labels).any():
        raise InvalidProblemError("`states` has missing labels.")
    try:
        codes, uniques = pd.factorize(labels, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(labels)
    return codes.astype(np.int64), pd.Index(uniques)


def _state_minimums(value: Any, codes: np.ndarray, uniques: pd.Index) -> np.ndarray:
    k = len(uniques)
    if value is None:
        return np.zeros(k)
    if isinstance(value, Mapping | pd.Series):
        ser = pd.Series(dict(value)) if isinstance(value, Mapping) else value
        unknown = ser.index.difference(uniques)
        if len(unknown):
            raise InvalidProblemError(
                f"`state_minimums` names state(s) with no LEA: {list(unknown[:5])}."
            )
        return nonnegative_vector(ser.reindex(uniques).fillna(0.0).to_numpy(), "state_minimums", k)
    if np.ndim(value) == 0:
        return np.full(k, nonnegative_scalar(value, "state_minimums"))
    per_lea = nonnegative_vector(value, "state_minimums", codes.size)
    out = np.zeros(k)
    out[codes] = per_lea
    if not np.array_equal(out[codes], per_lea):
        raise InvalidProblemError(
            "`state_minimums` given per LEA must be constant within each state."
        )
    return out


def to_cents(amounts: Any, how: str = "nearest") -> np.ndarray:
    """Dollar amounts -> integer cents (``how``: ``"nearest"``, ``"up"`` or ``"down"``).

    Products such as 0.85 x $1,000.10 carry float noise below 1e-4 cent; it is removed first
    so that ``"up"`` does not add a cent to an amount that is whole in decimal.
    """
    c = np.round(np.asarray(amounts, dtype=float) * 100.0, 4)
    if how == "nearest":
        c = np.floor(c + 0.5)
    elif how == "up":
        c = np.ceil(c)
    elif how == "down":
        c = np.floor(c)
    else:
        raise InvalidProblemError(f"`how` must be 'nearest', 'up' or 'down', got {how!r}.")
    return c.astype(np.int64)


# ------------------------------------------------------------------------ level solver
def _levels(
    group: np.ndarray,
    times: np.ndarray,
    dconst: np.ndarray,
    dslope: np.ndarray,
    base: np.ndarray,
    target: np.ndarray,
) -> np.ndarray:
    """Invert continuous non-decreasing piecewise-linear functions, one per group.

    Group ``g``'s function is ``G_g(t) = base_g + sum_{k in g, times_k <= t} (dconst_k +
    dslope_k t)``. Returns, per group, a ``t >= 0`` with ``G_g(t) = target_g`` (``inf`` when
    the target lies above the function's range). Assumes ``target_g >= base_g``.
    """
    ng = base.size
    out = np.zeros(ng)
    if times.size == 0:
        out[target > base] = np.inf
        return out
    order = np.lexsort((times, group))
    g, tt = group[order], times[order]
    # cumulative sums restarting at each group (no global cumsum: subtracting large running
    # totals of other groups would cancel digits)
    frame = pd.DataFrame({"c": dconst[order], "p": dslope[order]})
    cum = frame.groupby(g, sort=False).cumsum()
    C, P = cum["c"].to_numpy(), cum["p"].to_numpy()
    # the function's value just after each distinct event time
    last_of_time = np.r_[(g[1:] != g[:-1]) | (tt[1:] != tt[:-1]), True]
    v = base[g] + C + tt * P
    ok = last_of_time & (v <= target[g])
    idx = np.where(ok, np.arange(g.size), -1)
    best = np.full(ng, -1)
    np.maximum.at(best, g, idx)
    has_events = np.zeros(ng, dtype=bool)
    has_events[g] = True
    out[~has_events & (target > base)] = np.inf
    # groups whose target is below the value at their first event: the level is that time
    first_time = np.full(ng, np.inf)
    np.minimum.at(first_time, g, tt)
    none = has_events & (best < 0)
    out[none] = first_time[none]
    sel = best >= 0
    k = best[sel]
    slope = P[k]
    gap = target[sel] - v[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[sel] = np.where(slope > 0, tt[k] + gap / slope, np.where(gap > 0, np.inf, tt[k]))
    return out


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


def _round_cents(
    x: np.ndarray,
    f_c: np.ndarray,
    m_c: np.ndarray,
    A_c: int,
    at_floor: np.ndarray,
    bound: np.ndarray,
    codes: np.ndarray,
    tiebreak: np.ndarray,
) -> np.ndarray:
    """Largest-remainder rounding to cents: state totals first, then LEAs within states.

    Every LEA keeps at least its floor, states at their minimum get exactly it, the other
    states at least their minimum, and the total is ``A_c`` cents.
    """
    k = m_c.size
    free = ~at_floor
    x_c = x * 100.0
    base = np.where(free, np.maximum(np.floor(x_c).astype(np.int64), f_c), f_c)
    rem = np.where(free, x_c - base, 0.0)
    lo = np.bincount(codes, base, minlength=k).astype(np.int64)
    cap = lo + np.bincount(codes, free, minlength=k).astype(np.int64)
    want = lo + np.bincount(codes, rem, minlength=k)
    low = np.maximum(np.maximum(m_c, np.bincount(codes, f_c, minlength=k)), lo)
    T = np.where(bound, m_c, np.clip(np.floor(want).astype(np.int64), low, cap))
    if np.any(bound & ((m_c < lo) | (m_c > cap))):
        raise SolverError(
            "cent rounding: a state at its minimum cannot reach it exactly; "
            "please report this with your data."
        )
    frac = want - T
    adjustable = ~bound
    for _ in range(k + 2):
        d = A_c - int(T.sum())
        if d == 0:
            break
        if d > 0:
            cand = np.flatnonzero(adjustable & (T < cap))
            order = cand[np.lexsort((cand, -frac[cand]))][:d]
            T[order] += 1
        else:
            cand = np.flatnonzero(adjustable & (T > low))
            order = cand[np.lexsort((cand, frac[cand]))][:-d]
            T[order] -= 1
        if order.size == 0:
            break
        frac = want - T
    if int(T.sum()) != A_c:
        raise SolverError(
            "cent rounding could not match the appropriation; please report this with your data."
        )
    # stage 2: within each state, the T_s - lo_s largest remainders get one more cent
    out = base.copy()
    idx = np.flatnonzero(free)
    if idx.size:
        order = idx[np.lexsort((tiebreak[idx], -rem[idx], codes[idx]))]
        g = codes[order]
        start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        rank = np.arange(order.size) - np.repeat(start, np.diff(np.r_[start, order.size]))
        out[order[rank < (T - lo)[g]]] += 1
    return out


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
    a, A, f, codes, uniques, m = _parse(
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
        need = need_c / 100.0
        short = need_c > A_c
    else:
        need = float(np.maximum(m, F).sum())
        short = need > A * (1 + 1e-12)
    if short:
        raise InfeasibleError(
            f"the hold-harmless floors and state minimums alone need {need:,.2f} but the "
            f"appropriation is {A:,.2f} (short by {need - A:,.2f}); reduce the floors ratably "
            f"(calibopt.allocation.ratable_reduction) or raise the appropriation.",
            certificate={"required": need, "appropriation": A},
        )
    a_state = np.bincount(codes, a, minlength=k)
    stuck = (m > F) & (a_state <= 0)
    if stuck.any():
        raise InvalidProblemError(
            f"state(s) {list(uniques[stuck][:5])} have a minimum above their LEAs' floors but no "
            f"authorization to distribute it over; set their minimum to 0 or give them LEAs."
        )
    pos = a > 0
    b = np.where(pos, f / np.where(pos, a, 1.0), np.inf)
    # tau_s: the level at which state s alone reaches its minimum
    tau = np.zeros(k)
    raise_s = m > F
    if raise_s.any():
        sel = pos & raise_s[codes]
        tau = _levels(codes[sel], b[sel], -f[sel], a[sel], F, np.where(raise_s, m, F))
        tau[~raise_s] = 0.0
    # national level t: events at tau_s (state constant F_s - m_s) and at max(b_i, tau_s(i))
    ev_t = np.r_[tau, np.maximum(b[pos], tau[codes[pos]])]
    ev_c = np.r_[F - m, -f[pos]]
    ev_p = np.r_[np.zeros(k), a[pos]]
    t = float(
        _levels(
            np.zeros(ev_t.size, dtype=np.int64),
            ev_t,
            ev_c,
            ev_p,
            np.array([m.sum()]),
            np.array([A]),
        )[0]
    )
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
        alloc_c = _round_cents(
            x, f_c, m_c, A_c, at_floor, bound, codes, _tiebreak(authorizations, n)
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


def _like(template: Any, values: np.ndarray, name: str = "allocation") -> Any:
    if isinstance(template, pd.Series):
        return pd.Series(values, index=template.index, name=template.name or name)
    return values


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
    return _like(authorizations, res.allocations)


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
    codes, uniques = _state_codes(states, f.size)
    m = _state_minimums(state_minimums, codes, uniques)
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


# ------------------------------------------------------------------ recursive reference
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
    implementations it mirrors do. Use :func:`apply_floors` for the exact answer.
    """
    a, A, f, codes, uniques, m = _parse(
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
        allocations=_like(authorizations, x),
        rounds=rounds,
        converged=converged,
        below_floor=int((x < f * rel).sum()),
        states_below_minimum=int((totals < m * rel).sum()),
        max_shortfall=float(short.max(initial=0.0)),
    )
