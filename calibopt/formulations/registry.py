"""The registry of calibration methods by name.

A method is registered once with :func:`register_method`; :func:`calibopt.calibrate` looks it
up by name or alias. Each method has a catalogue page ``formulations/<page>.md`` at the
repository top with its exact program; a test keeps the catalogue and this registry in step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import InvalidProblemError

__all__ = ["Method", "get_method", "method_table", "methods", "register_method"]


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
        Solvers the method accepts (``"newton"``, ``"CLARABEL"``, ...; ``"cvxpy"`` means any
        installed cvxpy solver whose cone fits).
    catalogue : str
        File name of the method's page in the ``formulations/`` catalogue.
    summary : str
        One line describing the program.
    guarantee : str
        ``"exact"``, ``"optimal"`` or ``"approximate"``.
    """

    name: str
    aliases: tuple[str, ...]
    solve: Callable[..., Any]
    build: Callable[..., Any] | None
    solvers: tuple[str, ...]
    catalogue: str
    summary: str
    guarantee: str
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
            options=opts,
        )
        for a in (key, *aliases):
            _ALIASES[_normalise(a)] = key
        return solve

    return deco


def get_method(name: str) -> Method:
    """The registered method called ``name`` (or one of its aliases)."""
    if not isinstance(name, str):
        raise InvalidProblemError(f"`method` must be a string, got {type(name).__name__}.")
    key = _ALIASES.get(_normalise(name))
    if key is None:
        raise InvalidProblemError(
            f"unknown method {name!r}; available: {', '.join(sorted(_ALIASES))}."
        )
    return _REGISTRY[key]


def methods() -> list[str]:
    """Canonical names of the registered methods."""
    return sorted(_REGISTRY)


def method_table() -> pd.DataFrame:
    """The registry as a table: name, aliases, solvers, guarantee, summary, catalogue page."""
    rows = [
        {
            "method": m.name,
            "aliases": ", ".join(m.aliases),
            "solvers": ", ".join(m.solvers),
            "guarantee": m.guarantee,
            "summary": m.summary,
            "catalogue": f"formulations/{m.catalogue}",
        }
        for m in (_REGISTRY[k] for k in sorted(_REGISTRY))
    ]
    return pd.DataFrame(rows)
