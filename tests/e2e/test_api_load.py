"""No request may starve the syncers (issue 7, item 7): ten concurrent large list calls while
the changeset syncer runs its rounds leave every round whole, and the API never takes a
connection from the syncers' pool (it has its own, ``App.api_engine``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostPullState, PublicationState
from repo_updater.service_layer.changeset_syncer import ChangesetSyncer, SyncRound
from repo_updater.store import changesets as cs_store
from repo_updater.store.schema import batch_change_changesets, changesets
from tests.support.api import ApiClient, api_client
from tests.support.fakes import FakeSource, insert_repo

N = 2000  # changesets
CALLERS = 10


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[App]:
    config = parse_config({"database": store_url, "api": {"pool_size": 3}}, {})
    async with open_app(config, {}) as built:
        yield built


async def seed(app: App, source: FakeSource) -> None:
    """N published changesets, due now, on 100 repos of the fake host, tracked by one batch
    change (bulk inserts: this is about the API under load, not about tracking)."""
    now = app.clock()
    async with app.engine.begin() as conn:
        bc = await cs_store.create_batch_change(conn, "load", "", now)
        repo_ids = [await insert_repo(conn, f"acme/r{i}", source=source) for i in range(100)]
        rows = [
            {"repo_id": repo_ids[i % 100], "external_id": str(i // 100 + 1),
             "publication_state": PublicationState.PUBLISHED.value,
             "title": "x" * 200, "next_sync_at": now - timedelta(seconds=1),
             "created_at": now, "updated_at": now}
            for i in range(N)
        ]  # fmt: skip
        await conn.execute(changesets.insert(), rows)
        ids = (await conn.execute(sa.select(changesets.c.id))).scalars().all()
        await conn.execute(
            batch_change_changesets.insert(),
            [{"batch_change_id": bc, "changeset_id": i} for i in ids],
        )
    for i in range(100):
        for number in range(1, N // 100 + 1):
            source.set_pull(f"acme/r{i}", number, HostPullState.OPEN)


async def walk(client: ApiClient, stop: asyncio.Event) -> list[int]:
    """Page through every changeset, 1,000 at a time, again and again until ``stop``."""
    statuses = []
    while not stop.is_set():
        after = None
        while True:
            params: dict[str, Any] = {"limit": 1000, **({"after": after} if after else {})}
            response = await client.call("GET", "/api/changesets", params=params)
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
            after = response.json()["next"]
            if after is None:
                break
    return statuses


async def test_concurrent_large_lists_do_not_starve_the_changeset_syncer(app: App) -> None:
    source = FakeSource()
    await seed(app, source)
    syncer = ChangesetSyncer(
        app.engine, {source.key: source}, app.clock, worker_id="w", batch_size=500
    )
    syncers_pool_taken_by_api = 0
    in_api = asyncio.Event()

    def on_checkout(*_: object) -> None:
        nonlocal syncers_pool_taken_by_api
        if in_api.is_set() and not syncing:
            syncers_pool_taken_by_api += 1

    syncing = False
    event.listen(app.engine.sync_engine, "checkout", on_checkout)
    async with api_client(app) as client:
        stop = asyncio.Event()
        in_api.set()
        walkers = [asyncio.create_task(walk(client, stop)) for _ in range(CALLERS)]
        await asyncio.sleep(0.5)  # the API busy before the syncer starts
        syncing = True
        rounds = SyncRound()
        while True:
            result = await syncer.run_once()
            rounds += result
            if result.claimed == 0:
                break
        stop.set()
        statuses = [s for w in await asyncio.gather(*walkers) for s in w]
    assert (rounds.claimed, rounds.synced, rounds.failed) == (N, N, 0)
    assert len(statuses) >= CALLERS * 3 and set(statuses) == {200}
    assert syncers_pool_taken_by_api == 0
    async with app.engine.connect() as conn:
        states = {v.external_state for v in await cs_store.list_changesets(conn)}
    assert {s.value for s in states if s is not None} == {"OPEN"}
