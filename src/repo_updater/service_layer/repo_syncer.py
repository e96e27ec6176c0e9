"""The repo syncer: stream a service's listing, diff it page by page against the store, and
write each page's changes together with their events and sync requests in one transaction.

Removals are written only after a complete listing (invariant 1: a sync that could not list a
whole service deletes nothing). An archived flip requests a sync of every changeset on the repo
in the same transaction as the flip (invariant 2), and wakes the changeset syncer.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core import diff as d
from repo_updater.core.domain import RepoEventKind, SourcedRepo
from repo_updater.core.errors import RateLimited, SourceError, internal_error, reason
from repo_updater.core.ports import RepoSource
from repo_updater.core.schedule import next_service_sync_at
from repo_updater.metrics import Metrics
from repo_updater.service_layer import added_groups
from repo_updater.service_layer.group_reads import GroupReads
from repo_updater.service_layer.page_memo import PageMemo, digest
from repo_updater.service_layer.page_stream import page_groups
from repo_updater.service_layer.permission_requests import notify_permissions
from repo_updater.service_layer.repo_changes import notify_changesets
from repo_updater.service_layer.repo_sync_result import ProgressCallback as ProgressCallback
from repo_updater.service_layer.repo_sync_result import SyncProgress as SyncProgress
from repo_updater.service_layer.repo_sync_result import SyncResult as SyncResult
from repo_updater.service_layer.repo_sync_result import SyncRun
from repo_updater.store import events as event_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repo_versions, sync_history
from repo_updater.store import repos as repo_store
from repo_updater.store.db import is_unavailable

log = logging.getLogger(__name__)

# Refresh the store's planner statistics each time a sync has added this many repos, then
# twice as many, and so on (log N times for N new repos): see ``repo_store.analyze``.
ANALYZE_AFTER_ADDED = 1000
# Pages written in one transaction at most (the pages already fetched when the store is free);
# the whole group commits or none of it (invariant 2 holds per group, so per page).
PAGES_PER_TRANSACTION = 10


class RepoSyncer:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], datetime],
        *,
        on_changeset_syncs_requested: Callable[[], None] | None = None,
        on_permission_syncs_requested: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._wake = on_changeset_syncs_requested
        self._wake_permissions = on_permission_syncs_requested
        self._metrics = metrics
        self._memos: dict[int, PageMemo] = {}  # external service id -> its unchanged pages

    async def register(self, service: ServiceConfig) -> int:
        """Register a configured service; returns its id. When its code host's URL changed
        (same name and kind: http -> https, a new port), its repos move to the new URL in the
        same transaction, so each stays one row with its id and changesets (invariant 8); the
        store names derived from the new URL follow on the next sync, as renames."""
        now = self._clock()
        async with self._engine.begin() as conn:
            reg = await service_store.upsert_external_service(
                conn,
                name=service.name,
                kind=service.kind,
                url=service.url,
                config_hash=service.config_hash(),
                now=now,
            )
            if reg.moved_from is not None:
                moved = await repo_store.move_host(
                    conn, reg.id, service.kind, reg.moved_from, service.url, now
                )
                touched = repo_versions.Touched(reg.id)
                await touched.note_repos(conn, moved)
                await touched.bump(conn)
                log.info(
                    "%s: code host URL changed from %s to %s; %d repos moved",
                    service.name, reg.moved_from, service.url, len(moved),
                )  # fmt: skip
        return reg.id

    async def retire(self, external_service_id: int, name: str) -> bool:
        """Retire a service the config no longer has, in one transaction: it is marked
        deleted (no longer listed or synced), its repos are unlinked, and those no other
        service links are removed, with their ``RepoDeleted`` events and their changesets'
        consequences (``repo_changes``). If it comes back in the config, registering it
        revives it and its next sync revives its repos. False if it was retired already."""
        now, result = self._clock(), SyncResult(name)
        async with self._engine.begin() as conn:
            if not await service_store.mark_retired(conn, external_service_id, now):
                return False
            linked = await repo_store.linked_repo_ids(conn, external_service_id)
            touched = repo_versions.Touched(external_service_id)
            await touched.note_repos(conn, linked)
            orphans = await repo_store.unlink(conn, external_service_id, linked)
            await self._remove(conn, result, external_service_id, orphans, "service removed", now)
            await touched.bump(conn)
        self._memos.pop(external_service_id, None)
        log.warning(
            "%s: no longer in the config: retired; %d repos unlinked, %d removed",
            name, len(linked), result.removed,
        )  # fmt: skip
        return True

    async def sync(
        self,
        service: ServiceConfig,
        source: RepoSource,
        *,
        interval: float = 60.0,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        started = self._clock()  # the next sync is due ``interval`` after this one started
        timer = time.monotonic()
        result = SyncResult(service=service.name)
        run = await self._start(service, source, result)
        prog = SyncProgress(service=service.name)
        analyze_at = ANALYZE_AFTER_ADDED
        try:
            groups = page_groups(source.list_repos(), max_group=PAGES_PER_TRANSACTION)
            async with contextlib.aclosing(groups):
                async for group in groups:
                    kept_pages = []
                    for page in group:
                        kept, dropped = d.dedupe_page(page)
                        result.pages += 1
                        result.listed += len(kept)
                        result.duplicates += dropped
                        kept_pages.append(kept)
                    await self._apply_group(run, kept_pages)
                    if result.added >= analyze_at:
                        async with self._engine.begin() as conn:
                            await repo_store.analyze(conn)
                        analyze_at = 2 * result.added
                    prog.pages, prog.listed = result.pages, result.listed
                    if progress is not None:
                        progress(prog)
            result.complete = True
        except SourceError as exc:
            self._failed(result, exc, str(exc))
            log.warning(
                "%s: listing failed after %d pages; nothing removed: %s",
                service.name, result.pages, exc,
            )  # fmt: skip
        except Exception as exc:  # a bug or a database error: record it, remove nothing
            self._failed(result, exc, internal_error(exc))
            # An unreachable store is logged once per outage by the loop (service_layer.health).
            level = logging.DEBUG if is_unavailable(exc) else logging.ERROR
            log.log(level, "%s: sync failed after %d pages; nothing removed: %s",
                    service.name, result.pages, result.error)  # fmt: skip
            log.debug("traceback", exc_info=True)
        if result.complete:
            try:
                await self._remove_unseen(run)
            except SourceError as exc:
                result.complete = False
                why = f"re-check of unseen repos failed, nothing removed: {exc}"
                self._failed(result, exc, why)
            except Exception as exc:
                result.complete = False
                self._failed(result, exc, internal_error(exc))
                log.error("%s: removing unlisted repos failed: %s", service.name, result.error)
                log.debug("traceback", exc_info=True)
        if result.complete:
            self._memos[run.external_service_id] = run.memo
        else:
            self._memos.pop(run.external_service_id, None)
        await self._record(run, started, timedelta(seconds=interval))
        if self._metrics is not None:
            failed = None if result.complete else (result.error_reason or "internal")
            self._metrics.observe_repo_sync(service.name, time.monotonic() - timer, failed)
        if result.changeset_syncs_requested and self._wake is not None:
            self._wake()
        if result.permission_syncs_requested and self._wake_permissions is not None:
            self._wake_permissions()
        return result

    async def sync_one(
        self,
        service: ServiceConfig,
        external_service_id: int,
        source: RepoSource,
        repo: SourcedRepo | None,
        *,
        external_id: str,
        via: str = "",
    ) -> SyncResult:
        """A single-repo sync: ``repo`` as the host answers for it now (None: the host has
        no such repo, or no longer shows it), through the same diff and the same page
        transaction as a full sync, so a flip, its events and its changeset sync requests
        commit together (invariants 2 and 4). A repo gone from the host or from the service's
        selection is unlinked and, linked nowhere else, removed, as a complete listing that no
        longer yields it would. Raises what the store raises; the caller fetched ``repo``."""
        result = SyncResult(service=service.name)
        # No page memo: one repo is always read, and its write bumps the repos version, which
        # makes a full sync's remembered pages stale (``repo_versions``).
        run = SyncRun(
            service.name, external_service_id, source, d.SeenIds(), result, PageMemo(0), via=via
        )
        if repo is not None and service.selection.covers(repo.name):
            result.listed = 1
            await self._apply_group(run, [[repo]])
        else:
            async with self._engine.begin() as conn:
                stored = await repo_store.stored_for_page(
                    conn, host_kind=source.kind, host_url=source.host_url,
                    external_service_id=external_service_id, external_ids=[external_id],
                )  # fmt: skip
                row = stored.get(external_id)
                if row is not None and row.linked and not row.deleted:
                    touched = repo_versions.Touched(external_service_id)
                    await touched.note_repos(conn, [row.id])
                    gone = await repo_store.unlink(conn, external_service_id, [row.id])
                    why = "not found" if repo is None else "not selected"
                    await self._remove(conn, result, external_service_id, gone, why, self._clock())
                    await touched.bump(conn)
            result.rows_written += result.removed
        result.complete = True
        if result.changeset_syncs_requested and self._wake is not None:
            self._wake()
        if result.permission_syncs_requested and self._wake_permissions is not None:
            self._wake_permissions()
        return result

    @staticmethod
    def _failed(result: SyncResult, exc: Exception, error: str) -> None:
        result.error = error
        result.error_reason = reason(exc)
        if isinstance(exc, RateLimited):
            result.retry_after = exc.retry_after

    async def _record(self, run: SyncRun, started: datetime, interval: timedelta) -> None:
        """Record the sync and schedule the next one (``core.schedule``): backing off while
        the service fails, honouring a rate limit's retry-after, gently less often while
        it stays unchanged."""
        result, now = run.result, self._clock()
        async with self._engine.begin() as conn:
            before = await service_store.sync_counters(conn, run.external_service_id)
            if result.complete:
                unchanged = 0 if result.rows_written else before.unchanged + 1
                counters = service_store.SyncCounters(failures=0, unchanged=unchanged)
            else:
                counters = service_store.SyncCounters(before.failures + 1, before.unchanged)
            retry_after = result.retry_after
            next_at = next_service_sync_at(
                started=started,
                now=now,
                interval=interval,
                failures=counters.failures,
                unchanged=counters.unchanged,
                retry_after=None if retry_after is None else timedelta(seconds=retry_after),
            )
            await service_store.record_service_sync(
                conn, run.external_service_id, now=now, error=result.error,
                next_at=next_at, counters=counters, started=started,
            )  # fmt: skip
            flips = len(result.archived) + len(result.unarchived)
            await sync_history.add_sync(conn, run.external_service_id, sync_history.SyncRecord(
                started_at=started, finished_at=now, complete=result.complete,
                error=result.error, listed=result.listed, added=result.added,
                modified=result.modified, removed=result.removed, archived=flips,
            ))  # fmt: skip

    async def _start(
        self, service: ServiceConfig, source: RepoSource, result: SyncResult
    ) -> SyncRun:
        """Register the service and pick up the last sync's unchanged pages, if no write to
        its repos happened since (the repos version did not move)."""
        svc_id = await self.register(service)
        async with self._engine.connect() as conn:
            version = await repo_versions.current(conn, svc_id)
        previous = self._memos.get(svc_id)
        if previous is not None and previous.version != version:
            previous = None
        memo = PageMemo(version)
        return SyncRun(service.name, svc_id, source, d.SeenIds(), result, memo, previous)

    def _known_unchanged(self, run: SyncRun, key: bytes) -> bool:
        """A page the last sync found unchanged, under the same repos version, none of whose
        repos this listing yielded before: unmodified, no store read needed."""
        ids = None if run.previous is None else run.previous.lookup(key)
        if ids is None or any(i in run.seen for i in ids):
            return False
        run.seen.update(ids)
        run.result.unmodified += len(ids)
        run.memo.remember(key, ids)
        return True

    async def _apply_group(self, run: SyncRun, pages: Sequence[Sequence[SourcedRepo]]) -> None:
        """Diff and write a group of pages in one transaction: each page is diffed against the
        store as the previous pages' writes left it (same transaction), so the diff is exactly
        the page-by-page one, though the pages' rows are read at once while nothing is written
        (``group_reads``); a page seen unchanged before under the same repos version is not
        read at all."""
        prefix = run.source.name_prefix
        touched: repo_versions.Touched | None = None
        async with contextlib.AsyncExitStack() as stack:
            conn: AsyncConnection | None = None
            rows: dict[str, d.StoredRepo] | None = None  # read, nothing written since
            if run.all_added and run.previous is None and pages:  # no page is skipped
                conn = await stack.enter_async_context(self._engine.begin())
                group = await added_groups.read_added_group(conn, run, pages)
                if group.added is not None:
                    if group.added:
                        touched = repo_versions.Touched(run.external_service_id)
                        await added_groups.write_added_group(conn, run, group.added, self._clock())
                    pages = []  # written
                rows = group.stored
            keys = [digest(page, prefix) for page in pages]
            reads = GroupReads(run, pages, keys, rows)
            before, added = self._others(run.result), run.result.added
            for i, page in enumerate(pages):
                key = keys[i]
                if self._known_unchanged(run, key):
                    continue
                if conn is None:
                    conn = await stack.enter_async_context(self._engine.begin())
                stored = await reads.for_page(conn, i)
                page_diff = d.diff_page(page, stored, prefix, run.seen)
                run.result.duplicates += page_diff.duplicates
                run.result.listed -= page_diff.duplicates
                if page_diff.writes_nothing:
                    ids = [s.id for s in page_diff.unmodified]
                    run.seen.update(ids)
                    run.result.unmodified += len(ids)
                    if not page_diff.duplicates and len(ids) == len(page):
                        run.memo.remember(key, ids)
                    continue
                touched = touched or repo_versions.Touched(run.external_service_id)
                reads.wrote()
                await self._write_page(conn, run, page_diff, touched)
            if pages:  # page by page: try the next group at once if this one only added
                run.all_added = self._others(run.result) == before and run.result.added > added
            versions = {} if touched is None or conn is None else await touched.bump(conn)
        if touched is not None:
            self._after_own_write(run, versions, cleared=touched.cleared)

    @staticmethod
    def _others(r: SyncResult) -> tuple[int, ...]:
        """What a group of a first sync leaves as it was (repeats and name conflicts aside)."""
        return r.unmodified, r.modified, r.revived

    @staticmethod
    def _after_own_write(run: SyncRun, versions: dict[int, int], *, cleared: bool) -> None:
        """Our write (committed) bumped the service's repos version by one. Pages remembered
        so far stay valid unless someone else wrote in between (the version moved by more) or
        the write removed repos that may sit on other pages (a name conflict)."""
        new = versions.get(run.external_service_id)
        if new is None:
            return
        if cleared or new - 1 != run.memo.version:
            run.memo.pages.clear()
            run.previous = None
        elif run.previous is not None:
            run.previous.version = new
        run.memo.version = new

    async def _write_page(
        self,
        conn: AsyncConnection,
        run: SyncRun,
        diff: d.PageDiff,
        touched: repo_versions.Touched,
    ) -> None:
        """Write one page's diff, its events and its sync requests (in the caller's
        transaction), noting the services whose repos it changes in ``touched``."""
        now, result, svc_id = self._clock(), run.result, run.external_service_id
        # Names the page claims that a different live repo holds: the host is the truth.
        claimed = diff.claims()
        holders = await repo_store.live_holders(conn, claimed)
        moving = frozenset(c.stored.id for c in diff.renamed)
        conflicts, repeated = d.name_conflicts(claimed, holders, moving, run.seen)
        repeats = diff.drop_claims(repeated)
        result.duplicates += repeats
        result.listed -= repeats
        if conflicts:
            await touched.note_repos(conn, conflicts)
            touched.cleared = True  # repos of other pages may be gone: forget remembered pages
            gone = await self._remove(conn, result, svc_id, conflicts, "name conflict", now)
            result.name_conflicts += len(gone)

        changed = diff.revived + diff.modified
        await touched.note_repos(conn, [c.stored.id for c in changed])
        await repo_store.update_repos(conn, changed, now)
        new_ids = await repo_store.insert_repos(
            conn, run.source.kind, run.source.host_url, diff.added, now
        )
        linked = [*new_ids.values(), *(c.stored.id for c in diff.revived)]
        linked += [s.id for s in diff.to_link]
        await repo_store.link_repos(conn, svc_id, linked, now)
        events = d.page_events(diff, new_ids, run.service)
        await event_store.add_events(conn, svc_id, events, now)
        perms = await notify_permissions(conn, diff, new_ids, external_service_id=svc_id, now=now)
        result.permission_syncs_requested += perms.requested
        changed_ids = [c.stored.id for c in changed]
        for kind, changes in (
            (RepoEventKind.RESTORED, diff.revived),
            (RepoEventKind.RENAMED, diff.renamed),
            (RepoEventKind.ARCHIVED, diff.archived),
            (RepoEventKind.UNARCHIVED, diff.unarchived),
        ):
            ids = [c.stored.id for c in changes]
            result.changeset_syncs_requested += await notify_changesets(
                conn, kind, ids, now, via=run.via
            )

        run.seen.update(new_ids.values())
        run.seen.update(changed_ids)
        run.seen.update(s.id for s in diff.unmodified)
        result.added += len(diff.added)
        result.revived += len(diff.revived)
        result.modified += len(diff.modified)
        result.unmodified += len(diff.unmodified)
        result.renamed += len(diff.renamed)
        result.archived.extend(c.new_name for c in diff.archived)
        result.unarchived.extend(c.new_name for c in diff.unarchived)
        result.rows_written += len(changed) + len(new_ids) + len(linked) + len(events)
        result.rows_written += perms.requested + perms.dropped + perms.events

    @staticmethod
    async def _remove(
        conn: AsyncConnection,
        result: SyncResult,
        external_service_id: int,
        repo_ids: Sequence[int],
        reason: str,
        now: datetime,
    ) -> list[int]:
        """Soft-delete repos (in the caller's transaction), with their events, and stop
        syncing their changesets (``repo_changes``); returns the ids that were live."""
        gone = await repo_store.soft_delete(conn, repo_ids, now)
        events = d.deleted_events(gone, result.service, reason)
        await event_store.add_events(conn, external_service_id, events, now)
        result.removed += len(gone)
        await notify_changesets(conn, RepoEventKind.DELETED, gone, now, why=reason)
        return gone

    async def _remove_unseen(self, run: SyncRun) -> None:
        """Remove linked repos that the complete listing did not yield.

        Listings page by offset, so a repo deleted on the host while we paged shifts the
        next one onto a page we had already read: it goes unseen although it exists. Before
        removing anything, list once more and keep every unseen repo that shows up again.
        """
        async with self._engine.connect() as conn:
            unseen = await repo_store.unseen_linked_ids(conn, run.external_service_id, run.seen)
            if not unseen:
                return
            external = await repo_store.external_ids_of(conn, unseen)
        wanted = set(external.values())
        found: set[str] = set()
        async for page in run.source.list_repos():
            found.update(r.external_id for r in page if r.external_id in wanted)
        gone = [rid for rid in unseen if external.get(rid) not in found]
        run.result.rechecked += len(unseen)
        if not gone:
            return
        now = self._clock()
        async with self._engine.begin() as conn:
            touched = repo_versions.Touched(run.external_service_id)
            await touched.note_repos(conn, gone)
            deleted = await repo_store.unlink(conn, run.external_service_id, gone)
            removed = await self._remove(
                conn, run.result, run.external_service_id, deleted, "not listed", now
            )
            versions = await touched.bump(conn)
        self._after_own_write(run, versions, cleared=False)
        run.result.rows_written += len(gone) + 2 * len(removed)
