"""The repo syncer: stream a service's listing, diff it page by page against the store, and
write each page's changes together with their events and sync requests in one transaction.

Removals are written only after a complete listing (invariant 1: a sync that could not list a
whole service deletes nothing). An archived flip requests a sync of every changeset on the repo
in the same transaction as the flip (invariant 2), and wakes the changeset syncer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater import diff as d
from repo_updater.config import ServiceConfig
from repo_updater.domain import RepoSource, SourcedRepo, SourceError
from repo_updater.store import changesets as changeset_store
from repo_updater.store import repos as repo_store
from repo_updater.store import services as service_store

log = logging.getLogger(__name__)

# Refresh the store's planner statistics each time a sync has added this many repos, then
# twice as many, and so on (log N times for N new repos): see ``repo_store.analyze``.
ANALYZE_AFTER_ADDED = 1000


@dataclass(slots=True)
class SyncProgress:
    service: str
    pages: int = 0
    listed: int = 0


@dataclass(slots=True)
class SyncResult:
    service: str
    complete: bool = False
    error: str | None = None
    pages: int = 0
    listed: int = 0
    duplicates: int = 0
    added: int = 0
    modified: int = 0
    unmodified: int = 0
    removed: int = 0
    revived: int = 0
    renamed: int = 0
    name_conflicts: int = 0
    archived: list[str] = field(default_factory=list)
    unarchived: list[str] = field(default_factory=list)
    changeset_syncs_requested: int = 0
    rechecked: int = 0  # unseen repos listed a second time before removal
    rows_written: int = 0  # repo, link and event rows inserted or updated

    @property
    def changed_anything(self) -> bool:
        return bool(self.rows_written) or not self.complete

    def summary(self) -> str:
        state = "complete" if self.complete else f"INCOMPLETE ({self.error})"
        return (
            f"{self.service}: {state}; listed {self.listed} in {self.pages} pages; "
            f"added {self.added}, modified {self.modified}, unmodified {self.unmodified}, "
            f"removed {self.removed}, archived {len(self.archived)}, "
            f"unarchived {len(self.unarchived)}, renamed {self.renamed}; "
            f"changeset syncs requested {self.changeset_syncs_requested}"
        )


ProgressCallback = Callable[[SyncProgress], None]


def _columns(repo: SourcedRepo, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "external_name": repo.name,
        "url": repo.url,
        "archived": repo.archived,
        "fork": repo.fork,
        "private": repo.private,
        "description": repo.description,
    }


class RepoSyncer:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], datetime],
        *,
        on_changeset_syncs_requested: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._wake = on_changeset_syncs_requested

    async def register(self, service: ServiceConfig) -> int:
        async with self._engine.begin() as conn:
            return await service_store.upsert_external_service(
                conn,
                name=service.name,
                kind=service.kind,
                url=service.url,
                config_hash=service.config_hash(),
                now=self._clock(),
            )

    async def sync(
        self,
        service: ServiceConfig,
        source: RepoSource,
        *,
        interval: float = 60.0,
        progress: ProgressCallback | None = None,
    ) -> SyncResult:
        started = self._clock()  # the next sync is due ``interval`` after this one started
        svc_id = await self.register(service)
        result = SyncResult(service=service.name)
        seen_ids = d.SeenIds()
        prog = SyncProgress(service=service.name)
        analyze_at = ANALYZE_AFTER_ADDED
        try:
            async for page in source.list_repos():
                kept, dropped = d.dedupe_page(page)
                result.pages += 1
                result.listed += len(kept)
                result.duplicates += dropped
                await self._apply_page(service, source, svc_id, kept, seen_ids, result)
                if result.added >= analyze_at:
                    async with self._engine.begin() as conn:
                        await repo_store.analyze(conn)
                    analyze_at = 2 * result.added
                prog.pages, prog.listed = result.pages, result.listed
                if progress is not None:
                    progress(prog)
            result.complete = True
        except SourceError as exc:
            result.error = str(exc)
            log.warning(
                "%s: listing failed after %d pages; nothing removed: %s",
                service.name, result.pages, exc,
            )  # fmt: skip
        except Exception as exc:  # a bug or a database error: record it, remove nothing
            result.error = f"internal error: {type(exc).__name__}"
            log.error("%s: sync failed after %d pages; nothing removed: %s",
                      service.name, result.pages, result.error)  # fmt: skip
            log.debug("traceback", exc_info=True)
        if result.complete:
            try:
                await self._remove_unseen(source, svc_id, seen_ids, result)
            except SourceError as exc:
                result.complete = False
                result.error = f"re-check of unseen repos failed, nothing removed: {exc}"
        now = self._clock()
        async with self._engine.begin() as conn:
            await service_store.record_service_sync(
                conn, svc_id, now=now, error=result.error,
                next_at=started + timedelta(seconds=interval),
            )  # fmt: skip
        if result.changeset_syncs_requested and self._wake is not None:
            self._wake()
        return result

    async def _apply_page(
        self,
        service: ServiceConfig,
        source: RepoSource,
        svc_id: int,
        page: Sequence[SourcedRepo],
        seen_ids: d.SeenIds,
        result: SyncResult,
    ) -> None:
        async with self._engine.connect() as conn:
            stored = await repo_store.stored_for_page(
                conn,
                service_type=source.kind,
                service_id=source.service_id,
                external_service_id=svc_id,
                external_ids=[r.external_id for r in page],
            )
            page_diff = d.diff_page(page, stored, source.name_prefix, seen_ids)
            result.duplicates += page_diff.duplicates
            result.listed -= page_diff.duplicates
            if page_diff.writes_nothing:
                seen_ids.update(s.id for s in page_diff.unmodified)
                result.unmodified += len(page_diff.unmodified)
                return
        async with self._engine.begin() as conn:
            await self._write_page(conn, service, source, svc_id, page_diff, seen_ids, result)

    async def _write_page(
        self,
        conn: AsyncConnection,
        service: ServiceConfig,
        source: RepoSource,
        svc_id: int,
        diff: d.PageDiff,
        seen_ids: d.SeenIds,
        result: SyncResult,
    ) -> None:
        now = self._clock()
        events: list[dict[str, Any]] = []

        def event(kind: str, repo_id: int, **payload: Any) -> None:
            events.append(
                {
                    "kind": kind,
                    "repo_id": repo_id,
                    "external_service_id": svc_id,
                    "payload": {"service": service.name, **payload},
                    "created_at": now,
                }
            )

        # Names the page claims that a different live repo holds: the host is the truth.
        claimed = diff.claims()
        holders = await repo_store.live_holders(conn, claimed)
        moving = frozenset(c.stored.id for c in diff.renamed)
        conflicts, repeated = d.name_conflicts(claimed, holders, moving, seen_ids)
        repeats = diff.drop_claims(repeated)
        result.duplicates += repeats
        result.listed -= repeats
        if conflicts:
            gone = await repo_store.soft_delete(conn, conflicts, now)
            for rid in gone:
                event("RepoDeleted", rid, reason="name conflict")
            result.name_conflicts += len(gone)
            result.removed += len(gone)
            result.changeset_syncs_requested += await changeset_store.request_syncs_for_repos(
                conn, gone, "repo_deleted", now
            )

        updates = [
            {
                "b_id": c.stored.id,
                **_columns(c.sourced, c.new_name),
                "updated_at": now,
                "deleted_at": None,
            }
            for c in diff.revived + diff.modified
        ]
        await repo_store.update_repos(conn, updates)
        new_ids = await repo_store.insert_repos(
            conn,
            [
                {
                    **_columns(repo, name),
                    "service_type": str(source.kind),
                    "service_id": source.service_id,
                    "external_id": repo.external_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for repo, name in diff.added
            ],
        )
        linked = [
            *new_ids.values(),
            *(c.stored.id for c in diff.revived),
            *(s.id for s in diff.to_link),
        ]
        await repo_store.link_repos(conn, svc_id, linked, now)

        for repo, name in diff.added:
            event("RepoAdded", new_ids[repo.external_id], name=name, external_id=repo.external_id)
        for c in diff.revived:
            event("RepoRestored", c.stored.id, name=c.new_name)
        for c in diff.modified:
            event("RepoModified", c.stored.id, name=c.new_name, fields=sorted(c.fields))
        for c in diff.renamed:
            event("RepoRenamed", c.stored.id, old_name=c.stored.name, name=c.new_name)
        for c in diff.archived:
            event("RepoArchived", c.stored.id, name=c.new_name)
        for c in diff.unarchived:
            event("RepoUnarchived", c.stored.id, name=c.new_name)
        await repo_store.add_events(conn, events)

        await repo_store.request_permission_syncs(conn, new_ids.values(), "added", now)
        await repo_store.request_permission_syncs(
            conn, [c.stored.id for c in diff.revived + diff.modified], "modified", now
        )

        renamed_ids = [c.stored.id for c in diff.renamed]
        if renamed_ids:  # hosts that look pull requests up by repo name need the new name
            result.changeset_syncs_requested += await changeset_store.request_syncs_for_repos(
                conn, renamed_ids, "repo_renamed", now
            )
        for flipped, reason in (
            (diff.archived, "repo_archived"),
            (diff.unarchived, "repo_unarchived"),
        ):
            ids = [c.stored.id for c in flipped]
            if ids:
                await changeset_store.rederive_for_repos(conn, ids)
                result.changeset_syncs_requested += await changeset_store.request_syncs_for_repos(
                    conn, ids, reason, now
                )

        seen_ids.update(new_ids.values())
        seen_ids.update(c.stored.id for c in diff.revived + diff.modified)
        seen_ids.update(s.id for s in diff.unmodified)
        result.added += len(diff.added)
        result.revived += len(diff.revived)
        result.modified += len(diff.modified)
        result.unmodified += len(diff.unmodified)
        result.renamed += len(diff.renamed)
        result.archived.extend(c.new_name for c in diff.archived)
        result.unarchived.extend(c.new_name for c in diff.unarchived)
        result.rows_written += len(updates) + len(new_ids) + len(linked) + len(events)

    async def _remove_unseen(
        self, source: RepoSource, svc_id: int, seen_ids: d.SeenIds, result: SyncResult
    ) -> None:
        """Remove linked repos that the complete listing did not yield.

        Listings page by offset, so a repo deleted on the host while we paged shifts the
        next one onto a page we had already read: it goes unseen although it exists. Before
        removing anything, list once more and keep every unseen repo that shows up again.
        """
        async with self._engine.connect() as conn:
            linked = await repo_store.linked_repo_ids(conn, svc_id)
            unseen = d.removed_ids(linked, seen_ids)
            if not unseen:
                return
            external = await repo_store.external_ids_of(conn, unseen)
        wanted = set(external.values())
        found: set[str] = set()
        async for page in source.list_repos():
            found.update(r.external_id for r in page if r.external_id in wanted)
        gone = [rid for rid in unseen if external.get(rid) not in found]
        result.rechecked += len(unseen)
        if not gone:
            return
        now = self._clock()
        async with self._engine.begin() as conn:
            deleted = await repo_store.unlink_and_delete(conn, svc_id, gone, now)
            await repo_store.add_events(conn, [
                {"kind": "RepoDeleted", "repo_id": rid, "external_service_id": svc_id,
                 "payload": {"service": result.service, "reason": "not listed"},
                 "created_at": now}
                for rid in deleted
            ])  # fmt: skip
            if deleted:
                result.changeset_syncs_requested += await changeset_store.request_syncs_for_repos(
                    conn, deleted, "repo_deleted", now
                )
        result.removed += len(deleted)
        result.rows_written += len(gone) + 2 * len(deleted)
