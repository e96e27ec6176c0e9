"""Issue 12's repo-sync shortcuts against a real store (SQLite file and PostgreSQL): pages
written in groups (atomic per group), the per-page lookup, and remembered unchanged pages
that any other writer invalidates (the per-service repos version)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.diff import SeenIds, removed_ids
from repo_updater.core.domain import HostKind, SourcedRepo
from repo_updater.service_layer import repo_changes
from repo_updater.service_layer.page_stream import page_groups
from repo_updater.service_layer.repo_syncer import RepoSyncer
from repo_updater.store import events as event_store
from repo_updater.store import repo_versions
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import events, repos
from tests.integration.test_repo_syncer import SERVICE, live, table_counts
from tests.support.fakes import TickingClock
from tests.support.listing import ListingSource, repo


class CountingLookups:
    """Counts the syncer's per-page store reads (the real function runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = repo_store.stored_for_page

        async def counted(conn: AsyncConnection, **kw: Any) -> Any:
            self.calls += 1
            return await real(conn, **kw)

        monkeypatch.setattr(repo_store, "stored_for_page", counted)


async def _repo_id(engine: AsyncEngine, external_id: str) -> int:
    async with engine.connect() as conn:
        found = await repo_store.stored_for_page(
            conn, host_kind=HostKind.GITHUB, host_url="https://example.test",
            external_service_id=0, external_ids=[external_id],
        )  # fmt: skip
    return found[external_id].id


async def test_an_unchanged_page_seen_before_is_not_read_again(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = RepoSyncer(engine, TickingClock())
    listing = [repo(i) for i in range(1, 9)]  # 4 pages
    await s.sync(SERVICE, ListingSource.of(listing))  # adds: nothing to remember
    lookups = CountingLookups(monkeypatch)
    second = await s.sync(SERVICE, ListingSource.of(listing))  # reads (one group), remembers
    assert lookups.calls == 1 and second.unmodified == 8
    before = await table_counts(engine)
    third = await s.sync(SERVICE, ListingSource.of(listing))
    assert lookups.calls == 1, "the remembered pages were read again"
    assert third.complete and third.unmodified == 8 and third.rows_written == 0
    assert third.removed == 0 and await table_counts(engine) == before
    # A changed page (the host renamed a repo) is read and written; the others still are not.
    changed = [*listing[:7], repo(8, name="acme/renamed")]
    fourth = await s.sync(SERVICE, ListingSource.of(changed))
    assert lookups.calls == 2 and fourth.renamed == 1 and fourth.unmodified == 7


async def test_a_write_by_another_path_invalidates_the_remembered_pages(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused write (or a webhook) archives a repo the host lists unarchived: the next
    sync must read the store again and put the host's state back, not trust its memory."""
    s = RepoSyncer(engine, TickingClock())
    listing = [repo(i) for i in range(1, 5)]
    await s.sync(SERVICE, ListingSource.of(listing))
    await s.sync(SERVICE, ListingSource.of(listing))  # remembers both pages
    rid = await _repo_id(engine, "3")
    clock = TickingClock()
    async with engine.begin() as conn:
        await repo_changes.set_archived(
            conn, rid, True, why="write refused", external_service_id=None, now=clock()
        )
    assert await live(engine, archived=True) == {"3": "example.test/acme/repo-3"}
    lookups = CountingLookups(monkeypatch)
    result = await s.sync(SERVICE, ListingSource.of(listing))
    assert lookups.calls == 1  # both pages, at once
    assert result.unarchived == ["example.test/acme/repo-3"] and result.unmodified == 3
    assert await live(engine, archived=True) == {}


async def test_the_version_moves_with_every_writer_of_a_linked_repo(engine: AsyncEngine) -> None:
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of([repo(1), repo(2)]))
    svc = await s.register(SERVICE)
    version = await _version(engine, svc)
    unchanged = await s.sync(SERVICE, ListingSource.of([repo(1), repo(2)]))
    assert unchanged.rows_written == 0 and await _version(engine, svc) == version
    removal = await s.sync(SERVICE, ListingSource.of([repo(1)]))  # repo 2: unlinked, removed
    assert removal.removed == 1 and await _version(engine, svc) == version + 1
    async with engine.begin() as conn:
        await repo_changes.set_archived(
            conn, await _repo_id(engine, "1"), True, why="webhook", external_service_id=None,
            now=TickingClock()(),
        )  # fmt: skip
    assert await _version(engine, svc) == version + 2
    assert await s.retire(svc, SERVICE.name)
    assert await _version(engine, svc) == version + 3


async def test_a_single_repo_sync_invalidates_the_remembered_pages(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook's single-repo sync archives a repo and a later unarchive is missed (a dropped
    delivery): the next full sync must read the page again and see the host's state, although
    the page is the one it remembered as unchanged."""
    s = RepoSyncer(engine, TickingClock())
    listing = [repo(i) for i in range(1, 5)]
    await s.sync(SERVICE, ListingSource.of(listing))
    await s.sync(SERVICE, ListingSource.of(listing))  # remembers both pages
    svc = await s.register(SERVICE)
    version = await _version(engine, svc)
    source = ListingSource.of(listing)
    flip = await s.sync_one(SERVICE, svc, source, repo(3, archived=True), external_id="3")
    assert flip.archived == ["example.test/acme/repo-3"]
    assert await _version(engine, svc) == version + 1
    lookups = CountingLookups(monkeypatch)
    result = await s.sync(SERVICE, ListingSource.of(listing))
    assert lookups.calls == 1, "a remembered page was trusted after the single-repo sync"
    assert result.unarchived == ["example.test/acme/repo-3"]
    assert await live(engine, archived=True) == {}
    # The host no longer has repo 4: the single-repo sync removes it and bumps the version.
    gone = await s.sync_one(SERVICE, svc, source, None, external_id="4")
    assert gone.removed == 1 and await _version(engine, svc) == version + 3


async def test_a_cold_unchanged_resync_reads_each_group_once_and_writes_nothing(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh process (no remembered pages) re-syncs an unchanged listing: the fake hands
    over all 24 pages at once, so they come in groups of 10, 10 and 4; each group's stored
    rows are one read, and nothing is written."""
    listing = [repo(i) for i in range(1, 49)]
    await RepoSyncer(engine, TickingClock()).sync(SERVICE, ListingSource.of(listing))
    before = await table_counts(engine)
    lookups = CountingLookups(monkeypatch)
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, ListingSource.of(listing))
    assert result.complete and result.unmodified == 48 and result.rows_written == 0
    assert lookups.calls == 3
    assert await table_counts(engine) == before


async def test_a_group_reads_again_after_a_page_of_it_writes(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group's rows are read once, before any write; a page that writes makes them stale
    (here: page 1 adds repo 5, which page 2 lists again), so the pages after it are read
    again, at once, and see the write: repo 5 is a repeat, not a second new repo."""
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of([repo(i) for i in range(1, 5)]))
    lookups = CountingLookups(monkeypatch)
    pages = [[repo(1), repo(5)], [repo(5), repo(2)], [repo(3), repo(4)]]
    result = await s.sync(SERVICE, ListingSource(pages=pages))
    assert result.complete and result.added == 1 and result.duplicates == 1
    assert result.unmodified == 4 and result.removed == 0
    assert lookups.calls == 2  # the group, then pages 2 and 3 after page 1's write
    assert set(await live(engine)) == {"1", "2", "3", "4", "5"}


async def _version(engine: AsyncEngine, svc: int) -> int:
    async with engine.connect() as conn:
        return await repo_versions.current(conn, svc)


class FailingOnPage:
    """Raises from the event write of the ``n``-th written page."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
        self.writes = 0
        real = event_store.add_events

        async def add_events(conn: AsyncConnection, *args: Any) -> None:
            self.writes += 1
            if self.writes == n:
                raise RuntimeError("boom: the store failed mid-group")
            await real(conn, *args)

        monkeypatch.setattr(event_store, "add_events", add_events)


async def test_a_group_of_pages_commits_together_or_not_at_all(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages already fetched are written in one transaction (the fake lists them at once):
    the 3rd page's failure rolls back pages 1 and 2 of its group too, removes nothing."""
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of([repo(100)]))
    before = await table_counts(engine)
    FailingOnPage(monkeypatch, 3)
    result = await s.sync(SERVICE, ListingSource.of([repo(i) for i in range(1, 7)]))
    assert not result.complete and result.removed == 0
    assert await table_counts(engine) == before
    assert await live(engine) == {"100": "example.test/acme/repo-100"}


@pytest.mark.parametrize(
    ("keep", "beyond"),
    [(set(), False), (set(), True), ({0, 1}, False), ({2, 5, 10}, True), (set(range(12)), False)],
)
async def test_unseen_linked_ids_is_the_linked_minus_the_seen(
    engine: AsyncEngine, keep: set[int], beyond: bool
) -> None:
    """The store's answer (PostgreSQL: the bitmap tested by the server; linked ids beyond
    its end, or all with an empty one, are unseen) is exactly ``removed_ids``."""
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of([repo(i) for i in range(1, 13)]))
    svc = await s.register(SERVICE)
    async with engine.connect() as conn:
        linked = sorted(await repo_store.linked_repo_ids(conn, svc))
        seen = SeenIds()
        seen.update(linked[i] for i in keep)
        if beyond:
            seen.add(max(linked) + 100)  # seen, not linked: no effect
        unseen = await repo_store.unseen_linked_ids(conn, svc, seen)
    assert unseen == removed_ids(linked, seen)
    assert unseen == [rid for i, rid in enumerate(linked) if i not in keep]


async def test_stored_for_page_finds_odd_external_ids(engine: AsyncEngine) -> None:
    odd = ['a"b', "ü-ß", "1", "x,y", "[]"]
    listing = [
        SourcedRepo(external_id=e, name=f"acme/r{i}", url=f"https://example.test/acme/r{i}")
        for i, e in enumerate(odd)
    ]
    s = RepoSyncer(engine, TickingClock())
    first = await s.sync(SERVICE, ListingSource.of(listing, page_size=10))
    assert first.added == len(odd)
    again = await s.sync(SERVICE, ListingSource.of(listing, page_size=10))
    assert again.unmodified == len(odd) and again.added == 0 and again.rows_written == 0
    async with engine.connect() as conn:
        assert await repo_store.count_rows(conn, repos) == len(odd)
        assert await repo_store.count_rows(conn, events) == len(odd)  # RepoAdded only


# --- the prefetching stream (no store) ---------------------------------------------------------


async def _pages(n: int, fail_at: int | None = None) -> AsyncIterator[Sequence[SourcedRepo]]:
    for i in range(n):
        if i == fail_at:
            raise RuntimeError(f"listing failed at page {i}")
        yield [repo(i)]


async def test_page_groups_keep_order_and_group_what_is_fetched() -> None:
    seen: list[str] = []
    sizes: list[int] = []
    async for group in page_groups(_pages(25), max_group=10):
        sizes.append(len(group))
        seen += [p[0].external_id for p in group]
    assert seen == [str(i) for i in range(25)]
    assert max(sizes) <= 10 and sum(sizes) == 25


async def test_page_groups_hand_over_the_pages_before_an_error_then_raise() -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="page 7"):
        async for group in page_groups(_pages(20, fail_at=7), max_group=3):
            seen += [p[0].external_id for p in group]
    assert seen == [str(i) for i in range(7)]


async def test_page_groups_close_the_listing_when_the_consumer_stops() -> None:
    closed: list[bool] = []

    async def pages() -> AsyncIterator[Sequence[SourcedRepo]]:
        try:
            for i in range(1000):
                yield [repo(i)]
        finally:
            closed.append(True)

    groups = page_groups(pages(), max_group=2)
    async for _ in groups:
        break
    await groups.aclose()
    assert closed == [True]
