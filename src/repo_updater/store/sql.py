"""Small portable SQL helpers (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks


def dialect_insert(conn: AsyncConnection, table: sa.Table) -> Any:
    """An INSERT that supports ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def insert_ignore(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows, silently skipping those that collide with an existing key."""
    for part in chunks(rows):
        await conn.execute(dialect_insert(conn, table).on_conflict_do_nothing(), list(part))
