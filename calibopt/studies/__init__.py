"""Solver and method comparison studies that survive any solver.

:func:`compare` runs every (instance, method, solver) that applies, each in a worker process
with a hard time and memory limit, and returns a :class:`Study` (a DataFrame with
``report()``); :mod:`~calibopt.studies.instances` makes the standard seeded instances;
:func:`save_problem` / :func:`load_problem` share any problem as one ``.npz`` file.
"""

from __future__ import annotations

from .instances import (
    SIZES,
    STANDARD,
    Instance,
    instance_kinds,
    make_instance,
    register_instance,
    standard_instances,
)
from .problem_io import load_problem, problem_digest, problem_meta, save_problem
from .runner import compare
from .solvers import installed_solvers
from .study import COLUMNS, Study, load_study

__all__ = [
    "COLUMNS",
    "SIZES",
    "STANDARD",
    "Instance",
    "Study",
    "compare",
    "installed_solvers",
    "instance_kinds",
    "load_problem",
    "load_study",
    "make_instance",
    "problem_digest",
    "problem_meta",
    "register_instance",
    "save_problem",
    "standard_instances",
]
