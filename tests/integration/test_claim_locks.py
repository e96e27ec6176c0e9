"""The changeset claim never waits on a sync request row that another transaction holds.

On PostgreSQL, ``claim_work`` used to update the won changesets' request rows with a plain
UPDATE: it waited on a row that a sync request upsert (``request_sync``, run by the webhook
worker in a transaction that may hold other request rows) had locked, while holding rows that
upsert could need next: "deadlock detected". The claim now only reads request rows; the
re-request the upsert made survives the sync the claim started (its generation is newer)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.domain import ChangesetSnapshot, HostPullState
from repo_updater.store import changesets as store
from repo_updater.store.changeset_claims import SyncOutcome, claim_work, complete_syncs
from tests.support.fakes import T0, insert_repo

LEASE = timedelta(minutes=5)


async def test_claim_skips_a_request_row_an_upsert_holds(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: no row locks to wait on")
    async with engine.begin() as conn:
        bc = await store.create_batch_change(conn, "bc", "", T0)
        repo = await insert_repo(conn, "acme/widgets")
        ids = [await store.track_changeset(conn, bc, repo, n, T0) for n in (1, 2, 3)]
    async with engine.connect() as upserter, engine.connect() as claimer:
        await upserter.begin()
        # holds the request row of ids[1] (generation bumped) until it commits
        assert await store.request_sync(upserter, [ids[1]], "webhook:pull_request", T0) == 1
        await claimer.begin()
        claimed = await asyncio.wait_for(claim_work(claimer, "w", T0, LEASE, 10), timeout=10)
        await claimer.commit()
        await upserter.commit()
    assert sorted(c.changeset_id for c in claimed) == ids
    async with engine.begin() as conn:
        synced = [SyncOutcome(c, ChangesetSnapshot(c.changeset_id, c.number, HostPullState.OPEN))
                  for c in claimed]  # fmt: skip
        await complete_syncs(conn, synced, T0 + LEASE / 10)
        # Consumed, but not the one re-requested while it synced: a later round serves it.
        assert await store.pending_requests(conn) == {ids[1]: 2}
