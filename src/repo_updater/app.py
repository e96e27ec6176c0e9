"""The composition root: the one place that builds sources, the store, the services and the
API from a ``Config``, and runs them together (``serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import Config, ServiceConfig, token_for
from repo_updater.domain import HostKind, RepoSource, RequestCounter
from repo_updater.services.changeset_syncer import ChangesetSyncer
from repo_updater.services.repo_syncer import ProgressCallback, RepoSyncer, SyncResult
from repo_updater.sources.base import RetryPolicy
from repo_updater.store import repos as repo_store
from repo_updater.store.db import create_engine, migrate

log = logging.getLogger(__name__)

# A repo sync's claim on its service; renewed every third of it while the sync runs, so a dead
# worker's service is picked up by another within this time.
SERVICE_LEASE_SECONDS = 120.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def build_source(
    svc: ServiceConfig,
    env: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    counter: RequestCounter | None = None,
) -> RepoSource:
    token = token_for(svc, env)
    common = dict(
        base_url=svc.url,
        token=token,
        selection=svc.selection,
        name_prefix=svc.prefix,
        transport=transport,
        retry=retry,
        counter=counter,
    )
    if svc.kind is HostKind.GITHUB:
        from repo_updater.sources.github import GitHubSource

        return GitHubSource(**common)  # type: ignore[arg-type]
    if svc.kind is HostKind.GITLAB:
        from repo_updater.sources.gitlab import GitLabSource

        return GitLabSource(**common)  # type: ignore[arg-type]
    if svc.kind is HostKind.GITEA:
        from repo_updater.sources.gitea import GiteaSource

        return GiteaSource(**common)  # type: ignore[arg-type]
    from repo_updater.sources.bitbucket import BitbucketServerSource

    return BitbucketServerSource(**common)  # type: ignore[arg-type]


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class App:
    """Everything wired together for one process."""

    config: Config
    engine: AsyncEngine
    sources: dict[str, RepoSource]
    repo_syncer: RepoSyncer
    changeset_syncer: ChangesetSyncer
    clock: Callable[[], datetime] = utcnow
    worker_id: str = field(default_factory=default_worker_id)
    counter: RequestCounter = field(default_factory=RequestCounter)
    service_ids: dict[str, int] = field(default_factory=dict)

    def service(self, name: str) -> ServiceConfig:
        for svc in self.config.external_services:
            if svc.name == name:
                return svc
        known = ", ".join(s.name for s in self.config.external_services) or "none configured"
        raise KeyError(f"no external service named {name!r} (known: {known})")

    async def register_services(self) -> None:
        for svc in self.config.external_services:
            self.service_ids[svc.name] = await self.repo_syncer.register(svc)

    async def sync_service(self, name: str, progress: ProgressCallback | None = None) -> SyncResult:
        svc = self.service(name)
        return await self.repo_syncer.sync(
            svc, self.sources[name], interval=self.config.interval_for(svc), progress=progress
        )

    async def sync_due_services(self) -> list[SyncResult]:
        """Sync, concurrently, every configured service whose next sync is due and that no
        other worker is syncing right now."""
        async with self.engine.connect() as conn:
            due = set(await repo_store.due_services(conn, self.clock()))
        runs = [self.claimed_sync(s.name) for s in self.config.external_services if s.name in due]
        return [r for r in await asyncio.gather(*runs) if r is not None]

    async def claimed_sync(
        self, name: str, progress: ProgressCallback | None = None
    ) -> SyncResult | None:
        """Sync a service unless another worker is syncing it (then return None)."""
        lease = timedelta(seconds=SERVICE_LEASE_SECONDS)
        svc_id = self.service_ids[name]

        async def claim() -> bool:
            now = self.clock()
            async with self.engine.begin() as conn:
                return await repo_store.claim_service(
                    conn, svc_id, worker_id=self.worker_id, now=now, until=now + lease
                )

        async def keep_claim() -> None:  # renew the lease while a long listing runs
            while True:
                await asyncio.sleep(SERVICE_LEASE_SECONDS / 3)
                await claim()

        if not await claim():
            return None
        renewer = asyncio.create_task(keep_claim())
        try:
            result = await self.sync_service(name, progress)
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            async with self.engine.begin() as conn:
                await repo_store.release_service(conn, svc_id, worker_id=self.worker_id)
        level = logging.INFO if result.changed_anything else logging.DEBUG
        log.log(level, "%s", result.summary())
        return result

    async def run_repo_sync_loop(self, stop: asyncio.Event, tick: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await self.sync_due_services()
            except Exception:  # keep the loop alive; the error is logged with its cause
                log.exception("repo sync round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick)

    async def aclose(self) -> None:
        for source in self.sources.values():
            await source.aclose()
        await self.engine.dispose()


@contextlib.asynccontextmanager
async def open_app(
    config: Config,
    env: Mapping[str, str] | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    worker_id: str | None = None,
) -> AsyncIterator[App]:
    """Build the app, migrate the store, register the services; close everything on exit."""
    env = os.environ if env is None else env
    counter = RequestCounter()
    engine = create_engine(config.database)
    await migrate(engine)
    sources = {
        svc.name: build_source(svc, env, transport=transport, retry=retry, counter=counter)
        for svc in config.external_services
    }
    by_host: dict[tuple[HostKind, str], RepoSource] = {}
    for source in sources.values():
        by_host.setdefault((source.kind, source.service_id), source)
    wid = worker_id or default_worker_id()
    changeset_syncer = ChangesetSyncer(
        engine,
        by_host,
        clock=clock,
        worker_id=wid,
        batch_size=config.changeset_batch_size,
        poll_interval=config.changeset_poll_interval,
    )
    repo_syncer = RepoSyncer(engine, clock, on_changeset_syncs_requested=changeset_syncer.wake)
    app = App(
        config=config,
        engine=engine,
        sources=sources,
        repo_syncer=repo_syncer,
        changeset_syncer=changeset_syncer,
        clock=clock,
        worker_id=wid,
        counter=counter,
    )
    try:
        await app.register_services()
        yield app
    finally:
        await app.aclose()


async def serve(app: App, stop: asyncio.Event, *, api: bool = True) -> None:
    """Run the repo sync loop, the changeset syncer and the HTTP API until ``stop`` is set."""
    from repo_updater.entrypoints.api import running_api

    async with contextlib.AsyncExitStack() as stack:
        if api:
            url = await stack.enter_async_context(
                running_api(app, host=app.config.api.host, port=app.config.api.port)
            )
            log.info("API listening on %s", url)
        tasks = [
            asyncio.create_task(app.run_repo_sync_loop(stop), name="repo-sync"),
            asyncio.create_task(app.changeset_syncer.run(stop), name="changeset-sync"),
        ]
        try:
            await stop.wait()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
