"""Building blocks of the sparse methods (``l0-mip``, ``reweighted-l1``, ``cross-category``).

* :mod:`~calibopt.sparse.domain` -- kept-record bounds, target bands, implied bounds (big-M);
* :mod:`~calibopt.sparse.l0` -- the exact-L0 MIP as sparse arrays (classes, covers, scaling);
* :mod:`~calibopt.sparse.reweighted` -- Candes-Wakin-Boyd reweighted-L1 LPs;
* :mod:`~calibopt.sparse.refit` -- exact re-fit of the weights on a support;
* :mod:`~calibopt.sparse.cells` -- cross-category cells and apportionment;
* :mod:`~calibopt.sparse.highs`, :mod:`~calibopt.sparse.cvx` -- HiGHS and cvxpy back-ends.
"""

from .domain import SparseDomain, kept_bounds, sparse_domain
from .l0 import L0Model, build_l0_model
from .refit import calibrate_bands, refit_support

__all__ = [
    "L0Model",
    "SparseDomain",
    "build_l0_model",
    "calibrate_bands",
    "kept_bounds",
    "refit_support",
    "sparse_domain",
]
