"""The targets database: strata, their constraints, targets and uprating factors (SQLAlchemy).

The schema is compatible with the SQLite databases of existing local-area calibration
pipelines (see ``reference/interop.md``), so their files open directly:

``strata``
    ``stratum_id`` (primary key), ``definition_hash`` (unique: SHA-256 of the parent id and
    the sorted constraints), ``parent_stratum_id`` (references ``strata``), ``notes``.
``stratum_constraints``
    ``stratum_id``, ``constraint_variable``, ``operation``, ``value`` (TEXT), ``notes``;
    primary key (``stratum_id``, ``constraint_variable``, ``operation``).
``targets``
    ``target_id``, ``variable``, ``period``, ``stratum_id``, ``reform_id`` (0 = current law),
    ``value``, ``active``, ``tolerance`` (a *percentage* relative error), ``source``,
    ``notes``; unique (``variable``, ``period``, ``stratum_id``, ``reform_id``).
``uprating_factors`` (calibopt's addition, optional when reading)
    ``variable``, ``from_period``, ``to_period``, ``factor``: a target from ``from_period``
    is multiplied by ``factor`` to serve ``to_period``; factors chain (2022->2023->2024).
``target_overview`` (a view)
    Every target with ``geo_level`` (national / state / district), ``geographic_id``
    ('US', a state FIPS code or a district GEOID) and ``domain_variable`` (the
    non-geographic constraint variables). :func:`overview_select` is the same query as a
    SQLAlchemy expression, which calibopt itself uses (so a database without the view works).

Strata form a tree: nation -> states -> districts (geographic strata), and each domain
stratum (e.g. "district 3701 and snap > 0") is a child of its geographic stratum and repeats
its constraints.

SQLite is the default (a path or ``sqlite:///path``; ``sqlite://`` is in memory); any
SQLAlchemy URL or Engine works, PostgreSQL included. Every statement is a SQLAlchemy
expression with bound parameters: a filter value is always data, never SQL.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from ..errors import InvalidProblemError
from .constraints import (
    DISTRICT,
    GEO_LEVELS,
    STATE,
    Constraint,
    domain_of,
    format_constraints,
    geography_of,
    normalise_constraints,
)

__all__ = [
    "TargetFilter",
    "TargetsDatabase",
    "metadata",
    "overview_select",
    "strata",
    "stratum_constraints",
    "targets",
    "uprating_factors",
]

metadata = sa.MetaData()

strata = sa.Table(
    "strata",
    metadata,
    sa.Column("stratum_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("definition_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("parent_stratum_id", sa.Integer, sa.ForeignKey("strata.stratum_id"), nullable=True),
    sa.Column("notes", sa.Text),
)

stratum_constraints = sa.Table(
    "stratum_constraints",
    metadata,
    sa.Column("stratum_id", sa.Integer, sa.ForeignKey("strata.stratum_id"), primary_key=True),
    sa.Column("constraint_variable", sa.String, primary_key=True),
    sa.Column("operation", sa.String, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("notes", sa.Text),
)

targets = sa.Table(
    "targets",
    metadata,
    sa.Column("target_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("variable", sa.String, nullable=False),
    sa.Column("period", sa.Integer, nullable=False),
    sa.Column("stratum_id", sa.Integer, sa.ForeignKey("strata.stratum_id"), nullable=False),
    sa.Column("reform_id", sa.Integer, nullable=False, server_default="0"),
    sa.Column("value", sa.Double, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("tolerance", sa.Double, nullable=True),
    sa.Column("source", sa.Text),
    sa.Column("notes", sa.Text),
    sa.UniqueConstraint("variable", "period", "stratum_id", "reform_id", name="uq_target"),
)

uprating_factors = sa.Table(
    "uprating_factors",
    metadata,
    sa.Column("variable", sa.String, primary_key=True),
    sa.Column("from_period", sa.Integer, primary_key=True),
    sa.Column("to_period", sa.Integer, primary_key=True),
    sa.Column("factor", sa.Double, nullable=False),
)

_REQUIRED_COLUMNS = {
    "strata": {"stratum_id", "parent_stratum_id"},
    "stratum_constraints": {"stratum_id", "constraint_variable", "operation", "value"},
    "targets": {"target_id", "variable", "period", "stratum_id", "value"},
}
_OPTIONAL_TARGET_COLUMNS = ("reform_id", "active", "tolerance", "source", "notes")
_CHUNK = 5_000


def overview_select(*, with_stratum_check: bool = False) -> sa.Select:
    """The ``target_overview`` query: targets with geo_level, geographic_id, domain_variable.

    Works on SQLite and PostgreSQL (outer joins and a grouped string aggregate; no
    correlated subqueries). ``domain_variable`` lists the distinct non-geographic constraint
    variables, comma-separated (the order is the database's; calibopt sorts it when reading),
    or NULL when there are none. ``with_stratum_check`` adds ``stratum_exists`` (NULL when
    the target's stratum is missing).
    """
    sc = stratum_constraints

    def geo(variable: str, label: str) -> sa.Subquery:
        return (
            sa.select(sc.c.stratum_id, sc.c.value.label(label))
            .where(sc.c.constraint_variable == variable, sc.c.operation == "==")
            .subquery(f"geo_{label}")
        )

    cd = geo(DISTRICT, "district")
    st = geo(STATE, "state")
    distinct_vars = (
        sa.select(sc.c.stratum_id, sc.c.constraint_variable)
        .where(sc.c.constraint_variable.not_in([DISTRICT, STATE]))
        .distinct()
        .subquery("domain_vars")
    )
    dom = (
        sa.select(
            distinct_vars.c.stratum_id,
            sa.func.aggregate_strings(distinct_vars.c.constraint_variable, ",").label("domain"),
        )
        .group_by(distinct_vars.c.stratum_id)
        .subquery("domains")
    )
    t = targets
    geo_level = sa.case(
        (cd.c.district.is_not(None), sa.literal("district")),
        (st.c.state.is_not(None), sa.literal("state")),
        else_=sa.literal("national"),
    )
    geographic_id = sa.func.coalesce(cd.c.district, st.c.state, sa.literal("US"))
    check = [strata.c.stratum_id.label("stratum_exists")] if with_stratum_check else []
    query = (
        sa.select(
            t.c.target_id,
            t.c.stratum_id,
            t.c.variable,
            t.c.period,
            t.c.reform_id,
            t.c.value,
            t.c.active,
            t.c.tolerance,
            t.c.source,
            t.c.notes,
            geo_level.label("geo_level"),
            geographic_id.label("geographic_id"),
            dom.c.domain.label("domain_variable"),
            *check,
        )
        .select_from(t)
        .outerjoin(cd, cd.c.stratum_id == t.c.stratum_id)
        .outerjoin(st, st.c.stratum_id == t.c.stratum_id)
        .outerjoin(dom, dom.c.stratum_id == t.c.stratum_id)
    )
    if with_stratum_check:
        query = query.outerjoin(strata, strata.c.stratum_id == t.c.stratum_id)
    return query


def _as_tuple(value: Any, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | int | np.integer):
        value = [value]
    try:
        items = tuple("" if v is None else str(v) for v in value)
    except TypeError:
        raise InvalidProblemError(f"TargetFilter.{name} must be a list, got {value!r}.") from None
    return items


@dataclass(frozen=True)
class TargetFilter:
    """Which targets to use. Fields combine with AND; values within a field with OR.

    Parameters
    ----------
    variables
        Target variables (``"snap"``, ``"person_count"``, ...).
    domain_variables
        A target matches when one of its domain (non-geographic constraint) variables is
        listed; ``""`` matches targets without a domain.
    geo_levels
        ``"national"``, ``"state"``, ``"district"``.
    geographic_ids
        ``"US"``, state FIPS codes, district GEOIDs (ints or strings).

    ``None`` means "no restriction". :meth:`from_mapping` reads the dict form
    ``{"variables": [...], "domain_variables": [...], ...}``.
    """

    variables: tuple[str, ...] | None = None
    domain_variables: tuple[str, ...] | None = None
    geo_levels: tuple[str, ...] | None = None
    geographic_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("variables", "domain_variables", "geo_levels", "geographic_ids"):
            object.__setattr__(self, name, _as_tuple(getattr(self, name), name))
        if self.geo_levels is not None:
            bad = sorted(set(self.geo_levels) - set(GEO_LEVELS))
            if bad:
                raise InvalidProblemError(
                    f"TargetFilter.geo_levels {bad} not among {list(GEO_LEVELS)}."
                )
        if self.geographic_ids is not None:
            object.__setattr__(
                self, "geographic_ids", tuple(_canonical_geo_id(g) for g in self.geographic_ids)
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | TargetFilter | None) -> TargetFilter:
        """A filter from a dict (unknown keys are an error), a filter, or None (everything)."""
        if mapping is None:
            return cls()
        if isinstance(mapping, TargetFilter):
            return mapping
        if not isinstance(mapping, Mapping):
            raise InvalidProblemError(
                f"target filter must be a TargetFilter or a dict, got {type(mapping).__name__}."
            )
        known = {"variables", "domain_variables", "geo_levels", "geographic_ids"}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise InvalidProblemError(
                f"target filter has unknown key(s) {unknown}; use {sorted(known)}."
            )
        return cls(**dict(mapping))

    def where(self, ov: sa.Subquery) -> list[sa.ColumnElement[bool]]:
        """SQL conditions (bound parameters) on an overview subquery."""
        conds = []
        if self.variables is not None:
            conds.append(ov.c.variable.in_(self.variables))
        if self.geo_levels is not None:
            conds.append(ov.c.geo_level.in_(self.geo_levels))
        if self.geographic_ids is not None:
            conds.append(ov.c.geographic_id.in_(self.geographic_ids))
        return conds

    def matches_domain(self, domain: pd.Series) -> np.ndarray:
        """Mask of targets whose domain label matches ``domain_variables``."""
        if self.domain_variables is None:
            return np.ones(len(domain), dtype=bool)
        wanted = set(self.domain_variables)
        return np.array(
            [(d == "" and "" in wanted) or bool(set(d.split(",")) & wanted - {""}) for d in domain],
            dtype=bool,
        )


def _canonical_geo_id(value: Any) -> str:
    """'US', or an integer code as text ('37', '3701'); '037' and 37.0 become '37'."""
    text = str(value).strip()
    if text.upper() == "US":
        return "US"
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _stratum_hash(parent: int | None, constraints: Sequence[Constraint]) -> str:
    text = f"{'' if parent is None else parent}|" + "|".join(
        f"{v}\x1f{op}\x1f{val}" for v, op, val in sorted(constraints)
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parent_constraints(constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...] | None:
    """The parent's constraint set: domain -> its geography; district -> state -> nation."""
    if domain_of(constraints):
        return tuple(c for c in constraints if c[0] in (DISTRICT, STATE))
    level, geo_id = geography_of(constraints)
    if level == "district":
        return ((STATE, "==", str(int(geo_id) // 100)),)
    if level == "state":
        return ()
    return None


class TargetsDatabase:
    """A targets database (SQLite by default, any SQLAlchemy backend).

    Parameters
    ----------
    url
        A file path (SQLite), a SQLAlchemy URL (``sqlite:///targets.db``,
        ``postgresql+psycopg://user@host/db``, ``sqlite://`` for memory) or an Engine.
        The database must already hold the schema (use :meth:`create` for a new one).

    Raises
    ------
    InvalidProblemError
        The file does not exist, is not a database (corrupt or another format), or lacks
        the ``strata`` / ``stratum_constraints`` / ``targets`` tables or their columns.

    Examples
    --------
    >>> db = TargetsDatabase.create("sqlite://")
    >>> db.add_targets(pd.DataFrame({"variable": ["household_count"], "period": [2024],
    ...                              "value": [1.3e8], "constraints": [""]}))
    1
    >>> t = db.targets(period=2024)
    >>> t.loc[0, "variable"], t.loc[0, "geo_level"], float(t.loc[0, "value"])
    ('household_count', 'national', 130000000.0)
    """

    def __init__(self, url: str | os.PathLike | sa.Engine, *, _create: bool = False) -> None:
        self._owns_engine = not isinstance(url, sa.Engine)
        self.engine = url if isinstance(url, sa.Engine) else _make_engine(url, _create)
        self.url = self.engine.url.render_as_string(hide_password=True)
        try:
            if _create:
                metadata.create_all(self.engine, checkfirst=True)
                self._create_view()
            inspector = sa.inspect(self.engine)
            tables = set(inspector.get_table_names())
            views = set(inspector.get_view_names())
        except sa_exc.DatabaseError as exc:
            self.close()
            raise InvalidProblemError(
                f"{self.url} is not a readable database ({_short(exc)}); is the file corrupt "
                f"or of another format?"
            ) from None
        missing = [t for t in _REQUIRED_COLUMNS if t not in tables]
        if missing:
            self.close()
            raise InvalidProblemError(
                f"{self.url} has no {', '.join(repr(m) for m in missing)} table(s)"
                f"{' (the database is empty)' if not tables else ''}; create the schema with "
                f"TargetsDatabase.create(url) or `calibopt targets load`."
            )
        for table, required in _REQUIRED_COLUMNS.items():
            have = {c["name"] for c in inspector.get_columns(table)}
            lacking = sorted(required - have)
            if lacking:
                self.close()
                raise InvalidProblemError(
                    f"{self.url}: table {table!r} lacks column(s) {lacking}; it is not a "
                    f"targets database of the expected schema."
                )
        target_columns = {c["name"] for c in inspector.get_columns("targets")}
        self._missing_target_columns = [
            c for c in _OPTIONAL_TARGET_COLUMNS if c not in target_columns
        ]
        self.has_uprating = "uprating_factors" in tables
        self.has_overview_view = "target_overview" in views

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, url: str | os.PathLike | sa.Engine) -> TargetsDatabase:
        """Open ``url``, creating the schema (tables and the ``target_overview`` view) if
        missing. An existing database keeps its data."""
        return cls(url, _create=True)

    def close(self) -> None:
        """Release the connection pool (when this object created the engine)."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> TargetsDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TargetsDatabase({self.url!r})"

    def _create_view(self) -> None:
        inspector = sa.inspect(self.engine)
        if "target_overview" in inspector.get_view_names():
            return
        view = sa.schema.CreateView(overview_select(), "target_overview")
        with self.engine.begin() as conn:
            conn.execute(view)

    # ------------------------------------------------------------------ writing
    def add_targets(self, frame: pd.DataFrame, *, replace: bool = False) -> int:
        """Insert targets, creating their strata (and parent strata) as needed.

        Parameters
        ----------
        frame
            One row per target: ``variable``, ``period``, ``value`` and ``constraints``
            (the text form ``"state_fips == 37; age < 5"`` or a sequence of
            ``(variable, operation, value)``; empty = national); optional ``reform_id``
            (default 0), ``active`` (default True), ``tolerance`` (percent), ``source``,
            ``notes``.
        replace
            Replace targets that already exist (same variable, period, stratum, reform);
            otherwise they are an error.

        Returns
        -------
        int
            Number of targets written.
        """
        rows = _target_rows(frame)
        if not rows:
            return 0
        with self.engine.begin() as conn:
            ids = self._ensure_strata(conn, {r["constraints"] for r in rows})
            records = [
                {k: v for k, v in r.items() if k not in ("constraints", "row")}
                | {"stratum_id": ids[r["constraints"]]}
                for r in rows
            ]
            keys = [(r["variable"], r["period"], r["stratum_id"], r["reform_id"]) for r in records]
            existing = self._existing_keys(conn, keys)
            if existing and not replace:
                first = sorted(existing)[:5]
                raise InvalidProblemError(
                    f"{len(existing)} target(s) already exist (variable, period, stratum_id, "
                    f"reform_id), e.g. {first}; pass replace=True (--replace) to overwrite."
                )
            for chunk in _chunks(sorted(existing.values())):
                conn.execute(sa.delete(targets).where(targets.c.target_id.in_(chunk)))
            conn.execute(sa.insert(targets), records)
        return len(records)

    @staticmethod
    def _existing_keys(conn: sa.Connection, keys: list[tuple]) -> dict[tuple, int]:
        """``{(variable, period, stratum_id, reform_id): target_id}`` of keys already stored."""
        found = {}
        wanted = set(keys)
        t = targets
        for chunk in _chunks(sorted({k[2] for k in keys})):
            result = conn.execute(
                sa.select(
                    t.c.variable, t.c.period, t.c.stratum_id, t.c.reform_id, t.c.target_id
                ).where(t.c.stratum_id.in_(chunk))
            )
            found.update({tuple(r[:4]): int(r[4]) for r in result if tuple(r[:4]) in wanted})
        return found

    def _ensure_strata(
        self, conn: sa.Connection, sets: Iterable[tuple[Constraint, ...]]
    ) -> dict[tuple[Constraint, ...], int]:
        """Stratum ids for constraint sets, inserting missing strata and their ancestors."""
        todo: dict[tuple[Constraint, ...], tuple[Constraint, ...] | None] = {}
        stack = list(sets)
        while stack:
            cs = stack.pop()
            if cs in todo:
                continue
            parent = _parent_constraints(cs)
            todo[cs] = parent
            if parent is not None:
                stack.append(parent)

        def depth(cs: tuple[Constraint, ...]) -> int:
            d, p = 0, todo[cs]
            while p is not None:
                d, p = d + 1, todo[p]
            return d

        ids: dict[tuple[Constraint, ...], int] = {}
        by_depth: dict[int, list[tuple[Constraint, ...]]] = {}
        for cs in todo:
            by_depth.setdefault(depth(cs), []).append(cs)
        for d in sorted(by_depth):
            level = sorted(by_depth[d])
            parents = [None if todo[cs] is None else ids[todo[cs]] for cs in level]
            hashes = [_stratum_hash(p, cs) for p, cs in zip(parents, level)]
            known: dict[str, int] = {}
            for chunk in _chunks(hashes):
                res = conn.execute(
                    sa.select(strata.c.definition_hash, strata.c.stratum_id).where(
                        strata.c.definition_hash.in_(chunk)
                    )
                )
                known.update({h: int(i) for h, i in res})
            new = [(cs, p, h) for cs, p, h in zip(level, parents, hashes) if h not in known]
            if new:
                res = conn.execute(
                    sa.insert(strata).returning(
                        strata.c.stratum_id, strata.c.definition_hash, sort_by_parameter_order=True
                    ),
                    [{"definition_hash": h, "parent_stratum_id": p} for _, p, h in new],
                )
                known.update({h: int(i) for i, h in res})
                constraint_rows = [
                    {
                        "stratum_id": known[h],
                        "constraint_variable": v,
                        "operation": op,
                        "value": val,
                    }
                    for cs, _, h in new
                    for v, op, val in cs
                ]
                if constraint_rows:
                    conn.execute(sa.insert(stratum_constraints), constraint_rows)
            ids.update({cs: known[h] for cs, h in zip(level, hashes)})
        return ids

    def add_uprating(self, variable: str, from_period: int, to_period: int, factor: float) -> None:
        """Record that ``variable`` from ``from_period`` times ``factor`` serves ``to_period``
        (replacing an earlier factor for the same pair)."""
        factor = float(factor)
        if not np.isfinite(factor) or factor <= 0:
            raise InvalidProblemError(f"uprating factor must be finite and > 0, got {factor}.")
        if int(from_period) == int(to_period):
            raise InvalidProblemError("uprating needs two different periods.")
        self._require_uprating_table()
        key = (
            (uprating_factors.c.variable == variable)
            & (uprating_factors.c.from_period == int(from_period))
            & (uprating_factors.c.to_period == int(to_period))
        )
        with self.engine.begin() as conn:
            conn.execute(sa.delete(uprating_factors).where(key))
            conn.execute(
                sa.insert(uprating_factors).values(
                    variable=variable,
                    from_period=int(from_period),
                    to_period=int(to_period),
                    factor=factor,
                )
            )

    def _require_uprating_table(self) -> None:
        if not self.has_uprating:
            uprating_factors.create(self.engine, checkfirst=True)
            self.has_uprating = True

    def load_csv(self, path: str | os.PathLike, *, replace: bool = False) -> int:
        """Add the targets of a CSV file (columns as in :meth:`add_targets`; extra columns,
        such as those :meth:`to_csv` writes, are ignored). Returns the number written."""
        try:
            frame = pd.read_csv(
                path,
                dtype={"constraints": str},
                keep_default_na=False,
                na_values={"tolerance": [""], "value": [""]},
            )
        except FileNotFoundError:
            raise InvalidProblemError(f"CSV file {str(path)!r} does not exist.") from None
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InvalidProblemError(f"cannot read CSV {str(path)!r}: {exc}") from None
        return self.add_targets(frame, replace=replace)

    def to_csv(
        self,
        path: str | os.PathLike,
        *,
        filter: TargetFilter | Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> int:
        """Write every target (all periods and reforms) with its constraints to a CSV that
        :meth:`load_csv` reads back. Returns the number of rows."""
        from ..files import atomic_output

        frame = self.targets(filter, period=None, reform_id=None, active_only=False)
        frame = frame.assign(constraints=frame["constraints"].map(format_constraints))
        cols = [
            "target_id",
            "variable",
            "period",
            "reform_id",
            "value",
            "active",
            "tolerance",
            "source",
            "notes",
            "geo_level",
            "geographic_id",
            "domain_variable",
            "constraints",
            "stratum_id",
        ]
        with atomic_output(path, overwrite=overwrite) as tmp:
            frame[cols].to_csv(tmp, index=False)
        return len(frame)

    # ------------------------------------------------------------------ reading
    def targets(
        self,
        filter: TargetFilter | Mapping[str, Any] | None = None,
        *,
        period: int | None = None,
        reform_id: int | None = 0,
        active_only: bool = True,
    ) -> pd.DataFrame:
        """Targets with their overview information and constraints.

        Parameters
        ----------
        filter
            A :class:`TargetFilter` or its dict form.
        period
            The period to calibrate: for each (variable, stratum, reform) the latest target
            at or before ``period`` is used, uprated to ``period`` by the (chained) factors of
            ``uprating_factors``. A missing factor is an error naming it. None: every period,
            no uprating.
        reform_id
            Only this reform (None: all).
        active_only
            Skip targets whose ``active`` flag is false.

        Returns
        -------
        DataFrame
            Sorted by geo level, variable, domain and geography: ``target_id``,
            ``stratum_id``, ``variable``, ``period``, ``reform_id``, ``value`` (uprated),
            ``original_value``, ``uprating_factor``, ``active``, ``tolerance`` (percent),
            ``source``, ``notes``, ``geo_level``, ``geographic_id``, ``domain_variable``
            (sorted, "" for none), ``constraints`` (tuple of triples, geography included).

        Raises
        ------
        InvalidProblemError
            A target refers to a stratum that does not exist, two targets share
            (variable, period, stratum, reform), a stratum's geography is inconsistent, or
            an uprating factor is missing.
        """
        flt = TargetFilter.from_mapping(filter)
        ov = overview_select(with_stratum_check=True).subquery("ov")
        conds = flt.where(ov)
        if period is not None:
            conds.append(ov.c.period <= int(period))
        if reform_id is not None and "reform_id" not in self._missing_target_columns:
            conds.append(ov.c.reform_id == int(reform_id))
        if active_only and "active" not in self._missing_target_columns:
            conds.append(ov.c.active.is_(sa.true()) | ov.c.active.is_(None))
        query = sa.select(*[c for c in ov.c if c.name not in self._missing_target_columns])
        query = query.where(*conds)
        frame = self._read(query)
        for col in self._missing_target_columns:
            frame[col] = {"reform_id": 0, "active": True}.get(col)
        frame = self._validate_rows(frame)
        frame["domain_variable"] = (
            frame["domain_variable"]
            .fillna("")
            .map(lambda s: ",".join(sorted({v for v in s.split(",") if v})))
        )
        frame = frame.loc[flt.matches_domain(frame["domain_variable"])]
        frame = frame.drop(columns="stratum_exists")
        frame["constraints"] = self._constraint_sets(frame["stratum_id"])
        frame = self._check_geography(frame)
        frame = self._choose_period(frame, period)
        level = frame["geo_level"].map({lvl: i for i, lvl in enumerate(GEO_LEVELS)})
        geo_num = pd.to_numeric(frame["geographic_id"], errors="coerce").fillna(-1)
        frame = (
            frame.assign(_level=level, _geo=geo_num)
            .sort_values(["_level", "variable", "domain_variable", "_geo", "target_id"])
            .drop(columns=["_level", "_geo"])
            .reset_index(drop=True)
        )
        return frame

    def _read(self, query: sa.Select) -> pd.DataFrame:
        try:
            with self.engine.connect() as conn:
                result = conn.execute(query)
                columns = list(result.keys())
                rows = [tuple(r) for r in result.fetchall()]  # plain tuples: fast to frame
                return pd.DataFrame.from_records(rows, columns=columns, nrows=len(rows))
        except sa_exc.DatabaseError as exc:
            raise InvalidProblemError(f"{self.url}: query failed ({_short(exc)}).") from None

    @staticmethod
    def _validate_rows(frame: pd.DataFrame) -> pd.DataFrame:
        orphan = frame["stratum_exists"].isna()
        if orphan.any():
            bad = frame.loc[orphan, ["target_id", "stratum_id"]].head(5).to_dict("records")
            raise InvalidProblemError(
                f"{int(orphan.sum())} target(s) refer to a stratum that does not exist, e.g. "
                f"{bad}; add the stratum or delete the target."
            )
        keys = ["variable", "period", "stratum_id", "reform_id"]
        dup = frame.duplicated(keys, keep=False)
        if dup.any():
            bad = frame.loc[dup, ["target_id", *keys]].head(6).to_dict("records")
            raise InvalidProblemError(
                f"{int(dup.sum())} duplicate target rows (same variable, period, stratum and "
                f"reform), e.g. {bad}; keep one of each."
            )
        frame["period"] = frame["period"].astype(np.int64)
        frame["value"] = frame["value"].astype(np.float64)
        frame["tolerance"] = pd.to_numeric(frame["tolerance"]).astype(np.float64)
        frame["reform_id"] = frame["reform_id"].astype(np.int64)
        frame["active"] = frame["active"].map(lambda a: True if a is None else bool(a)).astype(bool)
        for col in ("source", "notes"):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
        frame["geographic_id"] = frame["geographic_id"].map(_canonical_geo_id)
        return frame

    def _constraint_sets(self, stratum_ids: pd.Series) -> list[tuple[Constraint, ...]]:
        table = self.constraints(stratum_ids.unique())
        sets: dict[int, list] = {}
        for sid, var, op, val in table[
            ["stratum_id", "constraint_variable", "operation", "value"]
        ].itertuples(index=False):
            sets.setdefault(int(sid), []).append((var, op, val))
        out = {}
        for sid, items in sets.items():
            out[sid] = normalise_constraints(items, where=f"stratum {sid}")
        return [out.get(int(s), ()) for s in stratum_ids]

    @staticmethod
    def _check_geography(frame: pd.DataFrame) -> pd.DataFrame:
        for sid, cs in zip(frame["stratum_id"], frame["constraints"]):
            geography_of(cs, where=f"stratum {sid}")
        return frame

    def constraints(self, stratum_ids: Iterable[int] | None = None) -> pd.DataFrame:
        """The constraint rows (``stratum_id``, ``constraint_variable``, ``operation``,
        ``value``) of some strata (None: all)."""
        sc = stratum_constraints
        cols = [sc.c.stratum_id, sc.c.constraint_variable, sc.c.operation, sc.c.value]
        if stratum_ids is None:
            return self._read(sa.select(*cols).order_by(sc.c.stratum_id))
        ids = sorted({int(s) for s in stratum_ids})
        parts = [self._read(sa.select(*cols).where(sc.c.stratum_id.in_(c))) for c in _chunks(ids)]
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame(columns=[c.name for c in cols])
        return pd.concat(parts, ignore_index=True)

    def uprating(self) -> pd.DataFrame:
        """All uprating factors (empty when the database has no such table)."""
        if not self.has_uprating:
            return pd.DataFrame(columns=["variable", "from_period", "to_period", "factor"])
        return self._read(sa.select(uprating_factors))

    def _choose_period(self, frame: pd.DataFrame, period: int | None) -> pd.DataFrame:
        frame = frame.assign(original_value=frame["value"], uprating_factor=1.0)
        if period is None or frame.empty:
            return frame
        latest = (
            frame.sort_values("period")
            .groupby(["variable", "stratum_id", "reform_id"], sort=False)
            .tail(1)
        )
        old = latest["period"].to_numpy() != int(period)
        if not old.any():
            return latest
        factors = _factor_graph(self.uprating())
        missing = []
        values = latest["uprating_factor"].to_numpy(dtype=float).copy()
        for pos in np.flatnonzero(old):
            var = latest["variable"].iat[pos]
            src = int(latest["period"].iat[pos])
            f = _chain(factors.get(var, {}), src, int(period))
            if f is None:
                missing.append((var, src, int(period)))
            else:
                values[pos] = f
        if missing:
            uniq = sorted(set(missing))
            raise InvalidProblemError(
                f"{len(missing)} target(s) for period {period} come from earlier periods "
                f"without an uprating factor: (variable, from, to) {uniq[:8]}; add them with "
                f"TargetsDatabase.add_uprating(variable, from_period, to_period, factor)."
            )
        latest = latest.assign(uprating_factor=values)
        return latest.assign(value=latest["original_value"] * latest["uprating_factor"])

    def geographies(self) -> dict[str, set[int]]:
        """The states and districts that have at least one target: ``{"state": {...},
        "district": {...}}`` (any period, reform or activity)."""
        ov = overview_select().subquery("ov")
        frame = self._read(sa.select(ov.c.geo_level, ov.c.geographic_id).distinct())
        out: dict[str, set[int]] = {"state": set(), "district": set()}
        for level, gid in frame.itertuples(index=False):
            if level in out:
                out[level].add(int(_canonical_geo_id(gid)))
        return out

    def summary(self) -> pd.DataFrame:
        """Number of targets per (period, geo level, variable, domain)."""
        frame = self.targets(None, period=None, reform_id=None, active_only=False)
        if frame.empty:
            return pd.DataFrame(
                columns=["period", "geo_level", "variable", "domain_variable", "n_targets"]
            )
        return (
            frame.groupby(["period", "geo_level", "variable", "domain_variable"], sort=False)
            .size()
            .rename("n_targets")
            .reset_index()
        )


# ---------------------------------------------------------------------------------- helpers
def _make_engine(url: str | os.PathLike, create: bool) -> sa.Engine:
    text = os.fspath(url)
    if "://" not in text:
        path = Path(text)
        if not create and not path.exists():
            raise InvalidProblemError(
                f"targets database {text!r} does not exist; create it with "
                f"TargetsDatabase.create({text!r}) or `calibopt targets load`."
            )
        if path.is_dir():
            raise InvalidProblemError(f"{text!r} is a directory, not a database file.")
        text = f"sqlite:///{path}"
    try:
        parsed = sa.engine.make_url(text)
    except sa_exc.ArgumentError as exc:
        raise InvalidProblemError(f"{text!r} is not a database URL ({exc}).") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database in (None, "", ":memory:"):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        elif not create and not Path(database).exists():
            raise InvalidProblemError(
                f"targets database {database!r} does not exist; create it with "
                f"TargetsDatabase.create(...) or `calibopt targets load`."
            )
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ImportError, sa_exc.ArgumentError) as exc:
        raise InvalidProblemError(f"cannot open {text!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _short(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc)).splitlines()[0]


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> list[Sequence[Any]]:
    items = list(items)
    return [items[i : i + size] for i in range(0, len(items), size)]


def _factor_graph(frame: pd.DataFrame) -> dict[str, dict[int, list[tuple[int, float]]]]:
    graph: dict[str, dict[int, list[tuple[int, float]]]] = {}
    for var, src, dst, f in frame[["variable", "from_period", "to_period", "factor"]].itertuples(
        index=False
    ):
        graph.setdefault(var, {}).setdefault(int(src), []).append((int(dst), float(f)))
    return graph


def _chain(edges: dict[int, list[tuple[int, float]]], src: int, dst: int) -> float | None:
    """Product of factors along a path src -> dst moving forward in time (direct first)."""
    best: dict[int, float] = {src: 1.0}
    frontier = [src]
    while frontier:
        nxt = []
        for node in frontier:
            for to, f in sorted(edges.get(node, []), key=lambda e: -e[0]):
                if src < to <= dst and to not in best:
                    best[to] = best[node] * f
                    nxt.append(to)
        frontier = nxt
        if dst in best:
            return best[dst]
    return None


def _target_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Validated target records from a DataFrame (see :meth:`TargetsDatabase.add_targets`)."""
    if not isinstance(frame, pd.DataFrame):
        raise InvalidProblemError(f"targets must be a DataFrame, got {type(frame).__name__}.")
    missing = sorted({"variable", "period", "value"} - set(frame.columns))
    if missing:
        raise InvalidProblemError(
            f"targets lack column(s) {missing}; needed: variable, period, value, and "
            f"constraints (text like 'state_fips == 37; age < 5', empty for national)."
        )
    n = len(frame)
    get = lambda col, default: frame[col].tolist() if col in frame.columns else [default] * n  # noqa: E731
    rows = []
    for i, (var, period, value, cons, reform, active, tol, source, notes) in enumerate(
        zip(
            frame["variable"].tolist(),
            frame["period"].tolist(),
            frame["value"].tolist(),
            get("constraints", ""),
            get("reform_id", 0),
            get("active", True),
            get("tolerance", None),
            get("source", None),
            get("notes", None),
        )
    ):
        where = f"target row {i} ({var})"
        if not isinstance(var, str) or not var.strip():
            raise InvalidProblemError(f"target row {i}: `variable` must be a non-empty string.")
        value = _number(value, where, "value")
        if value is None:
            raise InvalidProblemError(f"{where}: `value` is missing.")
        tol = _number(tol, where, "tolerance")
        if tol is not None and tol < 0:
            raise InvalidProblemError(f"{where}: tolerance must be >= 0 (percent).")
        constraints = normalise_constraints(cons, where)
        geography_of(constraints, where)
        rows.append(
            {
                "row": i,
                "variable": var.strip(),
                "period": _integer(period, where, "period"),
                "value": value,
                "constraints": constraints,
                "reform_id": _integer(reform, where, "reform_id"),
                "active": _boolean(active, where),
                "tolerance": tol,
                "source": _text(source),
                "notes": _text(notes),
            }
        )
    seen: dict[tuple, int] = {}
    for r in rows:
        key = (r["variable"], r["period"], r["constraints"], r["reform_id"])
        if key in seen:
            raise InvalidProblemError(
                f"duplicate targets: rows {seen[key]} and {r['row']} both give {r['variable']} "
                f"for period {r['period']}, reform {r['reform_id']} and constraints "
                f"'{format_constraints(r['constraints']) or '(national)'}'; keep one."
            )
        seen[key] = r["row"]
    return rows


def _number(value: Any, where: str, name: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidProblemError(f"{where}: {name} {value!r} is not a number.") from None
    if np.isnan(number):
        return None
    if not np.isfinite(number):
        raise InvalidProblemError(f"{where}: {name} must be finite, got {value!r}.")
    return number


def _integer(value: Any, where: str, name: str) -> int:
    number = _number(value, where, name)
    if number is None or not float(number).is_integer():
        raise InvalidProblemError(f"{where}: {name} must be an integer, got {value!r}.")
    return int(number)


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes", "t"):
        return True
    if text in ("false", "0", "0.0", "no", "f"):
        return False
    raise InvalidProblemError(f"{where}: active must be true/false, got {value!r}.")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text or None
