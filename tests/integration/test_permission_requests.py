"""The repo syncer's side of permissions: only private repos get a permission-sync request (new,
restored, made private, moved to another owner), and a repo made public drops its permissions
with an event per account, in the same transaction as the diff."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core.domain import HostKind
from repo_updater.core.permissions import diff_permissions
from repo_updater.service_layer.repo_syncer import RepoSyncer
from repo_updater.store import events as event_store
from repo_updater.store import repo_permissions as grant_store
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import permission_sync_requests
from tests.support.fakes import TickingClock
from tests.support.listing import ListingSource, repo
from tests.support.permissions import grant


def _after_drop(crash: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """``add_events`` that fails when called with permission events (the repo syncer's own
    events are written first, then the permissions are dropped, then their events)."""
    real = event_store.add_events

    async def add_events(conn: AsyncConnection, service: int | None, rows: Any, now: Any) -> None:
        if any(str(e.kind).startswith("Permission") for e in rows):
            await crash()
        await real(conn, service, rows, now)

    return add_events


SERVICE = ServiceConfig(name="gh", kind=HostKind.GITHUB, url="https://example.test", orgs=("acme",))


async def requests(engine: AsyncEngine) -> dict[str, tuple[str, int]]:
    """external id -> (reason, generation) of every permission-sync request."""
    async with engine.connect() as conn:
        ids = {r.id: r.external_id for r in await repo_store.list_repos(conn, include_deleted=True)}
        q = permission_sync_requests
        rows = await conn.execute(sa.select(q.c.repo_id, q.c.reason, q.c.generation))
        return {ids[r[0]]: (r[1], r[2]) for r in rows}


async def sync(engine: AsyncEngine, *repos: object) -> None:
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, ListingSource.of(repos))  # type: ignore[arg-type]
    assert result.complete, result.error


async def test_only_private_repos_get_a_request(engine: AsyncEngine) -> None:
    woken: list[bool] = []
    syncer = RepoSyncer(
        engine, TickingClock(), on_permission_syncs_requested=lambda: woken.append(True)
    )
    result = await syncer.sync(SERVICE, ListingSource.of([repo(1), repo(2, private=True)]))
    assert result.permission_syncs_requested == 1 and woken == [True]
    assert await requests(engine) == {"2": ("added", 1)}


async def test_a_repo_made_private_or_moved_is_requested_a_rename_or_edit_is_not(
    engine: AsyncEngine,
) -> None:
    await sync(engine, repo(1), repo(2, private=True), repo(3, private=True))
    await sync(
        engine,
        repo(1, private=True),  # made private
        repo(2, private=True, name="acme/renamed"),  # renamed within its owner
        repo(3, private=True, description="new"),  # edited
    )
    assert await requests(engine) == {
        "1": ("made_private", 1),
        "2": ("added", 1),
        "3": ("added", 1),
    }
    await sync(engine, repo(2, private=True, name="other-org/renamed"))  # moved: new owner
    assert (await requests(engine))["2"] == ("owner_changed", 2)


async def test_a_repo_made_public_drops_its_permissions_with_an_event_each(
    engine: AsyncEngine,
) -> None:
    await sync(engine, repo(1, private=True), repo(2, private=True))
    async with engine.begin() as conn:
        ids = {r.external_id: r.id for r in await repo_store.list_repos(conn)}
        diff = diff_permissions([], [grant("alice", "admin"), grant("bob")])
        await grant_store.write_diffs(conn, [(ids["1"], diff), (ids["2"], diff)], TickingClock()())
    await sync(engine, repo(1), repo(2, private=True))
    async with engine.connect() as conn:
        one = await grant_store.repo_access(conn, repo_id=ids["1"])
        two = await grant_store.stored_permissions(conn, [ids["2"]])
        revoked = await event_store.list_events(conn, kind="PermissionRevoked")
    assert one is not None and not one.private and one.permissions == [] and one.status is None
    assert len(two[ids["2"]]) == 2
    assert sorted((e.repo_id, e.payload["login"], e.payload["why"]) for e in revoked) == [
        (ids["1"], "alice", "repo made public"),
        (ids["1"], "bob", "repo made public"),
    ]
    assert set(await requests(engine)) == {"2"}


async def test_dropping_permissions_commits_with_the_flip_or_not_at_all(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sync(engine, repo(1, private=True))
    async with engine.begin() as conn:
        (rid,) = [r.id for r in await repo_store.list_repos(conn)]
        diff = diff_permissions([], [grant("alice")])
        await grant_store.write_diffs(conn, [(rid, diff)], TickingClock()())

    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("process died after dropping the permissions")

    # The last step of the page's transaction: after the flip and the drop were written.
    monkeypatch.setattr(event_store, "add_events", _after_drop(crash))
    result = await RepoSyncer(engine, TickingClock()).sync(SERVICE, ListingSource.of([repo(1)]))
    assert not result.complete and result.error == "internal error: RuntimeError"
    monkeypatch.undo()
    async with engine.connect() as conn:
        access = await grant_store.repo_access(conn, repo_id=rid)
    assert (
        access is not None and access.private and [g.login for g in access.permissions] == ["alice"]
    )
    assert set(await requests(engine)) == {"1"}
    await sync(engine, repo(1))  # the next sync writes it all
    async with engine.connect() as conn:
        access = await grant_store.repo_access(conn, repo_id=rid)
        revoked = await event_store.list_events(conn, kind="PermissionRevoked")
    assert access is not None and not access.private and access.permissions == []
    assert [e.payload["login"] for e in revoked] == ["alice"]
