"""The repo syncer against a real store (SQLite file and PostgreSQL): every diff rule."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core.domain import HostKind
from repo_updater.service_layer.repo_syncer import RepoSyncer
from repo_updater.store import events as event_store
from repo_updater.store import external_services as service_store
from repo_updater.store import permissions as permission_store
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import events, external_service_repos, external_services, repos
from tests.support.fakes import TickingClock
from tests.support.listing import ListingSource, repo
from tests.support.store import pending, track_one_per_repo

SERVICE = ServiceConfig(name="gh", kind=HostKind.GITHUB, url="https://example.test", orgs=("acme",))


def syncer(engine: AsyncEngine) -> RepoSyncer:
    return RepoSyncer(engine, TickingClock())


async def table_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            t.name: await repo_store.count_rows(conn, t)
            for t in (repos, events, external_service_repos)
        }


async def live(engine: AsyncEngine, *, archived: bool | None = None) -> dict[str, str]:
    async with engine.connect() as conn:
        return {r.external_id: r.name for r in await repo_store.list_repos(conn, archived=archived)}


async def event_kinds(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [e.kind for e in await event_store.list_events(conn)]


async def test_first_sync_adds_every_repo_with_events_and_permission_requests(
    engine: AsyncEngine,
) -> None:
    listing = [repo(i, private=True) for i in range(1, 6)]
    result = await syncer(engine).sync(SERVICE, ListingSource.of(listing))
    assert result.complete and result.added == 5 and result.pages == 3
    assert await live(engine) == {str(i): f"example.test/acme/repo-{i}" for i in range(1, 6)}
    assert (await event_kinds(engine)).count("RepoAdded") == 5
    async with engine.connect() as conn:
        assert len(await permission_store.pending_permission_syncs(conn)) == 5


async def test_unchanged_resync_writes_no_rows(engine: AsyncEngine) -> None:
    s = syncer(engine)
    listing = [repo(i) for i in range(1, 8)]
    await s.sync(SERVICE, ListingSource.of(listing))
    before = await table_counts(engine)
    result = await s.sync(SERVICE, ListingSource.of(listing))
    assert result.unmodified == 7 and result.rows_written == 0
    assert result.added == result.modified == result.removed == 0
    assert await table_counts(engine) == before


async def test_archive_and_unarchive_are_their_own_lists_and_events(engine: AsyncEngine) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1), repo(2)]))
    result = await s.sync(SERVICE, ListingSource.of([repo(1, archived=True), repo(2)]))
    assert result.archived == ["example.test/acme/repo-1"] and result.unarchived == []
    assert result.modified == 1 and result.unmodified == 1
    assert await live(engine, archived=True) == {"1": "example.test/acme/repo-1"}
    assert (await event_kinds(engine))[-2:] == ["RepoModified", "RepoArchived"]

    result = await s.sync(SERVICE, ListingSource.of([repo(1), repo(2)]))
    assert result.unarchived == ["example.test/acme/repo-1"] and result.archived == []
    assert await live(engine, archived=True) == {}
    assert (await event_kinds(engine))[-1] == "RepoUnarchived"


async def test_modified_fields_are_written_and_named_in_the_event(engine: AsyncEngine) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1)]))
    result = await s.sync(SERVICE, ListingSource.of([repo(1, description="new", private=True)]))
    assert result.modified == 1 and result.archived == []
    async with engine.connect() as conn:
        (stored,) = await repo_store.list_repos(conn)
        modified = (await event_store.list_events(conn, kind="RepoModified"))[-1]
    assert stored.description == "new" and stored.private
    assert modified.payload["fields"] == ["description", "private"]


async def test_rename_keeps_the_row_and_its_id(engine: AsyncEngine) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1)]))
    async with engine.connect() as conn:
        (before,) = await repo_store.list_repos(conn)
    result = await s.sync(SERVICE, ListingSource.of([repo(1, name="acme/renamed")]))
    assert result.renamed == 1 and result.added == 0 and result.removed == 0
    async with engine.connect() as conn:
        (after,) = await repo_store.list_repos(conn)
        renamed = await event_store.list_events(conn, kind="RepoRenamed")
    assert after.id == before.id and after.name == "example.test/acme/renamed"
    assert after.external_name == "acme/renamed"
    assert renamed[0].payload["old_name"] == "example.test/acme/repo-1"


async def test_name_conflict_the_new_holder_wins_and_the_old_row_is_deleted(
    engine: AsyncEngine,
) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1, name="acme/x")]))
    # On the host, repo 1 was deleted and a new repo 2 took the name acme/x.
    result = await s.sync(SERVICE, ListingSource.of([repo(2, name="acme/x")]))
    assert result.added == 1 and result.name_conflicts == 1
    assert await live(engine) == {"2": "example.test/acme/x"}


async def test_swap_of_names_via_rename_and_add_in_later_page(engine: AsyncEngine) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1, name="acme/a"), repo(2, name="acme/b")]))
    # repo 2 renamed to acme/c, then a new repo 3 takes acme/b: no conflict with a stale row.
    listing = [repo(1, name="acme/a"), repo(2, name="acme/c"), repo(3, name="acme/b")]
    result = await s.sync(SERVICE, ListingSource.of(listing, page_size=3))
    assert result.complete and result.renamed == 1 and result.added == 1
    assert result.name_conflicts == 0
    assert await live(engine) == {
        "1": "example.test/acme/a",
        "2": "example.test/acme/c",
        "3": "example.test/acme/b",
    }


async def test_repos_no_longer_listed_are_soft_deleted_and_can_come_back(
    engine: AsyncEngine,
) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1), repo(2), repo(3)]))
    result = await s.sync(SERVICE, ListingSource.of([repo(1), repo(3)]))
    assert result.removed == 1
    assert set(await live(engine)) == {"1", "3"}
    async with engine.connect() as conn:
        gone = [r for r in await repo_store.list_repos(conn, include_deleted=True) if r.deleted_at]
    assert [r.external_id for r in gone] == ["2"]

    result = await s.sync(SERVICE, ListingSource.of([repo(1), repo(2), repo(3)]))
    assert result.revived == 1 and result.added == 0
    assert set(await live(engine)) == {"1", "2", "3"}
    async with engine.connect() as conn:
        assert [r.id for r in await repo_store.list_repos(conn) if r.external_id == "2"] == [
            gone[0].id
        ]


async def test_listing_that_fails_part_way_deletes_nothing(engine: AsyncEngine) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(i) for i in range(1, 7)]))
    failing = ListingSource.of([repo(1), repo(2), repo(7), repo(3)], page_size=2)
    failing.fail_after_pages = 1
    result = await s.sync(SERVICE, failing)
    assert not result.complete and result.error is not None and "502" in result.error
    assert result.removed == 0
    assert set(await live(engine)) == {str(i) for i in range(1, 7)}
    async with engine.connect() as conn:
        (svc,) = await service_store.list_services(conn)
    assert svc.last_sync_error is not None and "502" in svc.last_sync_error


async def test_pages_before_a_failure_are_kept(engine: AsyncEngine) -> None:
    failing = ListingSource.of([repo(1), repo(2), repo(3), repo(4)], page_size=2)
    failing.fail_after_pages = 1
    result = await syncer(engine).sync(SERVICE, failing)
    assert result.added == 2 and not result.complete
    assert set(await live(engine)) == {"1", "2"}


async def test_duplicates_by_external_id_then_by_name_keep_the_first(engine: AsyncEngine) -> None:
    listing = [repo(1), repo(2), repo(1, name="acme/other"), repo(3, name="ACME/repo-2")]
    result = await syncer(engine).sync(SERVICE, ListingSource.of(listing))
    assert result.duplicates == 2 and result.added == 2
    assert await live(engine) == {"1": "example.test/acme/repo-1", "2": "example.test/acme/repo-2"}


async def test_repo_listed_by_two_services_survives_removal_from_one(engine: AsyncEngine) -> None:
    s = syncer(engine)
    other = ServiceConfig(
        name="gh2", kind=HostKind.GITHUB, url="https://example.test", repos=("acme/repo-1",)
    )
    await s.sync(SERVICE, ListingSource.of([repo(1), repo(2)]))
    result = await s.sync(other, ListingSource.of([repo(1)]))
    assert result.added == 0 and result.unmodified == 1
    await s.sync(SERVICE, ListingSource.of([repo(2)]))
    assert set(await live(engine)) == {"1", "2"}
    await s.sync(other, ListingSource.of([]))
    assert set(await live(engine)) == {"2"}


async def test_sync_schedules_the_next_run_from_the_interval(engine: AsyncEngine) -> None:
    clock = TickingClock()
    s = RepoSyncer(engine, clock)
    started = clock.now + timedelta(seconds=1)  # the clock's next reading
    await s.sync(SERVICE, ListingSource.of([repo(1)]), interval=300)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(external_services))).one()
    # Counted from the start of the sync, so the period does not drift by the sync's length.
    assert row.next_sync_at == started + timedelta(seconds=300)
    assert row.last_sync_at > started


async def test_repo_unseen_because_pages_shifted_is_rechecked_not_removed(
    engine: AsyncEngine,
) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(i) for i in range(1, 7)], page_size=3))
    # Repo 1 is deleted on the host while we page: repo 4 slides onto page 1, already read.
    shifted = ListingSource(pages=[[repo(1), repo(2), repo(3)], [repo(5), repo(6)]])
    shifted.later = [[[repo(2), repo(3), repo(4)], [repo(5), repo(6)]]]
    result = await s.sync(SERVICE, shifted)
    assert result.complete and result.rechecked == 1 and result.removed == 0
    assert set(await live(engine)) == {str(i) for i in range(1, 7)}
    # The next sync sees repo 1 gone in both listings: now it is removed.
    result = await s.sync(SERVICE, ListingSource.of([repo(i) for i in range(2, 7)]))
    assert result.removed == 1 and set(await live(engine)) == {str(i) for i in range(2, 7)}


async def test_failed_recheck_removes_nothing(engine: AsyncEngine) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1), repo(2), repo(3)]))
    flaky = ListingSource.of([repo(1), repo(2)])
    flaky.later = [[[repo(1)], [repo(2)]]]
    flaky.fail_after_pages = 1  # the second listing (the re-check) fails after its first page
    flaky.pages = [[repo(1), repo(2)]]
    result = await s.sync(SERVICE, flaky)
    assert not result.complete and result.error is not None and "re-check" in result.error
    assert set(await live(engine)) == {"1", "2", "3"}


async def test_rename_requests_a_sync_of_the_repos_changesets(engine: AsyncEngine) -> None:
    s = syncer(engine)
    await s.sync(SERVICE, ListingSource.of([repo(1)]))
    await track_one_per_repo(engine)
    result = await s.sync(SERVICE, ListingSource.of([repo(1, name="acme/new-name")]))
    assert result.renamed == 1 and result.changeset_syncs_requested == 1
    assert list((await pending(engine)).values()) == ["repo_renamed"]
