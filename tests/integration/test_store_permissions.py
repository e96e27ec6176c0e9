"""The permission-sync queue and the grants, on SQLite and PostgreSQL: duplicates collapse,
changes go before refreshes, claims exclude each other, a request that arrives mid-sync
survives it, a failure waits for its retry time, and grants round-trip as diffs."""

from __future__ import annotations

import asyncio
import warnings
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.permissions import diff_permissions
from repo_updater.store import permissions as store
from repo_updater.store import repo_permissions as grant_store
from repo_updater.store.db import migrate
from repo_updater.store.schema import UTCDateTime, permission_sync_requests, repos
from tests.support.fakes import T0
from tests.support.permissions import FakePermissionHost, add_repo, grant

LEASE = timedelta(minutes=10)
LATER = T0 + timedelta(minutes=1)


async def claim(
    engine: AsyncEngine,
    worker: str = "w1",
    limit: int = 10,
    at: datetime = LATER,
    **kw: Any,
) -> list[store.ClaimedRepo]:
    async with engine.begin() as conn:
        return await store.claim_permission_syncs(conn, worker, at, LEASE, limit, **kw)


async def row(engine: AsyncEngine, repo_id: int) -> sa.Row[tuple[object, ...]]:
    q = permission_sync_requests
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(q).where(q.c.repo_id == repo_id))).one()


async def test_duplicate_requests_collapse_keeping_the_earliest_time(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        rid = await add_repo(conn, "acme/a")
        await store.request_for_repos(conn, [rid, rid], "made_private", LATER)
        await store.request_permission_syncs(conn, [(rid, "owner_changed")], LATER)
    r = await row(engine, rid)
    assert (r.reason, r.requested_at, r.generation, r.priority) == ("owner_changed", T0, 3, 0)
    async with engine.connect() as conn:
        assert await store.pending_permission_syncs(conn) == [(rid, "owner_changed")]


async def test_changes_are_claimed_before_refreshes_and_future_ones_not_at_all(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        refreshed = [await add_repo(conn, n) for n in ("acme/old", "acme/new", "acme/f")]
    # Sync them all once: each comes back as a refresh, due at the time given.
    claimed = await claim(engine)
    async with engine.begin() as conn:
        due = {refreshed[0]: T0, refreshed[1]: T0, refreshed[2]: T0 + timedelta(days=1)}
        await store.complete_synced(conn, [(c, due[c.repo_id]) for c in claimed], LATER)
        late = await add_repo(conn, "acme/late", now=LATER)  # a change, requested later
    order = [c.repo_id for c in await claim(engine, limit=10, at=LATER + timedelta(seconds=1))]
    assert order == [late, refreshed[0], refreshed[1]]
    r = await row(engine, refreshed[0])
    assert (r.reason, r.priority, r.last_synced_at) == ("refresh", 1, LATER)


async def test_claims_exclude_each_other_until_the_lease_runs_out(engine: AsyncEngine) -> None:
    other = FakePermissionHost(host_url="https://other.example")
    async with engine.begin() as conn:
        ids = [await add_repo(conn, f"acme/r{i}") for i in range(4)]
        elsewhere = await add_repo(conn, "x/y", host=other)
    first = await claim(engine, "w1", limit=2)
    second = await claim(engine, "w2", limit=10, skip_hosts=[other.key])
    assert {c.repo_id for c in first} | {c.repo_id for c in second} == set(ids)
    assert not {c.repo_id for c in first} & {c.repo_id for c in second}
    # The skipped host's repo is still there for another worker; then every repo is claimed.
    assert [c.repo_id for c in await claim(engine, "w3")] == [elsewhere]
    assert await claim(engine, "w4") == []
    expired = await claim(engine, "w3", at=LATER + LEASE + timedelta(seconds=1))
    assert sorted(c.repo_id for c in expired) == sorted([*ids, elsewhere])


async def test_concurrent_claims_on_postgresql_skip_locked_rows(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: its claims cannot overlap in time")
    async with engine.begin() as conn:
        ids = [await add_repo(conn, f"acme/r{i}") for i in range(6)]
    async with engine.connect() as a, engine.connect() as b:
        await a.begin()
        await b.begin()
        first = await store.claim_permission_syncs(a, "w1", LATER, LEASE, 3)
        # ``b`` neither waits for ``a``'s uncommitted claim nor takes its rows.
        second = await asyncio.wait_for(
            store.claim_permission_syncs(b, "w2", LATER, LEASE, 6), timeout=10
        )
        await a.commit()
        await b.commit()
    assert sorted(c.repo_id for c in first + second) == ids


async def test_a_request_that_arrives_mid_sync_survives_it(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        rid = await add_repo(conn, "acme/a")
    (claimed,) = await claim(engine)
    async with engine.begin() as conn:  # the repo is moved while its sync is in flight
        await store.request_for_repos(conn, [rid], "owner_changed", LATER)
        await store.complete_synced(conn, [(claimed, LATER + timedelta(days=1))], LATER)
    r = await row(engine, rid)
    assert (r.reason, r.priority, r.requested_at, r.claimed_by) == ("owner_changed", 0, T0, None)
    assert [c.repo_id for c in await claim(engine, "w2")] == [rid]


async def test_a_failure_waits_for_its_retry_unless_asked_again(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        rid = await add_repo(conn, "acme/a")
    (claimed,) = await claim(engine)
    retry = LATER + timedelta(minutes=2)
    async with engine.begin() as conn:
        await store.complete_failed(conn, [(claimed, "GET ...: 502", retry)])
    r = await row(engine, rid)
    assert (r.failures, r.last_error, r.requested_at) == (1, "GET ...: 502", retry)
    assert await claim(engine, at=retry - timedelta(seconds=1)) == []
    async with engine.begin() as conn:
        await store.request_for_repos(conn, [rid], "made_private", LATER)
    (again,) = await claim(engine, at=LATER + timedelta(seconds=1))
    assert again.failures == 1


async def test_a_released_claim_is_due_again_not_before_the_host_allows(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        rid = await add_repo(conn, "acme/a")
    (claimed,) = await claim(engine)
    until = LATER + timedelta(seconds=30)
    async with engine.begin() as conn:
        await store.release(conn, [claimed], until)
    r = await row(engine, rid)
    assert (r.requested_at, r.failures, r.claimed_by) == (until, 0, None)


async def test_grants_round_trip_as_diffs_and_drop_with_their_request(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        rid = await add_repo(conn, "acme/a")
        first = diff_permissions([], [grant("Alice", "admin"), grant("bob")])
        assert await grant_store.write_diffs(conn, [(rid, first)], T0) == 2
    async with engine.begin() as conn:
        held = (await grant_store.stored_permissions(conn, [rid]))[rid]
        second = diff_permissions(held, [grant("alice", "write"), grant("carol")])
        assert await grant_store.write_diffs(conn, [(rid, second)], LATER) == 3
    async with engine.connect() as conn:
        grants = await grant_store.permissions_of(conn, rid)
        access = await grant_store.repo_access(conn, name="GITHUB.example/acme/A")
    assert [(x.login, x.permission, x.granted_at) for x in grants] == [
        ("alice", "write", T0),
        ("carol", "read", LATER),
    ]
    assert access is not None and access.repo_id == rid and len(access.permissions) == 2
    async with engine.begin() as conn:
        dropped = await grant_store.drop_permissions(conn, [rid])
        assert sorted(x.login for x in dropped[rid]) == ["alice", "carol"]
        assert await grant_store.stored_permissions(conn, [rid]) == {rid: []}
        assert await store.pending_permission_syncs(conn) == []


async def test_the_upgrade_keeps_requests_of_private_repos_only(engine: AsyncEngine) -> None:
    """Migration 0500: requests written for public (and deleted) repos go, every live private
    repo gets one."""
    from alembic import command

    from repo_updater.store.db import _alembic_config

    def downgrade(sync_conn: sa.Connection) -> None:
        cfg = _alembic_config()
        cfg.attributes["connection"] = sync_conn
        with warnings.catch_warnings():  # SQLite's batch mode reflects the expression index
            warnings.filterwarnings("ignore", message=".*expression-based index.*")
            command.downgrade(cfg, "0400")  # the revision before 0500

    async with engine.begin() as conn:
        await conn.run_sync(downgrade)
    old_requests = sa.table(
        "permission_sync_requests",
        sa.column("repo_id"), sa.column("reason"), sa.column("requested_at", UTCDateTime()),
    )  # fmt: skip
    async with engine.begin() as conn:
        ids = {}
        for name, private, deleted in (
            ("public", False, False), ("private", True, False),
            ("requested", True, False), ("gone", True, True),
        ):  # fmt: skip
            result = await conn.execute(
                repos.insert().values(
                    name=name, host_kind="github", host_url="h", external_id=name,
                    external_name=f"o/{name}", private=private, created_at=T0, updated_at=T0,
                    deleted_at=T0 if deleted else None,
                ).returning(repos.c.id)
            )  # fmt: skip
            ids[name] = result.scalar_one()
        await conn.execute(
            old_requests.insert(),
            [{"repo_id": ids[n], "reason": "modified", "requested_at": T0}
             for n in ("public", "requested", "gone")],
        )  # fmt: skip
    await migrate(engine)
    async with engine.connect() as conn:
        pending = dict(await store.pending_permission_syncs(conn))
    assert pending == {ids["private"]: "migrated", ids["requested"]: "modified"}
