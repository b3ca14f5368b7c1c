"""EFIG (education finance incentive grants) in two stages: to states, then within states.

State amounts are proportional to children x adjusted expenditure x effort factor x (1.3 -
equity factor), each raised to the state minimum; within each state LEAs share the state's
amount in proportion to their children weighted by the schedule the state's equity factor
selects, above their hold-harmless floors (reduced ratably, per state, when they exceed the
state's amount). Sources: ``docs/title1_sources.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, InvalidProblemError
from . import formulas, inputs
from .cents import to_cents
from .provisions import ProvisionsResult, solve_provisions
from .thresholds import EFIG_RULE
from .weighting import efig_table, weighted_child_count

if TYPE_CHECKING:
    from .sonnenberg import SonnenbergAllocator

__all__ = ["allocate_efig"]


def allocate_efig(
    allocator: SonnenbergAllocator,
    df: pd.DataFrame,
    e: np.ndarray,
    n: np.ndarray,
    cv: np.ndarray | None,
    codes: np.ndarray,
    labels: Any,
    appropriation: float,
) -> tuple[np.ndarray, np.ndarray, ProvisionsResult, float, dict[str, np.ndarray]]:
    """EFIG for one estimate kind: ``(weighted counts, eligible, provisions result, ratable
    factor of the floors, state-level columns)``, as the allocator's other grant types."""
    k = len(labels)
    state_idx = pd.Index(labels)
    sppe_s = formulas.state_values(df[inputs.SPPE], inputs.SPPE)
    pci_s = formulas.state_values(df[inputs.PCI], inputs.PCI)
    if inputs.EQUITY in df.columns:
        equity_s = formulas.state_values(df[inputs.EQUITY], inputs.EQUITY)
    elif {inputs.EXPENDITURE, inputs.ENROLLMENT} <= set(df.columns):
        equity_s = formulas.equity_factor(
            df.index.get_level_values(0), df[inputs.EXPENDITURE], df[inputs.ENROLLMENT], e
        )
    else:
        raise InvalidProblemError(
            f"EFIG needs the state equity factor: an {inputs.EQUITY!r} column, or "
            f"{inputs.EXPENDITURE!r} and {inputs.ENROLLMENT!r} per LEA to compute it."
        )
    adj_s = formulas.adjusted_sppe(
        sppe_s,
        cap=allocator.congress_cap,
        bounds=allocator.efig_sppe_bounds,
        us_average=allocator.us_average_sppe,
    )
    effort_s = formulas.effort_factor(
        sppe_s,
        pci_s,
        us_sppe=allocator.us_sppe,
        us_per_capita_income=allocator.us_per_capita_income,
    )
    # LEA weighted counts with the schedule of the state's equity band
    band = np.array([efig_table(v) for v in equity_s.reindex(state_idx).to_numpy()])
    count = np.zeros(e.size)
    for table in dict.fromkeys(band):
        rows = band[codes] == table
        count[rows] = weighted_child_count(e[rows], n[rows], table)
    lea_adj = adj_s.reindex(state_idx).to_numpy()[codes]
    weights, eligible = allocator.thresholder(count * lea_adj, e, n, EFIG_RULE, cv)
    weights = np.asarray(weights, dtype=float)
    eligible = np.asarray(eligible, dtype=bool)
    has_lea = np.bincount(codes, weights, minlength=k) > 0
    children_s = pd.Series(np.bincount(codes, e, minlength=k), index=state_idx)
    state_auth = formulas.efig_state_authorizations(children_s, adj_s, effort_s, equity_s)
    state_auth = state_auth.where(has_lea, 0.0)
    minimums = None
    if allocator.state_minimum:
        rule = allocator.state_minimum_rules["efig"]
        minimums = formulas.state_minimums(
            rule, appropriation, children_s, float(children_s[has_lea].sum())
        ).where(has_lea, 0.0)
    # state totals: proportional to the state amounts, each at least its minimum
    state_res = solve_provisions(
        state_auth.to_numpy(),
        appropriation,
        None if minimums is None else minimums.to_numpy(),
        cents=allocator.cents,
    )
    totals = state_res.allocations
    # LEAs: within each state in proportion to weighted counts, above hold-harmless floors
    floors = allocator.hold_harmless_floors(df, "efig", e, n, eligible)
    F = np.bincount(codes, floors, minlength=k)
    ratio = 1.0
    over = F > totals + 1e-9
    if over.any():
        if allocator.insufficient == "raise":
            raise InfeasibleError(
                f"EFIG hold-harmless floors exceed the state amount in state(s) "
                f"{list(state_idx[over][:5])}.",
                targets=[str(s) for s in state_idx[over]],
            )
        r_s = np.where(over, totals / np.where(F > 0, F, 1.0), 1.0)
        ratio = float(r_s.min())
        floors = floors * r_s[codes]
        if allocator.cents:
            floors = to_cents(floors, "down") / 100.0
    res = solve_provisions(
        weights,
        float(totals.sum()),
        floors,
        states=np.asarray(labels)[codes],
        state_minimums=totals[codes],
        cents=allocator.cents,
    )
    res.state_at_minimum = (
        state_res.at_floor & (totals > 0) if minimums is not None else np.zeros(k, dtype=bool)
    )
    extra = {
        "auth_efig_state": state_auth.to_numpy(),
        "efig_effort": effort_s.reindex(state_idx).to_numpy(),
        "efig_equity": equity_s.reindex(state_idx).to_numpy(),
    }
    return weights, eligible, res, ratio, extra
