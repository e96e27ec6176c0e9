"""Forced syncs (an API call asking for a sync now) coalesce: a service or changeset is synced
at most once per ``min_gap``, however many requests arrive. An extra request writes at most one
row, costs no host request, and is told when the sync is due.

- A service: the forced sync is due ``min_gap`` after the last sync ended (see
  ``core.schedule.forced_sync_due``); one already asked for at or before that time answers for
  it. ``external_services.sync_requested_at`` holds it, so the repo-sync worker (any process)
  picks it up and nothing in memory is lost on a restart.
- A changeset: a pending sync request answers for it; else one synced within ``min_gap`` gets
  a request parked until the gap has passed; else a request ready now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.schedule import forced_sync_due
from repo_updater.store import changesets as cs_store
from repo_updater.store import external_services as service_store


@dataclass(frozen=True, slots=True)
class ForcedSync:
    due_at: datetime
    coalesced: bool  # True: an earlier request or a recent sync answers for this one


async def force_service_sync(
    conn: AsyncConnection, name: str, now: datetime, min_gap: timedelta
) -> ForcedSync | None:
    """None if there is no live service of that name."""
    status = await service_store.service_sync_status(conn, name, now)
    if status is None:
        return None
    due = forced_sync_due(now, status.last_sync_at, min_gap, running=status.running)
    asked = status.requested_at
    # While a sync runs, a request asked for before ``now`` may be the one that started it
    # (served, and cleared when it ends): only a later one answers for this request.
    if asked is not None and asked <= due and (not status.running or asked > now):
        return ForcedSync(max(asked, now), coalesced=True)
    stale = now if status.running else None
    await service_store.request_service_sync(conn, status.id, due, replace_up_to=stale)
    return ForcedSync(due, coalesced=False)


async def force_changeset_sync(
    conn: AsyncConnection, changeset_id: int, now: datetime, min_gap: timedelta, reason: str
) -> ForcedSync | None:
    """None if there is no published changeset with that id."""
    status = await cs_store.sync_status(conn, changeset_id, now)
    if status is None:
        return None
    if status.not_synced is not None:
        raise cs_store.ChangesetNotSynced(
            f"changeset {changeset_id} is not synced: {status.not_synced}"
        )
    if status.pending_at is not None:
        return ForcedSync(status.pending_at, coalesced=True)
    due = forced_sync_due(now, status.last_synced_at, min_gap, running=status.in_flight)
    if due <= now:
        await cs_store.request_sync(conn, [changeset_id], reason, now)
        return ForcedSync(now, coalesced=False)
    await cs_store.request_sync_at(conn, changeset_id, reason, now, due)
    return ForcedSync(due, coalesced=True)
