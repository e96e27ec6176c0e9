"""Webhook tests: an app on the emulator's four hosts whose services have a webhook secret,
every pull request tracked and synced, and ways to sign and send deliveries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core import webhooks as wh
from repo_updater.core.domain import HostKind
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.serve import serve
from repo_updater.store import changeset_queries as queries
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from tests.support.operations import FAST, OWNERS

SECRET = "whsec-7f3a-SECRET-91c2"
ENV = {"HOOK_SECRET": SECRET}
DEADLINE = 30.0


def seed(emu: RunningEmulator, repos: int = 2, pulls: int = 2) -> None:
    for kind, owner in OWNERS.items():
        host = emu.state.host(kind)
        for i in range(repos):
            repo = host.add_repo(owner, f"repo-{i}")
            for k in range(pulls):
                host.add_pull(repo.full_name, title=f"change {k}")


def service_name(kind: HostKind) -> str:
    return f"svc-{kind.value}"


def config_dict(store_url: str, emu: RunningEmulator, **top: Any) -> dict[str, Any]:
    services = [
        {"name": service_name(kind), "kind": kind.value, "url": emu.base_url(kind),
         "orgs": [owner], "name_prefix": f"{kind.value}.test",
         "webhook_secret_env": "HOOK_SECRET"}
        for kind, owner in OWNERS.items()
        if emu.state.host(kind).repos
    ]  # fmt: skip
    return {
        "database": store_url,
        "repo_sync_interval": 3600,  # no repo sync during a test: only webhooks
        "changeset_poll_interval": 3600,
        "webhook_poll_interval": 0.2,
        "api": {"port": 0},
        "external_services": services,
        **top,
    }


@asynccontextmanager
async def synced_app(
    store_url: str,
    emu: RunningEmulator,
    *,
    worker_id: str = "w1",
    sync: bool = True,
    **top: Any,
) -> AsyncIterator[App]:
    """Services synced once, every pull request tracked in batch change ``bc`` and synced
    (``sync=False``: the app as a process starts, nothing synced)."""
    config = parse_config(config_dict(store_url, emu, **top), ENV)
    async with open_app(config, ENV, retry=FAST, worker_id=worker_id) as app:
        if not sync:
            yield app
            return
        for name in app.sources:
            assert (await app.repo_sync_worker.sync_service(name)).complete
        async with app.engine.begin() as conn:
            tracked = await queries.page_changesets(conn, queries.ChangesetFilter(), limit=1)
            if not tracked:  # a second app on the same store finds them tracked
                bc = await cs_store.create_batch_change(conn, "bc", "", app.clock())
                for repo in await repo_store.list_repos(conn):
                    host = emu.state.host(repo.host_kind)
                    pairs = [(repo.id, n) for n in host.repo(repo.external_name).pulls]
                    if pairs:
                        await cs_store.track_changesets(conn, bc, pairs, app.clock())
        while (await app.changeset_syncer.run_once()).claimed:
            pass
        yield app


@asynccontextmanager
async def serving(app: App) -> AsyncIterator[str]:
    """``serve`` (API and every worker) in the background; yields the API's URL."""
    stop = asyncio.Event()
    ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(app, stop, on_ready=ready.set_result))
    try:
        url = await asyncio.wait_for(asyncio.shield(ready), DEADLINE)
        assert url is not None
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(task, DEADLINE)


async def register_hooks(admin: Any, url: str, secret: str = SECRET) -> None:
    for kind in OWNERS:
        await admin.add_webhook(kind, f"{url}/webhooks/{service_name(kind)}", secret)


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def states(app: App, repo_name: str) -> list[str | None]:
    async with app.engine.connect() as conn:
        repo = await repo_store.get_repo_by_name(conn, repo_name)
        assert repo is not None, repo_name
        rows = await queries.page_changesets(
            conn, queries.ChangesetFilter(repo_id=repo.id), limit=1000
        )
    return [v.external_state.value if v.external_state else None for v, _ in rows]


def delivery(kind: HostKind, event: str, payload: Any, *, did: str = "d-1",
             secret: str = SECRET) -> tuple[dict[str, str], bytes]:  # fmt: skip
    """Headers and body of a signed delivery as ``kind`` sends it."""
    from repo_updater.emulator.webhooks import _headers

    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **_headers(kind, event, did)}
    return {**headers, **wh.sign(kind, secret, body)}, body
