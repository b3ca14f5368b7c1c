"""Allocators: from LEA estimates to dollars per LEA and grant type.

* :class:`SonnenbergAllocator` follows the Department of Education's procedure as described by
  W. Sonnenberg, *Allocating Grants for Title I* (NCES, January 2016): per grant type an
  authorization per LEA (formula children x expenditure factor, weighted children for targeted
  grants), eligibility thresholds, then normalisation to the appropriation with the
  hold-harmless floors and the state minimum, solved exactly by
  :func:`~calibopt.allocation.solve_provisions`. EFIG is allocated to states first (effort and
  equity factors, state minimum) and then within each state by the weighting schedule its
  equity factor selects.
* :class:`AbowdAllocator` is the simple model of Abowd & Schmutte (2019, "An economic analysis
  of privacy protection and statistical accuracy as social choices", American Economic Review
  109(1); arXiv:1808.06303): grant = expenditure factor x formula children, one grant type
  ``("total",)``, optionally scaled to an appropriation.

Both return an :class:`Allocation`. Results do not depend on the row order of the input (it is
sorted by (state, district) internally; rounding ties go to the earlier LEA in that order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from ..errors import InfeasibleError, InvalidProblemError
from . import formulas, inputs, statute
from .provisions import ProvisionsResult, ratable_reduction, solve_provisions, to_cents
from .thresholds import (
    BASIC_RULE,
    CONCENTRATION_RULE,
    EFIG_RULE,
    TARGETED_RULE,
    HardThresholder,
    Rule,
)
from .weighting import TARGETED_LEA, WeightingTable, efig_table, weighted_child_count

__all__ = ["AbowdAllocator", "Allocation", "SonnenbergAllocator", "Thresholder"]

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


class Thresholder(Protocol):
    """``thresholder(grants, eligible, total, rule, cv=None) -> (grants, eligible mask)``."""

    def __call__(
        self, grants: Any, eligible: Any, total: Any, rule: Any, cv: Any = None
    ) -> Any: ...


@dataclass
class Allocation:
    """Allocations per LEA and grant type for one or more estimate kinds.

    Attributes
    ----------
    table : DataFrame
        Indexed like the input estimates (same row order). For each prefix ``p`` and grant
        type ``g``: ``p_auth_g`` (authorization after thresholds), ``p_eligible_g``,
        ``p_grant_g`` (allocation in dollars, whole cents) and ``p_grant_total``.
    appropriations : dict
        Appropriation per grant type.
    prefixes, grant_types : tuple of str
    states : DataFrame
        Per state: ``p_grant_g`` totals (and EFIG's state-level authorization).
    diagnostics : DataFrame
        One row per (prefix, grant): appropriation, allocated total, eligible LEAs, LEAs at
        their hold-harmless floor, states at the minimum, the level ``t`` and the ratable
        reduction factor applied to the floors (1 when they fit).
    """

    table: pd.DataFrame
    appropriations: dict[str, float]
    prefixes: tuple[str, ...]
    grant_types: tuple[str, ...]
    states: pd.DataFrame
    diagnostics: pd.DataFrame
    provisions: dict[tuple[str, str], ProvisionsResult] = field(default_factory=dict, repr=False)

    def grants(self, prefix: str, grant: str = "total") -> pd.Series:
        """Dollars per LEA for one estimate kind and grant type (``"total"``: all types)."""
        col = f"{prefix}_grant_{grant}"
        if col not in self.table.columns:
            raise InvalidProblemError(
                f"no column {col!r}; prefixes {self.prefixes}, grant types "
                f"{(*self.grant_types, 'total')}."
            )
        return self.table[col]


def _check_grant_types(grant_types: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(grant_types, str):
        raise InvalidProblemError(
            f"`grant_types` must be a tuple of names such as ({grant_types!r},), not the string "
            f"{grant_types!r} (a string would be read one letter at a time)."
        )
    gt = tuple(grant_types)
    unknown = [g for g in gt if g not in allowed]
    if unknown or not gt:
        raise InvalidProblemError(f"unknown grant type(s) {unknown}; choose from {tuple(allowed)}.")
    return gt


def _check_prefixes(prefixes: Any) -> tuple[str, ...]:
    if isinstance(prefixes, str):
        raise InvalidProblemError(
            f"`prefixes` must be a sequence of names such as ({prefixes!r},), not a string."
        )
    out = tuple(prefixes)
    if not out:
        raise InvalidProblemError("`prefixes` is empty.")
    return out


def _appropriations(
    df: pd.DataFrame,
    grant_types: Sequence[str],
    appropriations: Mapping[str, float] | None,
    total: float | None,
) -> dict[str, float]:
    if appropriations is not None:
        if not isinstance(appropriations, Mapping):
            raise InvalidProblemError(
                "`appropriations` must be a mapping grant type -> amount, e.g. "
                "{'basic': 6.4e9, 'targeted': 4.4e9}."
            )
        missing = [g for g in grant_types if g not in appropriations]
        if missing:
            raise InvalidProblemError(f"`appropriations` lacks grant type(s) {missing}.")
        out = {g: float(appropriations[g]) for g in grant_types}
    else:
        cols = [inputs.official_column(g) for g in grant_types]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InvalidProblemError(
                f"give `appropriations` (grant type -> amount) or official allocation "
                f"column(s) {missing} whose sums are the appropriations."
            )
        out = {g: float(df[c].sum()) for g, c in zip(grant_types, cols)}
    bad = {g: v for g, v in out.items() if not np.isfinite(v) or v < 0}
    if bad:
        raise InvalidProblemError(f"appropriations must be finite and >= 0, got {bad}.")
    if total is not None:
        s = sum(out.values())
        if s <= 0:
            raise InvalidProblemError("cannot scale appropriations that sum to 0 to a total.")
        out = {g: v * float(total) / s for g, v in out.items()}
    return out


class _Base:
    grant_types: tuple[str, ...]

    def __init__(
        self,
        *,
        congress_cap: str = statute.CONGRESS_CAP,
        sppe_bounds: Sequence[str] = statute.ADJUSTED_SPPE_BOUNDS,
        us_average_sppe: float | None = None,
        cents: bool = True,
    ) -> None:
        self.congress_cap = congress_cap
        self.sppe_bounds = tuple(sppe_bounds)
        self.us_average_sppe = us_average_sppe
        self.cents = cents

    def _adjusted(self, df: pd.DataFrame, bounds: Sequence[str]) -> pd.Series:
        return formulas.adjusted_sppe(
            df[inputs.SPPE], cap=self.congress_cap, bounds=bounds, us_average=self.us_average_sppe
        )

    def _total(self, table: pd.DataFrame, prefix: str, grant_types: tuple[str, ...]) -> pd.Series:
        """Sum of the grant columns; whole cents stay whole cents (no float noise)."""
        total = table[[f"{prefix}_grant_{g}" for g in grant_types]].sum(axis=1)
        return total.round(2) if self.cents else total

    def _finish(
        self,
        original: pd.DataFrame,
        work: pd.DataFrame,
        cols: dict[str, np.ndarray],
        prefixes: tuple[str, ...],
        grant_types: tuple[str, ...],
    ) -> pd.DataFrame:
        table = pd.DataFrame(cols, index=work.index)
        for p in prefixes:
            table[f"{p}_grant_total"] = self._total(table, p, grant_types)
        table = table.reindex(original.index)
        return table


class AbowdAllocator(_Base):
    """Grant = expenditure factor x formula children (Abowd & Schmutte 2019).

    Parameters
    ----------
    congress_cap, sppe_bounds, us_average_sppe
        Expenditure factor (40% of SPPE bounded by [32%, 48%] of the U.S. average).
    cents
        Round normalised amounts to cents (default).
    """

    grant_types: tuple[str, ...] = ("total",)

    def allocate(
        self,
        estimates: pd.DataFrame,
        prefixes: Sequence[str] = ("est",),
        appropriation: float | None = None,
    ) -> Allocation:
        """Allocate; with ``appropriation``, scale each estimate kind's grants to it exactly."""
        prefixes = _check_prefixes(prefixes)
        original = inputs.validate_estimates(estimates, prefixes)
        df = original.sort_index()
        adj = self._adjusted(df, self.sppe_bounds).to_numpy()
        cols: dict[str, np.ndarray] = {}
        diag = []
        for p in prefixes:
            e = df[inputs.eligible_column(p)].to_numpy(dtype=float)
            auth = adj * e
            cols[f"{p}_auth_total"] = auth
            cols[f"{p}_eligible_total"] = e > 0
            if appropriation is None:
                cols[f"{p}_grant_total"] = auth
            else:
                res = solve_provisions(auth, appropriation, cents=self.cents)
                cols[f"{p}_grant_total"] = res.allocations
            diag.append(
                {"prefix": p, "grant": "total", "allocated": cols[f"{p}_grant_total"].sum()}
            )
        table = pd.DataFrame(cols, index=df.index).reindex(original.index)
        states = table.filter(like="_grant_").groupby(level=0).sum()
        return Allocation(
            table=table,
            appropriations={} if appropriation is None else {"total": float(appropriation)},
            prefixes=prefixes,
            grant_types=self.grant_types,
            states=states,
            diagnostics=pd.DataFrame(diag),
        )


class SonnenbergAllocator(_Base):
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
        self.grant_types = _check_grant_types(grant_types, statute.GRANT_TYPES)
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
        prefixes = _check_prefixes(prefixes)
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
        approp = _appropriations(df, self.grant_types, appropriations, total_appropriation)
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
                    out = self._efig(df, p, e, n, cv, codes, state_labels, approp[g])
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
    def _floors(self, df: pd.DataFrame, g: str, e, n, eligible) -> np.ndarray:
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
        floors = self._floors(df, g, e, n, eligible)
        minimums = self._minimums(g, e, eligible, auth, codes, labels, appropriation)
        res, ratio = self._solve(auth, appropriation, floors, codes, labels, minimums)
        return auth, eligible, res, ratio, {}

    def _efig(self, df, p, e, n, cv, codes, labels, appropriation):
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
            cap=self.congress_cap,
            bounds=self.efig_sppe_bounds,
            us_average=self.us_average_sppe,
        )
        effort_s = formulas.effort_factor(
            sppe_s, pci_s, us_sppe=self.us_sppe, us_per_capita_income=self.us_per_capita_income
        )
        # LEA weighted counts with the schedule of the state's equity band
        band = np.array([efig_table(v) for v in equity_s.reindex(state_idx).to_numpy()])
        count = np.zeros(e.size)
        for table in dict.fromkeys(band):
            rows = band[codes] == table
            count[rows] = weighted_child_count(e[rows], n[rows], table)
        lea_adj = adj_s.reindex(state_idx).to_numpy()[codes]
        weights, eligible = self.thresholder(count * lea_adj, e, n, EFIG_RULE, cv)
        weights = np.asarray(weights, dtype=float)
        eligible = np.asarray(eligible, dtype=bool)
        has_lea = np.bincount(codes, weights, minlength=k) > 0
        children_s = pd.Series(np.bincount(codes, e, minlength=k), index=state_idx)
        state_auth = formulas.efig_state_authorizations(children_s, adj_s, effort_s, equity_s)
        state_auth = state_auth.where(has_lea, 0.0)
        minimums = None
        if self.state_minimum:
            rule = self.state_minimum_rules["efig"]
            minimums = formulas.state_minimums(
                rule, appropriation, children_s, float(children_s[has_lea].sum())
            ).where(has_lea, 0.0)
        # state totals: proportional to the state amounts, each at least its minimum
        state_res = solve_provisions(
            state_auth.to_numpy(),
            appropriation,
            None if minimums is None else minimums.to_numpy(),
            cents=self.cents,
        )
        totals = state_res.allocations
        # LEAs: within each state in proportion to weighted counts, above hold-harmless floors
        floors = self._floors(df, "efig", e, n, eligible)
        F = np.bincount(codes, floors, minlength=k)
        ratio = 1.0
        over = F > totals + 1e-9
        if over.any():
            if self.insufficient == "raise":
                raise InfeasibleError(
                    f"EFIG hold-harmless floors exceed the state amount in state(s) "
                    f"{list(state_idx[over][:5])}.",
                    targets=[str(s) for s in state_idx[over]],
                )
            r_s = np.where(over, totals / np.where(F > 0, F, 1.0), 1.0)
            ratio = float(r_s.min())
            floors = floors * r_s[codes]
            if self.cents:
                floors = to_cents(floors, "down") / 100.0
        res = solve_provisions(
            weights,
            float(totals.sum()),
            floors,
            states=np.asarray(labels)[codes],
            state_minimums=totals[codes],
            cents=self.cents,
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
