"""Opening a targets database: a SQLite path or any SQLAlchemy URL -> an Engine.

SQLite is the default (a path or ``sqlite:///path``; ``sqlite://`` is in memory, shared by
every connection of the engine); any SQLAlchemy URL works, PostgreSQL included. SQLite
connections enforce foreign keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool

from ..errors import InvalidProblemError

__all__ = ["describe_error", "open_engine"]


def open_engine(url: str | os.PathLike, *, create: bool) -> tuple[sa.Engine, Path | None]:
    """An engine for ``url`` and, when ``create`` names a SQLite file that does not exist
    yet, that file's path (nothing is written to disk here).

    Raises
    ------
    InvalidProblemError
        A SQLite file that does not exist (without ``create``), a directory, a new file in
        a directory that does not exist, a malformed URL or a missing database driver.
    """
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
    new_file = None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database in (None, "", ":memory:"):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        elif not Path(database).exists():
            if not create:
                raise InvalidProblemError(
                    f"targets database {database!r} does not exist; create it with "
                    f"TargetsDatabase.create(...) or `calibopt targets load`."
                )
            new_file = Path(database)
            if not new_file.parent.is_dir():
                raise InvalidProblemError(
                    f"cannot create the targets database {database!r}: its directory "
                    f"{str(new_file.parent)!r} does not exist."
                )
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ImportError, sa_exc.ArgumentError) as exc:
        raise InvalidProblemError(f"cannot open {text!r}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine, new_file


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def describe_error(exc: BaseException) -> str:
    """The first line of a database driver's message."""
    return str(getattr(exc, "orig", exc)).splitlines()[0]
