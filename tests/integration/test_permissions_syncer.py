"""The permissions syncer against a real store and an in-memory host: it writes only what
changed with an event per change, refreshes on schedule, keeps what it knew when the host
fails, backs a rate-limiting host off, and never drops a request that arrives mid-sync."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.domain import HostKind
from repo_updater.core.errors import Forbidden, HostError, RateLimited
from repo_updater.core.permissions import AccountPermission, RepoRef
from repo_updater.service_layer.permissions_syncer import PermissionRound, PermissionsSyncer
from repo_updater.store import events as event_store
from repo_updater.store import permissions as store
from repo_updater.store.schema import permission_sync_requests, repos
from tests.support.fakes import FakeClock
from tests.support.permissions import FakePermissionHost, add_repo, grant, stored

DAY = timedelta(days=1)
DEADLINE = 30.0


def syncer(
    engine: AsyncEngine, clock: FakeClock, *hosts: FakePermissionHost, **kw: Any
) -> PermissionsSyncer:
    kw.setdefault("draw", lambda: 0.5)
    return PermissionsSyncer(
        engine, {h.key: h for h in hosts}, clock, worker_id="test-worker", **kw
    )


async def events(engine: AsyncEngine) -> list[tuple[str, int | None, str]]:
    async with engine.connect() as conn:
        rows = await event_store.list_events(conn)
    return [(e.kind, e.repo_id, e.payload["login"]) for e in rows]


async def status(engine: AsyncEngine, repo_id: int) -> store.SyncStatus:
    async with engine.connect() as conn:
        found = await store.sync_status(conn, repo_id)
    assert found is not None
    return found


async def test_first_sync_writes_grants_and_an_unchanged_resync_writes_nothing(
    engine: AsyncEngine,
) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    host.grants["acme/a"] = [grant("alice", "admin"), grant("bob"), grant("Bob", "write")]
    host.grants["acme/b"] = [grant("carol")]
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
        b = await add_repo(conn, "acme/b")
    s = syncer(engine, clock, host, refresh_jitter=0.1)
    first = await s.run_once()
    assert first == PermissionRound(claimed=2, synced=2, rows_written=3, events=3)
    assert await stored(engine, a) == {"alice": "admin", "Bob": "write"}
    assert sorted(await events(engine)) == [
        ("PermissionGranted", a, "Bob"),
        ("PermissionGranted", a, "alice"),
        ("PermissionGranted", b, "carol"),
    ]
    # Refreshed once the interval less the jitter drawn for it (0.5 x 10%) has passed.
    assert (await status(engine, a)).due_at == clock.now + DAY * 0.95
    assert await s.run_once() == PermissionRound()
    clock.advance(DAY)
    again = await s.run_once()
    assert again == PermissionRound(claimed=2, synced=2, rows_written=0, events=0)
    assert len(await events(engine)) == 3 and s.stats.synced == 4


async def test_a_removed_collaborator_is_revoked_and_a_changed_level_recorded(
    engine: AsyncEngine,
) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    host.grants["acme/a"] = [grant("alice", "admin"), grant("bob"), grant("carol")]
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
    s = syncer(engine, clock, host)
    await s.run_once()
    host.grants["acme/a"] = [grant("alice", "admin"), grant("bob", "write")]
    clock.advance(DAY)
    result = await s.run_once()
    assert (result.rows_written, result.events) == (2, 2)
    assert await stored(engine, a) == {"alice": "admin", "bob": "write"}
    assert (await events(engine))[-2:] == [
        ("PermissionChanged", a, "bob"),
        ("PermissionRevoked", a, "carol"),
    ]


async def test_a_failed_sync_keeps_what_was_known_and_retries_later(engine: AsyncEngine) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    host.grants["acme/a"] = [grant("alice")]
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
        b = await add_repo(conn, "acme/b")
    s = syncer(engine, clock, host)
    await s.run_once()
    host.fail["acme/a"] = Forbidden(
        "GET /repos/acme/a/collaborators: 403 forbidden: Must have push access"
    )
    host.fail["acme/b"] = RuntimeError("a bug in the source")
    clock.advance(DAY)
    result = await s.run_once()
    assert (result.synced, result.failed) == (0, 2)
    assert await stored(engine, a) == {"alice": "read"}
    failed = await status(engine, a)
    assert failed.failures == 1 and "Must have push access" in (failed.last_error or "")
    assert (await status(engine, b)).last_error == "internal error: RuntimeError"
    assert failed.due_at == clock.now + timedelta(minutes=2)
    assert await s.run_once() == PermissionRound()  # not before its retry time
    host.fail.clear()
    clock.advance(timedelta(minutes=2))
    assert (await s.run_once()).synced == 2
    assert (await status(engine, a)).failures == 0


async def test_a_rate_limited_host_backs_off_while_the_others_carry_on(
    engine: AsyncEngine,
) -> None:
    gh, clock = FakePermissionHost(), FakeClock()
    gl = FakePermissionHost(kind=HostKind.GITLAB, host_url="https://gitlab.example")
    gl.grants["group/p"] = [grant("dave")]
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
        p = await add_repo(conn, "group/p", host=gl)
    gh.rate_limit_for = 120.0
    s = syncer(engine, clock, gh, gl)
    result = await s.run_once()
    assert (result.synced, result.released, result.failed) == (1, 1, 0)
    assert await stored(engine, p) == {"dave": "read"}
    assert s.backing_off(clock.now) == {gh.key: clock.now + timedelta(seconds=120)}
    released = await status(engine, a)
    assert (released.failures, released.due_at) == (0, clock.now + timedelta(seconds=120))
    gh.rate_limit_for = None
    clock.advance(timedelta(seconds=121))
    assert (await s.run_once()).synced == 1


async def test_a_request_that_arrives_mid_sync_is_synced_again(engine: AsyncEngine) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    host.grants["acme/a"] = [grant("alice")]
    host.gate = asyncio.Event()
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
    s = syncer(engine, clock, host)
    round_ = asyncio.create_task(s.run_once())
    await asyncio.wait_for(host.loading.wait(), 10)
    host.grants["acme/a"] = [grant("alice"), grant("bob")]  # changed after the host answered
    async with engine.begin() as conn:
        await store.request_for_repos(conn, [a], "owner_changed", clock.now)
    host.gate.set()
    await round_
    assert (await status(engine, a)).reason == "owner_changed"
    assert (await s.run_once()).synced == 1
    assert await stored(engine, a) == {"alice": "read", "bob": "read"}
    assert (await status(engine, a)).reason == "refresh"


async def test_public_and_deleted_repos_need_no_sync(engine: AsyncEngine) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    host.grants["acme/a"] = [grant("alice")]
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
        gone = await add_repo(conn, "acme/gone")
        await conn.execute(repos.update().where(repos.c.id == gone).values(deleted_at=clock.now))
    s = syncer(engine, clock, host)
    assert (await s.run_once()).skipped == 1
    async with engine.begin() as conn:  # made public behind our back (no repo sync saw it)
        await conn.execute(repos.update().where(repos.c.id == a).values(private=False))
        await store.request_for_repos(conn, [a], "requested", clock.now)
    result = await s.run_once()
    assert (result.skipped, result.rows_written) == (1, 1)
    assert await stored(engine, a) == {} and host.calls == ["acme/a"]
    assert (await events(engine))[-1] == ("PermissionRevoked", a, "alice")
    async with engine.connect() as conn:
        count = await conn.execute(sa.select(sa.func.count()).select_from(permission_sync_requests))
    assert count.scalar_one() == 0


async def test_a_worker_that_lost_its_claim_writes_nothing(engine: AsyncEngine) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    host.grants["acme/a"] = [grant("alice")]
    host.gate = asyncio.Event()
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
    slow = syncer(engine, clock, host, lease=timedelta(minutes=1))
    round_ = asyncio.create_task(slow.run_once())
    await asyncio.wait_for(host.loading.wait(), 10)
    clock.advance(timedelta(minutes=2))  # the lease ran out; another worker takes the repo
    async with engine.begin() as conn:
        (taken,) = await store.claim_permission_syncs(conn, "other", clock.now, DAY, 10)
    host.gate.set()
    assert (await round_).synced == 0
    assert await stored(engine, a) == {} and taken.repo_id == a


async def test_shutdown_mid_round_hands_the_claims_back(engine: AsyncEngine) -> None:
    """Cancelled while the host answers (``serve`` stopping), the round releases its claims:
    another worker syncs the repo at once instead of after the lease, no failure counted."""
    host, clock = FakePermissionHost(), FakeClock()
    host.grants["acme/a"] = [grant("alice")]
    host.gate = asyncio.Event()
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
    s = syncer(engine, clock, host, lease=DAY)
    round_ = asyncio.create_task(s.run_once())
    await asyncio.wait_for(host.loading.wait(), 10)
    round_.cancel()
    with pytest.raises(asyncio.CancelledError):
        await round_
    async with engine.begin() as conn:
        (taken,) = await store.claim_permission_syncs(conn, "other", clock.now, DAY, 10)
    assert taken.repo_id == a and taken.failures == 0
    assert (await status(engine, a)).reason == "added"


async def test_a_repo_on_an_unconfigured_host_fails_with_a_clear_error(
    engine: AsyncEngine,
) -> None:
    clock = FakeClock()
    elsewhere = FakePermissionHost(host_url="https://ghe.example")
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a", host=elsewhere)
    result = await syncer(engine, clock, FakePermissionHost()).run_once()
    assert result.failed == 1
    error = (await status(engine, a)).last_error or ""
    assert "no code host connection configured for github https://ghe.example" in error


async def test_sync_until_idle_drains_the_queue_in_batches(engine: AsyncEngine) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    async with engine.begin() as conn:
        for i in range(25):
            host.grants[f"acme/r{i}"] = [grant(f"user{i}")]
            await add_repo(conn, f"acme/r{i}")
    total = await syncer(engine, clock, host, batch_size=10, write_chunk=4).sync_until_idle()
    assert (total.claimed, total.synced, total.rows_written) == (25, 25, 25)


async def test_a_host_error_is_recorded_not_raised(engine: AsyncEngine) -> None:
    host, clock = FakePermissionHost(), FakeClock()
    host.fail["acme/a"] = HostError("GET /repos/acme/a/collaborators: HTTP 502")
    async with engine.begin() as conn:
        a = await add_repo(conn, "acme/a")
    assert (await syncer(engine, clock, host).run_once()).failed == 1
    assert "HTTP 502" in ((await status(engine, a)).last_error or "")


async def test_a_rate_limit_stops_the_other_requests_to_that_host(engine: AsyncEngine) -> None:
    """The first RateLimited cancels the host's fetches still in flight (they would only be
    refused too): every repo is handed back, none hangs the round."""

    class Refusing(FakePermissionHost):
        async def load_permissions(self, repo: RepoRef) -> list[AccountPermission]:
            self.calls.append(repo.name)
            if repo.name == "acme/a":
                await asyncio.sleep(0.01)
                raise RateLimited("secondary rate limit", retry_after=60.0)
            await asyncio.Event().wait()  # would wait forever: only a cancel ends it
            return []

    host, clock = Refusing(), FakeClock()
    async with engine.begin() as conn:
        for name in ("acme/a", "acme/b", "acme/c"):
            await add_repo(conn, name)
    result = await asyncio.wait_for(syncer(engine, clock, host).run_once(), timeout=DEADLINE)
    assert (result.claimed, result.released, result.synced, result.failed) == (3, 3, 0, 0)
    clock.advance(timedelta(seconds=59))
    assert await syncer(engine, clock, host).run_once() == PermissionRound()
