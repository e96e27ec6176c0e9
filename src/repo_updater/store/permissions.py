"""Pending permissions syncs: one ``permission_sync_requests`` row per repo at most (duplicates
collapse), written by the repo syncer in the same transaction as its diff."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.store.schema import permission_sync_requests
from repo_updater.store.sql import insert_ignore


async def request_permission_syncs(
    conn: AsyncConnection, repo_ids: Iterable[int], reason: str, now: datetime
) -> None:
    values = [{"repo_id": rid, "reason": reason, "requested_at": now} for rid in repo_ids]
    if values:
        await insert_ignore(conn, permission_sync_requests, values)


async def pending_permission_syncs(conn: AsyncConnection) -> list[tuple[int, str]]:
    q = permission_sync_requests
    rows = await conn.execute(sa.select(q.c.repo_id, q.c.reason).order_by(q.c.repo_id))
    return [(r[0], r[1]) for r in rows]
