"""Local-area calibration matrices: the sparse matrix builder, tracer, target groups, files.

The targets come from :mod:`calibopt.targets` and the unit data from
:mod:`calibopt.datasets`; nothing here solves (:meth:`CalibrationMatrix.to_problem` hands a
problem to :func:`calibopt.calibrate`).

>>> from calibopt.datasets import synthetic_country
>>> from calibopt.matrix import MatrixBuilder
>>> country = synthetic_country("tiny")
>>> db = country.targets_database()                  # in-memory SQLite
>>> matrix = MatrixBuilder(db, country.dataset, country.geographies,
...                        rules=country.rules).build()
>>> matrix.X.shape
(127, 1440)
"""

from .areas import area_problem, area_rows, area_shares, shared_prior
from .builder import MatrixBuilder
from .calibration_matrix import CalibrationMatrix
from .columns import ColumnMap
from .evaluate import ContributionEvaluator
from .groups import group_label, group_table, target_groups
from .tracer import MatrixTracer

__all__ = [
    "CalibrationMatrix",
    "ColumnMap",
    "ContributionEvaluator",
    "MatrixBuilder",
    "MatrixTracer",
    "area_problem",
    "area_rows",
    "area_shares",
    "group_label",
    "group_table",
    "shared_prior",
    "target_groups",
]
