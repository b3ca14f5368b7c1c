"""Which solvers each method takes, and which of them are installed here."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence

from ..formulations import get_method
from ..formulations.registry import Method

__all__ = ["installed_solvers", "match_solver", "solver_installed"]

_ALWAYS = {"newton", "ipf", "l-bfgs-b"}
_MODULES = {"highs": "highspy", "torch": "torch", "cvxpy": "cvxpy"}


@functools.lru_cache(maxsize=1)
def _cvxpy_solvers() -> frozenset[str]:
    if importlib.util.find_spec("cvxpy") is None:
        return frozenset()
    import cvxpy

    return frozenset(s.upper() for s in cvxpy.installed_solvers())


def solver_installed(solver: str) -> bool:
    """True when ``solver`` (a name a method lists) can run here."""
    low = solver.lower()
    if low in _ALWAYS:
        return True
    if solver in _MODULES:  # lower-case names: a Python package (highspy, torch, cvxpy)
        return importlib.util.find_spec(_MODULES[solver]) is not None
    if low.startswith("cvxpy:"):  # a MIP/LP through cvxpy: "cvxpy:SCIP"
        return solver.split(":", 1)[1].upper() in _cvxpy_solvers()
    if solver.isupper():  # cvxpy's solver names are upper-case
        return solver in _cvxpy_solvers()
    return True  # a plug-in's own engine: calibopt cannot tell; its run will say


def installed_solvers(method: str | Method) -> list[str]:
    """The solvers ``method`` takes that are installed, in the method's order (the first is
    its default)."""
    spec = method if isinstance(method, Method) else get_method(method)
    return [s for s in spec.solvers if solver_installed(s)]


def match_solver(spec: Method, solver: str) -> str | None:
    """The method's own spelling of ``solver`` when the method takes it, else None.

    An exact match wins (``reweighted-l1`` lists both ``"highs"``, its direct HiGHS model,
    and ``"HIGHS"`` through cvxpy); otherwise the match ignores case.
    """
    if solver in spec.solvers:
        return solver
    wanted = solver.strip().lower()
    hits: Sequence[str] = [s for s in spec.solvers if s.lower() == wanted]
    return hits[0] if hits else None
