"""The composition root: the one place that builds sources, the store, the services and the
API from a ``Config``, and runs them together (``serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
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
from repo_updater.store import services as service_store
from repo_updater.store.db import create_engine, migrate

log = logging.getLogger(__name__)

# A repo sync's claim on its service; renewed every third of it while the sync runs, so a dead
# worker's service is picked up by another within this time.
SERVICE_LEASE_SECONDS = 120.0


class ServiceClaimLost(RuntimeError):
    pass


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
    # Services on the same code host may list overlapping repos: sync them one at a time.
    _host_locks: dict[tuple[HostKind, str], asyncio.Lock] = field(default_factory=dict)

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
        source = self.sources[name]
        lock = self._host_locks.setdefault((source.kind, source.service_id), asyncio.Lock())
        async with lock:
            return await self.repo_syncer.sync(
                svc, source, interval=self.config.interval_for(svc), progress=progress
            )

    async def sync_due_services(self) -> list[SyncResult]:
        """Sync, concurrently, every configured service whose next sync is due and that no
        other worker is syncing right now. One service's failure does not stop the others."""
        async with self.engine.connect() as conn:
            due = set(await service_store.due_services(conn, self.clock()))
        names = [s.name for s in self.config.external_services if s.name in due]
        outcomes = await asyncio.gather(
            *(self.claimed_sync(name) for name in names), return_exceptions=True
        )
        results = []
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("repo sync of %s failed: %s", name, type(outcome).__name__)
            elif outcome is not None:
                results.append(outcome)
        return results

    async def claimed_sync(
        self, name: str, progress: ProgressCallback | None = None
    ) -> SyncResult | None:
        """Sync a service unless another run (here or in another process) holds its claim;
        then return None. The claim is renewed while the sync runs; if it is lost anyway
        (the database was unreachable for longer than the lease) the sync is abandoned before
        it could remove anything."""
        lease = timedelta(seconds=SERVICE_LEASE_SECONDS)
        svc_id = self.service_ids[name]
        token = f"{self.worker_id}/{uuid.uuid4().hex[:12]}"
        now = self.clock()
        async with self.engine.begin() as conn:
            if not await service_store.claim_service(
                conn, svc_id, token=token, now=now, until=now + lease
            ):
                return None
        sync = asyncio.create_task(self.sync_service(name, progress))
        renewer = asyncio.create_task(self._keep_claim(svc_id, token, lease, sync))
        try:
            result = await sync
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled ourselves
            raise ServiceClaimLost(
                f"{name}: lost the claim on the service; sync abandoned"
            ) from None
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            sync.cancel()
            with contextlib.suppress(Exception):
                async with self.engine.begin() as conn:
                    await service_store.release_service(conn, svc_id, token=token)
        level = logging.INFO if result.changed_anything else logging.DEBUG
        log.log(level, "%s", result.summary())
        return result

    async def _keep_claim(
        self, svc_id: int, token: str, lease: timedelta, sync: asyncio.Task[SyncResult]
    ) -> None:
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                async with self.engine.begin() as conn:
                    kept = await service_store.renew_service_claim(
                        conn, svc_id, token=token, until=self.clock() + lease
                    )
            except Exception as exc:  # a blip: try again; the lease allows two misses
                log.warning("could not renew the claim on service %d: %s", svc_id, exc)
                continue
            if not kept:
                log.error("lost the claim on service %d; abandoning this sync", svc_id)
                sync.cancel()
                return

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


async def serve(
    app: App,
    stop: asyncio.Event,
    *,
    api: bool = True,
    on_ready: Callable[[str | None], None] | None = None,
) -> None:
    """Run the repo sync loop, the changeset syncer and the HTTP API until ``stop`` is set.
    ``on_ready`` gets the API's bound URL (None without the API) once it listens."""
    from repo_updater.entrypoints.api import running_api

    async with contextlib.AsyncExitStack() as stack:
        url = None
        if api:
            url = await stack.enter_async_context(
                running_api(app, host=app.config.api.host, port=app.config.api.port)
            )
            log.info("API listening on %s", url)
        if on_ready is not None:
            on_ready(url)
        intervals = [app.config.interval_for(s) for s in app.config.external_services]
        tick = min([1.0, *(i / 2 for i in intervals)])
        tasks = [
            asyncio.create_task(app.run_repo_sync_loop(stop, tick=tick), name="repo-sync"),
            asyncio.create_task(app.changeset_syncer.run(stop), name="changeset-sync"),
        ]
        try:
            await stop.wait()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
