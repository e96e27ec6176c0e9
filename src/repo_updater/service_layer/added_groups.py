"""A group of pages that only adds repos (a first sync, issue 12 item 3), written with one
statement per table for the whole group instead of several per page.

The repo syncer writes a group page by page, each page read after the previous one's writes,
so that its diff is exactly the page-by-page one. A later page of the group can see an earlier
page's writes only through the rows that page inserted: a repeated external id (found stored,
seen: a duplicate) or a repeated name (held by a seen repo: a duplicate). So when

- no repo of the group is stored yet (one read for all its external ids),
- no external id and no store name (ignoring case) repeats within the group, and
- no live repo holds any of its store names (one read for all of them),

every page's page-by-page diff is "all added", with no duplicates and no name conflicts, and
writing the group's rows at once (repos, links, events, permission requests) writes exactly
what page by page would. Otherwise :func:`read_added_group` says no, and the syncer writes the
group page by page, reusing the read until a page writes (``group_reads``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core import diff as d
from repo_updater.core.domain import SourcedRepo
from repo_updater.service_layer.permission_requests import notify_permissions
from repo_updater.service_layer.repo_sync_result import SyncRun
from repo_updater.store import repo_bulk
from repo_updater.store import repos as repo_store


@dataclass(slots=True)
class GroupRead:
    added: list[tuple[SourcedRepo, str]] | None  # the group's new repos, or None: page by page
    stored: dict[str, d.StoredRepo] = field(default_factory=dict)  # the group's stored rows


async def read_added_group(
    conn: AsyncConnection, run: SyncRun, pages: Sequence[Sequence[SourcedRepo]]
) -> GroupRead:
    """Read the group's stored rows and name holders (two statements); the group's new repos
    in page order when it only adds repos, else None with the group's stored rows (read
    before any write: what page by page diffs against while the group writes nothing)."""
    external_ids = [r.external_id for page in pages for r in page]
    stored = await repo_store.stored_for_page(
        conn,
        host_kind=run.source.kind,
        host_url=run.source.host_url,
        external_service_id=run.external_service_id,
        external_ids=external_ids,
    )
    if stored or len(set(external_ids)) != len(external_ids):
        return GroupRead(None, stored)
    diffs = [d.diff_page(page, {}, run.source.name_prefix, run.seen) for page in pages]
    added = [a for diff in diffs for a in diff.added]
    names = {name.lower() for _, name in added}
    if len(names) != len(added) or await repo_store.live_holders(conn, names):
        return GroupRead(None, stored)
    return GroupRead(added, stored)


async def write_added_group(
    conn: AsyncConnection, run: SyncRun, added: Sequence[tuple[SourcedRepo, str]], now: datetime
) -> None:
    """Write a group that only adds repos (in the caller's transaction): the repos, their
    links, their ``RepoAdded`` events and the permission requests of the private ones, one
    statement each (none when there is nothing to write)."""
    result, svc_id = run.result, run.external_service_id
    new_ids = await repo_bulk.insert_repos(conn, run.source.kind, run.source.host_url, added, now)
    linked = [new_ids[r.external_id] for r, _ in added]
    await repo_bulk.link_repos(conn, svc_id, linked, now)
    diff = d.PageDiff(added=list(added))
    events = d.page_events(diff, new_ids, run.service)
    await repo_bulk.add_events(conn, svc_id, events, now)
    perms = await notify_permissions(conn, diff, new_ids, external_service_id=svc_id, now=now)
    result.permission_syncs_requested += perms.requested
    run.seen.update(linked)
    result.added += len(added)
    result.rows_written += len(new_ids) + len(linked) + len(events)
    result.rows_written += perms.requested + perms.dropped + perms.events
