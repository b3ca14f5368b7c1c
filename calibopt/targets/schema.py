"""The tables of a targets database and the ``target_overview`` query (SQLAlchemy Core).

The schema is that of the SQLite databases of existing local-area calibration pipelines, so
their files open unchanged:

``strata``
    ``stratum_id`` (primary key), ``definition_hash`` (unique: SHA-256 of the parent id and
    the sorted constraints), ``parent_stratum_id`` (references ``strata``), ``notes``.
``stratum_constraints``
    ``stratum_id``, ``constraint_variable``, ``operation``, ``value`` (TEXT), ``notes``;
    primary key (``stratum_id``, ``constraint_variable``, ``operation``).
``targets``
    ``target_id``, ``variable``, ``period``, ``stratum_id``, ``reform_id`` (0 = current law),
    ``value``, ``active``, ``tolerance``, ``source``, ``notes``; unique (``variable``,
    ``period``, ``stratum_id``, ``reform_id``). The users' schema stores ``tolerance`` as a
    *percentage* relative error; calibopt reads and writes it as a *fraction* (0.01 = 1%),
    the unit of :class:`~calibopt.CalibrationProblem`'s ``tolerance``. The column's type,
    :class:`PercentTolerance`, is the one place that converts.
``uprating_factors`` (calibopt's addition, optional when reading)
    ``variable``, ``from_period``, ``to_period``, ``factor``: a target from ``from_period``
    is multiplied by ``factor`` to serve ``to_period``; factors chain (2022->2023->2024).
``target_overview`` (a view)
    Every target with ``geo_level`` (national / state / district), ``geographic_id``
    ('US', a state FIPS code or a district GEOID) and ``domain_variable`` (the
    non-geographic constraint variables). :func:`overview_select` is the same query as a
    SQLAlchemy expression, which calibopt itself uses (so a database without the view works).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .constraints import DISTRICT, STATE

__all__ = [
    "INT_RANGE",
    "OPTIONAL_TARGET_COLUMNS",
    "PERCENT",
    "REQUIRED_COLUMNS",
    "PercentTolerance",
    "create_schema",
    "metadata",
    "overview_select",
    "strata",
    "stratum_constraints",
    "targets",
    "uprating_factors",
]

PERCENT = 100.0
"""Stored tolerance (percent) = calibopt tolerance (fraction) x ``PERCENT``."""

INT_RANGE = (-(2**31), 2**31 - 1)
"""The values an INTEGER column holds on every backend (PostgreSQL's INTEGER is 32-bit)."""


class PercentTolerance(sa.types.TypeDecorator):
    """A relative tolerance: a fraction in Python (0.01 = 1%), a percentage in the database.

    The users' schema documents ``targets.tolerance`` as a percentage relative error; this
    column type multiplies by 100 when writing and divides by 100 when reading, so every
    calibopt API (``add_targets``, ``targets()``, CSV files, ``CalibrationProblem``) sees the
    same unit. NULL stays NULL (no tolerance given).
    """

    impl = sa.Double
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> float | None:
        return None if value is None else float(value) * PERCENT

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> float | None:
        return None if value is None else float(value) / PERCENT


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
    sa.Column("tolerance", PercentTolerance, nullable=True),
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

REQUIRED_COLUMNS = {
    "strata": {"stratum_id", "parent_stratum_id"},
    "stratum_constraints": {"stratum_id", "constraint_variable", "operation", "value"},
    "targets": {"target_id", "variable", "period", "stratum_id", "value"},
}
"""The columns calibopt needs in a database it did not create."""

OPTIONAL_TARGET_COLUMNS = ("reform_id", "active", "tolerance", "source", "notes")
"""Columns of ``targets`` a database may lack (read as 0, true, NULL, NULL, NULL)."""


def overview_select(*, with_stratum_check: bool = False) -> sa.Select:
    """The ``target_overview`` query: targets with geo_level, geographic_id, domain_variable.

    Works on SQLite and PostgreSQL (outer joins and a grouped string aggregate; no
    correlated subqueries). ``domain_variable`` lists the distinct non-geographic constraint
    variables, comma-separated (the order is the database's; calibopt sorts it when reading),
    or NULL when there are none. ``with_stratum_check`` adds ``stratum_exists`` (NULL when
    the target's stratum is missing). Selected through SQLAlchemy, ``tolerance`` is a
    fraction (see :class:`PercentTolerance`); the database view itself shows the stored
    percentage.
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


def create_schema(engine: sa.Engine) -> None:
    """Create the missing tables and the ``target_overview`` view (existing ones are kept)."""
    metadata.create_all(engine, checkfirst=True)
    if "target_overview" in sa.inspect(engine).get_view_names():
        return
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateView(overview_select(), "target_overview"))
