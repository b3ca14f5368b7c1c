"""Title I allocation: follow calibrated estimates through the formulas to dollars per LEA.

The statute's four grant formulas (basic, concentration, targeted, EFIG), exact eligibility
thresholds and targeted-grant weighting, and the hold-harmless and state-minimum provisions
solved exactly (:func:`apply_floors`), plus the tools to see how much money a calibration
choice moves (:func:`allocate_weights`, :func:`compare_allocations`). Constants and their
sources: :mod:`calibopt.allocation.statute` and ``docs/title1_sources.md``.

>>> from calibopt.allocation import apply_floors
>>> apply_floors([100, 200, 700], 500, [90, 150, 0])
array([ 90., 150., 260.])
"""

from .abowd import AbowdAllocator
from .allocators import Allocation
from .cents import to_cents
from .dollars import (
    AllocationComparison,
    allocate_weights,
    compare_allocations,
    compare_weightings,
    lea_estimates,
)
from .formulas import (
    adjusted_sppe,
    effort_factor,
    efig_state_authorizations,
    equity_factor,
    hold_harmless_rates,
    state_minimums,
)
from .inputs import validate_estimates
from .provisions import ProvisionsResult, apply_floors, ratable_reduction, solve_provisions
from .recursive import RecursiveResult, apply_floors_recursive
from .sonnenberg import SonnenbergAllocator
from .statute import GRANT_TYPES, STATE_MINIMUM_RULES, StateMinimumRule
from .synthetic import (
    household_children,
    synthetic_lea_inputs,
    synthetic_leas,
    synthetic_state_minimum_rules,
)
from .thresholds import (
    BASIC_RULE,
    CONCENTRATION_RULE,
    EFIG_RULE,
    TARGETED_RULE,
    HardThresholder,
    Rule,
    Threshold,
    UncertaintyThresholder,
    all_of,
    any_of,
)
from .weighting import (
    EFIG_COUNTY_TABLES,
    EFIG_LEA_TABLES,
    TARGETED_COUNTY,
    TARGETED_LEA,
    WeightingTable,
    efig_table,
    weighted_child_count,
    weighted_counts,
)

__all__ = [
    "BASIC_RULE",
    "CONCENTRATION_RULE",
    "EFIG_COUNTY_TABLES",
    "EFIG_LEA_TABLES",
    "EFIG_RULE",
    "GRANT_TYPES",
    "STATE_MINIMUM_RULES",
    "TARGETED_COUNTY",
    "TARGETED_LEA",
    "TARGETED_RULE",
    "AbowdAllocator",
    "Allocation",
    "AllocationComparison",
    "HardThresholder",
    "ProvisionsResult",
    "RecursiveResult",
    "Rule",
    "SonnenbergAllocator",
    "StateMinimumRule",
    "Threshold",
    "UncertaintyThresholder",
    "WeightingTable",
    "adjusted_sppe",
    "all_of",
    "allocate_weights",
    "any_of",
    "apply_floors",
    "apply_floors_recursive",
    "compare_allocations",
    "compare_weightings",
    "effort_factor",
    "efig_state_authorizations",
    "efig_table",
    "equity_factor",
    "hold_harmless_rates",
    "household_children",
    "lea_estimates",
    "ratable_reduction",
    "solve_provisions",
    "state_minimums",
    "synthetic_lea_inputs",
    "synthetic_leas",
    "synthetic_state_minimum_rules",
    "to_cents",
    "validate_estimates",
    "weighted_child_count",
    "weighted_counts",
]
