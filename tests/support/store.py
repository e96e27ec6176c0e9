"""Store helpers for tests: write rows the way a long history would have left them, and read
what a test asserts on."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.domain import PublicationState
from repo_updater.store import changesets as cs_store
from repo_updater.store.schema import (
    batch_change_changesets,
    changeset_sync_requests,
    changesets,
    repos,
)
from tests.support.fakes import TickingClock


async def track_one_per_repo(engine: AsyncEngine, *, host_state: str = "OPEN") -> int:
    """A batch change with one synced changeset on every stored repo (bulk insert)."""
    clock = TickingClock()
    async with engine.begin() as conn:
        bc = await cs_store.create_batch_change(conn, "bc", "", clock())
        repo_ids = [r[0] for r in await conn.execute(sa.select(repos.c.id))]
        now = clock()
        published = PublicationState.PUBLISHED.value
        rows = [
            {"repo_id": rid, "external_id": "1", "publication_state": published,
             "host_state": host_state, "external_state": host_state, "next_sync_at": None,
             "created_at": now, "updated_at": now}
            for rid in repo_ids
        ]  # fmt: skip
        for start in range(0, len(rows), 500):
            await conn.execute(changesets.insert(), rows[start : start + 500])
        cs_ids = [r[0] for r in await conn.execute(sa.select(changesets.c.id))]
        await conn.execute(
            batch_change_changesets.insert(),
            [{"batch_change_id": bc, "changeset_id": c} for c in cs_ids],
        )
    return bc


async def pending(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(changeset_sync_requests.c.changeset_id, changeset_sync_requests.c.reason)
        )
        return {r[0]: r[1] for r in rows}
