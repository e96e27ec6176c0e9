"""What follows, in the caller's transaction, when a repository changes in a way its changesets
care about. Every path that learns of such a change uses these functions: a repo sync's diff,
a single-repo sync, a webhook, a write the host refused because the repo is archived. So the
outcome is the same however the change was learned (invariant 4), and it commits together
with the change itself (invariant 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import RepoEvent, RepoEventKind
from repo_updater.store import changeset_claims, repo_versions
from repo_updater.store import changesets as changeset_store
from repo_updater.store import events as event_store
from repo_updater.store import repos as repo_store

# Why a changeset sync was requested, by what happened to its repository.
SYNC_REASONS = {
    RepoEventKind.ARCHIVED: "repo_archived",
    RepoEventKind.UNARCHIVED: "repo_unarchived",
    RepoEventKind.RENAMED: "repo_renamed",
    RepoEventKind.RESTORED: "repo_restored",
}


async def notify_changesets(
    conn: AsyncConnection,
    kind: RepoEventKind,
    repo_ids: Sequence[int],
    now: datetime,
    *,
    why: str = "",
    via: str = "",
) -> int:
    """Changesets follow their repos: on an archive flip, re-derive their states (open/draft
    on an archived repo is READONLY) and request a sync of every one; on a rename, request a
    sync (hosts that look pull requests up by repo name need the new name); on a restore
    (listed again after a removal), schedule and request them again.

    On a deletion (``why``: "not listed", "name conflict", "service removed"), stop syncing
    them: their pending requests are consumed and ``sync_error`` says why, so no request
    waits forever for a sync that will never run (invariant 3). Returns the sync requests
    written (0 on a deletion). ``via``: how the change was learned, when not by a listing
    (``webhook``): the requests' reason says so (``webhook:repo_archived``), and so does the
    synced changeset's freshness."""
    if not repo_ids:
        return 0
    if kind is RepoEventKind.DELETED:
        await changeset_claims.stop_syncs_for_repos(conn, repo_ids, why or "deleted", now)
        return 0
    if kind not in SYNC_REASONS:
        return 0
    if kind in (RepoEventKind.ARCHIVED, RepoEventKind.UNARCHIVED):
        await changeset_store.rederive_for_repos(conn, repo_ids, now=now)
    reason = f"{via}:{SYNC_REASONS[kind]}" if via else SYNC_REASONS[kind]
    if kind is RepoEventKind.RESTORED:
        return await changeset_claims.resume_syncs_for_repos(conn, repo_ids, reason, now)
    return await changeset_store.request_syncs_for_repos(conn, repo_ids, reason, now)


async def set_archived(
    conn: AsyncConnection,
    repo_id: int,
    archived: bool,
    *,
    why: str,
    external_service_id: int | None,
    now: datetime,
) -> int:
    """Record that a repository is (un)archived although no listing said so (the host refused
    a write because the repo is archived, say): the flag, its ``RepoArchived`` /
    ``RepoUnarchived`` event (``why`` in the payload) and the changesets' states and sync
    requests, exactly as a repo sync that saw the flip writes them. A repo already in that
    state changes nothing. Returns the changeset sync requests written."""
    touched = repo_versions.Touched()
    await touched.note_repos(conn, [repo_id])
    name = await repo_store.set_archived_flag(conn, repo_id, archived, now)
    if name is None:
        return 0
    await touched.bump(conn)
    kind = RepoEventKind.ARCHIVED if archived else RepoEventKind.UNARCHIVED
    event = RepoEvent(kind, repo_id, {"name": name, "why": why})
    await event_store.add_events(conn, external_service_id, [event], now)
    return await notify_changesets(conn, kind, [repo_id], now)
