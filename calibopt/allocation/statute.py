"""Statutory constants of the Title I, Part A formulas, each with its source and year.

Sources (all read in the text of Title 20 of the U.S. Code as amended through the Every
Student Succeeds Act, P.L. 114-95 of 2015; see ``docs/title1_sources.md`` for the full list):

* 20 U.S.C. 6332(c)  (ESEA sec. 1122(c))  hold-harmless percentages 95 / 90 / 85;
  34 CFR 200.73(a)(4) applies them to all four grant types, using unweighted formula children.
* 20 U.S.C. 6332(d)  (ESEA sec. 1122(d))  ratable reduction of hold-harmless amounts.
* 20 U.S.C. 6333(a)(1)(B), (b), (d)  (sec. 1124)  basic grants: 40% of state per-pupil
  expenditure bounded to [32%, 48%] of the U.S. average; "10 or more" and "more than 2
  percent" formula children; the state minimum.
* 20 U.S.C. 6334(a)(1)  (sec. 1124A)  concentration grants: basic-eligible and formula children
  "exceeds either 6,500 or 15 percent"; the state minimum with its $340,000 term.
* 20 U.S.C. 6335(a), (c)(2), (e)  (sec. 1125)  targeted grants: "at least 10" and "at least 5
  percent"; the weighting bands for LEA data (and for county data, (c)(1)); the Puerto Rico
  cap of 1.82; the state minimum of 0.35 percent.
* 20 U.S.C. 6337(b)-(d)  (sec. 1125A)  Education Finance Incentive Grants (EFIG): 34% / 46%
  expenditure bounds, effort factor in [0.95, 1.05], 1.30 minus the equity factor, the equity
  factor as a weighted coefficient of variation (formula children weighted 1.4, LEAs with
  more than 200 pupils), state minimum 0.35 percent, and the three within-state weighting
  schedules chosen by the state's equity factor (< .10, [.10, .20), >= .20).

Every fraction is kept as a decimal *string* so that the exact rational value
(``Fraction("0.1558") == 779/5000``) is used for band edges and thresholds, never a binary
float approximation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

__all__ = [
    "ADJUSTED_SPPE_BOUNDS",
    "BASIC_FY2001_AMOUNT",
    "CONCENTRATION_FY2001_AMOUNT",
    "CONGRESS_CAP",
    "EFIG_EFFORT_BOUNDS",
    "EFIG_EQUITY_BANDS",
    "EFIG_EQUITY_CONSTANT",
    "EFIG_MIN_ENROLLMENT",
    "EFIG_POVERTY_PUPIL_WEIGHT",
    "EFIG_SPPE_BOUNDS",
    "GRANT_TYPES",
    "HOLD_HARMLESS_BANDS",
    "PUERTO_RICO_FIPS",
    "PUERTO_RICO_MIN_RATIO",
    "PUERTO_RICO_TARGETED_CAP",
    "STATE_MINIMUM_RULES",
    "US_FORMULA_CHILDREN",
    "StateMinimumRule",
]

GRANT_TYPES: tuple[str, ...] = ("basic", "concentration", "targeted", "efig")
"""The four Title I, Part A grant formulas, in the order the Department computes them."""

CONGRESS_CAP = "0.40"
"""Share of the state per-pupil expenditure paid per formula child (20 U.S.C. 6333(a)(1)(B))."""

ADJUSTED_SPPE_BOUNDS = ("0.32", "0.48")
"""Bounds on the basic/concentration/targeted expenditure factor as shares of the U.S. average
per-pupil expenditure (20 U.S.C. 6333(a)(1)(B): "not less than 32 percent, or more than 48
percent")."""

EFIG_SPPE_BOUNDS = ("0.34", "0.46")
"""EFIG expenditure-factor bounds (20 U.S.C. 6337(b)(1)(A)(i): "not be less that 34 percent or
more than 46 percent of the average per pupil expenditure in the United States")."""

PUERTO_RICO_FIPS = 72
"""State FIPS code of the Commonwealth of Puerto Rico (special expenditure rule 6333(a)(4))."""

PUERTO_RICO_MIN_RATIO = "1.0"
"""Minimum ratio of Puerto Rico's per-pupil expenditure to the lowest state's, for fiscal year
2007 and later (20 U.S.C. 6333(a)(4)(B)(vi): 100.0 percent)."""

PUERTO_RICO_TARGETED_CAP = "1.82"
"""Puerto Rico's weighted child count may not exceed its formula children x 1.82
(20 U.S.C. 6335(c)(2)(D); the same cap applies to county data, (c)(1)(D))."""

HOLD_HARMLESS_BANDS = (("0.15", "0.85"), ("0.30", "0.90"), (None, "0.95"))
"""Hold-harmless rate by the LEA's formula-child rate (20 U.S.C. 6332(c)(1); 34 CFR
200.73(a)(4)): below 15% -> 85%; 15% or more but less than 30% -> 90%; 30% or more -> 95%.
Each pair is (upper edge, exclusive; rate)."""

EFIG_EFFORT_BOUNDS = ("0.95", "1.05")
"""EFIG effort factor bounds (20 U.S.C. 6337(b)(2)(A))."""

EFIG_EQUITY_CONSTANT = "1.30"
"""EFIG state amounts are multiplied by (1.30 - equity factor) (20 U.S.C. 6337(b)(1)(A)(iii))."""

EFIG_POVERTY_PUPIL_WEIGHT = "1.4"
"""In the equity factor, formula children count 1.4 pupils (20 U.S.C. 6337(b)(3)(A)(ii)(III))."""

EFIG_MIN_ENROLLMENT = 200
"""Only LEAs with an enrollment of *more than* 200 enter the equity factor
(20 U.S.C. 6337(b)(3)(A)(ii)(IV))."""

EFIG_EQUITY_BANDS = ("0.10", "0.20")
"""Edges of the three EFIG within-state weighting schedules (20 U.S.C. 6337(d)(1)-(3)): equity
factor < .10, >= .10 and < .20, >= .20."""

# Amounts "allocated to States" under sections 1124 and 1124A for fiscal year 2001, from the
# Department of Education's program directive FM-34 of April 27, 2001 (allocations of school
# year 2001-2002 funds, P.L. 106-554). NOT verified against the final FY 2001 allocation
# tables: the directive notes they assume a later technical amendment. Pass your own values
# through StateMinimumRule(base_amount=...) when you have the official figures.
BASIC_FY2001_AMOUNT = 6_937_670_790.0
US_FORMULA_CHILDREN = 11_000_000
"""Order of magnitude of the national formula-child count (about 11 million around FY 2021,
from Title I allocation tables); used only to scale dollar constants to synthetic countries."""
CONCENTRATION_FY2001_AMOUNT = 1_350_360_000.0


@dataclass(frozen=True)
class StateMinimumRule:
    """Parameters of one grant type's small-state minimum.

    The minimum aggregate amount for the LEAs of a state is the lesser of

    1. ``share`` of the amount available (for basic and concentration grants:
       ``base_share`` x ``base_amount`` + ``share`` x the amount in excess of ``base_amount``);
    2. the average of (1) and the larger of ``floor_amount`` and
       ``per_child_multiplier`` x the national average payment per formula child x the
       state's formula children.

    Attributes
    ----------
    share
        Share of the appropriation (of the part above ``base_amount`` when that is set).
    base_share, base_amount
        For basic and concentration grants: 0.25% of the fiscal year 2001 amount plus 0.35% of
        the excess (20 U.S.C. 6333(d)(1), 6334(a)(1)(B)(i)). ``base_amount=None`` means the
        plain ``share`` x appropriation rule of targeted grants and EFIG.
    per_child_multiplier
        150 percent of the national average per-pupil payment (all four formulas).
    floor_amount
        $340,000 for concentration grants (6334(a)(1)(B)(ii)(II)(aa)), else 0.
    eligible_children_only
        Count only formula children in LEAs eligible for this grant (concentration grants:
        "the number of children in such State counted for purposes of this section"); the
        other formulas count all the state's formula children.
    source
        Where the rule comes from.
    """

    share: str
    base_share: str | None = None
    base_amount: float | None = None
    per_child_multiplier: str = "1.5"
    floor_amount: float = 0.0
    eligible_children_only: bool = False
    source: str = ""

    def scaled(self, factor: float) -> StateMinimumRule:
        """The rule for a country ``factor`` times the size of the U.S. (dollar terms scaled).

        The fiscal year 2001 base amount and the $340,000 floor are absolute dollars; a
        synthetic or partial country needs them scaled to stay comparable.
        """
        return replace(
            self,
            base_amount=None if self.base_amount is None else self.base_amount * factor,
            floor_amount=self.floor_amount * factor,
        )

    def first_term(self, appropriation: float) -> float:
        """Term (1) of the rule for an appropriation (dollars)."""
        if self.base_amount is None or self.base_share is None:
            return float(Fraction(self.share)) * appropriation
        excess = max(appropriation - self.base_amount, 0.0)
        return (
            float(Fraction(self.base_share)) * self.base_amount
            + float(Fraction(self.share)) * excess
        )


STATE_MINIMUM_RULES: dict[str, StateMinimumRule] = {
    "basic": StateMinimumRule(
        share="0.0035",
        base_share="0.0025",
        base_amount=BASIC_FY2001_AMOUNT,
        source="20 U.S.C. 6333(d) (ESEA 1124(d), as amended by P.L. 107-110, 2002); FY2001 "
        "amount from ED program directive FM-34 (2001)",
    ),
    "concentration": StateMinimumRule(
        share="0.0035",
        base_share="0.0025",
        base_amount=CONCENTRATION_FY2001_AMOUNT,
        floor_amount=340_000.0,
        eligible_children_only=True,
        source="20 U.S.C. 6334(a)(1)(B) (ESEA 1124A(a)(1)(B)); FY2001 amount from ED program "
        "directive FM-34 (2001)",
    ),
    "targeted": StateMinimumRule(
        share="0.0035",
        source="20 U.S.C. 6335(e) (ESEA 1125(e), P.L. 114-95, 2015)",
    ),
    "efig": StateMinimumRule(
        share="0.0035",
        source="20 U.S.C. 6337(b)(1)(B) (ESEA 1125A(b)(1)(B), P.L. 114-95, 2015)",
    ),
}
"""Default state-minimum parameters per grant type (statute as amended through 2015)."""
