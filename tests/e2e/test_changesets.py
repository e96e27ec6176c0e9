"""End to end: ``serve`` (repo sync loop + changeset syncer) against the emulator on loopback and
a real store (SQLite file and PostgreSQL). What a user watching ``changesets list`` would see:
archiving a repo turns its open and draft changesets READONLY (merged and closed stay), unarchiving
brings back what the host says, and merges and deletions on the host show up after a sync."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from repo_updater.bootstrap import App, open_app
from repo_updater.config import Config, parse_config
from repo_updater.core.domain import ExternalState, HostKind, HostPullState
from repo_updater.emulator.admin_client import EmulatorAdmin
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.serve import serve
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import repos as repo_store

GH = HostKind.GITHUB
PREFIX = "github.test"
DEADLINE = 30.0  # generous: the loops run every 0.2-1 s

OPEN, DRAFT, MERGED = ExternalState.OPEN, ExternalState.DRAFT, ExternalState.MERGED
CLOSED, READONLY, DELETED = ExternalState.CLOSED, ExternalState.READONLY, ExternalState.DELETED

# acme/widgets: the tracked pull requests and their state on the host.
PULLS = {
    1: HostPullState.OPEN,
    2: HostPullState.DRAFT,
    3: HostPullState.MERGED,
    4: HostPullState.CLOSED,
    5: HostPullState.OPEN,
    6: HostPullState.OPEN,
}


def github_config(store_url: str, emu: RunningEmulator, **settings: float) -> Config:
    """One GitHub service on the emulator's org ``acme``, names under ``PREFIX``."""
    service = {
        "name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["acme"],
        "name_prefix": PREFIX,
    }  # fmt: skip
    return parse_config({"database": store_url, **settings, "external_services": [service]}, {})


@pytest.fixture(autouse=True)
def _seed(emu: RunningEmulator) -> None:
    host = emu.state.host(GH)
    host.add_repo("acme", "widgets")
    for number, state in PULLS.items():
        pull = host.add_pull("acme/widgets", title=f"Change {number}", state=state)
        assert pull.number == number
    host.add_repo("acme", "gadgets")
    host.add_pull("acme/gadgets", title="Elsewhere")


@asynccontextmanager
async def serving(store_url: str, emu: RunningEmulator) -> AsyncIterator[App]:
    """The app with its loops running (no HTTP API), a batch change tracking every pull
    request of acme/widgets and acme/gadgets#1, all synced once."""
    config = github_config(store_url, emu, repo_sync_interval=0.2, changeset_poll_interval=0.2)
    retry = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=2.0)
    async with open_app(config, retry=retry) as app:
        assert (await app.repo_sync_worker.sync_service("gh")).complete
        async with app.engine.begin() as conn:
            bc = await cs_store.create_batch_change(conn, "upgrade-ci", "", app.clock())
            widgets = await repo_store.get_repo_by_name(conn, f"{PREFIX}/acme/widgets")
            gadgets = await repo_store.get_repo_by_name(conn, f"{PREFIX}/acme/gadgets")
            assert widgets is not None and gadgets is not None
            for number in PULLS:
                await cs_store.track_changeset(conn, bc, widgets.id, number, app.clock())
            await cs_store.track_changeset(conn, bc, gadgets.id, 1, app.clock())
        stop = asyncio.Event()
        task = asyncio.create_task(serve(app, stop, api=False))
        try:
            await wait_for(
                app,
                lambda s: s == {**initial(), "gadgets#1": OPEN},
                "the first changeset sync",
            )
            yield app
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=DEADLINE)


def initial() -> dict[str, ExternalState]:
    return {f"widgets#{n}": ExternalState(s.value) for n, s in PULLS.items()}


States = dict[str, ExternalState | None]


async def states(app: App) -> States:
    async with app.engine.connect() as conn:
        views = await cs_store.list_changesets(conn)
    return {f"{v.repo_name.rsplit('/', 1)[1]}#{v.number}": v.external_state for v in views}


async def wait_for(
    app: App,
    done: Callable[[States], bool],
    what: str,
    seen: list[States] | None = None,
) -> States:
    """Poll the store until ``done(states)``; every distinct observation goes to ``seen``."""
    deadline = time.monotonic() + DEADLINE
    while True:
        current = await states(app)
        if seen is not None and (not seen or seen[-1] != current):
            seen.append(current)
        if done(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {DEADLINE}s; states: {current}")
        await asyncio.sleep(0.05)


async def request_sync(app: App, changeset: str) -> None:
    async with app.engine.begin() as conn:
        ids = {
            f"{v.repo_name.rsplit('/', 1)[1]}#{v.number}": v.id
            for v in await cs_store.list_changesets(conn)
        }
        assert await cs_store.request_sync(conn, [ids[changeset]], "test", app.clock()) == 1
    app.changeset_syncer.wake()


async def test_archive_makes_open_and_draft_readonly_and_unarchive_restores_host_states(
    store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    async with serving(store_url, emu) as app:
        seen: list[States] = []
        await admin.archive(GH, "acme/widgets")
        archived = await wait_for(
            app,
            lambda s: all(s[f"widgets#{n}"] is READONLY for n in (1, 2, 5, 6)),
            "READONLY after archiving",
            seen,
        )
        assert archived == {
            "widgets#1": READONLY,
            "widgets#2": READONLY,
            "widgets#3": MERGED,
            "widgets#4": CLOSED,
            "widgets#5": READONLY,
            "widgets#6": READONLY,
            "gadgets#1": OPEN,
        }
        # Merged and closed never turned READONLY on the way, the other repo was untouched.
        for observed in seen:
            assert (observed["widgets#3"], observed["widgets#4"]) == (MERGED, CLOSED)
            assert observed["gadgets#1"] is OPEN
        async with app.engine.connect() as conn:
            assert [r.external_name for r in await repo_store.list_repos(conn, archived=True)] == [
                "acme/widgets"
            ]

        # While archived the draft was marked ready on the host (admin access): unarchiving
        # must bring back what the host says now, not what we stored before.
        await admin.set_pull(GH, "acme/widgets", 2, state="OPEN")
        seen.clear()
        await admin.unarchive(GH, "acme/widgets")
        expected = {**initial(), "widgets#2": OPEN, "gadgets#1": OPEN}
        await wait_for(app, lambda s: s == expected, "host states after unarchiving", seen)
        for observed in seen:
            assert (observed["widgets#3"], observed["widgets#4"]) == (MERGED, CLOSED)
            assert observed["gadgets#1"] is OPEN
        async with app.engine.connect() as conn:
            assert await repo_store.list_repos(conn, archived=True) == []
            events = [e.kind for e in await event_store.list_events(conn)]
        assert events.count("RepoArchived") == 1 and events.count("RepoUnarchived") == 1


async def test_merge_and_delete_on_the_host_show_up_after_a_requested_sync(
    store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    async with serving(store_url, emu) as app:
        # Freshly synced changesets are next due in minutes: only the request makes this fast.
        await admin.set_pull(GH, "acme/widgets", 5, state="MERGED")
        await request_sync(app, "widgets#5")
        merged = await wait_for(app, lambda s: s["widgets#5"] is MERGED, "MERGED after a merge")
        assert merged == {**initial(), "widgets#5": MERGED, "gadgets#1": OPEN}

        await admin.set_pull(GH, "acme/widgets", 6, state="DELETED")
        assert [p["number"] for p in await admin.pulls(GH, "acme/widgets")] == [1, 2, 3, 4, 5]
        await request_sync(app, "widgets#6")
        deleted = await wait_for(app, lambda s: s["widgets#6"] is DELETED, "DELETED")
        assert deleted == {
            **initial(),
            "widgets#5": MERGED,
            "widgets#6": DELETED,
            "gadgets#1": OPEN,
        }
        async with app.engine.connect() as conn:
            views = {v.number: v for v in await cs_store.list_changesets(conn) if v.number > 4}
        assert views[5].sync_error is None and views[6].sync_error is None

        # A merged changeset on a repo that is then archived stays MERGED.
        await admin.archive(GH, "acme/widgets")
        after = await wait_for(
            app, lambda s: s["widgets#1"] is READONLY, "READONLY after archiving"
        )
        assert (after["widgets#5"], after["widgets#6"]) == (MERGED, DELETED)


async def test_one_impossible_pr_number_does_not_stop_the_others_syncing(
    store_url: str, emu: RunningEmulator
) -> None:
    """A PR number beyond GraphQL's 32-bit ``Int`` once failed the whole GitHub batch it was
    loaded in, for every changeset in it. It must be refused when tracked, or not hurt the
    others."""
    config = github_config(store_url, emu)
    retry = RetryPolicy(attempts=1, backoff=0.01, max_rate_limit_wait=2.0)
    async with open_app(config, retry=retry) as app:
        assert (await app.repo_sync_worker.sync_service("gh")).complete
        async with app.engine.begin() as conn:
            bc = await cs_store.create_batch_change(conn, "bc", "", app.clock())
            widgets = await repo_store.get_repo_by_name(conn, f"{PREFIX}/acme/widgets")
            assert widgets is not None
            await cs_store.track_changeset(conn, bc, widgets.id, 1, app.clock())
        try:
            async with app.engine.begin() as conn:
                await cs_store.track_changeset(conn, bc, widgets.id, 2**40, app.clock())
        except ValueError:
            pass  # refused at the door (the CLI and the API refuse it too)
        await app.changeset_syncer.run_once()
        synced = await states(app)
    assert synced["widgets#1"] is OPEN, synced
