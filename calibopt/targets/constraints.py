"""Stratum constraints: ``(variable, operation, value)`` triples, their text form and evaluation.

A stratum is the set of units satisfying all its constraints. Constraint values are stored as
text (as in the users' ``stratum_constraints.value TEXT`` column) and converted to the
variable's type when evaluated. Operations: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` and
``in`` (value: a comma-separated list such as ``"6,37"``, or a JSON list).

The text form of a constraint set, used in CSV files and on the command line, joins clauses
with ``;``: ``"state_fips == 37; age >= 0; age < 5"`` (empty = no constraint, the nation).

Geographic constraints decide *where* a target applies rather than *who* counts:
``congressional_district_geoid == <GEOID>`` (district level) and ``state_fips == <FIPS>``
(state level); a target with neither is national.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidProblemError

__all__ = [
    "DISTRICT",
    "GEO_LEVELS",
    "OPERATIONS",
    "STATE",
    "Constraint",
    "domain_label",
    "domain_of",
    "evaluate_constraint",
    "format_constraints",
    "geography_of",
    "normalise_constraints",
    "parse_constraints",
]

Constraint = tuple[str, str, str]
"""``(variable, operation, value as text)``."""

OPERATIONS = ("==", "!=", "<", "<=", ">", ">=", "in")
DISTRICT = "congressional_district_geoid"
STATE = "state_fips"
GEO_LEVELS = ("national", "state", "district")
_GEO_VARIABLES = {DISTRICT: "district", STATE: "state"}

_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(==|!=|<=|>=|<|>|\s+in\s+)\s*(.*?)\s*$")


def _value_text(value: Any) -> str:
    """Canonical text for a constraint value (ints without '.0', lists comma-joined)."""
    if isinstance(value, list | tuple | set | np.ndarray):
        return ",".join(_value_text(v) for v in value)
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value).strip()


def normalise_constraints(constraints: Any, where: str = "constraints") -> tuple[Constraint, ...]:
    """Constraints as a sorted tuple of ``(variable, operation, value text)``.

    Accepts the text form (``"a == 1; b < 5"``), an iterable of triples, or None/"" (none).
    Raises :class:`InvalidProblemError` for an unknown operation, an empty variable or value,
    or the same (variable, operation) twice.
    """
    if constraints is None or (isinstance(constraints, float) and np.isnan(constraints)):
        return ()
    if isinstance(constraints, str):
        return parse_constraints(constraints, where)
    out = []
    for item in constraints:
        try:
            var, op, value = item
        except (TypeError, ValueError):
            raise InvalidProblemError(
                f"{where}: each constraint must be (variable, operation, value), got {item!r}."
            ) from None
        out.append((str(var).strip(), str(op).strip(), _value_text(value)))
    return _checked(out, where)


def parse_constraints(text: str, where: str = "constraints") -> tuple[Constraint, ...]:
    """Parse ``"var op value; var op value"`` into a sorted tuple of triples."""
    out = []
    for clause in text.split(";"):
        if not clause.strip():
            continue
        m = _CLAUSE.match(clause)
        if not m:
            raise InvalidProblemError(
                f"{where}: cannot read the constraint {clause.strip()!r}; write it as "
                f"'variable op value' with op one of {', '.join(OPERATIONS)} "
                f"(e.g. 'age >= 5'), clauses separated by ';'."
            )
        out.append((m.group(1), m.group(2).strip(), m.group(3)))
    return _checked(out, where)


def _checked(items: list[Constraint], where: str) -> tuple[Constraint, ...]:
    seen = set()
    for var, op, value in items:
        if not var:
            raise InvalidProblemError(f"{where}: a constraint has an empty variable name.")
        if op not in OPERATIONS:
            raise InvalidProblemError(
                f"{where}: unknown operation {op!r} in constraint on {var!r}; use one of "
                f"{', '.join(OPERATIONS)}."
            )
        if value == "":
            raise InvalidProblemError(f"{where}: constraint {var} {op} has no value.")
        if (var, op) in seen:
            raise InvalidProblemError(
                f"{where}: two constraints '{var} {op} ...'; merge them (use 'in' for a list)."
            )
        seen.add((var, op))
    return tuple(sorted(items, key=_order))


_OP_RANK = {">=": 0, ">": 1, "==": 2, "in": 3, "!=": 4, "<": 5, "<=": 6}


def _order(c: Constraint) -> tuple[str, int, str]:
    """Canonical order: by variable, lower bounds before upper bounds ('age >= 5; age < 18')."""
    return c[0], _OP_RANK[c[1]], c[2]


def format_constraints(constraints: Iterable[Constraint]) -> str:
    """The text form ``"var op value; ..."`` (inverse of :func:`parse_constraints`)."""
    return "; ".join(f"{v} {op} {val}" for v, op, val in constraints)


def geography_of(constraints: Sequence[Constraint], where: str = "stratum") -> tuple[str, str]:
    """``(geo_level, geographic_id)`` of a constraint set (``("national", "US")`` if none).

    A district constraint wins over a state one; both present must agree
    (``GEOID // 100 == FIPS``). Geographic constraints must use ``==``.
    """
    geo = {}
    for var, op, value in constraints:
        if var in _GEO_VARIABLES:
            if op != "==":
                raise InvalidProblemError(
                    f"{where}: geographic constraint '{var} {op} {value}' must use '=='; "
                    f"write one target per geography."
                )
            try:
                geo[var] = int(float(value))
            except ValueError:
                raise InvalidProblemError(
                    f"{where}: geographic constraint {var} == {value!r} is not a number."
                ) from None
    if DISTRICT in geo:
        if STATE in geo and geo[DISTRICT] // 100 != geo[STATE]:
            raise InvalidProblemError(
                f"{where}: district {geo[DISTRICT]} is not in state {geo[STATE]} "
                f"(a district GEOID // 100 is its state's FIPS code)."
            )
        return "district", str(geo[DISTRICT])
    if STATE in geo:
        return "state", str(geo[STATE])
    return "national", "US"


def domain_of(constraints: Sequence[Constraint]) -> tuple[Constraint, ...]:
    """The non-geographic constraints (who counts, not where)."""
    return tuple(c for c in constraints if c[0] not in _GEO_VARIABLES)


def domain_label(constraints: Sequence[Constraint]) -> str:
    """Sorted distinct domain variables joined by ``,`` ("" when none)."""
    return ",".join(sorted({c[0] for c in domain_of(constraints)}))


def _parse_list(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise InvalidProblemError(f"'in' value {text!r} is not a valid JSON list.") from None
        return [_value_text(v) for v in items]
    return [v.strip() for v in text.split(",") if v.strip()]


def _convert(text: str, values: np.ndarray, where: str) -> Any:
    kind = values.dtype.kind
    if kind == "b":
        low = text.strip().lower()
        if low in ("true", "1", "1.0", "yes"):
            return True
        if low in ("false", "0", "0.0", "no"):
            return False
        raise InvalidProblemError(f"{where}: {text!r} is not a boolean value.")
    if kind in "iuf":
        try:
            return float(text)
        except ValueError:
            raise InvalidProblemError(
                f"{where}: value {text!r} is not a number but the variable is numeric."
            ) from None
    return text


def evaluate_constraint(values: np.ndarray, op: str, text: str, where: str = "") -> np.ndarray:
    """Boolean mask of ``values op value`` (the value text converted to the values' type).

    Strings and categories compare as text; ``<``-type operations on text compare
    lexicographically.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        values = values.astype(str)
    if op == "in":
        items = [_convert(t, values, where) for t in _parse_list(text)]
        return np.isin(
            values, np.asarray(items, dtype=object if values.dtype.kind == "U" else None)
        )
    rhs = _convert(text, values, where)
    if op == "==":
        return values == rhs
    if op == "!=":
        return values != rhs
    if op == "<":
        return values < rhs
    if op == "<=":
        return values <= rhs
    if op == ">":
        return values > rhs
    if op == ">=":
        return values >= rhs
    raise InvalidProblemError(f"{where}: unknown operation {op!r}; use one of {OPERATIONS}.")
