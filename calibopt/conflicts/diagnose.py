"""``diagnose(problem)``: the minimal sets of targets and bounds that cannot hold together.

Exact calibration needs every target within its band and every weight within its bounds.
When that is impossible, :func:`diagnose` names *why*: irreducible infeasible subsets -- sets
of targets (and weight bounds) that cannot all hold, while dropping any one of them makes the
rest feasible -- pairwise disjoint in their targets, by name and group, with how far apart
each set's targets are. The engine is :func:`calibopt.solvers.iis.find_conflicts`.

>>> report = co.diagnose(problem, time_limit=60)
>>> print(report.summary())
>>> report.table()                      # one row per (set, target)
>>> raise report.error()                # an InfeasibleError carrying the sets
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InfeasibleError, InvalidProblemError
from ..fit import ACCURACY
from ..problem import CalibrationProblem
from ..solvers.iis import ENGINES, ConflictSearch, RawConflict, find_conflicts
from ..solvers.misfit import misfit_inputs
from ..validate import choice, integer, number

__all__ = ["ConflictSet", "Diagnosis", "diagnose"]


@dataclass
class ConflictSet:
    """One minimal conflicting set.

    Attributes
    ----------
    targets : list of str
        Names of its targets.
    groups : list
        Their groups.
    positions : ndarray of int
        Their rows in the problem.
    direction : list of str
        Per target, ``"too high"`` (the others force its estimate below it) or ``"too low"``.
    lower_bounds, upper_bounds : ndarray of int
        Units whose lower (upper) weight bound belongs to the set; both empty when the
        targets contradict each other whatever the weights (e.g. parts that do not add up to
        their total).
    misfit : float
        The least possible largest relative miss among these targets (with the set's
        bounds): how far apart they are (0.03 = 3%).
    irreducible : bool or None
        True when checked: the set is infeasible and dropping any one of its targets (or any
        checked bound) makes it feasible. False: the time ran out while it was being reduced
        (infeasible, maybe not minimal). None: not checked.
    method : str
        How it was found: ``"dual vertex"`` (a basic dual solution of the misfit LP),
        ``"highs iis"`` or ``"deletion filter"``.
    seconds : float
        When it was found, from the start of the search.
    bound_classes, bounds_checked : int
        Its bounds merged over identical columns, and how many of those were checked one by
        one (every one up to 100, a spread sample beyond).
    """

    targets: list[str]
    groups: list[Any]
    positions: np.ndarray
    direction: list[str]
    lower_bounds: np.ndarray
    upper_bounds: np.ndarray
    misfit: float
    irreducible: bool | None
    method: str
    seconds: float
    bound_classes: int = 0
    bounds_checked: int = 0

    @property
    def needs_bounds(self) -> bool:
        """Whether weight bounds take part (False: the targets contradict each other)."""
        return bool(self.lower_bounds.size or self.upper_bounds.size)

    def describe(self, limit: int = 6) -> str:
        """The set in one line."""
        parts = [f"{n!r} ({d})" for n, d in zip(self.targets[:limit], self.direction)]
        more = f" and {len(self.targets) - limit} more" if len(self.targets) > limit else ""
        bounds = []
        if self.lower_bounds.size:
            bounds.append(f"the lower bounds of {self.lower_bounds.size:,} unit(s)")
        if self.upper_bounds.size:
            bounds.append(f"the upper bounds of {self.upper_bounds.size:,} unit(s)")
        with_bounds = f", with {' and '.join(bounds)}" if bounds else ""
        return (
            f"{len(self.targets)} target(s) at least {100 * self.misfit:.3g}% apart: "
            f"{', '.join(parts)}{more}{with_bounds}"
        )


@dataclass
class Diagnosis:
    """What :func:`diagnose` found.

    Attributes
    ----------
    conflicts : list of ConflictSet
        Minimal conflicting sets, pairwise disjoint in their targets, in the order found
        (the most glaring first: the one certifying the largest misfit).
    feasible : bool
        The problem has weights meeting every band within the bounds.
    complete : bool
        Every conflict of the problem shares a target with some returned set (dropping all
        their targets leaves a feasible problem). False when ``max_sets`` or the time limit
        stopped the search.
    stop_reason : str
        ``"feasible"``, ``"complete"``, ``"max_sets"``, ``"time_limit"`` or ``"solver"``.
    misfit : float
        The least possible largest relative miss over all targets (the ``least-misfit``
        method's optimum).
    seconds, first_seconds : float
        Search time, and time to the first set.
    lp_solves : int
        Linear programs solved.
    notes : list of str
    """

    conflicts: list[ConflictSet]
    feasible: bool
    complete: bool
    stop_reason: str
    misfit: float
    seconds: float
    first_seconds: float
    lp_solves: int
    problem_targets: int
    notes: list[str] = field(default_factory=list)

    @property
    def min_changes(self) -> int:
        """A lower bound on how many targets (or bounds) must change: one per disjoint set."""
        return len(self.conflicts)

    @property
    def targets(self) -> list[str]:
        """Every target in some set."""
        return [t for c in self.conflicts for t in c.targets]

    def table(self) -> Any:
        """One row per (set, target): ``set``, ``target``, ``name``, ``group``,
        ``direction``, ``set_size``, ``set_misfit``, ``needs_bounds``, ``irreducible``."""
        import pandas as pd

        rows = [
            {
                "set": k,
                "target": int(pos),
                "name": name,
                "group": group,
                "direction": direction,
                "set_size": len(c.targets),
                "set_misfit": c.misfit,
                "needs_bounds": c.needs_bounds,
                "irreducible": c.irreducible,
            }
            for k, c in enumerate(self.conflicts)
            for pos, name, group, direction in zip(c.positions, c.targets, c.groups, c.direction)
        ]
        columns = ["set", "target", "name", "group", "direction", "set_size", "set_misfit"]
        return pd.DataFrame(rows, columns=[*columns, "needs_bounds", "irreducible"])

    def summary(self, limit: int = 10) -> str:
        """A paragraph: how many sets, how complete, the first ``limit`` of them."""
        if self.feasible:
            return (
                f"feasible: weights within the bounds meet every one of the "
                f"{self.problem_targets} target bands ({self.seconds:.3g} s)."
            )
        head = (
            f"{len(self.conflicts)} minimal conflicting set(s) of targets, disjoint, found in "
            f"{self.seconds:.3g} s (first after {self.first_seconds:.3g} s); "
            + (
                "every conflict meets one of them"
                if self.complete
                else f"search stopped ({self.stop_reason}): there may be more"
            )
            + f". At least {self.min_changes} target(s) must change; the least possible "
            f"largest relative miss over all targets is {100 * self.misfit:.3g}%."
        )
        lines = [f"  {k + 1}. {c.describe()}" for k, c in enumerate(self.conflicts[:limit])]
        if len(self.conflicts) > limit:
            lines.append(f"  ... and {len(self.conflicts) - limit} more (see .table())")
        return "\n".join([head, *lines, *(f"  note: {n}" for n in self.notes)])

    def error(self) -> InfeasibleError | None:
        """An :class:`~calibopt.InfeasibleError` carrying the sets (None when feasible)."""
        if self.feasible:
            return None
        return InfeasibleError(
            "no weights within the bounds meet every target band: " + self.summary(),
            targets=self.targets,
            conflicts=self.conflicts,
        )

    def __repr__(self) -> str:
        return (
            f"Diagnosis({'feasible' if self.feasible else f'{len(self.conflicts)} set(s)'}, "
            f"{self.stop_reason}, {self.seconds:.3g} s)"
        )


def _named(problem: CalibrationProblem, raw: RawConflict) -> ConflictSet:
    names = problem.target_names
    return ConflictSet(
        targets=[names[j] for j in raw.rows],
        groups=[problem.groups[j] for j in raw.rows],
        positions=raw.rows,
        direction=["too high" if d > 0 else "too low" for d in raw.direction],
        lower_bounds=raw.lower,
        upper_bounds=raw.upper,
        misfit=raw.misfit,
        irreducible=raw.irreducible,
        method=raw.method,
        seconds=raw.seconds,
        bound_classes=raw.bound_classes,
        bounds_checked=raw.bounds_checked,
    )


def diagnose(
    problem: CalibrationProblem,
    *,
    max_sets: int | None = None,
    time_limit: float | None = 60.0,
    sparse: bool = False,
    engine: str = "dual",
    verify: bool = True,
    accuracy: float = ACCURACY,
    raise_error: bool = False,
    progress: bool | None = None,
) -> Diagnosis:
    """Find minimal conflicting sets of targets and weight bounds.

    Parameters
    ----------
    problem
        The calibration problem: its target bands (``targets`` and ``tolerance``) and its
        effective weight bounds (``bounds`` and ``ratio_bounds``).
    max_sets
        Stop after this many sets (None: all).
    time_limit
        Seconds for the search (None: no limit). When it runs out, the sets found so far are
        returned with ``complete=False``; a set being reduced at that moment is returned
        with ``irreducible=False``.
    sparse
        Use the bounds of the sparse methods (a weight may also be exactly 0): a set found
        then cannot be met by ``l0-mip``, ``reweighted-l1`` or ``hard-concrete`` either.
    engine
        ``"dual"`` (default: a basic dual solution of the misfit LP names each set, one LP
        per set) or ``"highs"`` (HiGHS's own IIS routine; slow beyond small problems). Every
        set is checked independently either way.
    verify
        Check that each set is infeasible and that dropping any one of its targets (and up to
        100 of its merged bounds) makes it feasible, reducing it if not.
    accuracy
        Relative miss that still counts as met (calibopt's own: 1e-8).
    raise_error
        Raise the :class:`~calibopt.InfeasibleError` of :meth:`Diagnosis.error` when the
        problem is infeasible, instead of returning.
    progress
        Show a counter of sets found (None: when stderr is a terminal).

    Returns
    -------
    Diagnosis
    """
    import sys

    if not isinstance(problem, CalibrationProblem):
        raise InvalidProblemError(
            f"`problem` must be a calibopt.CalibrationProblem, got {type(problem).__name__}."
        )
    if max_sets is not None:
        max_sets = integer("max_sets", max_sets, low=1)
    if time_limit is not None:
        time_limit = number("time_limit", time_limit, low=0.0, strict=True)
    choice("engine", engine, ENGINES)
    accuracy = number("accuracy", accuracy, low=0.0)
    if not sparse and np.any(np.greater(*problem.weight_bounds())):
        problem.require_consistent_bounds("diagnose")
    system = misfit_inputs(problem, sparse=sparse)
    bar = None
    if progress is None:
        progress = sys.stderr.isatty()
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="minimal conflicting sets", unit="set")
    try:
        search: ConflictSearch = find_conflicts(
            system.X,
            system.band_lo,
            system.band_hi,
            system.wlo,
            system.whi,
            system.scale,
            col_scale=system.col_scale,
            max_sets=max_sets,
            time_limit=time_limit,
            accuracy=accuracy,
            engine=engine,
            verify=verify,
            callback=None if bar is None else (lambda raw: bar.update(1)),
        )
    finally:
        if bar is not None:
            bar.close()
    report = Diagnosis(
        conflicts=[_named(problem, raw) for raw in search.conflicts],
        feasible=search.feasible,
        complete=search.complete,
        stop_reason=search.stop_reason,
        misfit=search.misfit,
        seconds=search.seconds,
        first_seconds=search.first_seconds,
        lp_solves=search.lp_solves,
        problem_targets=problem.n_targets,
        notes=list(search.notes),
    )
    if raise_error and not report.feasible:
        raise report.error()  # type: ignore[misc]
    return report
