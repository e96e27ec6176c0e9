from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.changeset_state import derive_external_state
from repo_updater.core.domain import (
    BatchChangeState,
    ChangesetEvent,
    ChangesetSnapshot,
    CheckState,
    ExternalState,
    HostPullState,
    PublicationState,
    ReviewState,
)
from repo_updater.core.schedule import MAX_SYNC_DELAY, retry_at
from repo_updater.store import changesets as store
from repo_updater.store.changeset_claims import (
    ClaimedChangeset,
    claim_work,
    complete_sync,
    release_claims,
)
from repo_updater.store.schema import changeset_events, changeset_sync_requests, changesets
from tests.support.fakes import T0, count, insert_repo, set_archived

LEASE = timedelta(minutes=5)


async def claim(conn: AsyncConnection, worker: str = "w1", at: timedelta = timedelta(0),
                limit: int = 100) -> list[ClaimedChangeset]:  # fmt: skip
    return await claim_work(conn, worker, T0 + at, LEASE, limit)


def snap(cs: ClaimedChangeset, state: HostPullState = HostPullState.OPEN,
         **kw: object) -> ChangesetSnapshot:  # fmt: skip
    return ChangesetSnapshot(cs.changeset_id, cs.number, state, **kw)  # type: ignore[arg-type]


async def setup(
    conn: AsyncConnection, n: int = 1, *, archived: bool = False
) -> tuple[int, int, list[int]]:
    """A batch change tracking ``n`` pull requests on one repo."""
    bc = await store.create_batch_change(conn, "bc", "", T0)
    repo = await insert_repo(conn, "acme/widgets", archived=archived)
    ids = [await store.track_changeset(conn, bc, repo, i, T0) for i in range(1, n + 1)]
    return bc, repo, ids


# --- batch changes and tracking -----------------------------------------------------------------


async def test_batch_changes_create_list_close(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        a = await store.create_batch_change(conn, "upgrade-node", "Node 22 everywhere", T0)
        b = await store.create_batch_change(conn, "fix-license", "", T0)
        with pytest.raises(store.BatchChangeExists, match="'upgrade-node' exists"):
            await store.create_batch_change(conn, "upgrade-node", "again", T0)
        await store.close_batch_change(conn, b, T0 + timedelta(hours=1))
        await store.close_batch_change(conn, b, T0 + timedelta(hours=2))  # idempotent
        with pytest.raises(store.BatchChangeNotFound):
            await store.close_batch_change(conn, 999, T0)
        views = await store.list_batch_changes(conn)
        open_ = await store.list_batch_changes(conn, BatchChangeState.OPEN)
    assert [(v.id, v.name, v.state) for v in views] == [
        (a, "upgrade-node", BatchChangeState.OPEN), (b, "fix-license", BatchChangeState.CLOSED)
    ]  # fmt: skip
    assert views[1].closed_at == T0 + timedelta(hours=1)
    assert [v.id for v in open_] == [a]


async def test_tracking_is_idempotent_and_shared_between_batch_changes(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc1, repo, (cs,) = await setup(conn)
        assert await store.track_changeset(conn, bc1, repo, 1, T0) == cs
        bc2 = await store.create_batch_change(conn, "other", "", T0)
        assert await store.track_changeset(conn, bc2, repo, 1, T0) == cs
        views = await store.list_changesets(conn)
        in_bc2 = await store.list_changesets(conn, batch_change_id=bc2)
        assert await count(conn, changeset_sync_requests) == 1
        batch = await store.list_batch_changes(conn)
    assert len(views) == 1 and [v.id for v in in_bc2] == [cs]
    view = views[0]
    assert view.batch_change_ids == (bc1, bc2)
    assert (view.repo_name, view.number) == ("github.example/acme/widgets", 1)
    assert view.publication_state is PublicationState.PUBLISHED
    assert view.external_state is None and view.last_synced_at is None
    assert [b.changeset_count for b in batch] == [1, 1]


async def test_tracking_rejects_closed_batch_changes_and_unknown_repos(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc, repo, _ = await setup(conn)
        with pytest.raises(store.RepoNotFound):
            await store.track_changeset(conn, bc, 12345, 1, T0)
        with pytest.raises(ValueError, match="between 1 and"):
            await store.track_changeset(conn, bc, repo, 0, T0)
        await store.close_batch_change(conn, bc, T0)
        with pytest.raises(store.BatchChangeClosed):
            await store.track_changeset(conn, bc, repo, 2, T0)
        with pytest.raises(store.BatchChangeNotFound):
            await store.track_changeset(conn, 999, repo, 2, T0)


# --- state rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("host_state", list(HostPullState))
async def test_state_rules_on_sync_archive_and_unarchive(
    engine: AsyncEngine, host_state: HostPullState
) -> None:
    async with engine.begin() as conn:
        _, repo, _ = await setup(conn)
        (cs,) = await claim(conn)
        await complete_sync(conn, cs, snap(cs, host_state), None, T0)
        synced = (await store.list_changesets(conn))[0].external_state
        await set_archived(conn, repo, True)
        await store.rederive_for_repos(conn, [repo], now=T0)
        archived = (await store.list_changesets(conn))[0].external_state
        await set_archived(conn, repo, False)
        await store.rederive_for_repos(conn, [repo], now=T0)
        unarchived = (await store.list_changesets(conn))[0].external_state
    assert synced == derive_external_state(host_state, False)
    assert archived == derive_external_state(host_state, True)
    expected_archived = (
        ExternalState.READONLY
        if host_state in (HostPullState.OPEN, HostPullState.DRAFT)
        else ExternalState(host_state.value)
    )
    assert archived is expected_archived
    assert unarchived is synced is ExternalState(host_state.value)


async def test_sync_derives_from_the_repos_current_archived_flag(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, repo, _ = await setup(conn)
        (cs,) = await claim(conn)
        assert cs.repo_archived is False
        await set_archived(conn, repo, True)  # flipped while the sync was in flight
        await complete_sync(conn, cs, snap(cs, HostPullState.DRAFT), None, T0)
        (view,) = await store.list_changesets(conn, state=ExternalState.READONLY)
    assert view.external_state is ExternalState.READONLY


async def test_sync_writes_snapshot_fields_and_schedules_the_next_sync(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await setup(conn)
        (cs,) = await claim(conn)
        s = snap(cs, title="Bump node", url="https://x/pull/1", review_state=ReviewState.APPROVED,
                 check_state=CheckState.FAILED, additions=3, deletions=1, head_ref="bump",
                 base_ref="main", updated_at=T0 - timedelta(hours=4))  # fmt: skip
        await complete_sync(conn, cs, s, None, T0)
        (view,) = await store.list_changesets(conn)
    assert (view.title, view.url, view.review_state, view.check_state) == (
        "Bump node", "https://x/pull/1", ReviewState.APPROVED, CheckState.FAILED)  # fmt: skip
    assert (view.additions, view.deletions, view.head_ref, view.base_ref) == (3, 1, "bump", "main")
    assert view.last_synced_at == T0 and view.sync_error is None
    assert view.next_sync_at == T0 + timedelta(hours=2)  # half of four quiet hours


async def test_events_are_deduplicated(engine: AsyncEngine) -> None:
    e1 = ChangesetEvent("reviewed", T0 - timedelta(hours=2), "alice", "LGTM")
    e2 = ChangesetEvent("check_failed", T0 - timedelta(hours=1))
    e3 = ChangesetEvent("merged", T0, "bob")
    async with engine.begin() as conn:
        _, _, (cs_id,) = await setup(conn)
        (cs,) = await claim(conn)
        await complete_sync(conn, cs, snap(cs, events=(e1, e2, e1)), None, T0)
        await store.request_sync(conn, [cs_id], "webhook", T0)
        (cs,) = await claim(conn)
        await complete_sync(conn, cs, snap(cs, HostPullState.MERGED, events=(e1, e2, e3)), None, T0)
        rows = (await conn.execute(
            sa.select(changeset_events.c.kind, changeset_events.c.actor)
            .order_by(changeset_events.c.at))).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [
        ("reviewed", "alice"),
        ("check_failed", ""),
        ("merged", "bob"),
    ]


# --- requests -----------------------------------------------------------------------------------


async def test_requests_collapse_into_one_row_per_changeset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, _, ids = await setup(conn, 3)
        assert await store.request_sync(conn, ids + ids + [ids[0], 98765], "api", T0) == 3
        for _ in range(5):
            await store.request_sync(conn, [ids[0]], "webhook", T0 + timedelta(seconds=1))
        pending = await store.pending_requests(conn)
        first = (await conn.execute(sa.select(changeset_sync_requests).where(
            changeset_sync_requests.c.changeset_id == ids[0]))).one()  # fmt: skip
    # tracked (1) + api (2) + five webhooks
    assert pending == {ids[0]: 7, ids[1]: 2, ids[2]: 2}
    assert (first.reason, first.requested_at) == ("webhook", T0)  # oldest pending time kept


async def test_request_arriving_during_a_sync_survives_its_completion(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, _, (cs_id,) = await setup(conn)
        (cs,) = await claim(conn)
        assert cs.request_generation == 1
        await store.request_sync(conn, [cs_id], "webhook", T0)  # while the sync is in flight
        await complete_sync(conn, cs, snap(cs), None, T0)
        assert await store.pending_requests(conn) == {cs_id: 2}
        (again,) = await claim(conn)
        await complete_sync(conn, again, snap(again), None, T0)
        assert await store.pending_requests(conn) == {}


async def test_requested_before_due_and_oldest_request_first(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, _, ids = await setup(conn, 4)
        for cs in await claim(conn):  # sync all once; none requested now
            await complete_sync(conn, cs, snap(cs), None, T0)
        later = timedelta(days=1)  # everything is long due by then
        await store.request_sync(conn, [ids[3]], "api", T0 + timedelta(hours=1))
        await store.request_sync(conn, [ids[2]], "api", T0 + timedelta(hours=2))
        order = [c.changeset_id for c in await claim(conn, at=later)]
    assert order[:2] == [ids[3], ids[2]]
    assert sorted(order[2:]) == sorted(ids[:2])


async def due_at(conn: AsyncConnection, ids: list[int], minutes: list[int]) -> None:
    """No pending requests; ``ids[i]`` due at ``T0 + minutes[i]``."""
    await conn.execute(sa.delete(changeset_sync_requests))
    for cs_id, m in zip(ids, minutes, strict=True):
        await conn.execute(changesets.update().where(changesets.c.id == cs_id)
                           .values(next_sync_at=T0 + timedelta(minutes=m)))  # fmt: skip


async def test_requested_come_first_then_due_by_next_sync_and_limit_holds(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        _, _, ids = await setup(conn, 30)
        await due_at(conn, ids, [30 - i for i in range(30)])  # the highest id is due first
        for cs_id, m in [(ids[10], 3), (ids[20], 1), (ids[5], 2)]:
            await store.request_sync(conn, [cs_id], "api", T0 + timedelta(minutes=m))
        later = timedelta(days=1)
        assert [c.changeset_id for c in await claim(conn, "w0", at=later, limit=2)] == [
            ids[20], ids[5]]  # fmt: skip
        await conn.execute(changesets.update().values(claimed_by=None, claimed_until=None))
        first = await claim(conn, "w1", at=later, limit=10)
        rest = await claim(conn, "w2", at=later, limit=100)
    due_order = [i for i in reversed(ids) if i not in (ids[20], ids[5], ids[10])]
    assert [c.changeset_id for c in first] == [ids[20], ids[5], ids[10], *due_order[:7]]
    assert [c.request_generation for c in first[:4]] == [1, 1, 1, None]
    assert [c.changeset_id for c in rest] == due_order[7:]


async def test_claimed_due_changesets_do_not_starve_the_unclaimed(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, _, ids = await setup(conn, 12)
        await due_at(conn, ids, list(range(12)))
        held = await claim(conn, "w1", at=timedelta(hours=1), limit=6)
        assert [c.changeset_id for c in held] == ids[:6]
        # a fresh request for a held changeset does not take it from its worker either
        await store.request_sync(conn, [ids[0]], "webhook", T0)
        got = await claim(conn, "w2", at=timedelta(hours=1), limit=3)
        assert [c.changeset_id for c in got] == ids[6:9]
        got = await claim(conn, "w3", at=timedelta(hours=1), limit=10)
        assert [c.changeset_id for c in got] == ids[9:]
        assert await claim(conn, "w4", at=timedelta(hours=1)) == []
        # once w1's lease runs out, the requested one comes first again
        again = await claim(conn, "w4", at=timedelta(hours=1) + LEASE, limit=2)
        assert [(c.changeset_id, c.request_generation) for c in again] == [
            (ids[0], 1),
            (ids[1], None),
        ]


async def test_requests_for_repos_cover_only_open_batch_changes(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc, repo, ids = await setup(conn, 2)
        closed = await store.create_batch_change(conn, "closed", "", T0)
        only_closed = await store.track_changeset(conn, closed, repo, 3, T0)
        shared = await store.track_changeset(conn, closed, repo, 1, T0)
        await store.close_batch_change(conn, closed, T0)
        other_repo = await insert_repo(conn, "acme/other")
        await store.track_changeset(conn, bc, other_repo, 1, T0)
        await conn.execute(sa.delete(changeset_sync_requests))
        assert await store.request_syncs_for_repos(conn, [repo, repo], "repo_archived", T0) == 2
        assert set(await store.pending_requests(conn)) == set(ids)
        assert shared == ids[0] and only_closed not in ids


async def test_closed_batch_changes_and_unpublished_changesets_are_never_claimed(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        bc, repo, (cs_id,) = await setup(conn)
        await conn.execute(changesets.update().values(publication_state="UNPUBLISHED"))
        assert await claim(conn, at=timedelta(days=1)) == []
        await conn.execute(changesets.update().values(publication_state="PUBLISHED"))
        await store.close_batch_change(conn, bc, T0)
        await store.request_sync(conn, [cs_id], "api", T0)
        assert await claim(conn, at=timedelta(days=1)) == []
        reopened_elsewhere = await store.create_batch_change(conn, "open", "", T0)
        await store.track_changeset(conn, reopened_elsewhere, repo, 1, T0)
        assert [c.changeset_id for c in await claim(conn)] == [cs_id]


# --- claims -------------------------------------------------------------------------------------


async def test_a_crashed_workers_claim_expires_after_the_lease(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, _, (cs_id,) = await setup(conn)
        (dead,) = await claim(conn, "dead-worker")
        assert await claim(conn, "w2", at=LEASE - timedelta(seconds=1)) == []
        (taken,) = await claim(conn, "w2", at=LEASE)
        assert (taken.changeset_id, taken.request_generation) == (cs_id, 1)
        await complete_sync(conn, taken, snap(taken, HostPullState.MERGED), None, T0 + LEASE)
        # the dead worker wakes up late: it must not overwrite the newer result
        await complete_sync(conn, dead, snap(dead, HostPullState.OPEN), None, T0 + LEASE * 2)
        (view,) = await store.list_changesets(conn)
        assert view.external_state is ExternalState.MERGED
        assert await store.pending_requests(conn) == {}


async def test_a_failed_sync_keeps_states_and_request_and_backs_off(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, _, (cs_id,) = await setup(conn)
        (cs,) = await claim(conn)
        await complete_sync(conn, cs, snap(cs, HostPullState.OPEN, title="t"), None, T0)
        await store.request_sync(conn, [cs_id], "api", T0)
        (cs,) = await claim(conn)
        await complete_sync(conn, cs, None, "HTTP 502 from host", T0)
        (view,) = await store.list_changesets(conn)
        assert (view.external_state, view.title) == (ExternalState.OPEN, "t")
        assert view.sync_error == "HTTP 502 from host"
        assert view.next_sync_at == retry_at(T0, 1)
        assert await store.pending_requests(conn) == {cs_id: 1}  # the failed request stays
        assert await claim(conn, at=timedelta(minutes=1)) == []  # parked until the retry time
        (cs,) = await claim(conn, at=timedelta(minutes=2))
        assert cs.sync_failures == 1
        await complete_sync(conn, cs, None, "HTTP 502 again", T0 + timedelta(minutes=2))
        (view,) = await store.list_changesets(conn)
        assert view.next_sync_at == retry_at(T0 + timedelta(minutes=2), 2)
        await store.request_sync(conn, [cs_id], "user", T0 + timedelta(minutes=3))  # fresh ask
        (cs,) = await claim(conn, at=timedelta(minutes=3))
        await complete_sync(conn, cs, snap(cs, HostPullState.CLOSED), None, T0)
        (view,) = await store.list_changesets(conn)
        assert view.sync_error is None and view.external_state is ExternalState.CLOSED
        assert view.next_sync_at == T0 + MAX_SYNC_DELAY  # terminal
        assert await store.pending_requests(conn) == {}


async def test_released_claims_wait_until_not_before(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await setup(conn)
        claimed = await claim(conn)
        await release_claims(conn, claimed, T0 + timedelta(seconds=30))
        assert await claim(conn, at=timedelta(seconds=29)) == []
        (again,) = await claim(conn, at=timedelta(seconds=30))
        assert again.request_generation == 1


async def test_claim_skips_hosts_that_are_backing_off(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, _, (cs_id,) = await setup(conn)
        (cs,) = await claim(conn)
        await release_claims(conn, [cs], None)
        assert await claim_work(conn, "w", T0, LEASE, 10, skip_hosts=[cs.host]) == []
        assert [c.changeset_id for c in await claim_work(conn, "w", T0, LEASE, 10)] == [cs_id]


async def test_claim_limit_and_claimed_fields(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        _, repo, ids = await setup(conn, 5, archived=True)
        first = await claim(conn, limit=3)
        rest = await claim(conn, "w2", limit=10)
    assert [c.changeset_id for c in first + rest] == ids
    c = first[0]
    assert (c.repo_id, c.repo_name, c.repo_external_id, c.number) == (
        repo, "acme/widgets", "id-acme/widgets", 1)  # fmt: skip
    assert c.repo_archived and c.claimed_by == "w1" and rest[0].claimed_by == "w2"
    assert c.ref().repo_name == "acme/widgets" and c.host == ("github", "https://github.example")


async def test_concurrent_claims_never_overlap_on_postgresql(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one process; SKIP LOCKED is a PostgreSQL feature")
    async with engine.begin() as conn:
        await setup(conn, 300)

    async def claim_in(worker: str) -> list[int]:
        async with engine.begin() as conn:
            return [c.changeset_id for c in await claim(conn, worker, limit=200)]

    a, b = await asyncio.gather(claim_in("a"), claim_in("b"))
    assert not set(a) & set(b) and len(a) + len(b) == 300

    # and while one transaction still holds its locks, the other skips them instead of waiting
    async with engine.begin() as conn:
        await conn.execute(changesets.update().values(claimed_by=None, claimed_until=None))
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        held = await claim(first, "a", limit=100)
        await second.begin()
        other = await asyncio.wait_for(claim(second, "b", limit=300), timeout=30)
        await first.commit()
        await second.commit()
    assert len(held) == 100 and len(other) == 200
    assert not {c.changeset_id for c in held} & {c.changeset_id for c in other}


async def test_bulk_tracking_imports_thousands_at_once_idempotently(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc = await store.create_batch_change(conn, "bulk", "", T0)
        repo_ids = [await insert_repo(conn, f"acme/r{i}") for i in range(12)]
        items = [(r, n) for r in repo_ids for n in range(1, 101)]
        ids = await store.track_changesets(conn, bc, [*items, items[0]], T0)
        assert len(ids) == 1201 and len(set(ids)) == 1200 and ids[0] == ids[-1]
        assert await store.track_changesets(conn, bc, items, T0) == ids[:-1]
        assert await count(conn, changesets) == 1200
        assert await count(conn, changeset_sync_requests) == 1200
        (view,) = await store.list_batch_changes(conn)
    assert view.changeset_count == 1200


async def test_bulk_tracking_with_one_bad_item_writes_nothing(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc = await store.create_batch_change(conn, "bulk", "", T0)
        repo = await insert_repo(conn, "acme/widgets")
    for bad, error in (((repo + 99, 1), store.RepoNotFound), ((repo, 0), ValueError)):
        with pytest.raises(error):
            async with engine.begin() as conn:
                await store.track_changesets(conn, bc, [(repo, 1), (repo, 2), bad], T0)
    async with engine.connect() as conn:
        assert await count(conn, changesets) == 0
        assert await count(conn, changeset_sync_requests) == 0


async def test_no_request_waits_for_a_closed_batch_change(engine: AsyncEngine) -> None:
    """Closing a batch change consumes the pending requests of the changesets no other open
    batch change tracks; a new request for one is refused with the reason; a changeset also
    tracked by an open batch change keeps its request."""
    async with engine.begin() as conn:
        bc, repo, (alone, shared) = await setup(conn, 2)
        other = await store.create_batch_change(conn, "other", "", T0)
        await store.track_changeset(conn, other, repo, 2, T0)  # ``shared`` is PR 2
        assert set(await store.pending_requests(conn)) == {alone, shared}
        await store.close_batch_change(conn, bc, T0 + timedelta(minutes=1))
        assert set(await store.pending_requests(conn)) == {shared}
        assert await store.request_sync(conn, [alone], "api", T0) == 0
        status = await store.sync_status(conn, alone, T0)
        assert status is not None and status.not_synced == "it belongs to no open batch change"
        shared_status = await store.sync_status(conn, shared, T0)
        assert shared_status is not None and shared_status.not_synced is None
