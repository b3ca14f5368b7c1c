"""Uncertainty of calibrated estimates: linearisation, replicate weights, sparsity.

>>> import calibopt.variance as cv
>>> design = cv.Design(data, weights="pw", strata="stype", fpc="fpc")
>>> cal = design.calibrate(problem, method="raking")        # problem's units = data's rows
>>> cv.total(["api00", "enroll"], cal)                      # linearised SEs (R survey's)
>>> reps = cal.replicates("bootstrap", replicates=100, executor=2)   # re-calibrated replicates
>>> cv.total("api00", reps, by="stype")                     # replicate SEs, domain totals
>>> reps.write("weights.csv")                               # main weight + one column per replicate

* :class:`Design`: strata, multi-stage clusters, fpc, lonely PSUs (R's ``svydesign``);
* :func:`total`, :func:`mean`, :func:`ratio` (``by=`` for domains): linearised variance by
  the residual method (R's ``svyrecvar``) or replicate variance (R's ``svrVar``);
* :func:`replicate_weights`: JK1, JKn, Rao-Wu bootstrap, BRR and Fay replicates;
  :meth:`ReplicateDesign.calibrate` re-calibrates each replicate with the same method;
* :func:`sparsity_uncertainty`: bootstrap over selection + calibration of the sparse methods,
  next to a dense calibration.
"""

from __future__ import annotations

from .calibration import RESIDUALS, Calibration
from .design import LONELY_PSU, Design, DesignError
from .estimate import Estimate
from .estimators import mean, ratio, total
from .linearisation import design_covariance, residualise
from .replicate_design import ReplicateDesign, replicate_covariance
from .replicates import REPLICATE_TYPES, hadamard, replicate_weights
from .sparsity import SparsityStudy, local_area_design, sparsity_uncertainty

__all__ = [
    "LONELY_PSU",
    "REPLICATE_TYPES",
    "RESIDUALS",
    "Calibration",
    "Design",
    "DesignError",
    "Estimate",
    "ReplicateDesign",
    "SparsityStudy",
    "design_covariance",
    "hadamard",
    "local_area_design",
    "mean",
    "ratio",
    "replicate_covariance",
    "replicate_weights",
    "residualise",
    "sparsity_uncertainty",
    "total",
]
