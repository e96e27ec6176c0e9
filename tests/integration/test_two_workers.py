"""Two workers (two apps with their own engines, as two ``serve`` processes would have) on one
store never sync the same changeset twice, and together sync every one."""

from __future__ import annotations

import asyncio

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostKind
from repo_updater.emulator.server import running_emulator
from repo_updater.service_layer.changeset_syncer import SyncRound
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store

GH = HostKind.GITHUB


async def test_two_workers_share_the_work_without_doing_any_twice(
    db_url: str, engine: object
) -> None:
    async with running_emulator() as emu:
        host = emu.state.host(GH)
        for i in range(20):
            emulated = host.add_repo("acme", f"repo-{i}")
            for k in range(10):
                host.add_pull(emulated.full_name, title=f"change {k}")
        config = parse_config(
            {
                "database": db_url,
                "changeset_batch_size": 15,
                "external_services": [
                    {"name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["acme"]}
                ],
            },
            {},
        )
        retry = RetryPolicy(attempts=2, backoff=0.01)
        async with (
            open_app(config, retry=retry, worker_id="worker-a") as a,
            open_app(config, retry=retry, worker_id="worker-b") as b,
        ):
            assert (await a.repo_sync_worker.sync_service("gh")).complete
            async with a.engine.begin() as conn:
                bc = await cs_store.create_batch_change(conn, "bc", "", a.clock())
                for repo in await repo_store.list_repos(conn):
                    for number in range(1, 11):
                        await cs_store.track_changeset(conn, bc, repo.id, number, a.clock())

            async def drain(app: App) -> SyncRound:
                total = SyncRound()
                while True:
                    round_ = await app.changeset_syncer.run_once()
                    if round_.claimed == 0:
                        return total
                    total += round_

            done_a, done_b = await asyncio.gather(drain(a), drain(b))
            async with a.engine.connect() as conn:
                views = await cs_store.list_changesets(conn)

    assert done_a.synced + done_b.synced == 200  # each changeset synced exactly once
    assert done_a.failed == done_b.failed == 0
    if db_url.startswith("postgresql"):  # SKIP LOCKED: the second worker takes other rows
        assert done_a.synced > 0 and done_b.synced > 0
    assert len(views) == 200 and all(v.last_synced_at is not None for v in views)
