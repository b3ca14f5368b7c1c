"""Local-area calibration: targets database, sparse matrix builder, tracer, target groups.

>>> from calibopt.datasets import synthetic_country
>>> from calibopt.matrix import MatrixBuilder
>>> country = synthetic_country("tiny")
>>> db = country.targets_database()                  # in-memory SQLite
>>> matrix = MatrixBuilder(db, country.dataset, country.geographies,
...                        rules=country.rules).build()
>>> matrix.X.shape
(127, 1440)
"""

from .builder import CalibrationMatrix, MatrixBuilder
from .columns import ColumnMap
from .constraints import OPERATIONS, format_constraints, parse_constraints
from .database import TargetFilter, TargetsDatabase, overview_select
from .evaluate import ContributionEvaluator
from .groups import group_label, group_table, target_groups
from .tracer import MatrixTracer

__all__ = [
    "OPERATIONS",
    "CalibrationMatrix",
    "ColumnMap",
    "ContributionEvaluator",
    "MatrixBuilder",
    "MatrixTracer",
    "TargetFilter",
    "TargetsDatabase",
    "format_constraints",
    "group_label",
    "group_table",
    "overview_select",
    "parse_constraints",
    "target_groups",
]
