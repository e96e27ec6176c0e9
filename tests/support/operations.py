"""Helpers for bulk-operation tests: an app on the emulator's four hosts with every pull
request tracked and synced, and ways to run its operation worker until an operation ends."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from repo_updater.bootstrap import App, open_app
from repo_updater.config import Config, parse_config
from repo_updater.core.domain import HostKind
from repo_updater.core.operations import OperationArgs, OperationKind, OperationState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.service_layer import operations
from repo_updater.service_layer.operation_worker import OperationWorker
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import changesets as cs_store
from repo_updater.store import operations as op_store
from repo_updater.store import repos as repo_store
from repo_updater.store.operations import OperationView

OWNERS = {
    HostKind.GITHUB: "acme",
    HostKind.GITLAB: "acme",
    HostKind.GITEA: "acme",
    HostKind.BITBUCKET_SERVER: "ACME",
}
FAST = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=0.5)
DEADLINE = 60.0  # generous: the machine is shared


def config_dict(store_url: str, emu: RunningEmulator, **settings: object) -> dict[str, Any]:
    """A service for each emulated host that has repositories (``settings`` in each)."""
    services = [
        {"name": f"svc-{kind.value}", "kind": kind.value, "url": emu.base_url(kind),
         "orgs": [owner], "name_prefix": f"{kind.value}.test", **settings}
        for kind, owner in OWNERS.items()
        if emu.state.host(kind).repos
    ]  # fmt: skip
    return {"database": store_url, "external_services": services}


def config(store_url: str, emu: RunningEmulator, **settings: object) -> Config:
    return parse_config(config_dict(store_url, emu, **settings), {})


@asynccontextmanager
async def tracked(
    store_url: str, emu: RunningEmulator, *, worker_id: str = "w1", **settings: object
) -> AsyncIterator[tuple[App, int]]:
    """An app whose batch change ``bc`` tracks every pull request of every emulated host,
    all synced; yields it with the batch change's id."""
    async with open_app(config(store_url, emu, **settings), retry=FAST, worker_id=worker_id) as app:
        for name in app.sources:
            assert (await app.repo_sync_worker.sync_service(name)).complete
        async with app.engine.begin() as conn:
            bc = await cs_store.create_batch_change(conn, "bc", "", app.clock())
            for repo in await repo_store.list_repos(conn):
                host = emu.state.host(repo.host_kind)
                numbers = list(host.repo(repo.external_name).pulls)
                pairs = [(repo.id, n) for n in numbers]
                if pairs:
                    await cs_store.track_changesets(conn, bc, pairs, app.clock())
        while (await app.changeset_syncer.run_once()).claimed:
            pass
        yield app, bc


def fast_worker(app: App, worker_id: str | None = None, **options: object) -> OperationWorker:
    """The app's operation worker with short retry delays (and ``options``)."""
    limits = {host: app.operation_worker.limits_for(host) for host in app.operation_worker.hosts}
    kwargs: dict[str, object] = {
        "worker_id": worker_id or app.worker_id,
        "limits": limits,
        "retry_delay": timedelta(milliseconds=50),
        "max_retry_delay": timedelta(milliseconds=200),
        **options,
    }
    sources = {(s.kind, s.host_url): s for s in app.sources.values()}
    return OperationWorker(app.engine, sources, app.clock, **kwargs)  # type: ignore[arg-type]


async def run_until_finished(
    app: App, operation_id: int, worker: OperationWorker | None = None
) -> OperationView:
    worker = worker or app.operation_worker
    start = time.monotonic()
    while True:
        await worker.run_once()
        async with app.engine.connect() as conn:
            view = await op_store.get_operation(conn, operation_id)
        if view.state is OperationState.FINISHED:
            return view
        if time.monotonic() - start > DEADLINE:
            raise AssertionError(f"operation {operation_id} did not finish: {view}")
        await asyncio.sleep(0.05)


async def enqueue(app: App, bc: int, kind: OperationKind, **args: Any) -> int:
    """Enqueue ``kind`` for every changeset of the batch change (``args``: OperationArgs)."""
    async with app.engine.begin() as conn:
        return await operations.enqueue(
            conn, bc, kind, OperationArgs(**args), requested_by="test", now=app.clock()
        )


def writes_per_pull(emu: RunningEmulator, kind: HostKind, action: str) -> Counter[tuple[int, int]]:
    """How many times each (repo id, number) got a write of ``action`` on host ``kind``."""
    log = emu.state.host(kind).writes.log
    return Counter((w.repo_id, w.number or 0) for w in log if w.action == action)
