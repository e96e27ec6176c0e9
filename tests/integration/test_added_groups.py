"""A group of pages that only adds repos (a first sync) is written with one statement per
table, on SQLite and PostgreSQL; any group where a page could see an earlier page's writes
(a repeated id or name, a name a live repo holds, a stored repo) is written page by page,
with the same outcome."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.service_layer.repo_syncer import RepoSyncer
from repo_updater.store import events as event_store
from repo_updater.store import repo_bulk
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import events, external_service_repos
from tests.integration.test_repo_syncer import SERVICE, live, table_counts
from tests.support.fakes import TickingClock
from tests.support.listing import ListingSource, repo


class RepoInserts:
    """Counts the INSERT statements into ``repos`` that reach the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0

        def seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO REPOS "):
                self.count += 1

        sa.event.listen(engine.sync_engine, "before_cursor_execute", seen)


async def test_a_first_sync_inserts_each_group_in_one_statement(engine: AsyncEngine) -> None:
    inserts = RepoInserts(engine)
    listing = ListingSource.of([repo(i, private=i % 2 == 0) for i in range(1, 101)], page_size=4)
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, listing)
    assert result.complete and result.added == 100 and result.pages == 25
    assert result.permission_syncs_requested == 50
    # 25 pages, at most 10 a transaction: 3 groups at least, one INSERT each (page by page
    # would send one a page).
    assert 3 <= inserts.count < 25
    assert await table_counts(engine) == {
        "repos": 100,
        "events": 100,
        "external_service_repos": 100,
    }
    assert len(await live(engine)) == 100
    async with engine.connect() as conn:
        added = await event_store.list_events(conn)
        ids = {r.external_id: r.id for r in await repo_store.list_repos(conn)}
    assert [e.payload["external_id"] for e in added] == [str(i) for i in range(1, 101)]
    assert all(e.repo_id == ids[e.payload["external_id"]] for e in added)
    assert {e.kind for e in added} == {"RepoAdded"}
    again = await RepoSyncer(engine, TickingClock()).sync(SERVICE, listing)
    assert again.unmodified == 100 and again.rows_written == 0


async def test_the_bulk_write_keeps_every_character_the_host_sent(engine: AsyncEngine) -> None:
    """The rows travel as one JSON text (SQLite) or arrays (PostgreSQL): quotes, backslashes
    and non-ASCII arrive as sent; a NUL, which PostgreSQL cannot store (the sync failed) and
    SQLite's JSON functions cut at, is dropped; the re-sync finds nothing to write."""
    texts = ['say "hi"', "back\\slash \\u0000", "naïve café 😀", "nul\x00inside", ""]
    listing = ListingSource.of(
        [
            repo(i, description=t, private=i % 2 == 0, fork=i % 3 == 0)
            for i, t in enumerate(texts, 1)
        ]
    )
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, listing)
    assert result.complete and result.added == len(texts)
    async with engine.connect() as conn:
        stored = {r.external_id: r for r in await repo_store.list_repos(conn)}
    for i, text in enumerate(texts, 1):
        row = stored[str(i)]
        kept = text.replace("\x00", "")
        assert (row.description, row.private, row.fork) == (kept, i % 2 == 0, i % 3 == 0)
    again = await RepoSyncer(engine, TickingClock()).sync(SERVICE, listing)
    assert again.unmodified == len(texts) and again.rows_written == 0


async def test_a_group_written_at_once_commits_together_or_not_at_all(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(conn: AsyncConnection, *args: Any) -> None:
        raise RuntimeError("boom: the store failed mid-group")

    monkeypatch.setattr(repo_bulk, "add_events", boom)
    listing = ListingSource.of([repo(i) for i in range(1, 7)])
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, listing)
    assert not result.complete and result.added == 0
    assert await table_counts(engine) == {"repos": 0, "events": 0, "external_service_repos": 0}


async def test_repeats_across_the_pages_of_a_group_are_found_page_by_page(
    engine: AsyncEngine,
) -> None:
    """Page 2 repeats page 1's repo 1 (by id) and repo 2 (by name, another case)."""
    inserts = RepoInserts(engine)
    listing = [repo(1), repo(2), repo(1, name="acme/other"), repo(3, name="ACME/Repo-2")]
    listing += [repo(i) for i in range(4, 44)]  # the next groups only add: written at once
    source = ListingSource.of(listing, page_size=2)
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, source)
    assert result.complete and result.duplicates == 2 and result.added == 42
    assert (await live(engine))["2"] == "example.test/acme/repo-2"
    assert "3" not in await live(engine)
    # 22 pages: the first group page by page (9 pages add), the next two at once.
    assert inserts.count == 11


async def test_a_name_held_by_a_live_repo_is_resolved_as_page_by_page(
    engine: AsyncEngine,
) -> None:
    """A first sync (a fresh syncer: nothing remembered) whose second page claims a name a
    stored repo holds: the host is the truth, the old holder goes, with its event."""
    await RepoSyncer(engine, TickingClock()).sync(
        SERVICE, ListingSource.of([repo(1, name="acme/x")])
    )
    listing = [repo(2), repo(3), repo(4, name="acme/x"), repo(5)]
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, ListingSource.of(listing))
    assert result.complete and result.added == 4 and result.name_conflicts == 1
    assert await live(engine) == {
        "2": "example.test/acme/repo-2",
        "3": "example.test/acme/repo-3",
        "4": "example.test/acme/x",
        "5": "example.test/acme/repo-5",
    }
    async with engine.connect() as conn:
        kinds = [e.kind for e in await event_store.list_events(conn)]
        links = await repo_store.count_rows(conn, external_service_repos)
        total = await repo_store.count_rows(conn, events)
    assert kinds.count("RepoDeleted") == 1 and kinds.count("RepoAdded") == 5
    assert links == 4 and total == 6
