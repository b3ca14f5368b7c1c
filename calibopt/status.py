"""The one status vocabulary of calibopt.

A :class:`~calibopt.CalibrationResult` carries one of the *result* statuses; which one is never
a method's claim alone: :func:`decide` combines what the method reports (did it solve its program
to proven optimality? is it a soft method that trades targets off? was it stopped early?) with
:func:`calibopt.fit.check_weights`, the one shared check of the returned weights against every
target band and bound.

=====================  ===========================================================================
``OPTIMAL``            every target within its band and every bound held (checked from the
                       weights), and the method's program solved to proven optimality
``WITHIN_TOLERANCE``   every target within its band and every bound held, optimality not proven
``TRADE_OFF``          a soft method (penalty, loss, ``error+count``) reached the optimum of its
                       own objective, which misses some targets: the misses are the trade-off
``STOPPED``            stopped early (iteration cap, time limit, interrupt, stall, a failed step)
                       and the weights miss some target or bound
=====================  ===========================================================================

Studies and block reports (:func:`calibopt.compare`, ``result.info["blocks"]``) add rows for
runs that returned no result:

=====================  ===========================================================================
``INFEASIBLE``         the method proved that no weights meet the targets (``InfeasibleError``)
``INVALID``            the input or an option was rejected (``InvalidProblemError``)
``FAILED``             the method or solver failed (``SolverError`` or another calibopt error)
``NOT_APPLICABLE``     the method does not take that solver
``CRASHED``            the worker process died (segfault, abort)
``TIMED_OUT``          the run exceeded its time limit
``OUT_OF_MEMORY``      the run exceeded its memory limit
=====================  ===========================================================================
"""

from __future__ import annotations

__all__ = [
    "CRASHED",
    "FAILED",
    "INFEASIBLE",
    "INVALID",
    "NOT_APPLICABLE",
    "OPTIMAL",
    "OUT_OF_MEMORY",
    "RESULT_STATUSES",
    "STOPPED",
    "SUCCESS_STATUSES",
    "TIMED_OUT",
    "TRADE_OFF",
    "WITHIN_TOLERANCE",
    "decide",
]

OPTIMAL = "optimal"
WITHIN_TOLERANCE = "within_tolerance"
TRADE_OFF = "trade_off"
STOPPED = "stopped"

INFEASIBLE = "infeasible"
INVALID = "invalid"
FAILED = "failed"
NOT_APPLICABLE = "not_applicable"
CRASHED = "crashed"
TIMED_OUT = "timed_out"
OUT_OF_MEMORY = "out_of_memory"

RESULT_STATUSES = (OPTIMAL, WITHIN_TOLERANCE, TRADE_OFF, STOPPED)
"""The statuses a :class:`~calibopt.CalibrationResult` can have."""
SUCCESS_STATUSES = (OPTIMAL, WITHIN_TOLERANCE)
"""The statuses for which ``result.success`` is True."""


def decide(
    weights_ok: bool, *, proven_optimal: bool, soft: bool = False, completed: bool | None = None
) -> str:
    """The status of a result from the check of its weights and the method's own report.

    Parameters
    ----------
    weights_ok
        Every target within its band and every bound held, as checked from the weights by
        :func:`calibopt.fit.check_weights`.
    proven_optimal
        The method solved its own program to proven optimality and met its own stopping rule
        (Newton converged, the MIP gap closed, the interior-point solver reported optimal,
        L-BFGS-B converged); False when it was stopped by a cap, a limit or an interrupt.
    soft
        The method's program trades target errors off (penalty or loss methods): its
        optimum may miss targets by design.
    completed
        The method ended by its own convergence rule rather than a cap, a limit or an
        interrupt (default: ``proven_optimal``); for heuristics that cannot prove optimality
        (``hard-concrete``) a completed run that misses targets is a trade-off.
    """
    if weights_ok:
        return OPTIMAL if proven_optimal else WITHIN_TOLERANCE
    if soft and (proven_optimal if completed is None else completed):
        return TRADE_OFF
    return STOPPED
