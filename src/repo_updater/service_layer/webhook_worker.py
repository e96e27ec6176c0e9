"""The webhook worker: processes stored deliveries (``store.webhooks``).

Each round claims a batch (oldest first, with a lease: a worker that dies loses nothing, its
claims run out), and per service works out what the batch asks for (``core.webhooks.Batch``:
each repo and each pull request once):

- a repository named by a repository event gets a **single-repo sync**: the host is asked for
  it by id (authoritative, whatever order deliveries came in), and the answer goes through the
  repo syncer's diff and page transaction (``RepoSyncer.sync_one``), so the flip, its events
  and its changesets' sync requests commit together, as in a full sync; the requests' reason
  is ``webhook:<what>``. If the service's full repo sync is running meanwhile, a listing page
  it read before the flip could be written after ours: one more full sync is requested, to
  start as soon as the running one ends.
- changesets named by pull-request, review and check events get a sync request
  (``webhook:<event>``), which wakes the changeset syncer.

Deliveries whose processing failed (the host could not be asked, the store failed) are
parked and retried with backoff; after ``MAX_ATTEMPTS`` they are given up with their error
(polling repairs what they would have told).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core import webhooks as wh
from repo_updater.core.batching import group_by
from repo_updater.core.domain import HostKind
from repo_updater.core.errors import describe
from repo_updater.core.ports import RepoSource, SingleRepoSource
from repo_updater.metrics import Metrics
from repo_updater.service_layer.health import Health, pause
from repo_updater.service_layer.repo_syncer import RepoSyncer
from repo_updater.store import changeset_claims
from repo_updater.store import changesets as changeset_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store
from repo_updater.store import webhooks as store
from repo_updater.store.db import is_sqlite

log = logging.getLogger(__name__)

RELEASE_TIMEOUT = 5.0
FETCH_CONCURRENCY = 8  # single-repo fetches in flight per round
RETRY_BASE = timedelta(seconds=2)  # doubling per attempt
PRUNE_EVERY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class WebhookRound:
    claimed: int = 0
    processed: int = 0
    retried: int = 0
    failed: int = 0  # given up
    repo_syncs: int = 0
    changeset_syncs_requested: int = 0


class WebhookWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        repo_syncer: RepoSyncer,
        services: Sequence[ServiceConfig],
        sources: Mapping[str, RepoSource],
        clock: Callable[[], datetime],
        *,
        worker_id: str,
        lease: timedelta = timedelta(seconds=60),
        poll_interval: float = 1.0,
        batch_size: int = 200,
        retention: timedelta = timedelta(days=30),
        on_changeset_syncs_requested: Callable[[], None] | None = None,
        health: Health | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._syncer = repo_syncer
        self._by_name = {s.name: s for s in services}
        self._sources = dict(sources)
        self._clock = clock
        self.worker_id = worker_id
        self._lease = lease
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._retention = retention
        self._wake_changesets = on_changeset_syncs_requested
        self._health = health if health is not None else Health()
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._ids: dict[int, str] = {}  # external_service_id -> name
        # SQLite has one writer at a time: our own writes queue here instead of contending.
        self._write_lock = asyncio.Lock() if is_sqlite(engine) else contextlib.nullcontext()
        self._pruned_at: datetime | None = None

    def wake(self) -> None:
        """Start a round now (the receiver calls this after storing a delivery)."""
        self._wake.set()

    async def _service_of(self, external_service_id: int) -> ServiceConfig | None:
        if external_service_id not in self._ids:
            async with self._engine.connect() as conn:
                for svc in await service_store.list_services(conn):
                    self._ids[svc.id] = svc.name
        name = self._ids.get(external_service_id)
        return None if name is None else self._by_name.get(name)

    async def run_once(self) -> WebhookRound:
        now = self._clock()
        async with self._engine.begin() as conn:
            claimed = await store.claim_deliveries(
                conn, self.worker_id, now, self._lease, self._batch_size
            )
        if not claimed:
            await self._maybe_prune(now)
            return WebhookRound()
        try:
            rounds = [
                await self._process_service(svc_id, items)
                for svc_id, items in group_by(claimed, lambda d: d.external_service_id).items()
            ]
        except asyncio.CancelledError:
            await asyncio.shield(self._release(claimed))
            raise
        total = WebhookRound(
            claimed=len(claimed),
            processed=sum(r.processed for r in rounds),
            retried=sum(r.retried for r in rounds),
            failed=sum(r.failed for r in rounds),
            repo_syncs=sum(r.repo_syncs for r in rounds),
            changeset_syncs_requested=sum(r.changeset_syncs_requested for r in rounds),
        )
        if self._metrics is not None:
            self._metrics.observe_processed("done", total.processed)
            self._metrics.observe_processed("retry", total.retried)
            self._metrics.observe_processed("failed", total.failed)
        if total.changeset_syncs_requested and self._wake_changesets is not None:
            self._wake_changesets()
        log.debug("webhook round: %s", total)
        return total

    async def _release(self, claimed: Sequence[store.ClaimedDelivery]) -> None:
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT), self._engine.begin() as conn:
                await store.release(conn, self.worker_id, [d.id for d in claimed])
        except Exception:  # the lease runs out anyway
            log.debug("could not release webhook claims", exc_info=True)

    async def _process_service(
        self, external_service_id: int, items: Sequence[store.ClaimedDelivery]
    ) -> WebhookRound:
        svc = await self._service_of(external_service_id)
        source = None if svc is None else self._sources.get(svc.name)
        if svc is None or source is None:
            # Retired, or not configured in this process: nothing here can process them.
            return await self._finish(items, {d.id: "service not configured" for d in items})
        kind = HostKind(svc.kind)
        parsed: dict[int, wh.Delivery] = {}
        errors: dict[int, str] = {}
        for d in items:
            try:
                parsed[d.id] = wh.parse(kind, d.headers, d.body)
            except wh.WebhookRejected as exc:  # verified and parsed once: should not happen
                errors[d.id] = f"malformed: {exc}"
        batch = wh.Batch()
        for delivery in parsed.values():
            batch.add(delivery)
        failed_repos, requested = await self._sync_repos(svc, external_service_id, source, batch)
        requests_failed: str | None = None
        try:
            requested += await self._request_changesets(source, batch, parsed)
        except Exception as exc:  # the store: every delivery that asked for a request retries
            requests_failed = describe(exc)
        retry: dict[int, str] = {}
        for did, delivery in parsed.items():
            bad = [failed_repos[r.external_id] for r in delivery.repos
                   if r.external_id in failed_repos]  # fmt: skip
            if requests_failed is not None and (delivery.pulls or delivery.repo_pulls):
                bad.append(requests_failed)
            if bad:
                retry[did] = bad[0]
        done = await self._finish(items, errors, retry)
        return WebhookRound(
            processed=done.processed, retried=done.retried, failed=done.failed,
            repo_syncs=len(batch.repos), changeset_syncs_requested=requested,
        )  # fmt: skip

    async def _sync_repos(
        self, svc: ServiceConfig, svc_id: int, source: RepoSource, batch: wh.Batch
    ) -> tuple[dict[str, str], int]:
        """Single-repo syncs of the batch's repos: the failed ones' errors, and the changeset
        sync requests written."""
        if not batch.repos:
            return {}, 0
        if not isinstance(source, SingleRepoSource):
            return {rid: "this source cannot fetch one repository" for rid in batch.repos}, 0
        # A repo neither in the selection (by the name the delivery gives) nor linked to the
        # service is none of its business (GitLab's system hooks cover the whole instance).
        async with self._engine.connect() as conn:
            stored = await repo_store.stored_for_page(
                conn, host_kind=source.kind, host_url=source.host_url,
                external_service_id=svc_id, external_ids=list(batch.repos),
            )  # fmt: skip
        wanted = [
            hint for rid, hint in batch.repos.items()
            if svc.selection.covers(hint.name)
            or (rid in stored and stored[rid].linked and not stored[rid].deleted)
        ]  # fmt: skip
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)
        failed: dict[str, str] = {}
        requested = 0

        async def one(hint: wh.RepoHint) -> None:
            try:
                async with limit:
                    repo = await source.get_repo(hint.external_id, hint.name)
                async with self._write_lock:
                    done = await self._syncer.sync_one(
                        svc, svc_id, source, repo, external_id=hint.external_id, via="webhook"
                    )
                nonlocal requested
                requested += done.changeset_syncs_requested
            except Exception as exc:  # the host or the store: retried later
                failed[hint.external_id] = describe(exc)
                log.warning("%s: single-repo sync of %s failed: %s", svc.name, hint.name,
                            failed[hint.external_id])  # fmt: skip

        await asyncio.gather(*(one(h) for h in wanted))
        await self._resync_if_running(svc)
        return failed, requested

    async def _resync_if_running(self, svc: ServiceConfig) -> None:
        now = self._clock()
        async with self._engine.begin() as conn:
            status = await service_store.service_sync_status(conn, svc.name, now)
            if status is not None and status.running:
                await service_store.request_service_sync(conn, status.id, now)

    async def _request_changesets(
        self, source: RepoSource, batch: wh.Batch, parsed: Mapping[int, wh.Delivery]
    ) -> int:
        if not batch.pulls and not batch.repo_pulls:
            return 0
        by_reason: dict[str, tuple[set[tuple[str, int]], set[str]]] = {}
        for delivery in parsed.values():
            pulls, repos = by_reason.setdefault(f"webhook:{delivery.event}"[:64], (set(), set()))
            pulls.update((p.repo.external_id, p.number) for p in delivery.pulls)
            repos.update(r.external_id for r in delivery.repo_pulls)
        total, now = 0, self._clock()
        async with self._engine.begin() as conn:
            wanted: dict[str, list[int]] = {}
            for why, (pulls, repos) in by_reason.items():
                if pulls or repos:
                    found = await store.changesets_named(
                        conn, source.kind, source.host_url, pulls, repos
                    )
                    wanted[why] = list(found)
            # one upsert per reason: lock every row first, in the one order (no deadlock)
            await changeset_claims.lock_rows(conn, [i for ids in wanted.values() for i in ids])
            for why, ids in wanted.items():
                total += await changeset_store.request_sync(conn, ids, why, now)
        return total

    async def _finish(
        self,
        items: Sequence[store.ClaimedDelivery],
        errors: Mapping[int, str],
        retry: Mapping[int, str] | None = None,
    ) -> WebhookRound:
        """Done, retried later, or given up (``errors``, or out of attempts)."""
        retry = retry or {}
        now = self._clock()
        ok = [d.id for d in items if d.id not in errors and d.id not in retry]
        give_up = dict(errors)
        later: dict[int, str] = {}
        for d in items:
            if d.id in retry:
                if d.attempts + 1 >= store.MAX_ATTEMPTS:
                    give_up[d.id] = retry[d.id]
                else:
                    later[d.id] = retry[d.id]
        async with self._engine.begin() as conn:
            await store.complete(conn, self.worker_id, ok, now, None)
            for did, error in give_up.items():
                await store.complete(conn, self.worker_id, [did], now, error[:1000])
            for d in items:
                if d.id in later:
                    wait = RETRY_BASE * (1 << min(d.attempts, 10))
                    await store.retry_later(conn, self.worker_id, [d.id], later[d.id], now + wait)
        return WebhookRound(processed=len(ok), retried=len(later), failed=len(give_up))

    async def _maybe_prune(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        async with self._engine.begin() as conn:
            await store.prune(conn, now - self._retention)

    async def run(self, stop: asyncio.Event) -> None:
        """Process until ``stop`` is set: rounds back to back while there is work, then wait
        until woken (a delivery stored here) or the poll interval passes (one stored by
        another process, a parked one's retry time)."""
        while not stop.is_set():
            self._wake.clear()
            started = self._health.started()
            try:
                result = await self.run_once()
                self._health.succeeded("webhooks", started)
            except Exception as exc:
                await pause(stop, self._health.failed("webhooks", exc))
                continue
            if result.claimed:
                continue
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
