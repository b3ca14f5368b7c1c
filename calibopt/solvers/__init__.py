"""Engines that know no method: each takes arrays or a problem and returns numbers.

* :mod:`.newton`, :mod:`.newton_system`, :mod:`.active_set`, :mod:`.bands`, :mod:`.kernels`,
  :mod:`.distances` -- the dual Newton method of the distance methods, its Newton system, its
  drivers for exact targets and tolerance bands (an interior point with an exact finish), numba
  kernels, distance objects;
* :mod:`.feasibility`, :mod:`.dependence` -- range checks, redundant targets (block by block
  for local-area problems), LP infeasibility certificates;
* :mod:`.linear_program`, :mod:`.highs`, :mod:`.cvx` -- one (MI)LP data class and its HiGHS and
  cvxpy bridges (also the cvxpy solver names and settings);
* :mod:`.domain`, :mod:`.reweighted_l1` -- the sparse domain (semi-continuous bounds, implied
  bounds) and the reweighted-L1 LP iterations;
* :mod:`.ipf`, :mod:`.loss` -- IPF sweeps, the relative target loss;
* :mod:`.misfit`, :mod:`.iis`, :mod:`.reconcile` -- the least-misfit LP (sifting over the
  weights), minimal conflicting sets (irreducible infeasible subsets) and the reconciliation
  of totals to aggregation rules;
* :mod:`.hard_concrete` -- the torch Hard-Concrete engine.
"""
