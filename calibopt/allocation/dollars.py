"""From calibrated weights to Title I dollars, and how much money a weighting choice moves.

* :func:`lea_estimates`: weighted counts of formula children and of children aged 5-17 per
  (state, district) from unit data and weights (one ``bincount`` per count, no loop over
  units or LEAs);
* :func:`allocate_weights`: those estimates joined to the LEA inputs (SPPE, last year's
  amounts, ...) and run through an allocator;
* :func:`compare_allocations` / :func:`compare_weightings`: dollars moved between two
  allocations, LEAs losing more than a given share, per-LEA changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from . import inputs
from .allocators import Allocation
from .sonnenberg import SonnenbergAllocator

__all__ = [
    "AllocationComparison",
    "allocate_weights",
    "compare_allocations",
    "compare_weightings",
    "lea_estimates",
]


def _unit_weights(units: pd.DataFrame, weights: Any, key: str | None) -> np.ndarray:
    if key is not None:
        if key not in units.columns:
            raise InvalidProblemError(f"`key` column {key!r} is not in `units`.")
        if not isinstance(weights, pd.Series):
            raise InvalidProblemError(
                "with `key`, `weights` must be a Series indexed by the key's values (e.g. "
                "household weights indexed by household id)."
            )
        if weights.index.has_duplicates:
            raise InvalidProblemError("`weights` has duplicated index labels.")
        w = weights.reindex(units[key]).to_numpy(dtype=float)
        missing = np.isnan(w) & ~units[key].isin(weights.index).to_numpy()
        if missing.any():
            first = units[key].to_numpy()[np.flatnonzero(missing)[0]]
            raise InvalidProblemError(
                f"`weights` has no weight for {int(missing.sum())} unit(s) of `units`, e.g. "
                f"{key}={first!r}."
            )
    else:
        if isinstance(weights, pd.Series) and not weights.index.equals(units.index):
            weights = weights.reindex(units.index)
        w = np.asarray(weights, dtype=float).reshape(-1)
        if w.size != len(units):
            raise InvalidProblemError(
                f"`weights` has {w.size} entries but `units` has {len(units)} rows; pass "
                f"`key=` to map unit weights (e.g. household weights) onto rows."
            )
    bad = ~np.isfinite(w)
    if bad.any():
        raise InvalidProblemError(f"`weights` has {int(bad.sum())} missing or infinite value(s).")
    return w


def lea_estimates(
    units: pd.DataFrame,
    weights: Any,
    *,
    state: str = "state",
    district: str = "district",
    children: str = "children_5_17",
    formula_children: str = "formula_children",
    key: str | None = None,
    prefix: str = "est",
) -> pd.DataFrame:
    """Weighted formula children and 5-17 children per LEA.

    Parameters
    ----------
    units
        Unit records (persons, or households with counts), one row each.
    weights
        Calibrated weights: one per row of ``units``, or with ``key`` a Series indexed by the
        values of ``units[key]`` (household weights for person rows).
    state, district
        Columns naming each unit's state and LEA.
    children, formula_children
        Columns with each unit's number (or 0/1 indicator) of children aged 5-17 and of
        formula children (5-17 in poverty).
    key
        Column of ``units`` that maps rows onto the index of ``weights``.
    prefix
        Estimate kind of the output columns.

    Returns
    -------
    DataFrame
        Indexed by (state, district) with ``{prefix}_children_eligible`` and
        ``{prefix}_children_total``.
    """
    if not isinstance(units, pd.DataFrame):
        raise InvalidProblemError(f"`units` must be a DataFrame, got {type(units).__name__}.")
    missing = [c for c in (state, district, children, formula_children) if c not in units.columns]
    if missing:
        raise InvalidProblemError(
            f"`units` lacks column(s) {missing}; name them with state=, district=, children=, "
            f"formula_children=."
        )
    w = _unit_weights(units, weights, key)
    counts = {}
    for col in (children, formula_children):
        v = units[col]
        if not (pd.api.types.is_numeric_dtype(v) or pd.api.types.is_bool_dtype(v)):
            raise InvalidProblemError(f"column {col!r} must be numeric or boolean.")
        arr = v.to_numpy(dtype=float)
        if not np.all(np.isfinite(arr)) or (arr < 0).any():
            raise InvalidProblemError(f"column {col!r} must be finite and non-negative.")
        counts[col] = arr
    if np.any(counts[formula_children] > counts[children]):
        raise InvalidProblemError(
            f"some unit has more {formula_children!r} than {children!r}; formula children are "
            f"children aged 5-17."
        )
    if units[[state, district]].isna().any().any():
        raise InvalidProblemError(f"`units` has missing {state!r} or {district!r} values.")
    keys = pd.MultiIndex.from_arrays(
        [units[state], units[district]], names=list(inputs.INDEX_NAMES)
    )
    codes, leas = pd.factorize(keys, sort=True)
    k = len(leas)
    out = pd.DataFrame(
        {
            inputs.eligible_column(prefix): np.bincount(codes, w * counts[formula_children], k),
            inputs.total_column(prefix): np.bincount(codes, w * counts[children], k),
        },
        index=pd.MultiIndex.from_tuples(list(leas), names=list(inputs.INDEX_NAMES)),
    )
    return out


def allocate_weights(
    units: pd.DataFrame,
    weights: Any,
    lea_data: pd.DataFrame,
    allocator: Any = None,
    *,
    prefix: str = "est",
    appropriations: Mapping[str, float] | None = None,
    **columns: Any,
) -> Allocation:
    """Run calibrated weights through a Title I allocator.

    Parameters
    ----------
    units, weights
        As in :func:`lea_estimates` (``**columns`` passes ``state=``, ``district=``,
        ``children=``, ``formula_children=`` and ``key=``).
    lea_data
        LEA inputs indexed by (state, district): ``sppe`` and whatever the allocator needs
        (``prior_{grant}``, ``official_{grant}``, ``per_capita_income``, ...). Every LEA of
        ``units`` must be in it; LEAs without units get zero children.
    allocator
        Default :class:`SonnenbergAllocator` ``()``.
    appropriations
        Passed to the allocator (per grant type).
    """
    est = lea_estimates(units, weights, prefix=prefix, **columns)
    lea = inputs.lea_indexed(lea_data, "lea_data")
    extra = est.index.difference(lea.index)
    if len(extra):
        raise InvalidProblemError(
            f"{len(extra)} LEA(s) of `units` are not in `lea_data`, e.g. {extra[0]!r}."
        )
    frame = lea.drop(columns=[c for c in est.columns if c in lea.columns]).join(est)
    frame[est.columns] = frame[est.columns].fillna(0.0)
    allocator = SonnenbergAllocator() if allocator is None else allocator
    if isinstance(allocator, SonnenbergAllocator):
        return allocator.allocate(frame, prefixes=(prefix,), appropriations=appropriations)
    if appropriations is not None:
        return allocator.allocate(
            frame, prefixes=(prefix,), appropriation=sum(appropriations.values())
        )
    return allocator.allocate(frame, prefixes=(prefix,))


@dataclass
class AllocationComparison:
    """Differences between two allocations of the same money.

    Attributes
    ----------
    table : DataFrame
        Per LEA: ``a``, ``b``, ``change`` (b - a), ``pct_change`` (change / a; NaN where a
        is 0) and ``loses`` (lost more than ``threshold`` of ``a``).
    dollars_moved : float
        Half the sum of absolute changes: what moved between LEAs (equal to the total
        gained and to the total lost when both allocations have the same total).
    total_a, total_b : float
    threshold : float
    """

    table: pd.DataFrame
    dollars_moved: float
    total_a: float
    total_b: float
    threshold: float

    @property
    def leas_losing(self) -> int:
        """Number of LEAs losing more than ``threshold`` of their amount under ``a``."""
        return int(self.table["loses"].sum())

    @property
    def share_moved(self) -> float:
        """``dollars_moved`` as a share of the total under ``a``."""
        return self.dollars_moved / self.total_a if self.total_a > 0 else float("nan")

    def summary(self) -> dict[str, float]:
        """The headline numbers."""
        pct = self.table["pct_change"]
        return {
            "total_a": self.total_a,
            "total_b": self.total_b,
            "dollars_moved": self.dollars_moved,
            "share_moved": self.share_moved,
            "leas_losing": self.leas_losing,
            "max_loss_pct": float(-pct.min()) if pct.notna().any() else float("nan"),
            "max_gain_pct": float(pct.max()) if pct.notna().any() else float("nan"),
        }


def _dollars(x: Any, grant: str) -> pd.Series:
    if isinstance(x, Allocation):
        if len(x.prefixes) != 1:
            raise InvalidProblemError(
                f"the Allocation has estimate kinds {x.prefixes}; pass allocation.grants(prefix)."
            )
        return x.grants(x.prefixes[0], grant)
    if isinstance(x, pd.Series):
        return x.astype(float)
    raise InvalidProblemError(
        f"compare Allocations or Series of dollars per LEA, got {type(x).__name__}."
    )


def compare_allocations(
    a: Allocation | pd.Series,
    b: Allocation | pd.Series,
    *,
    threshold: float = 0.05,
    grant: str = "total",
) -> AllocationComparison:
    """Compare two allocations LEA by LEA.

    Parameters
    ----------
    a, b
        Allocations (one estimate kind each) or Series of dollars indexed by LEA; LEAs in
        only one get 0 in the other.
    threshold
        Share of its amount under ``a`` an LEA must lose to count as losing (0.05 = 5%).
    grant
        Grant type compared when given Allocations (default the total).
    """
    if not np.isfinite(threshold) or threshold < 0:
        raise InvalidProblemError(f"`threshold` must be >= 0, got {threshold}.")
    sa, sb = _dollars(a, grant), _dollars(b, grant)
    both = pd.concat([sa.rename("a"), sb.rename("b")], axis=1).fillna(0.0)
    both["change"] = both["b"] - both["a"]
    with np.errstate(divide="ignore", invalid="ignore"):
        both["pct_change"] = np.where(both["a"] > 0, both["change"] / both["a"], np.nan)
    both["loses"] = both["change"] < -threshold * both["a"]
    both["loses"] &= both["a"] > 0
    return AllocationComparison(
        table=both,
        dollars_moved=float(0.5 * np.abs(both["change"]).sum()),
        total_a=float(both["a"].sum()),
        total_b=float(both["b"].sum()),
        threshold=float(threshold),
    )


def compare_weightings(
    units: pd.DataFrame,
    weights_a: Any,
    weights_b: Any,
    lea_data: pd.DataFrame,
    allocator: Any = None,
    *,
    threshold: float = 0.05,
    grant: str = "total",
    appropriations: Mapping[str, float] | None = None,
    **columns: Any,
) -> AllocationComparison:
    """Allocate the same money with two sets of weights and compare the results."""
    runs = [
        allocate_weights(units, w, lea_data, allocator, appropriations=appropriations, **columns)
        for w in (weights_a, weights_b)
    ]
    return compare_allocations(runs[0], runs[1], threshold=threshold, grant=grant)
