"""The changeset syncer: claim due and requested changesets, load them from their code hosts in
batches (one ``load_changesets`` call per host per round), and write the results.

Claims live in the database (see ``repo_updater.store.changeset_claims``), so any number of
syncers can share one PostgreSQL store and a crashed one loses nothing: its claims expire after
the lease and its requests are still there. A host that rate-limits us is left alone until its
``retry_after`` while the other hosts carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.batching import chunks, group_by
from repo_updater.core.errors import RateLimited, SourceError, describe, internal_error, reason
from repo_updater.core.ports import RepoSource
from repo_updater.metrics import Metrics
from repo_updater.service_layer.health import Health, pause
from repo_updater.store.changeset_claims import (
    ClaimedChangeset,
    HostKey,
    SyncOutcome,
    claim_work,
    complete_syncs,
    release_claims,
)
from repo_updater.store.db import is_sqlite

log = logging.getLogger(__name__)

RELEASE_TIMEOUT = 5.0  # seconds to hand back claims when shutting down


@dataclass(frozen=True, slots=True)
class SyncRound:
    """What one ``run_once`` did."""

    claimed: int = 0
    synced: int = 0
    failed: int = 0
    released: int = 0  # handed back unsynced because their host rate-limited us
    hosts: int = 0

    def __add__(self, other: SyncRound) -> SyncRound:
        return SyncRound(
            self.claimed + other.claimed,
            self.synced + other.synced,
            self.failed + other.failed,
            self.released + other.released,
            self.hosts + other.hosts,
        )


class ChangesetSyncer:
    def __init__(
        self,
        engine: AsyncEngine,
        sources: Mapping[HostKey, RepoSource],
        clock: Callable[[], datetime],
        *,
        worker_id: str,
        batch_size: int = 500,
        lease: timedelta = timedelta(minutes=5),
        poll_interval: float = 30.0,
        write_chunk: int = 200,
        health: Health | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if batch_size < 1 or write_chunk < 1:
            raise ValueError("batch_size and write_chunk must be positive")
        self._engine = engine
        self._sources = dict(sources)
        self._clock = clock
        self.worker_id = worker_id
        self._batch_size = batch_size
        self._lease = lease
        self._poll_interval = poll_interval
        self._write_chunk = write_chunk
        self._health = health if health is not None else Health()
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._backoff: dict[HostKey, datetime] = {}  # host -> rate-limited until
        # SQLite has one writer at a time: serialise our own writes instead of contending.
        self._write_lock = asyncio.Lock() if is_sqlite(engine) else None

    def wake(self) -> None:
        """Start a round now (other services call this after requesting syncs)."""
        self._wake.set()

    def backing_off(self, now: datetime) -> dict[HostKey, datetime]:
        """Hosts currently left alone because they rate-limited us, with the end time."""
        return {host: until for host, until in self._backoff.items() if until > now}

    async def run_once(self) -> SyncRound:
        """Claim one batch, sync it host by host (hosts in parallel), write the results."""
        now = self._clock()
        skip = self.backing_off(now)
        async with self._engine.begin() as conn:
            claimed = await claim_work(
                conn, self.worker_id, now, self._lease, self._batch_size, skip_hosts=skip
            )
        if not claimed:
            return SyncRound()
        groups = group_by(claimed, lambda c: c.host)
        try:
            rounds = await asyncio.gather(
                *(self._sync_host(host, items) for host, items in groups.items())
            )
        except asyncio.CancelledError:
            # Shutting down mid-round: hand back what is not written yet (the claims of
            # written ones are gone already), so another worker need not wait for the lease.
            await asyncio.shield(self._release_unfinished(claimed))
            raise
        total = sum(rounds, SyncRound())
        log.info(
            "changeset sync round: claimed %d, synced %d, failed %d, released %d, hosts %d",
            len(claimed), total.synced, total.failed, total.released, len(groups),
        )  # fmt: skip
        return SyncRound(len(claimed), total.synced, total.failed, total.released, len(groups))

    async def _release_unfinished(self, claimed: Sequence[ClaimedChangeset]) -> None:
        # Bounded: a write cancelled mid-rollback can leave SQLite's write lock held for the
        # whole busy timeout, and the leases run out on their own anyway.
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT), self._transaction() as conn:
                await release_claims(conn, claimed, None)
            log.info("shutting down: released the claims of this changeset sync round")
        except Exception as exc:  # their leases run out on their own
            log.warning("could not release changeset claims: %s", describe(exc))

    async def _sync_host(self, host: HostKey, items: list[ClaimedChangeset]) -> SyncRound:
        timer = time.monotonic()
        done = await self._load_and_write(host, items)
        if self._metrics is not None:
            self._metrics.observe_changeset_batch(host[1], time.monotonic() - timer)
        return done

    def _count_errors(self, exc: BaseException, count: int) -> None:
        if self._metrics is not None:
            self._metrics.changeset_errors(reason(exc), count)

    async def _load_and_write(self, host: HostKey, items: list[ClaimedChangeset]) -> SyncRound:
        source = self._sources.get(host)
        if source is None:
            error = f"no code host connection configured for {host[0]} {host[1]}"
            return await self._write([SyncOutcome(c, error=error) for c in items])
        try:
            snapshots = await source.load_changesets([c.ref() for c in items])
        except RateLimited as exc:
            self._count_errors(exc, 1)  # one per limit hit: the rest is retried, not failed
            until = self._clock() + timedelta(seconds=max(exc.retry_after, 0.0))
            self._backoff[host] = until
            # What loaded before the limit hit is written; the rest waits for the reset.
            loaded = {s.changeset_id: s for s in exc.loaded}
            done = [SyncOutcome(c, snapshot=loaded[c.changeset_id]) for c in items
                    if c.changeset_id in loaded]  # fmt: skip
            rest = [c for c in items if c.changeset_id not in loaded]
            log.warning(
                "%s %s rate-limited us; backing off until %s (%d changesets released)",
                host[0], host[1], until.isoformat(), len(rest),
            )  # fmt: skip
            async with self._transaction() as conn:
                await release_claims(conn, rest, until)
            return await self._write(done) + SyncRound(released=len(rest))
        except SourceError as exc:
            self._count_errors(exc, len(items))
            log.warning("loading %d changesets from %s failed: %s", len(items), host[1], exc)
            return await self._write([SyncOutcome(c, error=str(exc)) for c in items])
        except Exception as exc:  # a bug in a source must not lose the claimed requests
            # Only the type at warning level: a foreign exception's text could hold a secret.
            error = internal_error(exc)
            self._count_errors(exc, len(items))
            log.error("%s loading changesets from %s", error, host[1])
            log.debug("traceback of the unexpected error", exc_info=True)
            return await self._write([SyncOutcome(c, error=error) for c in items])
        self._backoff.pop(host, None)
        by_id = {s.changeset_id: s for s in snapshots}
        outcomes = [
            SyncOutcome(c, snapshot=by_id[c.changeset_id])
            if c.changeset_id in by_id
            else SyncOutcome(c, error="the code host returned no data for this changeset")
            for c in items
        ]
        return await self._write(outcomes)

    async def _write(self, outcomes: Sequence[SyncOutcome]) -> SyncRound:
        """Write outcomes in short transactions of ``write_chunk`` changesets each."""
        for part in chunks(outcomes, self._write_chunk):
            async with self._transaction() as conn:
                await complete_syncs(conn, part, self._clock())
        failed = sum(1 for o in outcomes if o.error is not None)
        return SyncRound(synced=len(outcomes) - failed, failed=failed)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (one writer at a time on SQLite)."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            yield await stack.enter_async_context(self._engine.begin())

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until ``stop`` is set: rounds back to back while there is work, then sleep
        until woken, the poll interval passes, or a host's back-off ends."""
        while not stop.is_set():
            self._wake.clear()
            started = self._health.started()
            try:
                result = await self.run_once()
                self._health.succeeded("changeset sync", started)
            except Exception as exc:  # the store may be unreachable: back off, log once
                await pause(stop, self._health.failed("changeset sync", exc))
                continue
            if result.claimed > result.released:
                continue
            await self._sleep(stop)

    async def _sleep(self, stop: asyncio.Event) -> None:
        timeout = self._poll_interval
        now = self._clock()
        for until in self.backing_off(now).values():
            timeout = min(timeout, (until - now).total_seconds())
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(
                waiters, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
