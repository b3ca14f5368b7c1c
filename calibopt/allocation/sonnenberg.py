"""The official Title I procedure, as described by W. Sonnenberg, *Allocating Grants for Title I*
(NCES, January 2016): per grant type an authorization per LEA (formula children x expenditure
factor, weighted children for targeted grants), eligibility thresholds, then normalisation to
the appropriation with the hold-harmless floors and the state minimum, solved exactly by
:func:`~calibopt.allocation.solve_provisions`. EFIG is allocated to states first and then
within each state (:mod:`~calibopt.allocation.efig`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, InvalidProblemError
from . import formulas, inputs, statute
from .allocators import (
    Allocation,
    BaseAllocator,
    Thresholder,
    appropriations_for,
    check_grant_types,
    check_prefixes,
)
from .cents import to_cents
from .efig import allocate_efig
from .provisions import ProvisionsResult, ratable_reduction, solve_provisions
from .thresholds import (
    BASIC_RULE,
    CONCENTRATION_RULE,
    EFIG_RULE,
    TARGETED_RULE,
    HardThresholder,
    Rule,
)
from .weighting import TARGETED_LEA, WeightingTable, weighted_child_count

__all__ = ["SonnenbergAllocator"]

RULES: dict[str, Rule] = {
    "basic": BASIC_RULE,
    "concentration": CONCENTRATION_RULE,
    "targeted": TARGETED_RULE,
    "efig": EFIG_RULE,
}


def _state_sums(res: ProvisionsResult, codes: np.ndarray, k: int) -> np.ndarray:
    """Per-state totals, summed in integer cents when the allocations are in cents."""
    if "cents" in res.info:
        return np.bincount(codes, res.info["cents"], minlength=k).round().astype(np.int64) / 100.0
    return np.bincount(codes, res.allocations, minlength=k)


class SonnenbergAllocator(BaseAllocator):
    """The official procedure: four grant types, thresholds, hold harmless, state minimums.

    Parameters
    ----------
    grant_types
        A tuple of names from ``("basic", "concentration", "targeted", "efig")``.
    thresholder
        :class:`~calibopt.allocation.HardThresholder` (default) or
        :class:`~calibopt.allocation.UncertaintyThresholder`.
    hold_harmless
        Apply the LEA hold-harmless floors (needs ``prior_{grant}`` columns).
    state_minimum
        Apply the small-state minimum.
    state_minimum_rules
        Overrides of :data:`~calibopt.allocation.statute.STATE_MINIMUM_RULES` per grant type
        (e.g. another year's base amount).
    insufficient
        When the floors and minimums exceed an appropriation: ``"ratable"`` (default) reduces
        the hold-harmless amounts ratably as 20 U.S.C. 6332(d) and 34 CFR 200.73(c) require;
        ``"raise"`` raises :class:`~calibopt.InfeasibleError`.
    weighting
        The targeted-grant schedule (:data:`~calibopt.allocation.TARGETED_LEA`).
    congress_cap, sppe_bounds, efig_sppe_bounds, us_average_sppe
        Expenditure-factor parameters.
    us_sppe, us_per_capita_income
        National values for the EFIG effort factor (default: means over the states given).
    cents
        Round allocations to whole cents (default).
    """

    def __init__(
        self,
        *,
        grant_types: Sequence[str] = statute.GRANT_TYPES,
        thresholder: Thresholder | None = None,
        hold_harmless: bool = True,
        state_minimum: bool = True,
        state_minimum_rules: Mapping[str, statute.StateMinimumRule] | None = None,
        insufficient: Literal["ratable", "raise"] = "ratable",
        weighting: WeightingTable = TARGETED_LEA,
        congress_cap: str = statute.CONGRESS_CAP,
        sppe_bounds: Sequence[str] = statute.ADJUSTED_SPPE_BOUNDS,
        efig_sppe_bounds: Sequence[str] = statute.EFIG_SPPE_BOUNDS,
        us_average_sppe: float | None = None,
        us_sppe: float | None = None,
        us_per_capita_income: float | None = None,
        cents: bool = True,
    ) -> None:
        super().__init__(
            congress_cap=congress_cap,
            sppe_bounds=sppe_bounds,
            us_average_sppe=us_average_sppe,
            cents=cents,
        )
        self.grant_types = check_grant_types(grant_types, statute.GRANT_TYPES)
        self.thresholder = thresholder if thresholder is not None else HardThresholder()
        self.hold_harmless = bool(hold_harmless)
        self.state_minimum = bool(state_minimum)
        rules = dict(statute.STATE_MINIMUM_RULES)
        rules.update(state_minimum_rules or {})
        self.state_minimum_rules = rules
        if insufficient not in ("ratable", "raise"):
            raise InvalidProblemError(
                f"`insufficient` must be 'ratable' or 'raise', got {insufficient!r}."
            )
        self.insufficient = insufficient
        self.weighting = weighting
        self.efig_sppe_bounds = tuple(efig_sppe_bounds)
        self.us_sppe = us_sppe
        self.us_per_capita_income = us_per_capita_income

    # ---------------------------------------------------------------- public
    def required_columns(self) -> list[str]:
        """Columns needed beyond the estimates and ``sppe`` for this configuration."""
        cols = []
        if self.hold_harmless:
            cols += [inputs.prior_column(g) for g in self.grant_types]
        if "efig" in self.grant_types:
            cols.append(inputs.PCI)
        return cols

    def allocate(
        self,
        estimates: pd.DataFrame,
        prefixes: Sequence[str] = ("est",),
        appropriations: Mapping[str, float] | None = None,
        total_appropriation: float | None = None,
    ) -> Allocation:
        """Allocate every grant type for every estimate kind.

        Parameters
        ----------
        estimates
            LEA table (see :mod:`calibopt.allocation.inputs`).
        prefixes
            Estimate kinds to allocate, e.g. ``("true", "est")``.
        appropriations
            Amount per grant type; default: the sums of the ``official_{grant}`` columns.
        total_appropriation
            Optional total: the per-type appropriations are scaled to sum to it.
        """
        prefixes = check_prefixes(prefixes)
        original = inputs.validate_estimates(
            estimates,
            prefixes,
            required=self.required_columns(),
            optional=(
                inputs.CV,
                inputs.EQUITY,
                inputs.EXPENDITURE,
                inputs.ENROLLMENT,
                inputs.CONCENTRATION_YEARS,
            ),
        )
        df = original.sort_index()
        approp = appropriations_for(df, self.grant_types, appropriations, total_appropriation)
        codes, state_labels = pd.factorize(df.index.get_level_values(0), sort=True)
        adj = self._adjusted(df, self.sppe_bounds).to_numpy()
        cv = df[inputs.CV].to_numpy(dtype=float) if inputs.CV in df.columns else None
        cols: dict[str, np.ndarray] = {}
        state_cols: dict[str, np.ndarray] = {}
        diag: list[dict[str, Any]] = []
        provisions: dict[tuple[str, str], ProvisionsResult] = {}
        for p in prefixes:
            e = df[inputs.eligible_column(p)].to_numpy(dtype=float)
            n = df[inputs.total_column(p)].to_numpy(dtype=float)
            for g in self.grant_types:
                if g == "efig":
                    out = allocate_efig(self, df, e, n, cv, codes, state_labels, approp[g])
                else:
                    out = self._lea_grant(df, g, e, n, adj, cv, codes, state_labels, approp[g])
                auth, eligible, res, ratio, extra = out
                cols[f"{p}_auth_{g}"] = auth
                cols[f"{p}_eligible_{g}"] = eligible
                cols[f"{p}_grant_{g}"] = res.allocations
                state_cols[f"{p}_grant_{g}"] = _state_sums(res, codes, len(state_labels))
                state_cols.update({f"{p}_{k}": v for k, v in extra.items()})
                provisions[(p, g)] = res
                diag.append(
                    {
                        "prefix": p,
                        "grant": g,
                        "appropriation": approp[g],
                        "allocated": float(to_cents(res.allocations).sum()) / 100.0,
                        "eligible_leas": int(np.count_nonzero(eligible)),
                        "leas_at_floor": int(np.count_nonzero(res.at_floor & (res.exact > 0))),
                        "states_at_minimum": int(np.count_nonzero(res.state_at_minimum)),
                        "level": res.level,
                        "ratable_factor": ratio,
                    }
                )
        table = self._finish(original, df, cols, prefixes, self.grant_types)
        states = pd.DataFrame(state_cols, index=pd.Index(state_labels, name="state"))
        for p in prefixes:
            states[f"{p}_grant_total"] = self._total(states, p, self.grant_types)
        return Allocation(
            table=table,
            appropriations=approp,
            prefixes=prefixes,
            grant_types=self.grant_types,
            states=states,
            diagnostics=pd.DataFrame(diag),
            provisions=provisions,
        )

    # ---------------------------------------------------------------- internals
    def hold_harmless_floors(self, df: pd.DataFrame, g: str, e, n, eligible) -> np.ndarray:
        """Hold-harmless floor per LEA for grant type ``g`` (0 where not covered, or all 0
        without ``hold_harmless``): the rate for the LEA's counts ``e`` (formula children)
        and ``n`` (all children) times last year's amount."""
        if not self.hold_harmless:
            return np.zeros(e.size)
        prior = df[inputs.prior_column(g)].to_numpy(dtype=float)
        covered = np.asarray(eligible, dtype=bool).copy()
        if g == "concentration":
            # 20 U.S.C. 6332(c)(2): LEAs that received a concentration grant last year keep
            # their hold harmless while ineligible, until they have missed eligibility for 4
            # consecutive years (this year counted): prior years missed <= 2.
            years = (
                df[inputs.CONCENTRATION_YEARS].to_numpy(dtype=float)
                if inputs.CONCENTRATION_YEARS in df.columns
                else np.zeros(e.size)
            )
            covered |= (prior > 0) & (years + 1 < 4)
        return np.where(covered, formulas.hold_harmless_rates(e, n) * prior, 0.0)

    def _minimums(
        self, g: str, e, eligible, auth, codes, labels, appropriation
    ) -> pd.Series | None:
        if not self.state_minimum:
            return None
        rule = self.state_minimum_rules[g]
        k = len(labels)
        elig_children = np.bincount(codes, np.where(eligible, e, 0.0), minlength=k)
        children = (
            elig_children if rule.eligible_children_only else np.bincount(codes, e, minlength=k)
        )
        mins = formulas.state_minimums(
            rule, appropriation, pd.Series(children, index=labels), float(elig_children.sum())
        )
        has_grant = np.bincount(codes, auth, minlength=k) > 0
        return mins.where(has_grant, 0.0)

    def _solve(
        self, auth, appropriation, floors, codes, labels, minimums
    ) -> tuple[ProvisionsResult, float]:
        states = None if minimums is None else np.asarray(labels)[codes]
        mins = None if minimums is None else minimums.to_numpy()[codes]
        try:
            return solve_provisions(
                auth, appropriation, floors, states=states, state_minimums=mins, cents=self.cents
            ), 1.0
        except InfeasibleError:
            if self.insufficient == "raise":
                raise
        r = ratable_reduction(floors, appropriation, states=states, state_minimums=mins)
        reduced = to_cents(r * floors, "down") / 100.0 if self.cents else r * floors
        return solve_provisions(
            auth, appropriation, reduced, states=states, state_minimums=mins, cents=self.cents
        ), r

    def _lea_grant(self, df, g, e, n, adj, cv, codes, labels, appropriation):
        if g == "targeted":
            count = weighted_child_count(e, n, self.weighting)
            pr = df.index.get_level_values(0) == statute.PUERTO_RICO_FIPS
            if pr.any():
                count[pr] = weighted_child_count(
                    e[pr], n[pr], self.weighting, cap=statute.PUERTO_RICO_TARGETED_CAP
                )
        else:
            count = e
        auth, eligible = self.thresholder(count * adj, e, n, RULES[g], cv)
        auth = np.asarray(auth, dtype=float)
        eligible = np.asarray(eligible, dtype=bool)
        floors = self.hold_harmless_floors(df, g, e, n, eligible)
        minimums = self._minimums(g, e, eligible, auth, codes, labels, appropriation)
        res, ratio = self._solve(auth, appropriation, floors, codes, labels, minimums)
        return auth, eligible, res, ratio, {}
