"""The recent repo syncs of each external service: one row per finished sync, written in the
transaction that records the service's sync status; the newest ``KEEP`` per service are kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.store.schema import service_sync_history

KEEP = 50  # syncs kept per service


@dataclass(frozen=True, slots=True)
class SyncRecord:
    started_at: datetime
    finished_at: datetime
    complete: bool
    error: str | None
    listed: int
    added: int
    modified: int
    removed: int
    archived: int  # archive flips, either way


async def add_sync(conn: AsyncConnection, external_service_id: int, record: SyncRecord) -> None:
    h = service_sync_history
    await conn.execute(
        h.insert().values(
            external_service_id=external_service_id,
            started_at=record.started_at,
            finished_at=record.finished_at,
            complete=record.complete,
            error=record.error,
            listed=record.listed,
            added=record.added,
            modified=record.modified,
            removed=record.removed,
            archived=record.archived,
        )
    )
    newest = (
        sa.select(h.c.id)
        .where(h.c.external_service_id == external_service_id)
        .order_by(h.c.id.desc())
        .limit(KEEP)
    )
    await conn.execute(
        h.delete().where(h.c.external_service_id == external_service_id, h.c.id.not_in(newest))
    )


async def recent_syncs(
    conn: AsyncConnection, external_service_id: int, *, limit: int = KEEP
) -> list[SyncRecord]:
    """The newest ``limit`` syncs of a service, newest first."""
    h = service_sync_history
    rows = await conn.execute(
        sa.select(h)
        .where(h.c.external_service_id == external_service_id)
        .order_by(h.c.id.desc())
        .limit(limit)
    )
    return [
        SyncRecord(
            started_at=r.started_at,
            finished_at=r.finished_at,
            complete=bool(r.complete),
            error=r.error,
            listed=r.listed,
            added=r.added,
            modified=r.modified,
            removed=r.removed,
            archived=r.archived,
        )
        for r in rows
    ]
