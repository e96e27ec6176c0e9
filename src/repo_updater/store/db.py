"""Engine creation and migrations. SQLite (aiosqlite) for the embedded default, PostgreSQL
(asyncpg) at scale; the URL decides."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_KEY = 7_414_151_029  # an arbitrary constant naming "repo-updater migrations"


class DatabaseURLError(ValueError):
    pass


def async_url(url: str) -> sa.URL:
    """Map a user-facing URL (``sqlite:///file.db``, ``postgresql://...``) onto its async driver."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError
        raise DatabaseURLError(f"database: not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise DatabaseURLError(
        f"database: unsupported backend {backend!r}; use sqlite:///path or postgresql://..."
    )


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # aiosqlite's adapter: isolation is handled by SQLAlchemy; make writes durable and
    # concurrent readers possible.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _check_sqlite_directory(target: sa.URL) -> None:
    """Fail before connecting when a SQLite file's directory does not exist: aiosqlite's
    worker thread would otherwise race the closing event loop and print a traceback."""
    if not target.database or target.database == ":memory:":
        return
    directory = Path(target.database).expanduser().resolve().parent
    if not directory.is_dir():
        raise OSError(f"database: unable to open database file: {directory} is not a directory")


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
) -> AsyncEngine:
    """An engine with its own connection pool (the syncers and the API each get one, so a
    busy API never takes the syncers' connections)."""
    target = async_url(url)
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": pool_timeout}
    if target.get_backend_name() == "sqlite":
        _check_sqlite_directory(target)
        if target.database in (None, "", ":memory:"):
            pool = {}  # one shared in-memory connection (a StaticPool)
        engine = create_async_engine(target, echo=echo, **pool)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(target, echo=echo, **pool)


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""

    def run(connection: sa.Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Several processes may start at once on a fresh database: one migrates, the
            # others wait and then find nothing to do.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        cfg = _alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(run)


# PostgreSQL SQLSTATE classes that mean "the server cannot be used right now" rather than "the
# statement is wrong": connection exceptions, insufficient resources (too many connections),
# operator intervention (shutting down, starting up, connection terminated).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


# Words of an OperationalError that is about reaching the database, not about the statement
# (SQLite reports "no such table" as an OperationalError too: that one is a bug, not an outage).
_UNAVAILABLE_WORDS = ("locked", "unable to open", "disk i/o", "connect", "timeout", "terminat")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot be reached or used at the moment (a refused or
    dropped connection, a server shutting down, an exhausted pool, an SQLite file that cannot
    be opened or is locked), as opposed to a bad statement or a bug. Callers retry these
    later; the API answers them 503."""
    if isinstance(exc, (OSError, sa_exc.TimeoutError, TimeoutError, sa_exc.InterfaceError)):
        return True  # asyncpg's refused connect is a plain ConnectionRefusedError
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = getattr(exc.orig, "sqlstate", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        if isinstance(exc, sa_exc.OperationalError):
            text = str(exc.orig).lower()
            return any(word in text for word in _UNAVAILABLE_WORDS)
    return False


async def dispose_after_failure(engine: AsyncEngine) -> None:
    """Dispose of an engine whose first connection or migration failed.

    On SQLite, aiosqlite (0.22) hands a failed connection's worker thread its stop order
    without waiting for it; the thread then reports back to an event loop that may be closed
    by then, and prints "Event loop is closed" at exit under the CLI's one-line error. Wait
    (briefly, off the loop) for such threads to end while the loop still runs."""
    await engine.dispose()
    if not is_sqlite(engine):
        return
    for thread in threading.enumerate():
        if thread.name.endswith("(_connection_worker_thread)"):
            await asyncio.to_thread(thread.join, 2.0)
