"""Issue 7, reliability: each case that once broke for good, replayed end to end against the
emulator on loopback and a real store (SQLite file and PostgreSQL). Processes, signals and a
database outage: ``test_reliability_processes.py``; config checks: ``tests/unit/test_config.py``
(7.5); the schedule rules: ``tests/unit/test_service_schedule.py`` (7.11)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from repo_updater.bootstrap import App, open_app
from repo_updater.config import Config, parse_config
from repo_updater.core.domain import ExternalState, HostKind, SourcedRepo
from repo_updater.core.errors import RateLimited
from repo_updater.emulator.server import RunningEmulator, running_emulator
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store
from repo_updater.store.changeset_claims import claim_work
from repo_updater.store.schema import changeset_sync_requests, changesets, repos
from tests.support.listing import ListingSource, repo

GH = HostKind.GITHUB
FAST = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=2.0)
REPOS = 150  # two listing pages


def gh_service(url: str, *, name: str = "gh", prefix: str | None = "gh.test", **kw: Any) -> Any:
    svc = {"name": name, "kind": "github", "url": url, "orgs": ["acme"], **kw}
    if prefix is not None:
        svc["name_prefix"] = prefix
    return svc


def config(db: str, *services: dict[str, Any]) -> Config:
    return parse_config(
        {"database": db, "repo_sync_interval": 3600, "external_services": list(services)}, {}
    )


def seed(emu: RunningEmulator, count: int = REPOS, pulls_on: int = 3) -> None:
    host = emu.state.host(GH)
    for i in range(count):
        host.add_repo("acme", f"repo-{i}")
        if i < pulls_on:
            host.add_pull(f"acme/repo-{i}", title=f"change {i}")


async def live_repos(app: App) -> dict[str, tuple[int, str]]:
    """external id -> (repo id, store name) of every live repo; fails on duplicates."""
    async with app.engine.connect() as conn:
        rows = await repo_store.list_repos(conn)
    by_external = {r.external_id: (r.id, r.name) for r in rows}
    assert len(by_external) == len(rows), "one row per repo"
    assert len({n.lower() for _, n in by_external.values()}) == len(rows), "unique names"
    return by_external


async def track(app: App, names: Sequence[str]) -> list[int]:
    async with app.engine.begin() as conn:
        bc = await cs_store.create_batch_change(conn, "bc", "", app.clock())
        ids = await repo_store.repo_ids_by_name(conn, names)
        return await cs_store.track_changesets(conn, bc, [(ids[n], 1) for n in names], app.clock())


async def changeset_rows(app: App) -> dict[int, Any]:
    async with app.engine.connect() as conn:
        rows = await conn.execute(sa.select(changesets))
        return {r.id: r for r in rows}


async def pending(app: App) -> dict[int, str]:
    q = changeset_sync_requests
    async with app.engine.connect() as conn:
        return {r[0]: r[1] for r in await conn.execute(sa.select(q.c.changeset_id, q.c.reason))}


async def sync(app: App, name: str = "gh") -> Any:
    return await app.repo_sync_worker.sync_service(name)


# --- 7.1: the code host's URL changes -----------------------------------------------------------


@pytest.mark.parametrize("prefix", ["gh.test", None], ids=["fixed-prefix", "prefix-from-url"])
async def test_url_change_converges_with_each_repo_once_and_changesets_following(
    prefix: str | None, store_url: str, emu: RunningEmulator
) -> None:
    """The same code host on a new port (the emulator's state served on two ports). Before:
    with a fixed name prefix every later sync failed with ``IntegrityError``
    (``repos_live_name_uq``) forever; with the prefix derived from the URL, every repo was
    added anew and the old rows (with the tracked changesets) were deleted."""
    seed(emu)
    old_url = emu.base_url(GH)
    async with running_emulator(emu.state) as moved:
        new_url = moved.base_url(GH)
        async with open_app(
            config(store_url, gh_service(old_url, prefix=prefix)), retry=FAST
        ) as app:
            assert (await sync(app)).complete
            before = await live_repos(app)
            names = sorted(n for _, n in before.values() if n.endswith(("/repo-0", "/repo-1")))
            tracked = await track(app, names)
            round1 = await app.changeset_syncer.run_once()
            assert (round1.synced, round1.failed) == (2, 0)

        async with open_app(
            config(store_url, gh_service(new_url, prefix=prefix)), retry=FAST
        ) as app:
            for _ in range(2):  # and again: it stays converged
                result = await sync(app)
                assert result.complete and result.error is None, result.summary()
            after = await live_repos(app)
            assert {k: rid for k, (rid, _) in after.items()} == {
                k: rid for k, (rid, _) in before.items()
            }, "same rows, same ids"
            async with app.engine.connect() as conn:
                hosts = {r[0] for r in await conn.execute(sa.select(repos.c.host_url))}
            assert hosts == {new_url}
            if prefix is None:  # names follow the URL, through the diff's rename path
                assert all(n.startswith(new_url.split("://")[1]) for _, n in after.values())
                async with app.engine.connect() as conn:
                    renamed = await event_store.list_events(conn, kind="RepoRenamed")
                assert len(renamed) == REPOS
            # The changeset syncer finds the source for the new host.
            async with app.engine.begin() as conn:
                await cs_store.request_sync(conn, tracked, "test", app.clock())
            round2 = await app.changeset_syncer.run_once()
            assert (round2.synced, round2.failed) == (2, 0)
            rows = await changeset_rows(app)
            assert all(rows[i].external_state == "OPEN" and rows[i].sync_error is None
                       for i in tracked)  # fmt: skip


async def test_an_internal_error_names_its_cause_in_result_log_and_services_list(
    store_url: str, emu: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Two services on two URLs of the same host with one name prefix claim the same names
    for different rows: a config mistake the store refuses. The error says why."""
    seed(emu, count=5)
    async with running_emulator(emu.state) as other:
        one, two = gh_service(emu.base_url(GH)), gh_service(other.base_url(GH), name="gh2")
        async with open_app(config(store_url, one, two), retry=FAST) as app:
            assert (await sync(app, "gh")).complete
            with caplog.at_level(logging.ERROR):
                failed = await sync(app, "gh2")
            async with app.engine.connect() as conn:
                status = {s.name: s for s in await service_store.list_services(conn)}
    assert failed.error is not None and not failed.complete
    assert failed.error.startswith("internal error: IntegrityError: "), failed.error
    assert "repos_live_name_uq" in failed.error or "UNIQUE" in failed.error, failed.error
    assert len(failed.error) <= 250 and "INSERT" not in failed.error
    assert status["gh2"].last_sync_error == failed.error
    assert failed.error in caplog.text


# --- 7.2 and 7.3: a repo leaves the listing, comes back archived --------------------------------


async def test_removed_repo_stops_its_changesets_and_revival_carries_the_archive_flip(
    store_url: str, emu: RunningEmulator
) -> None:
    seed(emu, count=5, pulls_on=5)
    url = emu.base_url(GH)
    excluded = config(store_url, gh_service(url, exclude=["acme/repo-1"]))
    async with open_app(config(store_url, gh_service(url)), retry=FAST) as app:
        assert (await sync(app)).complete
        ids = await track(app, ["gh.test/acme/repo-1", "gh.test/acme/repo-2"])
        assert (await app.changeset_syncer.run_once()).synced == 2
        async with app.engine.begin() as conn:  # a pending request when the repo goes
            await cs_store.request_sync(conn, ids, "webhook", app.clock())

    async with open_app(excluded, retry=FAST) as app:
        assert (await sync(app)).removed == 1
        rows = await changeset_rows(app)
        assert rows[ids[0]].sync_error == "not synced: its repository was removed (not listed)"
        assert rows[ids[0]].external_state == "OPEN", "its last known state stays"
        assert list(await pending(app)) == [ids[1]], "its request was consumed, not stranded"
        async with app.engine.begin() as conn:
            claimed = await claim_work(conn, "w", app.clock(), timedelta(minutes=5), 100)
            assert [c.changeset_id for c in claimed] == [ids[1]], "never claimed"
            assert await cs_store.request_sync(conn, [ids[0]], "api", app.clock()) == 0
        emu.state.host(GH).set_archived("acme/repo-1", True)  # archived while away

    async with open_app(config(store_url, gh_service(url)), retry=FAST) as app:
        back = await sync(app)
        assert (back.revived, back.archived) == (1, ["gh.test/acme/repo-1"]), back.summary()
        # READONLY at once, in the revival's transaction: no changeset sync needed.
        assert (await changeset_rows(app))[ids[0]].external_state == ExternalState.READONLY
        assert ids[0] in await pending(app)
        await app.changeset_syncer.run_once()
        row = (await changeset_rows(app))[ids[0]]
        assert (row.external_state, row.sync_error) == ("READONLY", None)
        async with app.engine.connect() as conn:
            kinds = [e.kind for e in await event_store.list_events(conn)]
        assert kinds.count("RepoRestored") == 1 and kinds.count("RepoArchived") == 1


# --- 7.10: services removed from the config are retired; the events table has retention -------


async def test_a_service_removed_from_the_config_is_retired_and_revived(
    store_url: str, emu: RunningEmulator
) -> None:
    seed(emu, count=4, pulls_on=4)
    emu.state.host(HostKind.GITEA).add_repo("infra", "role-0")
    url = emu.base_url(GH)
    gitea = {"name": "gt", "kind": "gitea", "url": emu.base_url(HostKind.GITEA),
             "orgs": ["infra"], "name_prefix": "gt.test"}  # fmt: skip
    # "gh2" lists acme/repo-0 too: that repo stays (still linked), the others go.
    gh2 = gh_service(url, name="gh2", orgs=[], repos=["acme/repo-0"])
    both = config(store_url, gh_service(url), gh2)
    async with open_app(both, retry=FAST) as app:
        assert (await sync(app, "gh")).complete and (await sync(app, "gh2")).complete
        ids = await track(app, ["gh.test/acme/repo-0", "gh.test/acme/repo-3"])
        before = await live_repos(app)

    only_gitea = config(store_url, gitea)
    async with open_app(only_gitea, retry=FAST) as app:  # a partial view: retires nothing
        async with app.engine.connect() as conn:
            assert {s.name for s in await service_store.list_services(conn)} == {"gh", "gh2", "gt"}

    async with open_app(config(store_url, gh2), retire_unconfigured=True) as app:
        async with app.engine.connect() as conn:
            listed = {s.name for s in await service_store.list_services(conn)}
            deleted = await event_store.list_events(conn, kind="RepoDeleted")
        assert listed == {"gh2"}, "gh and gt retired: no longer listed"
        assert {e.payload["reason"] for e in deleted} == {"service removed"}
        live = await live_repos(app)
        assert [n for _, n in live.values()] == ["gh.test/acme/repo-0"], "still linked to gh2"
        rows = await changeset_rows(app)
        assert rows[ids[0]].sync_error is None
        assert rows[ids[1]].sync_error == "not synced: its repository was removed (service removed)"
        assert ids[1] not in await pending(app)
        async with app.engine.connect() as conn:  # never due again while retired
            due = await service_store.due_services(conn, app.clock() + timedelta(days=365))
        assert due == ["gh2"]

    async with open_app(both, retire_unconfigured=True, retry=FAST) as app:  # gh is back
        assert (await sync(app, "gh")).revived == 3
        after = await live_repos(app)
        assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
        assert ids[1] in await pending(app), "its changesets are synced again"


async def test_events_older_than_the_retention_are_pruned_in_batches(
    store_url: str, emu: RunningEmulator
) -> None:
    from repo_updater.service_layer.retention import prune_events
    from tests.support.fakes import FakeClock

    seed(emu, count=7)
    clock = FakeClock()
    app_config = config(store_url, gh_service(emu.base_url(GH)))
    async with open_app(app_config, retry=FAST, clock=clock) as app:
        assert (await sync(app)).added == 7  # 7 RepoAdded events
        assert await prune_events(app.engine, clock.now, timedelta(days=30), batch=3) == 0
        clock.advance(timedelta(days=31))
        emu.state.host(GH).set_archived("acme/repo-0", True)
        assert (await sync(app)).archived  # a RepoArchived event, 31 days later
        assert await prune_events(app.engine, clock.now, timedelta(days=30), batch=3) == 7
        async with app.engine.connect() as conn:
            kinds = [e.kind for e in await event_store.list_events(conn)]
        assert kinds == ["RepoModified", "RepoArchived"], "only the recent ones are left"


# --- 7.10 and 7.11: failures keep their cause, back off, honour retry-after -------------------


async def test_failing_service_backs_off_keeps_last_success_and_honours_retry_after(
    store_url: str,
) -> None:
    from repo_updater.service_layer.repo_syncer import RepoSyncer
    from repo_updater.store.db import create_engine
    from tests.support.fakes import FakeClock

    clock = FakeClock()
    svc = config(store_url, gh_service("https://example.test")).external_services[0]
    engine = create_engine(store_url)
    syncer = RepoSyncer(engine, clock)
    source = ListingSource.of([repo(1), repo(2)])
    interval = 60.0
    try:
        ok = await syncer.sync(svc, source, interval=interval)
        assert ok.complete
        success_at = clock.now
        source.fail_after_pages = 0
        delays = []
        for _ in range(4):
            clock.advance(timedelta(minutes=1))
            started = clock.now
            assert not (await syncer.sync(svc, source, interval=interval)).complete
            async with engine.connect() as conn:
                (status,) = await service_store.list_services(conn)
            assert status.last_success_at == success_at and status.last_sync_at == started
            assert status.last_sync_error and "HTTP 502" in status.last_sync_error
            delays.append((status.next_sync_at - started).total_seconds())  # type: ignore[operator]
        assert delays == [60, 120, 240, 480], "doubling while it fails"

        source.fail_after_pages = None
        clock.advance(timedelta(minutes=1))
        assert (await syncer.sync(svc, source, interval=interval)).complete
        async with engine.connect() as conn:
            (status,) = await service_store.list_services(conn)
        assert (status.last_success_at, status.sync_failures) == (clock.now, 0), "reset"

        limited = _RateLimitedSource()
        clock.advance(timedelta(minutes=1))
        result = await syncer.sync(svc, limited, interval=interval)
        assert result.retry_after == 3600
        async with engine.connect() as conn:
            (status,) = await service_store.list_services(conn)
        assert status.next_sync_at == clock.now + timedelta(hours=1)
    finally:
        await engine.dispose()


class _RateLimitedSource(ListingSource):
    async def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        if self.calls >= 0:  # always: an async generator that raises at once
            raise RateLimited("GET /orgs/acme/repos: rate limited (retry after 3600s)", 3600.0)
        yield []


async def test_api_services_show_last_success_separately(
    store_url: str, emu: RunningEmulator
) -> None:
    import httpx

    from repo_updater.entrypoints.api import running_api

    seed(emu, count=2)
    async with open_app(config(store_url, gh_service(emu.base_url(GH))), retry=FAST) as app:
        assert (await sync(app)).complete
        async with running_api(app) as url, httpx.AsyncClient() as client:
            (svc,) = (await client.get(f"{url}/api/services")).json()["items"]
    assert svc["last_success_at"] == svc["last_sync_at"] is not None
    assert svc["sync_failures"] == 0
