"""Counts for the ``/metrics`` endpoint: a few cheap aggregate queries."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.store.schema import (
    changeset_sync_requests,
    changesets,
    external_services,
    repos,
)


@dataclass(slots=True)
class StoreCounts:
    repos: dict[str, int] = field(default_factory=dict)  # live / archived / deleted
    changesets: dict[str, int] = field(default_factory=dict)  # by external state
    changeset_sync_requests: int = 0
    services: list[tuple[str, float | None, bool]] = field(default_factory=list)


async def store_counts(conn: AsyncConnection) -> StoreCounts:
    out = StoreCounts()
    row = (
        await conn.execute(
            sa.select(
                sa.func.count().filter(repos.c.deleted_at.is_(None)),
                sa.func.count().filter(repos.c.deleted_at.is_(None), repos.c.archived.is_(True)),
                sa.func.count().filter(repos.c.deleted_at.is_not(None)),
            )
        )
    ).one()
    out.repos = {"live": row[0], "archived": row[1], "deleted": row[2]}
    states = await conn.execute(
        sa.select(changesets.c.external_state, sa.func.count()).group_by(
            changesets.c.external_state
        )
    )
    out.changesets = {(s or "UNSYNCED"): n for s, n in states}
    count = await conn.execute(sa.select(sa.func.count()).select_from(changeset_sync_requests))
    out.changeset_sync_requests = int(count.scalar_one())
    services = await conn.execute(
        sa.select(
            external_services.c.name,
            external_services.c.last_sync_at,
            external_services.c.last_sync_error,
        ).where(external_services.c.deleted_at.is_(None))
    )
    out.services = [
        (name, at.timestamp() if at else None, error is not None) for name, at, error in services
    ]
    return out
