"""Weighted child counts of targeted grants and EFIG, exact at every band edge.

A weighted child count is the larger of two banded sums over an LEA's formula children
(20 U.S.C. 6335(c), 6337(d)):

* **by number**: the first 691 children weigh 1.0, children 692 to 2,262 weigh 1.5, ...;
* **by percentage**: the children that make up the first 15.58% of the LEA's 5-17 population
  weigh 1.0, those between 15.58% and 22.11% weigh 1.75, ...

Both sums are continuous, piecewise-linear functions of the number of formula children: a band
edge is a point where the slope changes, never a jump. Two known defects of a widely used
implementation are avoided: an off-by-one at the number-band edges (692 children were counted
in the 1.0 band, so (40000, 1000000) gave 96,844 instead of 96,841) and binary-float percentage
edges (0.1558 * 100000 = 15579.999999999998, so (40000, 100000) gave 80,430 instead of
80,432.5).

**Exactness.** When the counts are whole numbers (official Census counts), every band is
evaluated in 64-bit integer arithmetic on the exact rationals of the statute (percentages as
``Fraction("0.1558")``, weights such as 1.75 as quarters), and the result is the correctly
rounded float of the exact rational value. Non-integer counts (model-based or calibrated
estimates) are evaluated in float64 with the same continuous formula; as the function has no
jumps, the error is a few units in the last place, never a band misassignment.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from math import lcm
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidProblemError
from . import statute
from ._checks import nonnegative_vector

__all__ = [
    "EFIG_COUNTY_TABLES",
    "EFIG_LEA_TABLES",
    "TARGETED_COUNTY",
    "TARGETED_LEA",
    "WeightingTable",
    "efig_table",
    "weighted_child_count",
    "weighted_counts",
]

_INT_LIMIT = 2**62


@dataclass(frozen=True)
class WeightingTable:
    """The two banded schedules of one weighted child count.

    Attributes
    ----------
    name
        Short label.
    number_edges
        Inclusive upper edges of the count bands (the last band is open): ``(691, 2262, ...)``
        means children 1-691, 692-2,262, ...
    number_weights
        One weight per count band (one more than ``number_edges``), as decimal strings.
    percent_edges
        Upper edges of the percentage bands as decimal strings of shares (``"0.1558"``).
    percent_weights
        One weight per percentage band.
    source
        Statute paragraph.
    """

    name: str
    number_edges: tuple[int, ...]
    number_weights: tuple[str, ...]
    percent_edges: tuple[str, ...]
    percent_weights: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.number_weights) != len(self.number_edges) + 1:
            raise InvalidProblemError(
                f"WeightingTable {self.name!r}: {len(self.number_edges)} number edges need "
                f"{len(self.number_edges) + 1} weights, got {len(self.number_weights)}."
            )
        if len(self.percent_weights) != len(self.percent_edges) + 1:
            raise InvalidProblemError(
                f"WeightingTable {self.name!r}: {len(self.percent_edges)} percentage edges need "
                f"{len(self.percent_edges) + 1} weights, got {len(self.percent_weights)}."
            )
        for edges, kind in ((self.number_edges, "number"), (self.percent_edges, "percent")):
            vals = [Fraction(e) for e in edges]
            if any(b <= a for a, b in pairwise(vals)) or (vals and vals[0] <= 0):
                raise InvalidProblemError(
                    f"WeightingTable {self.name!r}: {kind} edges must be positive and "
                    f"increasing, got {edges}."
                )

    # exact rational forms -------------------------------------------------------------
    @property
    def weight_denominator(self) -> int:
        """Least common denominator of all weights (4 for 1.75, 8 for 3.375)."""
        ws = (*self.number_weights, *self.percent_weights)
        return lcm(*(Fraction(w).denominator for w in ws))

    @property
    def percent_denominator(self) -> int:
        """Least common denominator of the percentage edges (5000 for 0.1558)."""
        return (
            lcm(*(Fraction(p).denominator for p in self.percent_edges)) if self.percent_edges else 1
        )


def _table(name: str, n_w: tuple[str, ...], p_w: tuple[str, ...], county: bool, src: str):
    if county:
        # 20 U.S.C. 6335(c)(1)(C): "between 23,918 and 93,810, inclusive" then "in excess of
        # 93,811" -- child number 93,811 falls in no band (a drafting gap); we start the top
        # band after 93,810 so the schedule stays continuous.
        n_edges = (2311, 7913, 23917, 93810)
        p_edges = ("0.15", "0.19", "0.242", "0.292")
    else:
        n_edges = (691, 2262, 7851, 35514)
        p_edges = ("0.1558", "0.2211", "0.3016", "0.3824")
    return WeightingTable(name, n_edges, n_w, p_edges, p_w, src)


TARGETED_LEA = _table(
    "targeted (LEA data)",
    ("1.0", "1.5", "2.0", "2.5", "3.0"),
    ("1.0", "1.75", "2.5", "3.25", "4.0"),
    False,
    "20 U.S.C. 6335(c)(2) (ESEA 1125(c)(2))",
)
"""Targeted grants, LEA data: by number 1-691 x1.0, 692-2,262 x1.5, 2,263-7,851 x2.0,
7,852-35,514 x2.5, above x3.0; by percentage up to 15.58% x1.0, to 22.11% x1.75, to 30.16%
x2.5, to 38.24% x3.25, above x4.0."""

TARGETED_COUNTY = _table(
    "targeted (county data)",
    ("1.0", "1.5", "2.0", "2.5", "3.0"),
    ("1.0", "1.75", "2.5", "3.25", "4.0"),
    True,
    "20 U.S.C. 6335(c)(1) (ESEA 1125(c)(1))",
)

_EFIG_WEIGHTS = (
    (("1.0", "1.5", "2.0", "2.5", "3.0"), ("1.0", "1.75", "2.5", "3.25", "4.0")),
    (("1.0", "1.5", "2.25", "3.375", "4.5"), ("1.0", "1.5", "3.0", "4.5", "6.0")),
    (("1.0", "2.0", "3.0", "4.5", "6.0"), ("1.0", "2.0", "4.0", "6.0", "8.0")),
)
_EFIG_LABELS = ("equity factor < .10", ".10 <= equity factor < .20", "equity factor >= .20")

EFIG_LEA_TABLES: tuple[WeightingTable, ...] = tuple(
    _table(f"EFIG (LEA data, {lab})", nw, pw, False, f"20 U.S.C. 6337(d)({k + 1})(B)")
    for k, ((nw, pw), lab) in enumerate(zip(_EFIG_WEIGHTS, _EFIG_LABELS))
)
"""EFIG within-state schedules for LEA data, by the state's equity-factor band."""

EFIG_COUNTY_TABLES: tuple[WeightingTable, ...] = tuple(
    _table(f"EFIG (county data, {lab})", nw, pw, True, f"20 U.S.C. 6337(d)({k + 1})(A)")
    for k, ((nw, pw), lab) in enumerate(zip(_EFIG_WEIGHTS, _EFIG_LABELS))
)


def efig_table(equity_factor: float, county: bool = False) -> WeightingTable:
    """The EFIG schedule for a state's equity factor (< .10, [.10, .20), >= .20)."""
    lo, hi = (Fraction(x) for x in statute.EFIG_EQUITY_BANDS)
    eq = Fraction(float(equity_factor))
    k = 0 if eq < lo else (1 if eq < hi else 2)
    return (EFIG_COUNTY_TABLES if county else EFIG_LEA_TABLES)[k]


# ---------------------------------------------------------------------------------------
def _banded(x: np.ndarray, edges: list[np.ndarray], weights: list) -> np.ndarray:
    """sum_k w_k (min(x, e_k) - min(x, e_{k-1})) with e_0 = 0 and the last band open."""
    out = np.zeros_like(x)
    prev = np.zeros_like(x)
    for w, e in zip(weights, [*edges, None]):
        cur = x if e is None else np.minimum(x, e)
        out = out + w * (cur - prev)
        prev = cur
    return out


def _weighted_exact(e: np.ndarray, n: np.ndarray, table: WeightingTable, cap: Fraction | None):
    """Exact integer evaluation -> (by number, by percentage, weighted count) as float64.

    Each value is the correctly rounded float of the exact rational count.
    """
    d = table.weight_denominator
    q = table.percent_denominator
    wn = [int(Fraction(w) * d) for w in table.number_weights]
    wp = [int(Fraction(w) * d) for w in table.percent_weights]
    pk = [int(Fraction(p) * q) for p in table.percent_edges]
    big = max(float(e.max(initial=0)), float(n.max(initial=0))) * q * max(wn + wp) * 4
    dtype: Any = np.int64 if big < _INT_LIMIT else object
    ei = e.astype(np.int64).astype(dtype)
    ni = n.astype(np.int64).astype(dtype)
    # by number, in units of 1/(q d) child
    by_number = _banded(ei, [np.full_like(ei, u) for u in table.number_edges], wn) * q
    # by percentage, in units of 1/(q d) child: children e q against edges (p_k q) N
    by_percent = _banded(ei * q, [ni * p for p in pk], wp)
    best = np.maximum(by_number, by_percent)
    scale = q * d
    out = np.asarray(best, dtype=float) / scale
    if cap is not None:
        # cap binding iff best / (q d) > e num / den, decided in integers
        binding = np.asarray(best * cap.denominator > ei * (scale * cap.numerator), dtype=bool)
        out[binding] = np.asarray(ei[binding] * cap.numerator, dtype=float) / cap.denominator
    return (
        np.asarray(by_number, dtype=float) / scale,
        np.asarray(by_percent, dtype=float) / scale,
        out,
    )


def _weighted_float(e: np.ndarray, n: np.ndarray, table: WeightingTable, cap: Fraction | None):
    """Float evaluation of the same continuous schedule (for non-integer estimates)."""
    wn = [float(Fraction(w)) for w in table.number_weights]
    wp = [float(Fraction(w)) for w in table.percent_weights]
    by_number = _banded(e, [np.full_like(e, float(u)) for u in table.number_edges], wn)
    q = table.percent_denominator
    # edges p N computed as (integer numerator x N) / q: one rounding each
    edges = [n * float(Fraction(p) * q) / q for p in table.percent_edges]
    by_percent = _banded(e, edges, wp)
    out = np.maximum(by_number, by_percent)
    if cap is not None:
        out = np.minimum(out, e * float(cap))
    return by_number, by_percent, out


def weighted_counts(
    eligible: Any,
    total: Any,
    table: WeightingTable = TARGETED_LEA,
    *,
    cap: str | float | None = None,
) -> pd.DataFrame:
    """Both banded counts and the weighted child count, one row per LEA.

    Returns
    -------
    DataFrame
        Columns ``by_number``, ``by_percentage`` and ``weighted`` (the larger, capped by
        ``cap`` x eligible when given); indexed like ``eligible`` when it is a Series.
    """
    e = nonnegative_vector(eligible, "eligible")
    n = nonnegative_vector(total, "total")
    if e.shape != n.shape:
        raise InvalidProblemError(
            f"`eligible` and `total` must have the same length, got {e.size} and {n.size}."
        )
    capf = None if cap is None else Fraction(str(cap))
    integral = bool(np.all(e == np.floor(e)) and np.all(n == np.floor(n)))
    parts = (_weighted_exact if integral else _weighted_float)(e, n, table, capf)
    index = eligible.index if isinstance(eligible, pd.Series) else None
    return pd.DataFrame(dict(zip(("by_number", "by_percentage", "weighted"), parts)), index=index)


def weighted_child_count(
    eligible: Any,
    total: Any,
    table: WeightingTable = TARGETED_LEA,
    *,
    cap: str | float | None = None,
) -> np.ndarray | pd.Series:
    """Weighted child count: the larger of the banded counts by number and by percentage.

    Parameters
    ----------
    eligible
        Formula children per LEA (array-like or Series), non-negative.
    total
        Children aged 5-17 per LEA, same length.
    table
        The schedule: :data:`TARGETED_LEA` (default), :data:`TARGETED_COUNTY`, or an EFIG
        table from :func:`efig_table`.
    cap
        Optional cap as a multiple of the unweighted count (Puerto Rico: ``"1.82"``).

    Returns
    -------
    ndarray or Series
        Weighted counts (a Series with ``eligible``'s index when it is a Series).

    Examples
    --------
    >>> weighted_child_count([1000, 691, 40000], [5000, 100000, 1000000])
    array([ 1165.75,   691.  , 96841.  ])
    """
    parts = weighted_counts(eligible, total, table, cap=cap)["weighted"]
    return parts if isinstance(eligible, pd.Series) else parts.to_numpy()
