"""The repo syncer's notifications: an archived flip requests a sync of every changeset on the
repo in the same transaction as the flip. (Permission-sync requests: test_permission_requests.)"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core.domain import ExternalState, HostKind
from repo_updater.service_layer.repo_syncer import RepoSyncer
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import repos as repo_store
from tests.support.fakes import T0, TickingClock
from tests.support.listing import ListingSource, repo
from tests.support.store import pending, track_one_per_repo

SERVICE = ServiceConfig(name="gh", kind=HostKind.GITHUB, url="https://example.test", orgs=("acme",))


async def test_archiving_5000_repos_requests_5000_changeset_syncs_none_lost(
    engine: AsyncEngine,
) -> None:
    listing = [repo(i) for i in range(1, 5001)]
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of(listing, page_size=100))
    await track_one_per_repo(engine)
    woken: list[bool] = []
    s = RepoSyncer(engine, TickingClock(), on_changeset_syncs_requested=lambda: woken.append(True))
    archived = [repo(i, archived=True) for i in range(1, 5001)]
    result = await s.sync(SERVICE, ListingSource.of(archived, page_size=100))
    assert len(result.archived) == 5000 and result.changeset_syncs_requested == 5000
    requests = await pending(engine)
    assert len(requests) == 5000 and set(requests.values()) == {"repo_archived"}
    assert woken == [True]
    # Re-derived in the same transaction: READONLY right away, before any changeset sync.
    async with engine.connect() as conn:
        views = await cs_store.list_changesets(conn)
    assert {v.external_state for v in views} == {ExternalState.READONLY}


async def test_flip_and_its_sync_requests_commit_together_or_not_at_all(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of([repo(1), repo(2)]))
    await track_one_per_repo(engine)

    async def crash(*args: object, **kwargs: object) -> int:
        raise RuntimeError("process died while requesting changeset syncs")

    # A failure at the last step of the page's transaction (a crash, a lost connection).
    monkeypatch.setattr(cs_store, "request_syncs_for_repos", crash)
    result = await s.sync(SERVICE, ListingSource.of([repo(1, archived=True), repo(2)]))
    assert not result.complete and result.error == "internal error: RuntimeError"
    async with engine.connect() as conn:
        assert await repo_store.list_repos(conn, archived=True) == []
        kinds = [e.kind for e in await event_store.list_events(conn)]
        states = {v.external_state for v in await cs_store.list_changesets(conn)}
    assert "RepoArchived" not in kinds and states == {ExternalState.OPEN}
    assert await pending(engine) == {}

    monkeypatch.undo()
    result = await s.sync(SERVICE, ListingSource.of([repo(1, archived=True), repo(2)]))
    assert result.archived == ["example.test/acme/repo-1"]
    assert list((await pending(engine)).values()) == ["repo_archived"]


async def test_unarchive_requests_syncs_and_restores_the_host_state(engine: AsyncEngine) -> None:
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of([repo(1, archived=True)]))
    await track_one_per_repo(engine, host_state="DRAFT")
    async with engine.begin() as conn:
        repo_ids = [r.id for r in await repo_store.list_repos(conn)]
        await cs_store.rederive_for_repos(conn, repo_ids, now=T0)
        assert {v.external_state for v in await cs_store.list_changesets(conn)} == {
            ExternalState.READONLY
        }
    result = await s.sync(SERVICE, ListingSource.of([repo(1)]))
    assert result.unarchived and result.changeset_syncs_requested == 1
    assert list((await pending(engine)).values()) == ["repo_unarchived"]
    async with engine.connect() as conn:
        assert {v.external_state for v in await cs_store.list_changesets(conn)} == {
            ExternalState.DRAFT
        }


async def test_changesets_of_closed_batch_changes_are_not_requested(engine: AsyncEngine) -> None:
    s = RepoSyncer(engine, TickingClock())
    await s.sync(SERVICE, ListingSource.of([repo(1)]))
    bc = await track_one_per_repo(engine)
    async with engine.begin() as conn:
        await cs_store.close_batch_change(conn, bc, TickingClock()())
    result = await s.sync(SERVICE, ListingSource.of([repo(1, archived=True)]))
    assert result.archived and result.changeset_syncs_requested == 0


async def test_an_archive_learned_without_a_listing_has_the_same_outcome_as_a_sync(
    engine: AsyncEngine,
) -> None:
    """``repo_changes.set_archived`` (a refused write, say) writes what a repo sync that saw
    the flip writes: the flag, the event, READONLY states and one sync request per changeset;
    repeating it changes nothing."""
    from repo_updater.service_layer.repo_changes import set_archived

    clock = TickingClock()
    await RepoSyncer(engine, clock).sync(SERVICE, ListingSource.of([repo(1), repo(2)]))
    await track_one_per_repo(engine)
    async with engine.connect() as conn:
        repo_id = {r.external_id: r.id for r in await repo_store.list_repos(conn)}["1"]
    async with engine.begin() as conn:
        requested = await set_archived(
            conn, repo_id, True, why="write refused", external_service_id=None, now=clock()
        )
    async with engine.begin() as conn:
        again = await set_archived(
            conn, repo_id, True, why="write refused", external_service_id=None, now=clock()
        )
    assert (requested, again) == (1, 0)
    async with engine.connect() as conn:
        (archived,) = await repo_store.list_repos(conn, archived=True)
        events = await event_store.list_events(conn, kind="RepoArchived")
        states = {v.repo_id: v.external_state for v in await cs_store.list_changesets(conn)}
    assert archived.id == repo_id
    assert [(e.repo_id, e.payload["why"]) for e in events] == [(repo_id, "write refused")]
    assert states[repo_id] is ExternalState.READONLY
    assert set(states.values()) == {ExternalState.READONLY, ExternalState.OPEN}
    assert set((await pending(engine)).values()) == {"repo_archived"}

    async with engine.begin() as conn:
        await set_archived(
            conn, repo_id, False, why="webhook", external_service_id=None, now=clock()
        )
    async with engine.connect() as conn:
        states = {v.repo_id: v.external_state for v in await cs_store.list_changesets(conn)}
    assert set(states.values()) == {ExternalState.OPEN}
