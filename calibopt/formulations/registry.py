"""The registry of calibration methods by name.

A method is registered once with :func:`register_method`; :func:`calibopt.calibrate` looks it
up by name or alias, and methods that build on others (the sparse methods' re-fit, the block
decomposition) call them through :func:`run_method`, never through the public ``calibrate``.
Each method has a catalogue page ``formulations/<page>.md`` at the repository top with its
exact program; a test keeps the catalogue and this registry in step.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidProblemError
from ..problem import CalibrationProblem

__all__ = [
    "Method",
    "get_method",
    "method_table",
    "methods",
    "register_method",
    "run_method",
    "unregister_method",
]


@dataclass(frozen=True)
class Method:
    """A registered calibration method.

    Attributes
    ----------
    name : str
        Canonical name (``"raking"``).
    aliases : tuple of str
        Other accepted names (``"entropy"``).
    solve : callable
        ``solve(problem, solver=None, **options) -> CalibrationResult``.
    build : callable or None
        ``build(problem, **options) -> cvxpy.Problem`` for methods that have a cvxpy model.
    solvers : tuple of str
        Solvers the method accepts (``"newton"``, ``"CLARABEL"``, ...).
    catalogue : str
        File name of the method's page in the ``formulations/`` catalogue.
    summary : str
        One line describing the program.
    guarantee : str
        ``"exact"``, ``"optimal"`` or ``"approximate"``.
    iterations : str
        What ``result.iterations`` counts for this method.
    objective : str
        What ``result.objective`` is for this method.
    sparse : bool
        The method drops units (weight exactly 0) and its bounds apply to the kept units.
    options : tuple of str
        Keyword options of ``solve`` (read from its signature).
    """

    name: str
    aliases: tuple[str, ...]
    solve: Callable[..., Any]
    build: Callable[..., Any] | None
    solvers: tuple[str, ...]
    catalogue: str
    summary: str
    guarantee: str
    iterations: str
    objective: str
    sparse: bool = False
    options: tuple[str, ...] = field(default=())


_REGISTRY: dict[str, Method] = {}
_ALIASES: dict[str, str] = {}


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_method(
    name: str,
    *,
    aliases: tuple[str, ...] = (),
    build: Callable[..., Any] | None = None,
    solvers: tuple[str, ...] = (),
    catalogue: str,
    summary: str,
    guarantee: str,
    iterations: str,
    objective: str,
    sparse: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``solve`` as method ``name``.

    The decorated function must take the problem first, then keyword-only options; the
    option names are read from its signature so that :func:`calibopt.calibrate` can reject
    misspelt options with a clear message.
    """

    def deco(solve: Callable[..., Any]) -> Callable[..., Any]:
        key = _normalise(name)
        if key in _ALIASES:
            raise RuntimeError(f"method {name!r} registered twice")
        params = inspect.signature(solve).parameters
        opts = tuple(p for p in params if params[p].kind == inspect.Parameter.KEYWORD_ONLY)
        _REGISTRY[key] = Method(
            name=key,
            aliases=tuple(_normalise(a) for a in aliases),
            solve=solve,
            build=build,
            solvers=solvers,
            catalogue=catalogue,
            summary=summary,
            guarantee=guarantee,
            iterations=iterations,
            objective=objective,
            sparse=sparse,
            options=opts,
        )
        for a in (key, *aliases):
            _ALIASES[_normalise(a)] = key
        return solve

    return deco


def unregister_method(name: str) -> Method:
    """Remove a registered method (and its aliases) and return it.

    For tests that register temporary methods, and for plug-ins that replace a method:
    ``register_method(**fields)(solve)`` puts one back.
    """
    spec = get_method(name)
    del _REGISTRY[spec.name]
    for alias in [a for a, key in _ALIASES.items() if key == spec.name]:
        del _ALIASES[alias]
    return spec


def get_method(name: str) -> Method:
    """The registered method called ``name`` (or one of its aliases)."""
    if not isinstance(name, str):
        raise InvalidProblemError(
            f"`method` must be a method name (see calibopt.methods()) or a calibopt.Distance, "
            f"got {type(name).__name__}."
        )
    key = _ALIASES.get(_normalise(name))
    if key is None:
        raise InvalidProblemError(
            f"unknown method {name!r}; available: {', '.join(sorted(_ALIASES))}."
        )
    return _REGISTRY[key]


def run_method(
    problem: CalibrationProblem, method: str, solver: str | None = None, **options: Any
) -> Any:
    """Run a registered method: check its options, solve, time it.

    The one way methods are run, by :func:`calibopt.calibrate` and by methods and
    decompositions that build on other methods.
    """
    if not isinstance(problem, CalibrationProblem):
        raise InvalidProblemError(
            f"`problem` must be a calibopt.CalibrationProblem, got {type(problem).__name__}; "
            f"build one with CalibrationProblem(X, targets, ...) or problem_from_margins(...)."
        )
    if solver is not None and not isinstance(solver, str):
        raise InvalidProblemError(
            f"`solver` must be a solver name such as 'newton' or 'CLARABEL', or None; "
            f"got {solver!r}."
        )
    spec = get_method(method)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise InvalidProblemError(
            f"method {spec.name!r} got unknown option(s) {unknown}; its options are: "
            f"{', '.join(o for o in spec.options if o != 'solver') or 'none'}."
        )
    t0 = time.perf_counter()
    result = spec.solve(problem, solver=solver, **options)
    result.wall_time = time.perf_counter() - t0
    return result


def methods() -> list[str]:
    """Canonical names of the registered methods."""
    return sorted(_REGISTRY)


def method_table() -> Any:
    """The registry as a table: name, aliases, solvers, guarantee, summary, iterations,
    objective, catalogue page."""
    import pandas as pd

    rows = [
        {
            "method": m.name,
            "aliases": ", ".join(m.aliases),
            "solvers": ", ".join(m.solvers),
            "guarantee": m.guarantee,
            "summary": m.summary,
            "iterations": m.iterations,
            "objective": m.objective,
            "sparse": m.sparse,
            "catalogue": f"formulations/{m.catalogue}",
        }
        for m in (_REGISTRY[k] for k in sorted(_REGISTRY))
    ]
    return pd.DataFrame(rows)
