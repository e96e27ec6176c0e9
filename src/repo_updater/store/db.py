"""Engine creation and migrations. SQLite (aiosqlite) for the embedded default, PostgreSQL
(asyncpg) at scale; the URL decides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
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
