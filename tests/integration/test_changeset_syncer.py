from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.domain import (
    ChangesetEvent,
    ExternalState,
    HostKind,
    HostPullState,
    ReviewState,
)
from repo_updater.core.errors import HostError
from repo_updater.service_layer.changeset_syncer import ChangesetSyncer, SyncRound
from repo_updater.store import changesets as store
from repo_updater.store.schema import batch_change_changesets, changesets
from tests.support.fakes import T0, FakeClock, FakeSource, insert_repo, set_archived


def gitlab() -> FakeSource:
    return FakeSource(kind=HostKind.GITLAB, host_url="https://gitlab.example",
                      name_prefix="gitlab.example")  # fmt: skip


def syncer(
    engine: AsyncEngine, clock: FakeClock, *sources: FakeSource, **kw: Any
) -> ChangesetSyncer:
    return ChangesetSyncer(
        engine, {s.key: s for s in sources}, clock, worker_id="test-worker", **kw
    )


async def track(engine: AsyncEngine, source: FakeSource, repo_name: str, numbers: range,
                *, bc_name: str = "bc") -> list[int]:  # fmt: skip
    async with engine.begin() as conn:
        existing = {b.name: b.id for b in await store.list_batch_changes(conn)}
        bc = existing.get(bc_name) or await store.create_batch_change(conn, bc_name, "", T0)
        repo = await insert_repo(conn, repo_name, source=source)
        return [await store.track_changeset(conn, bc, repo, n, T0) for n in numbers]


async def views(engine: AsyncEngine) -> dict[int, store.ChangesetView]:
    async with engine.connect() as conn:
        return {v.id: v for v in await store.list_changesets(conn)}


async def pending(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        return await store.pending_requests(conn)


async def drain(s: ChangesetSyncer) -> SyncRound:
    total = SyncRound()
    while (r := await s.run_once()).claimed:
        total += r
    return total


async def test_syncs_tracked_changesets_with_one_load_per_host(engine: AsyncEngine) -> None:
    gh, gl, clock = FakeSource(), gitlab(), FakeClock()
    gh.set_pull("acme/a", 1, HostPullState.DRAFT, review_state=ReviewState.APPROVED,
                events=(ChangesetEvent("reviewed", T0, "alice"),))  # fmt: skip
    gh.set_pull("acme/b", 1, HostPullState.MERGED)
    gl.set_pull("group/c", 7, HostPullState.CLOSED)
    ids = [
        *await track(engine, gh, "acme/a", range(1, 3)),
        *await track(engine, gh, "acme/b", range(1, 2)),
        *await track(engine, gl, "group/c", range(7, 8)),
    ]
    result = await syncer(engine, clock, gh, gl).run_once()
    assert result == SyncRound(claimed=4, synced=4, failed=0, released=0, hosts=2)
    assert len(gh.calls) == 1 and len(gh.calls[0]) == 3 and len(gl.calls) == 1
    states = {i: v.external_state for i, v in (await views(engine)).items()}
    assert states == {ids[0]: ExternalState.DRAFT, ids[1]: ExternalState.DELETED,
                      ids[2]: ExternalState.MERGED, ids[3]: ExternalState.CLOSED}  # fmt: skip
    assert await pending(engine) == {}
    assert (await syncer(engine, clock, gh, gl).run_once()).claimed == 0  # nothing due yet


async def test_five_thousand_requested_at_once_are_all_synced(engine: AsyncEngine) -> None:
    gh, clock = FakeSource(page_size=100), FakeClock()
    async with engine.begin() as conn:
        bc = await store.create_batch_change(conn, "big", "", T0)
        repo = await insert_repo(conn, "acme/mono", source=gh)
        await conn.execute(changesets.insert(), [
            {"repo_id": repo, "external_id": str(n), "publication_state": "PUBLISHED",
             "created_at": T0, "updated_at": T0} for n in range(1, 5001)])  # fmt: skip
        ids = list((await conn.execute(sa.select(changesets.c.id))).scalars())
        await conn.execute(batch_change_changesets.insert(),
                           [{"batch_change_id": bc, "changeset_id": i} for i in ids])  # fmt: skip
        assert await store.request_sync(conn, ids + ids, "repo_archived", T0) == 5000
    for n in range(1, 5001):
        gh.set_pull("acme/mono", n, HostPullState.OPEN if n % 2 else HostPullState.MERGED)
    total = await drain(syncer(engine, clock, gh, batch_size=1000))
    assert total.claimed == total.synced == 5000 and total.failed == 0
    assert await pending(engine) == {}
    synced = await views(engine)
    assert len(synced) == 5000 and all(v.last_synced_at == T0 for v in synced.values())
    assert sum(v.external_state is ExternalState.MERGED for v in synced.values()) == 2500
    assert len(gh.calls) == 5 and gh.requests.by_kind["load_changesets"] == 50


async def test_request_arriving_while_a_sync_is_in_flight_survives(engine: AsyncEngine) -> None:
    gh, clock = FakeSource(gate=asyncio.Event()), FakeClock()
    (cs,) = await track(engine, gh, "acme/a", range(1, 2))
    gh.set_pull("acme/a", 1, HostPullState.OPEN)
    s = syncer(engine, clock, gh)
    in_flight = asyncio.create_task(s.run_once())
    await asyncio.wait_for(gh.loading.wait(), timeout=30)
    async with engine.begin() as conn:
        await store.request_sync(conn, [cs], "webhook", T0)
    gh.set_pull("acme/a", 1, HostPullState.MERGED)  # what the webhook was about
    assert gh.gate is not None
    gh.gate.set()
    assert (await in_flight).synced == 1
    assert await pending(engine) == {cs: 2}
    assert (await s.run_once()).synced == 1
    assert (await views(engine))[cs].external_state is ExternalState.MERGED
    assert await pending(engine) == {}


async def test_rate_limited_host_backs_off_while_another_proceeds(engine: AsyncEngine) -> None:
    gh, gl, clock = FakeSource(rate_limit_for=120.0), gitlab(), FakeClock()
    gh_ids = await track(engine, gh, "acme/a", range(1, 4))
    gl_ids = await track(engine, gl, "group/b", range(1, 3))
    s = syncer(engine, clock, gh, gl)
    assert await s.run_once() == SyncRound(claimed=5, synced=2, failed=0, released=3, hosts=2)
    assert set(s.backing_off(clock.now)) == {gh.key}
    v = await views(engine)
    assert all(v[i].external_state is ExternalState.DELETED for i in gl_ids)
    assert all(v[i].external_state is None and v[i].sync_error is None for i in gh_ids)
    assert set(await pending(engine)) == set(gh_ids)  # requests kept
    async with engine.begin() as conn:  # a new request for the backing-off host waits too
        await store.request_sync(conn, gl_ids + gh_ids, "api", clock.now)
    assert (await s.run_once()).claimed == 2 and len(gh.calls) == 1
    gh.rate_limit_for = None
    clock.advance(timedelta(seconds=119))
    assert (await s.run_once()).claimed == 0
    clock.advance(timedelta(seconds=1))
    assert (await s.run_once()).synced == 3
    assert await pending(engine) == {}


async def test_rate_limit_mid_load_keeps_what_loaded_and_releases_the_rest(
    engine: AsyncEngine,
) -> None:
    """A host that hits its limit part-way (GitHub's GraphQL budget) hands over what it
    loaded: those are written, the rest wait for the reset, nothing is marked failed."""
    gh, clock = FakeSource(rate_limit_for=300.0, rate_limit_after=2), FakeClock()
    for n in range(1, 6):
        gh.set_pull("acme/a", n, HostPullState.OPEN)
    ids = await track(engine, gh, "acme/a", range(1, 6))
    s = syncer(engine, clock, gh)
    assert await s.run_once() == SyncRound(claimed=5, synced=2, failed=0, released=3, hosts=1)
    v = await views(engine)
    assert [v[i].external_state for i in ids] == [ExternalState.OPEN] * 2 + [None] * 3
    assert all(v[i].sync_error is None for i in ids)
    assert set(await pending(engine)) == set(ids[2:])
    assert set(s.backing_off(clock.now)) == {gh.key}
    gh.rate_limit_for = None
    clock.advance(timedelta(seconds=300))
    assert (await s.run_once()).failed == 0
    v = await views(engine)
    assert await pending(engine) == {}
    assert all(v[i].external_state is ExternalState.OPEN for i in ids)


async def test_unknown_diff_stats_keep_the_stored_ones(engine: AsyncEngine) -> None:
    """A host answering from a list without diff stats (None) does not zero them."""
    gh, clock = FakeSource(), FakeClock()
    gh.set_pull("acme/a", 1, HostPullState.OPEN, additions=7, deletions=3)
    [cid] = await track(engine, gh, "acme/a", range(1, 2))
    s = syncer(engine, clock, gh)
    await s.run_once()
    gh.set_pull("acme/a", 1, HostPullState.OPEN, additions=None, deletions=None, title="new")
    async with engine.begin() as conn:
        await store.request_sync(conn, [cid], "api", clock.now)
    assert (await s.run_once()).synced == 1
    view = (await views(engine))[cid]
    assert (view.title, view.additions, view.deletions) == ("new", 7, 3)


async def test_host_errors_are_recorded_and_requests_kept(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    gh, clock = FakeSource(fail_with=HostError("GET /graphql: HTTP 502")), FakeClock()
    ids = await track(engine, gh, "acme/a", range(1, 3))
    s = syncer(engine, clock, gh)
    with caplog.at_level(logging.INFO):
        assert (await s.run_once()).failed == 2
    assert "claimed 2, synced 0, failed 2" in caplog.text
    assert {v.sync_error for v in (await views(engine)).values()} == {"GET /graphql: HTTP 502"}
    assert set(await pending(engine)) == set(ids)
    assert (await s.run_once()).claimed == 0  # backing off
    gh.fail_with = None
    clock.advance(timedelta(minutes=2))
    assert (await s.run_once()).synced == 2
    assert await pending(engine) == {}


async def test_a_buggy_source_loses_no_request_and_leaks_no_message(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    gh, clock = FakeSource(fail_with=RuntimeError("token=ghp_secret")), FakeClock()
    ids = await track(engine, gh, "acme/a", range(1, 3))
    with caplog.at_level(logging.WARNING):
        assert (await syncer(engine, clock, gh).run_once()).failed == 2
    assert "ghp_secret" not in caplog.text and "RuntimeError" in caplog.text
    assert {v.sync_error for v in (await views(engine)).values()} == {
        "internal error: RuntimeError"
    }
    assert set(await pending(engine)) == set(ids)


async def test_changesets_of_unconfigured_hosts_fail_clearly(engine: AsyncEngine) -> None:
    gh, clock = FakeSource(), FakeClock()
    await track(engine, gitlab(), "group/a", range(1, 2))
    assert (await syncer(engine, clock, gh).run_once()).failed == 1
    (v,) = (await views(engine)).values()
    assert v.sync_error == "no code host connection configured for gitlab https://gitlab.example"


async def test_closed_batch_changes_are_not_synced(engine: AsyncEngine) -> None:
    gh, clock = FakeSource(), FakeClock()
    await track(engine, gh, "acme/a", range(1, 3), bc_name="closed")
    open_ids = await track(engine, gh, "acme/b", range(1, 2), bc_name="open")
    async with engine.begin() as conn:
        closed = next(b.id for b in await store.list_batch_changes(conn) if b.name == "closed")
        await store.close_batch_change(conn, closed, T0)
    await drain(syncer(engine, clock, gh))
    assert [r.changeset_id for r in gh.calls[0]] == open_ids and len(gh.calls) == 1


async def test_archive_flip_makes_changesets_readonly_and_resyncs(engine: AsyncEngine) -> None:
    gh, clock = FakeSource(), FakeClock()
    ids = await track(engine, gh, "acme/a", range(1, 4))
    gh.set_pull("acme/a", 1, HostPullState.OPEN)
    gh.set_pull("acme/a", 2, HostPullState.DRAFT)
    gh.set_pull("acme/a", 3, HostPullState.MERGED)
    s = syncer(engine, clock, gh)
    await drain(s)
    clock.advance(timedelta(minutes=1))
    async with engine.begin() as conn:  # what the repo syncer does in its diff transaction
        repo = (await store.list_changesets(conn))[0].repo_id
        await set_archived(conn, repo, True)
        await store.rederive_for_repos(conn, [repo], now=clock.now)
        assert await store.request_syncs_for_repos(conn, [repo], "repo_archived", clock.now) == 3
    expected = [ExternalState.READONLY, ExternalState.READONLY, ExternalState.MERGED]
    assert [(await views(engine))[i].external_state for i in ids] == expected  # immediately
    assert (await drain(s)).synced == 3
    assert [(await views(engine))[i].external_state for i in ids] == expected
    async with engine.begin() as conn:
        await set_archived(conn, repo, False)
        await store.rederive_for_repos(conn, [repo], now=clock.now)
    assert [(await views(engine))[i].external_state for i in ids] == [
        ExternalState.OPEN, ExternalState.DRAFT, ExternalState.MERGED]  # fmt: skip


async def test_wake_starts_a_round_without_waiting_for_the_poll(engine: AsyncEngine) -> None:
    gh, clock = FakeSource(), FakeClock()
    s = syncer(engine, clock, gh, poll_interval=3600.0)
    stop = asyncio.Event()
    runner = asyncio.create_task(s.run(stop))
    try:
        await asyncio.sleep(0.05)  # let it find no work and go to sleep
        assert gh.calls == []
        await track(engine, gh, "acme/a", range(1, 2))
        s.wake()
        await asyncio.wait_for(gh.loading.wait(), timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=30)
    assert len(gh.calls) == 1


def test_rejects_non_positive_batch_sizes() -> None:
    from repo_updater.store.db import create_engine

    with pytest.raises(ValueError, match="positive"):
        ChangesetSyncer(create_engine("sqlite:///:memory:"), {}, FakeClock(), worker_id="w",
                        batch_size=0)  # fmt: skip
