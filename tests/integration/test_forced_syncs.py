"""Forced syncs coalesce (issue 7, item 4): however many are asked for, a service or changeset
is synced at most once per gap, each extra request is told when the sync is due, and a request
made while a sync runs is not lost when that sync ends."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.domain import ChangesetSnapshot, HostKind, HostPullState
from repo_updater.service_layer.forced_syncs import force_changeset_sync, force_service_sync
from repo_updater.store import changesets as cs_store
from repo_updater.store import external_services as service_store
from repo_updater.store.changeset_claims import SyncOutcome, claim_work, complete_syncs
from tests.support.fakes import T0, insert_repo

GAP = timedelta(seconds=10)
S = timedelta(seconds=1)
LEASE = timedelta(minutes=5)


OK = service_store.SyncCounters(failures=0, unchanged=0)


async def service(conn: AsyncConnection) -> int:
    registered = await service_store.upsert_external_service(
        conn, name="gh", kind=HostKind.GITHUB, url="https://gh.test", config_hash="", now=T0
    )
    return registered.id


async def due(conn: AsyncConnection, at: timedelta) -> bool:
    return "gh" in await service_store.due_services(conn, T0 + at)


async def test_forced_service_syncs_coalesce_to_one_per_gap(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        sid = await service(conn)
        # A sync that started at T0 and ended at T0+1s; the next one is due in an hour.
        await service_store.record_service_sync(
            conn,
            sid,
            now=T0 + S,
            error=None,
            next_at=T0 + 3600 * S,
            started=T0,
            counters=OK,
        )
        assert not await due(conn, 2 * S)
        first = await force_service_sync(conn, "gh", T0 + 2 * S, GAP)
        assert first is not None and (first.due_at, first.coalesced) == (T0 + S + GAP, False)
        for t in range(3, 11):  # a burst: each is told the same time, none adds a sync
            again = await force_service_sync(conn, "gh", T0 + t * S, GAP)
            assert again is not None and (again.due_at, again.coalesced) == (first.due_at, True)
        assert not await due(conn, 10 * S)
        assert await due(conn, 11 * S)
        assert await force_service_sync(conn, "nope", T0, GAP) is None

        # The due sync runs from T0+11s; a request made while it runs gets a sync after it.
        assert await service_store.claim_service(
            conn, sid, token="run", now=T0 + 11 * S, until=T0 + 11 * S + LEASE
        )
        during = await force_service_sync(conn, "gh", T0 + 12 * S, GAP)
        assert during is not None and (during.due_at, during.coalesced) == (T0 + 22 * S, False)
        await service_store.record_service_sync(
            conn,
            sid,
            now=T0 + 13 * S,
            error=None,
            next_at=T0 + 3611 * S,
            started=T0 + 11 * S,
            counters=OK,
        )
        await service_store.release_service(conn, sid, token="run")
        assert not await due(conn, 21 * S)
        assert await due(conn, 22 * S)  # not lost when the running sync ended

        # The request that a sync served is cleared by it.
        await service_store.record_service_sync(
            conn,
            sid,
            now=T0 + 23 * S,
            error=None,
            next_at=T0 + 3622 * S,
            started=T0 + 22 * S,
            counters=OK,
        )
        assert not await due(conn, 100 * S)
        (status,) = await service_store.list_services(conn)
        assert status.sync_requested_at is None


async def test_no_gap_syncs_at_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        sid = await service(conn)
        await service_store.record_service_sync(
            conn,
            sid,
            now=T0 + S,
            error=None,
            next_at=T0 + 3600 * S,
            started=T0,
            counters=OK,
        )
        forced = await force_service_sync(conn, "gh", T0 + 2 * S, timedelta(0))
        assert forced is not None and forced.due_at == T0 + 2 * S
        assert await due(conn, 2 * S)


async def test_forced_changeset_syncs_coalesce(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc = await cs_store.create_batch_change(conn, "bc", "", T0)
        repo = await insert_repo(conn, "acme/widgets")
        cs = await cs_store.track_changeset(conn, bc, repo, 1, T0)
        # Tracking requested a sync: a forced one adds nothing.
        pending = await force_changeset_sync(conn, cs, T0, GAP, "api")
        assert pending is not None and (pending.due_at, pending.coalesced) == (T0, True)
        (claimed,) = await claim_work(conn, "w", T0, LEASE, 10)
        snap = ChangesetSnapshot(cs, 1, HostPullState.OPEN)
        await complete_syncs(conn, [SyncOutcome(claimed, snap)], T0 + S)

        # Synced a second ago: parked until the gap has passed; more requests coalesce.
        parked = await force_changeset_sync(conn, cs, T0 + 2 * S, GAP, "api")
        assert parked is not None and (parked.due_at, parked.coalesced) == (T0 + 11 * S, True)
        again = await force_changeset_sync(conn, cs, T0 + 3 * S, GAP, "api")
        assert again is not None and again.due_at == T0 + 11 * S
        assert await claim_work(conn, "w", T0 + 10 * S, LEASE, 10) == []
        (claimed,) = await claim_work(conn, "w", T0 + 11 * S, LEASE, 10)
        assert claimed.request_generation == 1
        await complete_syncs(conn, [SyncOutcome(claimed, snap)], T0 + 12 * S)
        assert await cs_store.pending_requests(conn) == {}

        # Long after the last sync: requested at once.
        now = await force_changeset_sync(conn, cs, T0 + 100 * S, GAP, "api")
        assert now is not None and (now.due_at, now.coalesced) == (T0 + 100 * S, False)
        assert list(await cs_store.pending_requests(conn)) == [cs]
        assert await force_changeset_sync(conn, 999, T0, GAP, "api") is None
