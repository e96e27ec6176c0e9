"""The ``events`` outbox: one row per repo event, written in the same transaction as the change
it reports (see ``core.diff.page_events``), and read by the CLI and the API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import RepoEvent
from repo_updater.store.schema import events


async def add_events(
    conn: AsyncConnection,
    external_service_id: int | None,
    rows: Sequence[RepoEvent],
    now: datetime,
) -> None:
    if not rows:
        return
    await conn.execute(
        events.insert(),
        [
            {
                "kind": str(e.kind),
                "repo_id": e.repo_id,
                "external_service_id": external_service_id,
                "payload": dict(e.payload),
                "created_at": now,
            }
            for e in rows
        ],
    )


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    kind: str
    repo_id: int | None
    payload: dict[str, Any]
    created_at: datetime


async def list_events(
    conn: AsyncConnection, *, kind: str | None = None, after_id: int = 0, limit: int = 1000
) -> list[Event]:
    query = sa.select(events).where(events.c.id > after_id).order_by(events.c.id).limit(limit)
    if kind is not None:
        query = query.where(events.c.kind == kind)
    return [
        Event(id=r.id, kind=r.kind, repo_id=r.repo_id, payload=r.payload, created_at=r.created_at)
        for r in await conn.execute(query)
    ]


async def newest_events(
    conn: AsyncConnection, *, kind: str | None = None, limit: int = 100
) -> list[Event]:
    """The newest ``limit`` events, oldest first."""
    query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
    if kind is not None:
        query = query.where(events.c.kind == kind)
    rows = list(await conn.execute(query))
    return [
        Event(id=r.id, kind=r.kind, repo_id=r.repo_id, payload=r.payload, created_at=r.created_at)
        for r in reversed(rows)
    ]


async def prune_events(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` events created before ``before`` (oldest first, on the
    ``created_at`` index); returns how many. The caller loops in short transactions."""
    oldest = (
        sa.select(events.c.id)
        .where(events.c.created_at < before)
        .order_by(events.c.created_at, events.c.id)
        .limit(limit)
    )
    result = await conn.execute(events.delete().where(events.c.id.in_(oldest.scalar_subquery())))
    return int(result.rowcount)
