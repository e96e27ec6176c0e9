"""The permissions syncer: claim due permission syncs, ask each repo's code host who can read
it, and write only what changed, with an event per change.

Claims live in the database (``store.permissions``), as the changeset syncer's do: any number of
syncers share one PostgreSQL store, a crashed one's claims expire after the lease, and a request
that arrives while its repo is being synced survives the sync. A repo synced successfully is
refreshed again after ``refresh_interval`` (less up to ``refresh_jitter`` of it, drawn per repo:
``core.permissions.next_refresh_at``), so a full refresh of every private repo happens at that
interval, spread out rather than in one burst. A host that rate-limits us is left alone until
its ``retry_after`` while the other hosts carry on; a failed sync keeps the stored permissions
(not knowing is not "nobody") and retries with backoff. A failed round (the store unreachable)
backs off and is logged once (``health.Health``); cancelled mid-round (shutdown), the round hands
its unwritten claims back so that another worker need not wait for the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.batching import chunks, group_by
from repo_updater.core.errors import RateLimited, SourceError, describe
from repo_updater.core.permissions import (
    DEFAULT_REFRESH_INTERVAL,
    DEFAULT_REFRESH_JITTER,
    AccountPermission,
    PermissionDiff,
    diff_permissions,
    next_refresh_at,
    permission_events,
    revoked_all,
)
from repo_updater.core.ports import PermissionSource
from repo_updater.core.schedule import retry_at
from repo_updater.metrics import Metrics
from repo_updater.service_layer.health import Health, pause
from repo_updater.service_layer.permission_requests import MADE_PUBLIC
from repo_updater.store import events as event_store
from repo_updater.store import permissions as store
from repo_updater.store import repo_permissions as grant_store
from repo_updater.store.db import is_sqlite
from repo_updater.store.permissions import ClaimedRepo, HostKey

log = logging.getLogger(__name__)

ANALYZE_AFTER_WRITTEN = 1000  # grants written before the planner statistics are refreshed
RELEASE_TIMEOUT = 5.0  # seconds to hand back claims when shutting down
LOOP = "permissions sync"  # the loop's name in health reports


@dataclass(frozen=True, slots=True)
class PermissionRound:
    """What one ``run_once`` did."""

    claimed: int = 0
    synced: int = 0
    failed: int = 0
    released: int = 0  # handed back unsynced because their host rate-limited us
    skipped: int = 0  # needed no sync: deleted or public
    rows_written: int = 0  # grants inserted, updated or deleted
    events: int = 0

    def __add__(self, other: PermissionRound) -> PermissionRound:
        return PermissionRound(
            *(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True))
        )

    def astuple(self) -> tuple[int, ...]:
        return (self.claimed, self.synced, self.failed, self.released, self.skipped,
                self.rows_written, self.events)  # fmt: skip


@dataclass(slots=True)
class PermissionStats:
    """Totals since this process started (for ``/metrics``)."""

    synced: int = 0
    failed: int = 0
    rows_written: int = 0


# A fetch's outcome: the host's grants, an error message, or the rate limit that stopped it.
Fetched = list[AccountPermission] | str | RateLimited


class PermissionsSyncer:
    def __init__(
        self,
        engine: AsyncEngine,
        sources: Mapping[HostKey, PermissionSource],
        clock: Callable[[], datetime],
        *,
        worker_id: str,
        batch_size: int = 100,
        lease: timedelta = timedelta(minutes=10),
        poll_interval: float = 10.0,
        refresh_interval: timedelta = DEFAULT_REFRESH_INTERVAL,
        refresh_jitter: float = DEFAULT_REFRESH_JITTER,
        write_chunk: int = 25,
        draw: Callable[[], float] = random.random,
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
        self._refresh_interval = refresh_interval
        self._refresh_jitter = refresh_jitter
        self._write_chunk = write_chunk
        self._draw = draw
        self._health = health if health is not None else Health()
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._backoff: dict[HostKey, datetime] = {}
        self.stats = PermissionStats()
        self._analyze_at = 0  # analyze on the first write
        # SQLite has one writer at a time: serialise our own writes instead of contending.
        self._write_lock = asyncio.Lock() if is_sqlite(engine) else None

    def wake(self) -> None:
        """Start a round now (the repo syncer calls this after requesting syncs)."""
        self._wake.set()

    def backing_off(self, now: datetime) -> dict[HostKey, datetime]:
        return {host: until for host, until in self._backoff.items() if until > now}

    async def run_once(self) -> PermissionRound:
        """Claim one batch of due repos, ask their hosts (in parallel), write what changed."""
        now = self._clock()
        async with self._transaction() as conn:
            claimed = await store.claim_permission_syncs(
                conn, self.worker_id, now, self._lease, self._batch_size,
                skip_hosts=self.backing_off(now),
            )  # fmt: skip
        if not claimed:
            return PermissionRound()
        gone = [c for c in claimed if c.deleted or not c.private]
        todo = [c for c in claimed if not (c.deleted or not c.private)]
        total = PermissionRound(claimed=len(claimed)) + await self._skip(gone)
        groups = group_by(todo, lambda c: c.host)
        try:
            rounds = await asyncio.gather(
                *(self._sync_host(h, items) for h, items in groups.items())
            )
        except asyncio.CancelledError:
            # Shutting down mid-round: hand back what is not written yet (written repos are
            # no longer claimed by us, so releasing them all touches only the rest).
            await asyncio.shield(self._release_unfinished(todo))
            raise
        total = sum(rounds, total)
        log.info(
            "permissions sync round: claimed %d, synced %d, failed %d, released %d, "
            "skipped %d, rows written %d",
            total.claimed, total.synced, total.failed, total.released, total.skipped,
            total.rows_written,
        )  # fmt: skip
        return total

    async def _release_unfinished(self, claimed: Sequence[ClaimedRepo]) -> None:
        # Bounded: a write cancelled mid-rollback can leave SQLite's write lock held for the
        # whole busy timeout, and the leases run out on their own anyway.
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT), self._transaction() as conn:
                await store.release(conn, claimed, None)
            log.info("shutting down: released the claims of this permissions sync round")
        except Exception as exc:  # their leases run out on their own
            log.warning("could not release permission-sync claims: %s", describe(exc))

    async def _skip(self, gone: Sequence[ClaimedRepo]) -> PermissionRound:
        """Deleted repos need no sync; public ones drop what they had (anyone can read)."""
        if not gone:
            return PermissionRound()
        now = self._clock()
        events = []
        async with self._transaction() as conn:
            mine = await store.still_claimed(conn, gone)
            public = [c.repo_id for c in gone if c.repo_id in mine and not c.deleted]
            dropped = await grant_store.drop_permissions(conn, public)
            for repo_id, grants in dropped.items():
                events += permission_events(repo_id, revoked_all(grants), why=MADE_PUBLIC)
            await event_store.add_events(conn, None, events, now)
            await store.forget(conn, [c for c in gone if c.repo_id in mine])
        rows = sum(len(g) for g in dropped.values())
        return PermissionRound(skipped=len(gone), rows_written=rows, events=len(events))

    async def _sync_host(self, host: HostKey, items: list[ClaimedRepo]) -> PermissionRound:
        """Fetch every repo of one host (the source bounds its requests in flight) and write
        the answers in chunks as they come, so that writing overlaps the fetches left."""
        source = self._sources.get(host)
        if source is None:
            error = f"no code host connection configured for {host[0]} {host[1]}"
            return await self._write([(c, error) for c in items])
        result = PermissionRound()
        ready: list[tuple[ClaimedRepo, list[AccountPermission] | str]] = []
        limited: list[ClaimedRepo] = []
        retry_after = 0.0
        pending = {asyncio.ensure_future(self._fetch(source, c)): c for c in items}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    claimed = pending.pop(task)
                    fetched = None if task.cancelled() else task.result()[1]
                    if fetched is None or isinstance(fetched, RateLimited):
                        # The host asked us to wait: stop asking it, hand the rest back.
                        limited.append(claimed)
                        if isinstance(fetched, RateLimited):
                            retry_after = max(retry_after, fetched.retry_after)
                        for other in pending:
                            other.cancel()
                    else:
                        ready.append((claimed, fetched))
                if len(ready) >= self._write_chunk:
                    result += await self._write(ready)
                    ready = []
        finally:  # a failed write must not leave fetches running unawaited
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        result += await self._write(ready)
        if not limited:
            self._backoff.pop(host, None)
            return result
        until = self._clock() + timedelta(seconds=max(retry_after, 0.0))
        self._backoff[host] = until
        log.warning(
            "%s %s rate-limited us; backing off until %s (%d repos released)",
            host[0], host[1], until.isoformat(), len(limited),
        )  # fmt: skip
        async with self._transaction() as conn:
            await store.release(conn, limited, until)
        return result + PermissionRound(released=len(limited))

    async def _fetch(
        self, source: PermissionSource, repo: ClaimedRepo
    ) -> tuple[ClaimedRepo, Fetched]:
        try:
            return repo, await source.load_permissions(repo.ref)
        except RateLimited as exc:
            return repo, exc
        except SourceError as exc:
            log.warning("permissions of %s: %s", repo.name, exc)
            return repo, str(exc)
        except Exception as exc:  # a bug in a source must not lose the claimed request
            # Only the type at warning level: a foreign exception's text could hold a secret.
            log.error("unexpected %s loading the permissions of %s", type(exc).__name__, repo.name)
            log.debug("traceback of the unexpected error", exc_info=True)
            return repo, f"internal error: {type(exc).__name__}"

    async def _write(
        self, outcomes: Sequence[tuple[ClaimedRepo, list[AccountPermission] | str]]
    ) -> PermissionRound:
        """Write outcomes in short transactions of ``write_chunk`` repos each."""
        total = PermissionRound()
        if not outcomes:
            return total
        for part in chunks(outcomes, self._write_chunk):
            async with self._transaction() as conn:
                total += await self._write_chunk_of(conn, part)
        self.stats.synced += total.synced
        self.stats.failed += total.failed
        if self._metrics is not None:
            self._metrics.observe_permission_syncs(total.synced, total.failed)
        self.stats.rows_written += total.rows_written
        if self.stats.rows_written >= self._analyze_at:
            # Once when this process first writes, then each time it has written twice as
            # many grants as at the last time (log N times for N grants): a restarted worker
            # must not plan against statistics from before a big first sync either.
            async with self._transaction() as conn:
                await grant_store.analyze(conn)
            self._analyze_at = max(ANALYZE_AFTER_WRITTEN, 2 * self.stats.rows_written)
        return total

    async def _write_chunk_of(
        self,
        conn: AsyncConnection,
        outcomes: Sequence[tuple[ClaimedRepo, list[AccountPermission] | str]],
    ) -> PermissionRound:
        now = self._clock()
        mine = await store.still_claimed(conn, [c for c, _ in outcomes])
        ok = [(c, f) for c, f in outcomes if c.repo_id in mine and not isinstance(f, str)]
        failed = [(c, f) for c, f in outcomes if c.repo_id in mine and isinstance(f, str)]
        stored = await grant_store.stored_permissions(conn, [c.repo_id for c, _ in ok])
        diffs: list[tuple[int, PermissionDiff]] = []
        for claimed, grants in ok:
            diff = diff_permissions(stored[claimed.repo_id], grants)
            if not diff.empty:
                diffs.append((claimed.repo_id, diff))
        rows = await grant_store.write_diffs(conn, diffs, now)
        events = [e for repo_id, diff in diffs for e in permission_events(repo_id, diff)]
        await event_store.add_events(conn, None, events, now)
        interval, jitter = self._refresh_interval, self._refresh_jitter
        await store.complete_synced(
            conn, [(c, next_refresh_at(now, interval, jitter, self._draw())) for c, _ in ok], now
        )
        await store.complete_failed(
            conn, [(c, str(f), retry_at(now, c.failures + 1)) for c, f in failed]
        )
        return PermissionRound(
            synced=len(ok), failed=len(failed), rows_written=rows, events=len(events)
        )

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (one writer at a time on SQLite)."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            yield await stack.enter_async_context(self._engine.begin())

    async def sync_until_idle(self, *, max_rounds: int | None = None) -> PermissionRound:
        """Run rounds until one claims nothing that was not handed back (tests, the CLI)."""
        total = PermissionRound()
        rounds = 0
        while max_rounds is None or rounds < max_rounds:
            result = await self.run_once()
            rounds += 1
            total += result
            if result.claimed <= result.released:
                break
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until ``stop`` is set: rounds back to back while there is work, then sleep
        until woken, the poll interval passes, or a host's back-off ends."""
        while not stop.is_set():
            self._wake.clear()
            started = self._health.started()
            try:
                result = await self.run_once()
                self._health.succeeded(LOOP, started)
            except Exception as exc:  # the store may be unreachable: back off, log once
                await pause(stop, self._health.failed(LOOP, exc))
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
