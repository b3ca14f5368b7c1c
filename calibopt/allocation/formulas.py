"""Title I grant formulas: expenditure factors, hold-harmless rates, state minimums, EFIG.

Each function is vectorised over LEAs or states and cites the statute paragraph it
implements (see :mod:`calibopt.allocation.statute` for the constants and their sources).
Money is rounded to cents half-up where the Department rounds (the adjusted state per-pupil
expenditure, following Sonnenberg, "Allocating Grants for Title I", NCES 2016, sec. on the
expenditure factor); everywhere else amounts stay exact until the final cent rounding of
:func:`~calibopt.allocation.apply_floors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from . import statute
from .cents import to_cents
from .thresholds import compare_share

__all__ = [
    "adjusted_sppe",
    "effort_factor",
    "efig_state_authorizations",
    "equity_factor",
    "hold_harmless_rates",
    "round_cents",
    "state_minimums",
    "state_values",
]

_NOT_FIFTY_STATES = (11, statute.PUERTO_RICO_FIPS)  # DC and Puerto Rico


def round_cents(x: Any) -> np.ndarray:
    """Round dollar amounts to cents, half up (float noise below 1e-4 cent removed first)."""
    return to_cents(x, "nearest") / 100.0


def state_values(values: pd.Series, name: str) -> pd.Series:
    """One value per state from a per-LEA Series that must be constant within each state.

    ``values`` is indexed by (state, district); returns a Series indexed by state.
    """
    states = values.index.get_level_values(0)
    grouped = values.groupby(states, sort=True)
    lo, hi = grouped.min(), grouped.max()
    bad = lo.index[~np.isclose(lo.to_numpy(), hi.to_numpy(), rtol=1e-12, atol=0)]
    if len(bad):
        raise InvalidProblemError(
            f"`{name}` must be the same for every LEA of a state; it varies in state(s) "
            f"{list(bad[:5])}."
        )
    return grouped.first().rename(name)


def adjusted_sppe(
    sppe: pd.Series,
    *,
    cap: str = statute.CONGRESS_CAP,
    bounds: Sequence[str] = statute.ADJUSTED_SPPE_BOUNDS,
    us_average: float | None = None,
    puerto_rico: int | None = statute.PUERTO_RICO_FIPS,
    puerto_rico_min_ratio: str = statute.PUERTO_RICO_MIN_RATIO,
) -> pd.Series:
    """The expenditure factor per state: 40% of SPPE, bounded by shares of the U.S. average.

    ``round(0.40 x SPPE_s)`` clipped to ``[round(lo x avg), round(hi x avg)]`` (each rounded
    to cents), where ``avg`` is ``us_average`` or, when not given, the cents-rounded mean of
    the states' SPPE (20 U.S.C. 6333(a)(1)(B); EFIG uses ``bounds=("0.34", "0.46")``,
    6337(b)(1)(A)(i)). Puerto Rico (6333(a)(4)) gets ``max(SPPE_PR / lowest SPPE of the 50
    states, 100%) x lo x avg``.

    Parameters
    ----------
    sppe
        State per-pupil expenditure, per state (indexed by state) or per LEA (indexed by
        (state, district), constant within a state).

    Returns
    -------
    Series
        Indexed like ``sppe``.
    """
    per_lea = isinstance(sppe.index, pd.MultiIndex)
    by_state = state_values(sppe, "sppe") if per_lea else sppe.astype(float)
    if (by_state <= 0).any() or by_state.isna().any():
        raise InvalidProblemError("`sppe` must be positive for every state.")
    avg = float(round_cents(by_state.mean())) if us_average is None else float(us_average)
    lo, hi = (float(round_cents(Fraction(b) * Fraction(avg))) for b in bounds)
    scaled = round_cents(by_state.to_numpy() * float(Fraction(cap)))
    adj = pd.Series(np.clip(scaled, lo, hi), index=by_state.index, name="adjusted_sppe")
    if puerto_rico is not None and puerto_rico in adj.index:
        fifty = by_state.drop([s for s in _NOT_FIFTY_STATES if s in by_state.index])
        if len(fifty):
            ratio = max(by_state[puerto_rico] / fifty.min(), float(Fraction(puerto_rico_min_ratio)))
            adj[puerto_rico] = float(round_cents(ratio * float(Fraction(bounds[0])) * avg))
    if per_lea:
        return pd.Series(
            adj.reindex(sppe.index.get_level_values(0)).to_numpy(),
            index=sppe.index,
            name="adjusted_sppe",
        )
    return adj


def hold_harmless_rates(eligible: Any, total: Any) -> np.ndarray:
    """Hold-harmless rate per LEA from its formula-child rate (20 U.S.C. 6332(c)(1)).

    95% when formula children are 30% or more of the 5-17 population, 90% when 15% or more
    but less than 30%, 85% below 15% (34 CFR 200.73(a)(4)); unweighted counts; exact at the
    edges. LEAs with no 5-17 population get 85%.
    """
    e = np.asarray(eligible, dtype=float).reshape(-1)
    n = np.asarray(total, dtype=float).reshape(-1)
    bands = statute.HOLD_HARMLESS_BANDS
    rates = np.full(e.shape, float(Fraction(bands[0][1])))
    for (edge, _), (_, next_rate) in pairwise(bands):
        at_or_above = compare_share(e, n, Fraction(edge), strict=False)
        rates = np.where(at_or_above, float(Fraction(next_rate)), rates)
    return rates


def state_minimums(
    rule: statute.StateMinimumRule,
    appropriation: float,
    state_children: pd.Series,
    national_children: float,
) -> pd.Series:
    """Small-state minimum per state for one grant type.

    The lesser of (1) ``rule.first_term(appropriation)`` and (2) the average of (1) and
    ``max(rule.floor_amount, 1.5 x appropriation / national_children x children_s)``
    (20 U.S.C. 6333(d), 6334(a)(1)(B), 6335(e), 6337(b)(1)(B)).

    Parameters
    ----------
    rule
        The grant type's :class:`~calibopt.allocation.statute.StateMinimumRule`.
    appropriation
        The grant type's appropriation.
    state_children
        Formula children per state counted for the rule (index: state).
    national_children
        Formula children behind the national average payment per child: those in LEAs
        eligible for the grant (the children the payments are made for). This reading of
        "national average per-pupil payment" is ours; the statute does not define it further.
    """
    if national_children <= 0:
        return pd.Series(0.0, index=state_children.index, name="state_minimum")
    first = rule.first_term(float(appropriation))
    napp = float(appropriation) / float(national_children)
    second = np.maximum(
        rule.floor_amount,
        float(Fraction(rule.per_child_multiplier)) * napp * state_children.to_numpy(dtype=float),
    )
    out = np.minimum(first, 0.5 * (first + second))
    return pd.Series(out, index=state_children.index, name="state_minimum")


def effort_factor(
    sppe: pd.Series,
    per_capita_income: pd.Series,
    *,
    us_sppe: float | None = None,
    us_per_capita_income: float | None = None,
    bounds: Sequence[str] = statute.EFIG_EFFORT_BOUNDS,
    puerto_rico: int | None = statute.PUERTO_RICO_FIPS,
) -> pd.Series:
    """EFIG effort factor per state (20 U.S.C. 6337(b)(2)).

    ``(SPPE_s x PCI_US) / (PCI_s x SPPE_US)`` bounded to [0.95, 1.05]; the statute uses
    3-year averages of both, so pass 3-year averages. U.S. values default to the unweighted
    means over the states given (pass the official national figures when you have them).
    Puerto Rico gets the lowest factor of the other states.
    """
    s = sppe.astype(float)
    p = per_capita_income.reindex(s.index).astype(float)
    if p.isna().any() or (p <= 0).any() or (s <= 0).any():
        raise InvalidProblemError(
            "`per_capita_income` and `sppe` must be positive for every state."
        )
    us_s = float(s.mean()) if us_sppe is None else float(us_sppe)
    us_p = float(p.mean()) if us_per_capita_income is None else float(us_per_capita_income)
    lo, hi = (float(Fraction(b)) for b in bounds)
    eff = pd.Series(np.clip((s * us_p) / (p * us_s), lo, hi), index=s.index, name="effort_factor")
    if puerto_rico is not None and puerto_rico in eff.index and len(eff) > 1:
        eff[puerto_rico] = eff.drop(puerto_rico).min()
    return eff


def equity_factor(
    states: Any,
    expenditure: Any,
    enrollment: Any,
    formula_children: Any,
    *,
    poverty_weight: str = statute.EFIG_POVERTY_PUPIL_WEIGHT,
    min_enrollment: int = statute.EFIG_MIN_ENROLLMENT,
) -> pd.Series:
    """EFIG equity factor per state: the weighted coefficient of variation of LEA spending.

    Following 20 U.S.C. 6337(b)(3): pupils of LEA ``i`` are its enrollment with formula
    children counted ``poverty_weight`` (1.4) times, ``w_i = enrollment_i + 0.4 x
    formula_children_i``; its per-pupil expenditure is ``expenditure_i / w_i``; the state mean
    is pupil-weighted and the coefficient of variation is
    ``sqrt(sum w_i (ppe_i - mean)^2 / sum w_i) / mean`` over LEAs with an enrollment of more
    than ``min_enrollment`` (200). A state with one such LEA gets 0 (the statute caps it at
    0.10, 6337(b)(3)(B)). The exact weighting the Department applies (which pupils, which
    expenditure) is not spelled out in the statute; this is our reading of it.

    Returns
    -------
    Series
        Equity factor per state (sorted state labels).
    """
    st = np.asarray(states)
    x = np.asarray(expenditure, dtype=float)
    enr = np.asarray(enrollment, dtype=float)
    fc = np.asarray(formula_children, dtype=float)
    if not (st.shape == x.shape == enr.shape == fc.shape):
        raise InvalidProblemError(
            "`states`, `expenditure`, `enrollment`, `formula_children` must have one entry per LEA."
        )
    if (
        not np.all(np.isfinite(x) & np.isfinite(enr) & np.isfinite(fc))
        or ((x < 0) | (enr < 0) | (fc < 0)).any()
    ):
        raise InvalidProblemError(
            "expenditure, enrollment and formula children must be finite and non-negative."
        )
    codes, uniques = pd.factorize(st, sort=True)
    k = len(uniques)
    keep = enr > min_enrollment
    w = np.where(keep, enr + (float(Fraction(poverty_weight)) - 1.0) * fc, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ppe = np.where(w > 0, x / np.where(w > 0, w, 1.0), 0.0)
        W = np.bincount(codes, w, minlength=k)
        mean = np.bincount(codes, w * ppe, minlength=k) / W
        var = np.bincount(codes, w * (ppe - mean[codes]) ** 2, minlength=k) / W
        cv = np.sqrt(var) / mean
    n_lea = np.bincount(codes, keep, minlength=k)
    cv = np.where((n_lea <= 1) | ~np.isfinite(cv), 0.0, cv)
    return pd.Series(cv, index=pd.Index(uniques), name="equity_factor")


def efig_state_authorizations(
    state_children: pd.Series,
    adjusted_efig_sppe: pd.Series,
    effort: pd.Series,
    equity: pd.Series,
    *,
    constant: str = statute.EFIG_EQUITY_CONSTANT,
) -> pd.Series:
    """EFIG amount per state before normalisation (20 U.S.C. 6337(b)(1)(A)).

    formula children x EFIG expenditure factor x effort factor x (1.30 - equity factor).
    """
    idx = state_children.index
    parts = [x.reindex(idx).astype(float) for x in (adjusted_efig_sppe, effort, equity)]
    if any(p.isna().any() for p in parts):
        raise InvalidProblemError(
            "EFIG needs the expenditure, effort and equity factors of every state with LEAs."
        )
    amount = (
        state_children.astype(float) * parts[0] * parts[1] * (float(Fraction(constant)) - parts[2])
    )
    return amount.clip(lower=0.0).rename("efig_authorization")
