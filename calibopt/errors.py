"""Exceptions raised by calibopt.

Every error calibopt raises on purpose derives from :class:`CalibrationError`, so research
code can catch one class. Messages say what is wrong, where, and how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["CalibrationError", "InfeasibleError", "InvalidProblemError", "SolverError"]


class CalibrationError(Exception):
    """Base class of every error calibopt raises on purpose."""


class InvalidProblemError(CalibrationError, ValueError):
    """The input is malformed: wrong shape, NaN/inf, negative weights, bad names, ..."""


class InfeasibleError(CalibrationError):
    """No weights satisfy the constraints.

    Parameters
    ----------
    message
        Human-readable explanation (what, where, why).
    targets
        Names of the targets involved in the infeasibility (may be empty).
    certificate
        Optional numeric evidence, e.g. a Farkas vector of multipliers over targets.
    conflicts
        Optional minimal conflicting sets (``calibopt.conflicts.ConflictSet``, from
        :func:`calibopt.diagnose`): targets and bounds that cannot hold together, each
        irreducible.
    """

    def __init__(
        self,
        message: str,
        targets: Sequence[str] = (),
        certificate: object | None = None,
        conflicts: Sequence[object] | None = None,
    ) -> None:
        super().__init__(message)
        self.targets = list(targets)
        self.certificate = certificate
        self.conflicts = None if conflicts is None else list(conflicts)


class SolverError(CalibrationError):
    """A solver failed, is not installed, or returned an unusable answer."""
