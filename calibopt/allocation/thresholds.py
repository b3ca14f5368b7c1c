"""Eligibility thresholds: exact hard thresholds and thresholds that account for uncertainty.

An eligibility rule is a tree of :class:`Threshold` leaves combined with :func:`all_of` and
:func:`any_of`. A threshold compares an LEA's formula children either with a count ("at least
10", "more than 6,500") or, as a share, with its 5-17 population ("more than 2 percent").
The statute's wording decides the comparison: "at least"/"10 or more" is ``>=``, "more than"/
"exceeds" is ``>`` (``strict=True``).

Share comparisons are exact: ``e / N > p`` is decided as ``e * q > p_num * N`` on the exact
rational ``p = p_num / q`` of the decimal string (``"0.02"`` is exactly 1/50), so 2 of 100
children is *not* "more than 2 percent" and 2.0001 of 100 is. When the float products are too
close to call (within a few units in the last place, which happens only for non-integer
estimates sitting on a threshold), the comparison is redone in exact rational arithmetic for
those entries.

Two thresholders share one interface, ``thresholder(grants, eligible, total, rule, cv=None)
-> (grants, eligible_mask)``:

* :class:`HardThresholder` applies the rule to the point estimates;
* :class:`UncertaintyThresholder` applies it to a confidence bound of the estimate (``cv`` is
  the coefficient of variation of the formula-child estimate), or scales each grant by the
  probability that the LEA is eligible under a normal model of the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import ndtr

from ..errors import InvalidProblemError
from ._checks import nonnegative_vector

__all__ = [
    "BASIC_RULE",
    "CONCENTRATION_RULE",
    "EFIG_RULE",
    "TARGETED_RULE",
    "HardThresholder",
    "Rule",
    "Threshold",
    "UncertaintyThresholder",
    "all_of",
    "any_of",
    "compare_share",
]


@dataclass(frozen=True)
class Threshold:
    """One eligibility threshold.

    Attributes
    ----------
    value
        A count (``10``) or, with ``share=True``, a share of the 5-17 population as a decimal
        string or number (``"0.02"``); strings keep the exact decimal value.
    share
        Compare ``eligible / total`` instead of ``eligible``.
    strict
        ``>`` ("more than", "exceeds") instead of ``>=`` ("at least", "or more").
    """

    value: str | float
    share: bool = False
    strict: bool = False

    @property
    def exact(self) -> Fraction:
        """The threshold as an exact rational (decimal strings are read exactly)."""
        return Fraction(str(self.value))

    def __str__(self) -> str:
        op = ">" if self.strict else ">="
        return f"{'share' if self.share else 'count'} {op} {self.value}"


@dataclass(frozen=True)
class Rule:
    """Thresholds combined with ``all`` (and) or ``any`` (or); items may be rules."""

    combine: Literal["all", "any"]
    items: tuple[Threshold | Rule, ...]

    def __str__(self) -> str:
        joiner = " and " if self.combine == "all" else " or "
        return "(" + joiner.join(str(i) for i in self.items) + ")"


def all_of(*items: Threshold | Rule) -> Rule:
    """A rule met when every item is met."""
    return Rule("all", tuple(items))


def any_of(*items: Threshold | Rule) -> Rule:
    """A rule met when at least one item is met."""
    return Rule("any", tuple(items))


BASIC_RULE = all_of(Threshold(10), Threshold("0.02", share=True, strict=True))
"""Basic grants: "10 or more" and "more than 2 percent" (20 U.S.C. 6333(b))."""
CONCENTRATION_RULE = all_of(
    BASIC_RULE, any_of(Threshold(6500, strict=True), Threshold("0.15", share=True, strict=True))
)
"""Concentration grants: basic-eligible and formula children "exceeds either 6,500 or 15
percent" (20 U.S.C. 6334(a)(1)(A))."""
TARGETED_RULE = all_of(Threshold(10), Threshold("0.05", share=True))
"""Targeted grants: "at least 10" and "at least 5 percent" (20 U.S.C. 6335(a)(1))."""
EFIG_RULE = TARGETED_RULE
"""EFIG: "at least 10" and "at least 5 percent" (20 U.S.C. 6337(c))."""


# ---------------------------------------------------------------------------------------
def compare_share(eligible: np.ndarray, total: np.ndarray, p: Fraction, strict: bool) -> np.ndarray:
    """Exact ``eligible / total > p`` (``>=`` unless ``strict``); False where ``total == 0``."""
    e = np.asarray(eligible, dtype=float)
    n = np.asarray(total, dtype=float)
    num, den = p.numerator, p.denominator
    lhs = e * den
    rhs = n * num
    diff = lhs - rhs
    # float products are exact for integers below 2**53; otherwise re-decide near-ties exactly
    tol = 8 * np.finfo(float).eps * np.maximum(np.abs(lhs), np.abs(rhs))
    out = diff > 0 if strict else diff >= 0
    unsure = np.flatnonzero(
        (np.abs(diff) <= tol)
        & ~((lhs < 2**53) & (rhs < 2**53) & (e == np.floor(e)) & (n == np.floor(n)))
    )
    for k in unsure:  # rare: only non-integer values within a few ulps of the threshold
        d = Fraction(float(e[k])) * den - Fraction(float(n[k])) * num
        out[k] = d > 0 if strict else d >= 0
    return out & (n > 0)


def _meets(item: Threshold | Rule, e: np.ndarray, n: np.ndarray) -> np.ndarray:
    if isinstance(item, Rule):
        parts = [_meets(i, e, n) for i in item.items]
        return (
            np.logical_and.reduce(parts) if item.combine == "all" else np.logical_or.reduce(parts)
        )
    if item.share:
        return compare_share(e, n, item.exact, item.strict)
    c = float(item.exact)
    return e > c if item.strict else e >= c


def _count_threshold(item: Threshold | Rule, n: np.ndarray) -> np.ndarray:
    """The rule as a threshold on the formula-child count: all -> max, any -> min."""
    if isinstance(item, Rule):
        parts = np.stack([_count_threshold(i, n) for i in item.items])
        return parts.max(axis=0) if item.combine == "all" else parts.min(axis=0)
    v = float(item.exact)
    return n * v if item.share else np.full(n.shape, v)


def _as_rule(rule: Threshold | Rule | Sequence[Threshold | Rule]) -> Rule:
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, Threshold):
        return all_of(rule)
    items = tuple(rule)
    if not items or not all(isinstance(i, Threshold | Rule) for i in items):
        raise InvalidProblemError(
            "`rule` must be a Threshold, a Rule (all_of/any_of) or a sequence of them."
        )
    return all_of(*items)


def _arrays(grants: Any, eligible: Any, total: Any) -> tuple[np.ndarray, ...]:
    out = tuple(
        nonnegative_vector(v, name)
        for name, v in (("grants", grants), ("eligible", eligible), ("total", total))
    )
    if not (out[0].shape == out[1].shape == out[2].shape):
        raise InvalidProblemError(
            f"`grants`, `eligible` and `total` must have one entry per LEA; got lengths "
            f"{out[0].size}, {out[1].size}, {out[2].size}."
        )
    return out


class _Thresholder:
    """``thresholder(grants, eligible, total, rule, cv=None) -> (grants, eligible mask)``."""

    def __call__(
        self,
        grants: Any,
        eligible: Any,
        total: Any,
        rule: Threshold | Rule | Sequence[Threshold | Rule],
        cv: Any = None,
    ) -> tuple[Any, Any]:
        """Apply ``rule``: return the grants (0 or scaled where not eligible) and the mask.

        Parameters
        ----------
        grants
            Authorization per LEA.
        eligible, total
            Formula children and children aged 5-17 per LEA.
        rule
            A :class:`Threshold`, a :class:`Rule` or a sequence of them (all must hold).
        cv
            Coefficient of variation of each formula-child estimate (uncertainty-aware
            thresholders only).

        Returns
        -------
        (grants, mask)
            Arrays, or Series with ``grants``' index when it is a Series.
        """
        g, e, n = _arrays(grants, eligible, total)
        out, mask = self._apply(g, e, n, _as_rule(rule), cv)
        if isinstance(grants, pd.Series):
            return (
                pd.Series(out, index=grants.index, name=grants.name),
                pd.Series(mask, index=grants.index, name="eligible"),
            )
        return out, mask

    def _apply(self, g, e, n, rule: Rule, cv: Any) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class HardThresholder(_Thresholder):
    """Apply the rule to the point estimates: ineligible LEAs get no grant (``cv`` unused)."""

    def _apply(self, g, e, n, rule: Rule, cv: Any) -> tuple[np.ndarray, np.ndarray]:
        mask = _meets(rule, e, n)
        return np.where(mask, g, 0.0), mask


class UncertaintyThresholder(_Thresholder):
    """Thresholds that account for the uncertainty of the formula-child estimate.

    The estimate of LEA ``i`` is modelled as normal with mean ``eligible_i`` and standard
    error ``cv_i * eligible_i`` (``cv`` is its coefficient of variation; the 5-17 total is
    taken as known).

    Parameters
    ----------
    z
        Width of the confidence bound in standard errors (1.645: one-sided 95%).
    mode
        ``"lenient"``: eligible when the *upper* bound ``e + z se`` meets the rule (benefit of
        the doubt); ``"strict"``: when the *lower* bound ``e - z se`` meets it; ``"expected"``:
        every LEA's grant is multiplied by the probability that the true count meets the rule,
        and the mask is that probability >= 0.5.
    """

    def __init__(
        self, z: float = 1.645, mode: Literal["lenient", "strict", "expected"] = "lenient"
    ) -> None:
        if not np.isfinite(z) or z < 0:
            raise InvalidProblemError(f"`z` must be a finite number >= 0, got {z}.")
        if mode not in ("lenient", "strict", "expected"):
            raise InvalidProblemError(
                f"`mode` must be 'lenient', 'strict' or 'expected', got {mode!r}."
            )
        self.z = float(z)
        self.mode = mode

    def _apply(self, g, e, n, rule: Rule, cv: Any) -> tuple[np.ndarray, np.ndarray]:
        if cv is None:
            raise InvalidProblemError(
                "UncertaintyThresholder needs `cv`, the coefficient of variation of each "
                "formula-child estimate (a `cv` column in the estimates)."
            )
        c = np.broadcast_to(np.asarray(cv, dtype=float).reshape(-1), e.shape)
        if not np.all(np.isfinite(c) & (c >= 0)):
            raise InvalidProblemError("`cv` must be finite and non-negative for every LEA.")
        se = c * e
        if self.mode == "expected":
            need = _count_threshold(rule, n)
            with np.errstate(divide="ignore", invalid="ignore"):
                prob = np.where(se > 0, ndtr((e - need) / se), (e >= need).astype(float))
            prob = np.where(n > 0, prob, 0.0)
            return g * prob, prob >= 0.5
        bound = e + self.z * se if self.mode == "lenient" else np.maximum(e - self.z * se, 0.0)
        mask = _meets(rule, bound, n)
        return np.where(mask, g, 0.0), mask
