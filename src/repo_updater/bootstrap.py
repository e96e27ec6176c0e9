"""The composition root: the one place that builds the store, the sources and the services
from a ``Config`` and wires them together. Nothing here runs anything: ``entrypoints.serve``
runs what is built here, the CLI and the demo call into it."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import Config, webhook_secret_for
from repo_updater.core.domain import HostKind
from repo_updater.core.pacing import WriteLimit
from repo_updater.core.ports import PermissionSource, RequestCounter, WritingSource
from repo_updater.metrics import Metrics
from repo_updater.service_layer.changeset_syncer import ChangesetSyncer
from repo_updater.service_layer.health import Health
from repo_updater.service_layer.operation_worker import OperationWorker
from repo_updater.service_layer.permissions_syncer import PermissionsSyncer
from repo_updater.service_layer.repo_sync_worker import RepoSyncWorker
from repo_updater.service_layer.repo_syncer import RepoSyncer
from repo_updater.service_layer.webhook_receiver import WebhookReceiver
from repo_updater.service_layer.webhook_worker import WebhookWorker
from repo_updater.sources import build_source
from repo_updater.sources.http import RetryPolicy
from repo_updater.store.db import create_engine, dispose_after_failure, migrate


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class App:
    """Everything wired together for one process."""

    config: Config
    engine: AsyncEngine  # the syncers' and the CLI's connection pool
    api_engine: AsyncEngine  # the HTTP API's own pool, so a busy API never starves the syncers
    sources: dict[str, WritingSource]  # by external service name
    repo_syncer: RepoSyncer
    repo_sync_worker: RepoSyncWorker
    changeset_syncer: ChangesetSyncer
    permissions_syncer: PermissionsSyncer
    operation_worker: OperationWorker
    webhook_receiver: WebhookReceiver
    webhook_worker: WebhookWorker
    clock: Callable[[], datetime] = utcnow
    worker_id: str = field(default_factory=default_worker_id)
    counter: RequestCounter = field(default_factory=RequestCounter)
    health: Health = field(default_factory=Health)
    metrics: Metrics = field(default_factory=Metrics)  # this process's Prometheus registry

    async def aclose(self) -> None:
        for source in self.sources.values():
            await source.aclose()
        await self.api_engine.dispose()
        await self.engine.dispose()


def strictest(
    current: tuple[WriteLimit, ...], more: tuple[WriteLimit, ...]
) -> tuple[WriteLimit, ...]:
    """Several services on one code host share its budget: per window, the lowest count."""
    by_window: dict[int, WriteLimit] = {}
    for limit in (*current, *more):
        known = by_window.get(limit.window_seconds)
        if known is None or limit.count < known.count:
            by_window[limit.window_seconds] = limit
    return tuple(by_window[w] for w in sorted(by_window))


def write_limits(config: Config) -> dict[tuple[HostKind, str], tuple[WriteLimit, ...]]:
    """Each code host's write limits, by ``(host_kind, host_url)`` as its sources name it."""
    limits: dict[tuple[HostKind, str], tuple[WriteLimit, ...]] = {}
    for svc in config.external_services:
        host = (svc.kind, svc.url)  # the config normalises ``url`` as sources do ``host_url``
        limits[host] = strictest(limits.get(host, ()), svc.write_limits.limits(svc.kind))
    return limits


@contextlib.asynccontextmanager
async def open_app(
    config: Config,
    env: Mapping[str, str] | None = None,
    *,
    clock: Callable[[], datetime] = utcnow,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    worker_id: str | None = None,
    retire_unconfigured: bool = False,
) -> AsyncIterator[App]:
    """Build the app, migrate the store, register the services; close everything on exit.

    ``retire_unconfigured``: this process loaded the whole config (``serve``, ``sync``
    without ``--service``), so services in the store that it does not name were removed from
    it: retire them. Every process sharing a store must then load the same config."""
    env = os.environ if env is None else env
    counter = RequestCounter()
    health = Health()
    metrics = Metrics(counter)
    engine = create_engine(config.database)
    try:
        await migrate(engine)
    except BaseException:
        await dispose_after_failure(engine)
        raise
    # Requests beyond the pool wait up to pool_timeout, then answer 503 (api/errors.py).
    api_engine = create_engine(
        config.database, pool_size=config.api.pool_size, max_overflow=0, pool_timeout=10.0
    )
    sources = {
        svc.name: build_source(svc, env, transport=transport, retry=retry, counter=counter)
        for svc in config.external_services
    }
    by_host: dict[tuple[HostKind, str], WritingSource] = {}
    for source in sources.values():
        by_host.setdefault((source.kind, source.host_url), source)
    limits = write_limits(config)
    wid = worker_id or default_worker_id()
    changeset_syncer = ChangesetSyncer(
        engine,
        by_host,
        clock=clock,
        worker_id=wid,
        batch_size=config.changeset_batch_size,
        poll_interval=config.changeset_poll_interval,
        lease=timedelta(seconds=config.changeset_lease),
        health=health,
        metrics=metrics,
    )
    operation_worker = OperationWorker(
        engine,
        by_host,
        clock,
        worker_id=wid,
        limits=limits,
        poll_interval=config.changeset_poll_interval,
        on_changesets_changed=changeset_syncer.wake,
        health=health,
        metrics=metrics,
    )
    perms = config.permissions
    permissions_syncer = PermissionsSyncer(
        engine,
        {key: s for key, s in by_host.items() if isinstance(s, PermissionSource)},
        clock,
        worker_id=wid,
        batch_size=perms.batch_size,
        poll_interval=perms.poll_interval,
        refresh_interval=timedelta(seconds=perms.refresh_interval),
        refresh_jitter=perms.refresh_jitter,
        health=health,
        metrics=metrics,
    )
    repo_syncer = RepoSyncer(
        engine,
        clock,
        on_changeset_syncs_requested=changeset_syncer.wake,
        on_permission_syncs_requested=permissions_syncer.wake,
        metrics=metrics,
    )
    worker = RepoSyncWorker(
        engine,
        repo_syncer,
        config.external_services,
        sources,
        interval_for=config.interval_for,
        clock=clock,
        worker_id=wid,
        health=health,
        lease=config.repo_sync_lease,
    )
    webhook_worker = WebhookWorker(
        engine,
        repo_syncer,
        config.external_services,
        sources,
        clock,
        worker_id=wid,
        lease=timedelta(seconds=config.webhook_lease),
        poll_interval=config.webhook_poll_interval,
        retention=timedelta(days=config.events_retention_days),
        on_changeset_syncs_requested=changeset_syncer.wake,
        health=health,
        metrics=metrics,
    )
    secrets = {
        svc.name: secret
        for svc in config.external_services
        if (secret := webhook_secret_for(svc, env))
    }
    webhook_receiver = WebhookReceiver(
        api_engine,
        {svc.name: svc for svc in config.external_services},
        secrets,
        clock,
        metrics=metrics,
        on_stored=webhook_worker.wake,
    )
    app = App(
        config=config,
        engine=engine,
        api_engine=api_engine,
        sources=sources,
        repo_syncer=repo_syncer,
        repo_sync_worker=worker,
        changeset_syncer=changeset_syncer,
        permissions_syncer=permissions_syncer,
        operation_worker=operation_worker,
        webhook_receiver=webhook_receiver,
        webhook_worker=webhook_worker,
        clock=clock,
        worker_id=wid,
        counter=counter,
        health=health,
        metrics=metrics,
    )
    try:
        await worker.register_services(retire_unconfigured=retire_unconfigured)
        yield app
    finally:
        await app.aclose()
