"""Conflicting and hierarchical targets, before and around calibration.

* :func:`diagnose` -- minimal conflicting sets: targets (and weight bounds) that cannot hold
  together, each irreducible, pairwise disjoint (:mod:`.diagnose`);
* :func:`reconcile` -- the smallest reliability-weighted change of the targets that makes a
  hierarchy add up exactly (national = sum of states = sum of districts, totals = sum of
  their categories), by a least-squares projection or, with bounds, a QP
  (:mod:`.reconcile`); :func:`target_hierarchy` reads the hierarchy off a targets table.

The numerical engines live in :mod:`calibopt.solvers` (:mod:`~calibopt.solvers.iis`,
:mod:`~calibopt.solvers.reconcile`); this package names things and checks inputs.
"""

from ..targets.hierarchy import target_hierarchy
from .diagnose import ConflictSet, Diagnosis, diagnose
from .reconcile import Reconciliation, reconcile

__all__ = [
    "ConflictSet",
    "Diagnosis",
    "Reconciliation",
    "diagnose",
    "reconcile",
    "target_hierarchy",
]
