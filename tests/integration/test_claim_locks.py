"""The changeset claim never waits on a sync request row that another transaction holds.

On PostgreSQL, ``claim_work`` used to update the won changesets' request rows with a plain
UPDATE: it waited on a row that a sync request upsert (``request_sync``, run by the webhook
worker in a transaction that may hold other request rows) had locked, while holding rows that
upsert could need next: "deadlock detected". It now locks them ``FOR UPDATE SKIP LOCKED`` in
changeset id order (the upsert's order too) and leaves a held request to a later round."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.store import changesets as store
from repo_updater.store.changeset_claims import claim_work
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
    by_id = {c.changeset_id: c for c in claimed}
    assert sorted(by_id) == ids
    assert by_id[ids[0]].request_generation == by_id[ids[2]].request_generation == 1
    assert by_id[ids[1]].request_generation is None  # not consumed: served by a later round
    async with engine.connect() as conn:
        assert (await store.pending_requests(conn))[ids[1]] == 2
