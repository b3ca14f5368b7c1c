"""Decompositions: a problem solved block by block, on in-process, process-pool or dask executors.

Methods are called through the registry (:func:`calibopt.formulations.registry.run_method`),
never through the public :func:`calibopt.calibrate`.
"""

from .plan import PerBlock, per_block

__all__ = ["PerBlock", "per_block"]
