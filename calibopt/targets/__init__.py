"""The targets database: strata, constraints, targets and uprating factors (SQLAlchemy).

The lowest of the data packages (it imports only :mod:`calibopt.errors` and the file
helpers): :mod:`calibopt.datasets` writes targets through it and :mod:`calibopt.matrix`
reads them. Modules by concern:

``constraints``  ``(variable, operation, value)`` triples: text form, geography, evaluation
``schema``       the tables, the ``target_overview`` query, the tolerance unit conversion
``filters``      :class:`TargetFilter`
``rows``         checking targets before they are written
``strata``       writing the stratum tree
``reading``      checking what a database holds
``uprating``     chained uprating factors
``csvio``        the targets CSV format
``engine``       opening SQLite paths and SQLAlchemy URLs
``database``     :class:`TargetsDatabase`, which ties them together

Tolerances are relative errors as fractions (0.01 = 1%) everywhere in calibopt; the users'
schema stores percentages, converted by the ``tolerance`` column's type only.

>>> import pandas as pd
>>> db = TargetsDatabase.create("sqlite://")
>>> db.add_targets(pd.DataFrame({"variable": ["snap"], "period": [2024], "value": [5e9],
...                              "constraints": ["state_fips == 37; snap > 0"]}))
1
>>> db.targets(TargetFilter(geo_levels=["state"]))[["geographic_id", "domain_variable"]]
  geographic_id domain_variable
0            37            snap
"""

from .constraints import (
    DISTRICT,
    GEO_LEVELS,
    OPERATIONS,
    STATE,
    Constraint,
    domain_label,
    domain_of,
    evaluate_constraint,
    format_constraints,
    geography_of,
    normalise_constraints,
    parse_constraints,
)
from .database import TargetsDatabase
from .filters import TargetFilter
from .schema import overview_select

__all__ = [
    "DISTRICT",
    "GEO_LEVELS",
    "OPERATIONS",
    "STATE",
    "Constraint",
    "TargetFilter",
    "TargetsDatabase",
    "domain_label",
    "domain_of",
    "evaluate_constraint",
    "format_constraints",
    "geography_of",
    "normalise_constraints",
    "overview_select",
    "parse_constraints",
]
