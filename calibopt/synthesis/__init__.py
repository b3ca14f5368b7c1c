"""Hierarchical microdata synthesis that feeds calibration: household > tax unit > person.

* :func:`flatten` / :func:`unflatten`: normalised tables <-> one person-level frame;
* :func:`enforce_hierarchy` / :func:`check_hierarchy` with the rules :class:`Shared`,
  :class:`OneHead`, :class:`SpouseAgeGap`, :class:`ChildAgeGap`, :class:`SumTo`;
* :class:`Synthesizer`: a conditional model (sequential CART by default, or a Gaussian
  copula), seeded, saved without pickle;
* :class:`HierarchicalSynthesizer`: households, then tax units, then persons, every rule
  holding by construction; generates a :class:`~calibopt.datasets.Dataset` in batches;
* :func:`calibrate_households`: a dataset and a targets database -> one weight per household
  (persons and tax units counted into their household's column);
* :func:`quality_report`: real vs synthetic marginals, correlations, rule violations, privacy.
"""

from .enforce import check_hierarchy, enforce_hierarchy
from .hierarchical import HierarchicalSynthesizer
from .quality import THRESHOLDS, QualityReport, quality_report
from .reweight import (
    HouseholdCalibration,
    HouseholdMatrix,
    calibrate_households,
    household_matrix,
    household_weights,
)
from .rules import ChildAgeGap, OneHead, Shared, SpouseAgeGap, SumTo
from .synthesizer import MODELS, Synthesizer
from .tables import flatten, group_variables, unflatten

__all__ = [
    "MODELS",
    "THRESHOLDS",
    "ChildAgeGap",
    "HierarchicalSynthesizer",
    "HouseholdCalibration",
    "HouseholdMatrix",
    "OneHead",
    "QualityReport",
    "Shared",
    "SpouseAgeGap",
    "SumTo",
    "Synthesizer",
    "calibrate_households",
    "check_hierarchy",
    "enforce_hierarchy",
    "flatten",
    "group_variables",
    "household_matrix",
    "household_weights",
    "quality_report",
    "unflatten",
]
