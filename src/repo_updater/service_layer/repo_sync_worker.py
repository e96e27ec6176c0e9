"""The repo-sync worker: runs the repo syncer for each configured external service when it is
due, one run per service at a time across every process sharing the store.

A run first claims its service in the database (``external_services.claimed_by`` /
``claimed_until``) and renews the claim every third of the lease while it syncs; a dead
worker's claim runs out and another worker picks the service up. Services on the same code host
are synced one at a time in this process, since they may list overlapping repos.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core.domain import HostKind
from repo_updater.core.errors import describe
from repo_updater.core.ports import RepoSource
from repo_updater.service_layer.health import Health, pause
from repo_updater.service_layer.repo_syncer import ProgressCallback, RepoSyncer, SyncResult
from repo_updater.store import external_services as service_store
from repo_updater.store.db import is_unavailable

log = logging.getLogger(__name__)

RELEASE_TIMEOUT = 5.0  # seconds to hand back a service claim

# A repo sync's claim on its service; renewed every third of it while the sync runs, so a dead
# worker's service is picked up by another within this time.
SERVICE_LEASE_SECONDS = 120.0


class ServiceClaimLost(RuntimeError):
    """The claim on a service ran out under a sync (the database was unreachable for longer
    than the lease and another worker took the service): the sync was abandoned."""


class RepoSyncWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        repo_syncer: RepoSyncer,
        services: Sequence[ServiceConfig],
        sources: Mapping[str, RepoSource],
        *,
        interval_for: Callable[[ServiceConfig], float],
        clock: Callable[[], datetime],
        worker_id: str,
        health: Health | None = None,
        lease: float = SERVICE_LEASE_SECONDS,
    ) -> None:
        self._engine = engine
        self._lease = timedelta(seconds=lease)
        self._health = health if health is not None else Health()
        self._repo_syncer = repo_syncer
        self._services = {svc.name: svc for svc in services}
        self._sources = dict(sources)
        self._interval_for = interval_for
        self._clock = clock
        self.worker_id = worker_id
        self.external_service_ids: dict[str, int] = {}
        self._host_locks: dict[tuple[HostKind, str], asyncio.Lock] = {}

    def service(self, name: str) -> ServiceConfig:
        try:
            return self._services[name]
        except KeyError:
            known = ", ".join(self._services) or "none configured"
            raise KeyError(f"no external service named {name!r} (known: {known})") from None

    async def register_services(self, *, retire_unconfigured: bool = False) -> list[str]:
        """Register every configured service. With ``retire_unconfigured`` (only a process
        that loaded the whole config may ask: ``serve``, ``sync`` without ``--service``),
        retire the live services the config no longer has; returns their names."""
        for svc in self._services.values():
            self.external_service_ids[svc.name] = await self._repo_syncer.register(svc)
        if not retire_unconfigured:
            return []
        async with self._engine.connect() as conn:
            gone = await service_store.unconfigured_services(conn, self._services)
        retired = []
        for external_service_id, name in gone:
            if await self._repo_syncer.retire(external_service_id, name):
                retired.append(name)
        return retired

    async def sync_service(self, name: str, progress: ProgressCallback | None = None) -> SyncResult:
        """Sync one service now, without claiming it (tests, benchmarks)."""
        svc = self.service(name)
        source = self._sources[name]
        lock = self._host_locks.setdefault((source.kind, source.host_url), asyncio.Lock())
        async with lock:
            return await self._repo_syncer.sync(
                svc, source, interval=self._interval_for(svc), progress=progress
            )

    async def sync_due_services(self) -> list[SyncResult]:
        """Sync, concurrently, every configured service whose next sync is due and that no
        other worker is syncing right now. One service's failure does not stop the others."""
        started = self._health.started()
        async with self._engine.connect() as conn:
            due = set(await service_store.due_services(conn, self._clock()))
        names = [name for name in self._services if name in due]
        outcomes = await asyncio.gather(
            *(self.claimed_sync(name) for name in names), return_exceptions=True
        )
        results = []
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            if isinstance(outcome, BaseException):
                if is_unavailable(outcome):
                    raise outcome  # the round failed: the loop backs off
                self._health.failed(f"repo sync of {name}", outcome)
            elif outcome is not None:
                self._health.succeeded(f"repo sync of {name}", started)
                results.append(outcome)
        return results

    async def claimed_sync(
        self, name: str, progress: ProgressCallback | None = None
    ) -> SyncResult | None:
        """Sync a service unless another run (here or in another process) holds its claim;
        then return None. The claim is renewed while the sync runs; if it is lost anyway
        the sync is abandoned before it could remove anything."""
        lease = self._lease
        external_service_id = self.external_service_ids[name]
        token = f"{self.worker_id}/{uuid.uuid4().hex[:12]}"
        now = self._clock()
        async with self._engine.begin() as conn:
            if not await service_store.claim_service(
                conn, external_service_id, token=token, now=now, until=now + lease
            ):
                return None
        sync = asyncio.create_task(self.sync_service(name, progress))
        renewer = asyncio.create_task(self._keep_claim(external_service_id, token, lease, sync))
        try:
            result = await sync
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled ourselves (shutdown): the finally releases
            raise ServiceClaimLost(
                f"{name}: lost the claim on the service; sync abandoned"
            ) from None
        finally:
            for task in (renewer, sync):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task  # a page being written rolls back before the claim goes
            # Released even when we are being cancelled (SIGTERM, Ctrl-C), so the next run
            # need not wait for the lease to run out.
            await asyncio.shield(self._release(external_service_id, token))
        level = logging.INFO if result.changed_anything else logging.DEBUG
        log.log(level, "%s", result.summary())
        return result

    async def _release(self, external_service_id: int, token: str) -> None:
        # Bounded, as when shutting down the store may be slow or locked: the lease runs out.
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT), self._engine.begin() as conn:
                await service_store.release_service(conn, external_service_id, token=token)
        except Exception as exc:  # the lease runs out on its own
            log.warning("could not release the claim on service %d: %s", external_service_id,
                        describe(exc))  # fmt: skip

    async def _keep_claim(
        self,
        external_service_id: int,
        token: str,
        lease: timedelta,
        sync: asyncio.Task[SyncResult],
    ) -> None:
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            try:
                async with self._engine.begin() as conn:
                    kept = await service_store.renew_service_claim(
                        conn, external_service_id, token=token, until=self._clock() + lease
                    )
            except Exception as exc:  # a blip: try again; the lease allows two misses
                log.warning("could not renew the claim on service %d: %s", external_service_id, exc)
                continue
            if not kept:
                log.error("lost the claim on service %d; abandoning this sync", external_service_id)
                sync.cancel()
                return

    async def run(self, stop: asyncio.Event, tick: float = 1.0) -> None:
        """Sync due services every ``tick`` seconds until ``stop`` is set; while rounds fail
        (the store is unreachable), back off (``service_layer.health``)."""
        while not stop.is_set():
            wait, started = tick, self._health.started()
            try:
                await self.sync_due_services()
                self._health.succeeded("repo sync", started)
            except Exception as exc:  # keep the loop alive; logged once per outage
                wait = max(tick, self._health.failed("repo sync", exc))
            await pause(stop, wait)
