"""The targets database: strata, their constraints, targets and uprating factors (SQLAlchemy).

:class:`TargetsDatabase` opens the users' existing SQLite files unchanged (the schema is in
:mod:`calibopt.targets.schema`) and any SQLAlchemy URL, PostgreSQL included. Every statement
is a SQLAlchemy expression with bound parameters: a filter value is always data, never SQL.
Tolerances are fractions (0.01 = 1%) in every method; the stored percentage is converted by
the ``tolerance`` column's type.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ..errors import InvalidProblemError
from .csvio import read_targets_csv, write_targets_csv
from .engine import describe_error, open_engine
from .filters import TargetFilter, canonical_geo_id
from .reading import checked_rows, constraint_sets, sorted_targets
from .rows import checked_integer, target_rows
from .schema import (
    OPTIONAL_TARGET_COLUMNS,
    REQUIRED_COLUMNS,
    create_schema,
    overview_select,
    stratum_constraints,
    targets,
    uprating_factors,
)
from .strata import chunks, ensure_strata, existing_targets
from .uprating import UPRATING_COLUMNS, uprate

__all__ = ["TargetsDatabase"]

_DEFAULTS = {"reform_id": 0, "active": True}


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
    ...                              "value": [1.3e8], "constraints": [""],
    ...                              "tolerance": [0.02]}))
    1
    >>> t = db.targets(period=2024)
    >>> t.loc[0, "variable"], t.loc[0, "geo_level"], float(t.loc[0, "tolerance"])
    ('household_count', 'national', 0.02)
    """

    def __init__(self, url: str | os.PathLike | sa.Engine, *, _create: bool = False) -> None:
        self._owns_engine = not isinstance(url, sa.Engine)
        self._pending: Path | None = None  # a new SQLite file, written on first use
        if isinstance(url, sa.Engine):
            self.engine = url
        else:
            self.engine, self._pending = open_engine(url, create=_create)
        self.url = self.engine.url.render_as_string(hide_password=True)
        self._missing_target_columns: list[str] = []
        self.has_uprating = True
        if self._pending is None:
            self._open(create=_create)

    def _open(self, *, create: bool) -> None:
        """Create the schema (``create``) and check that the database has it."""
        try:
            if create:
                create_schema(self.engine)
            inspector = sa.inspect(self.engine)
            tables = set(inspector.get_table_names())
        except sa_exc.DatabaseError as exc:
            self.close()
            raise InvalidProblemError(
                f"{self.url} is not a readable database ({describe_error(exc)}); is the file "
                f"corrupt or of another format?"
            ) from None
        missing = [t for t in REQUIRED_COLUMNS if t not in tables]
        if missing:
            self.close()
            raise InvalidProblemError(
                f"{self.url} has no {', '.join(repr(m) for m in missing)} table(s)"
                f"{' (the database is empty)' if not tables else ''}; create the schema with "
                f"TargetsDatabase.create(url) or `calibopt targets load`."
            )
        columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in REQUIRED_COLUMNS}
        for table, required in REQUIRED_COLUMNS.items():
            lacking = sorted(required - columns[table])
            if lacking:
                self.close()
                raise InvalidProblemError(
                    f"{self.url}: table {table!r} lacks column(s) {lacking}; it is not a "
                    f"targets database of the expected schema."
                )
        self._missing_target_columns = [
            c for c in OPTIONAL_TARGET_COLUMNS if c not in columns["targets"]
        ]
        self.has_uprating = "uprating_factors" in tables

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(cls, url: str | os.PathLike | sa.Engine) -> TargetsDatabase:
        """Open ``url``, creating the schema (tables and the ``target_overview`` view) if
        missing. An existing database keeps its data.

        A new SQLite file is written when first used (the first write or read), so a first
        load that fails (a bad CSV, a bad row) leaves no empty database file behind.
        """
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

    def _materialise(self) -> bool:
        """Write a pending new SQLite file with the schema; True when this call did."""
        if self._pending is None:
            return False
        path, self._pending = self._pending, None
        created = not path.exists()
        try:
            self._open(create=True)
        except BaseException:
            self._discard(path if created else None)
            raise
        return created

    def _discard(self, path: Path | None) -> None:
        """Forget a file this object created (it is pending again)."""
        if path is None:
            return
        self.engine.dispose()
        path.unlink(missing_ok=True)
        self._pending = path

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A write: a new file it creates is removed again when the write fails."""
        path = self._pending
        created = self._materialise()
        try:
            yield
        except BaseException:
            self._discard(path if created else None)
            raise

    # ------------------------------------------------------------------ writing
    def add_targets(self, frame: pd.DataFrame, *, replace: bool = False) -> int:
        """Insert targets, creating their strata (and parent strata) as needed.

        Parameters
        ----------
        frame
            One row per target: ``variable``, ``period``, ``value`` and ``constraints``
            (the text form ``"state_fips == 37; age < 5"`` or a sequence of
            ``(variable, operation, value)``; empty = national); optional ``reform_id``
            (default 0), ``active`` (default True), ``tolerance`` (a relative error as a
            fraction in [0, 1], 0.05 = 5%, as in :class:`~calibopt.CalibrationProblem`;
            empty = none), ``source``, ``notes``.
        replace
            Replace targets that already exist (same variable, period, stratum, reform);
            otherwise they are an error.

        Returns
        -------
        int
            Number of targets written.

        Raises
        ------
        InvalidProblemError
            A row is invalid (the message names its position and column: a missing or
            non-numeric value, a period or reform id that is not an integer in range, a
            tolerance outside [0, 1], a malformed constraint), two rows are the same target,
            or a target exists and ``replace`` is false. Nothing is written then.
        """
        rows = target_rows(frame)
        if not rows:
            return 0
        with self._writing(), self.engine.begin() as conn:
            ids = ensure_strata(conn, {r["constraints"] for r in rows})
            records = [
                {k: v for k, v in r.items() if k not in ("constraints", "row")}
                | {"stratum_id": ids[r["constraints"]]}
                for r in rows
            ]
            keys = [(r["variable"], r["period"], r["stratum_id"], r["reform_id"]) for r in records]
            existing = existing_targets(conn, keys)
            if existing and not replace:
                first = sorted(existing)[:5]
                raise InvalidProblemError(
                    f"{len(existing)} target(s) already exist (variable, period, stratum_id, "
                    f"reform_id), e.g. {first}; pass replace=True (--replace) to overwrite."
                )
            for chunk in chunks(sorted(existing.values())):
                conn.execute(sa.delete(targets).where(targets.c.target_id.in_(chunk)))
            conn.execute(sa.insert(targets), records)
        return len(records)

    def add_uprating(self, variable: str, from_period: int, to_period: int, factor: float) -> None:
        """Record that ``variable`` from ``from_period`` times ``factor`` serves ``to_period``
        (replacing an earlier factor for the same pair)."""
        factor = float(factor)
        if not np.isfinite(factor) or factor <= 0:
            raise InvalidProblemError(f"uprating factor must be finite and > 0, got {factor}.")
        src = checked_integer(from_period, "from_period")
        dst = checked_integer(to_period, "to_period")
        if src == dst:
            raise InvalidProblemError("uprating needs two different periods.")
        u = uprating_factors
        key = (u.c.variable == variable) & (u.c.from_period == src) & (u.c.to_period == dst)
        with self._writing():
            if not self.has_uprating:
                u.create(self.engine, checkfirst=True)
                self.has_uprating = True
            with self.engine.begin() as conn:
                conn.execute(sa.delete(u).where(key))
                conn.execute(
                    sa.insert(u).values(
                        variable=variable, from_period=src, to_period=dst, factor=factor
                    )
                )

    def load_csv(self, path: str | os.PathLike, *, replace: bool = False) -> int:
        """Add the targets of a CSV file (the columns of :mod:`calibopt.targets.csvio`:
        those of :meth:`add_targets`, with the tolerance headed ``tolerance_fraction``;
        extra columns, such as those :meth:`to_csv` writes, are ignored). Returns the number
        written; a file that cannot be read or a bad row writes nothing."""
        return self.add_targets(read_targets_csv(path), replace=replace)

    def to_csv(
        self,
        path: str | os.PathLike,
        *,
        filter: TargetFilter | Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> int:
        """Write every target (all periods and reforms) with its constraints to a CSV that
        :meth:`load_csv` reads back (tolerances as fractions, in ``tolerance_fraction``).
        Returns the number of rows."""
        frame = self.targets(filter, period=None, reform_id=None, active_only=False)
        return write_targets_csv(frame, path, overwrite=overwrite)

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
            ``original_value``, ``uprating_factor``, ``active``, ``tolerance`` (a fraction,
            0.05 = 5%; NaN when none), ``source``, ``notes``, ``geo_level``,
            ``geographic_id``, ``domain_variable`` (sorted, "" for none), ``constraints``
            (tuple of triples, geography included).

        Raises
        ------
        InvalidProblemError
            A target refers to a stratum that does not exist, two targets share
            (variable, period, stratum, reform), a stratum's geography is inconsistent, an
            uprating factor is missing, or ``period`` / ``reform_id`` is not an integer in
            range.
        """
        flt = TargetFilter.from_mapping(filter)
        ov = overview_select(with_stratum_check=True).subquery("ov")
        conds = flt.where(ov)
        if period is not None:
            period = checked_integer(period, "period")
            conds.append(ov.c.period <= period)
        if reform_id is not None and "reform_id" not in self._missing_target_columns:
            conds.append(ov.c.reform_id == checked_integer(reform_id, "reform_id"))
        if active_only and "active" not in self._missing_target_columns:
            conds.append(ov.c.active.is_(sa.true()) | ov.c.active.is_(None))
        query = sa.select(*[c for c in ov.c if c.name not in self._missing_target_columns])
        frame = self._read(query.where(*conds))
        for col in self._missing_target_columns:
            frame[col] = _DEFAULTS.get(col)
        frame = checked_rows(frame)
        frame = frame.loc[flt.matches_domain(frame["domain_variable"])]
        table = self.constraints(frame["stratum_id"].unique())
        frame["constraints"] = constraint_sets(frame["stratum_id"], table)
        return sorted_targets(uprate(frame, period, self.uprating))

    def _read(self, query: sa.Select) -> pd.DataFrame:
        self._materialise()
        try:
            with self.engine.connect() as conn:
                result = conn.execute(query)
                columns = list(result.keys())
                rows = [tuple(r) for r in result.fetchall()]  # plain tuples: fast to frame
                return pd.DataFrame.from_records(rows, columns=columns, nrows=len(rows))
        except sa_exc.DatabaseError as exc:
            raise InvalidProblemError(
                f"{self.url}: query failed ({describe_error(exc)})."
            ) from None

    def constraints(self, stratum_ids: Iterable[int] | None = None) -> pd.DataFrame:
        """The constraint rows (``stratum_id``, ``constraint_variable``, ``operation``,
        ``value``) of some strata (None: all)."""
        sc = stratum_constraints
        cols = [sc.c.stratum_id, sc.c.constraint_variable, sc.c.operation, sc.c.value]
        if stratum_ids is None:
            return self._read(sa.select(*cols).order_by(sc.c.stratum_id))
        ids = sorted({int(s) for s in stratum_ids})
        parts = [self._read(sa.select(*cols).where(sc.c.stratum_id.in_(c))) for c in chunks(ids)]
        parts = [p for p in parts if len(p)]
        if not parts:
            return pd.DataFrame(columns=[c.name for c in cols])
        return pd.concat(parts, ignore_index=True)

    def uprating(self) -> pd.DataFrame:
        """All uprating factors (empty when the database has no such table)."""
        if not self.has_uprating:
            return pd.DataFrame(columns=UPRATING_COLUMNS)
        return self._read(sa.select(uprating_factors))

    def geographies(self) -> dict[str, set[int]]:
        """The states and districts that have at least one target: ``{"state": {...},
        "district": {...}}`` (any period, reform or activity)."""
        ov = overview_select().subquery("ov")
        frame = self._read(sa.select(ov.c.geo_level, ov.c.geographic_id).distinct())
        out: dict[str, set[int]] = {"state": set(), "district": set()}
        for level, gid in frame.itertuples(index=False):
            if level in out:
                out[level].add(int(canonical_geo_id(gid)))
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
