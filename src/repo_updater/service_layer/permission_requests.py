"""What a written repo-diff page means for permissions, in the caller's transaction: private
repos that were added, restored, made private or moved to another owner get a permissions-sync
request; repos made public drop their stored permissions, with a ``PermissionRevoked`` event
per account. Both commit together with the diff (invariant 2), so a crash loses neither."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.diff import PageDiff
from repo_updater.core.permissions import permission_events, plan_for_page, revoked_all
from repo_updater.store import events as event_store
from repo_updater.store import permissions as permission_store
from repo_updater.store import repo_permissions as grant_store

MADE_PUBLIC = "repo made public"


@dataclass(frozen=True, slots=True)
class PermissionNotice:
    requested: int = 0  # permission-sync requests written
    dropped: int = 0  # grants deleted (repos made public)
    events: int = 0


async def notify_permissions(
    conn: AsyncConnection,
    diff: PageDiff,
    new_ids: Mapping[str, int],
    *,
    external_service_id: int | None,
    now: datetime,
) -> PermissionNotice:
    plan = plan_for_page(diff, new_ids)
    await permission_store.request_permission_syncs(conn, plan.requests, now)
    dropped = await grant_store.drop_permissions(conn, plan.made_public)
    events = [
        event
        for repo_id, grants in dropped.items()
        for event in permission_events(repo_id, revoked_all(grants), why=MADE_PUBLIC)
    ]
    await event_store.add_events(conn, external_service_id, events, now)
    return PermissionNotice(
        requested=len(plan.requests),
        dropped=sum(len(g) for g in dropped.values()),
        events=len(events),
    )
