"""The embedded synthetic country: seeded microdata, state rules, true weights and targets.

:func:`synthetic_country` builds, in a few vectorised NumPy passes,

* a geography shaped like the US (:mod:`calibopt.datasets.geography`);
* a national household sample: households with persons (head, spouse, dependants, other
  adults) in tax units, ages, employment and retirement income, design weights;
* state rules (:func:`synthetic_rules`): a SNAP-like benefit (income tests against a poverty
  line, deductions, a maximum allotment by household size, a seeded take-up draw per household
  and state) and a flat state income tax, so a household placed in another state gets other
  values;
* "true" per-district weights: integer weights for every (district, household) pair, mostly on
  the district's own state's households, tilted by income and home district, plus a few
  out-of-state donors;
* the targets these weights imply at national, state and district level, computed here with
  dense NumPy code independent of the matrix builder. Every variable is in whole dollars and
  every true weight is an integer, so ``X @ true_weights`` reproduces each noiseless target
  exactly (all partial sums are integers below 2**53).

Modules: ``benefits`` (the state rules), ``population`` (households, persons, tax units,
design and true weights), ``targets`` (target kinds and true values), ``country`` (the
generator).
"""

from .benefits import STATE_PARAMETERS, snap_benefit, state_income_tax, synthetic_rules
from .country import SIZES, SyntheticCountry, synthetic_country

__all__ = [
    "SIZES",
    "STATE_PARAMETERS",
    "SyntheticCountry",
    "snap_benefit",
    "state_income_tax",
    "synthetic_country",
    "synthetic_rules",
]
