"""Syncing chosen changesets now, and checking pull requests with their host before tracking
them: what ``repo-updater changesets sync`` and ``changesets track`` do in the foreground.

``sync_now`` asks for a sync of each changeset (a durable request, as the API does) and then
runs the changeset syncer's rounds in this process until each one was synced or failed, or the
deadline passes. Requests are claimed before due changesets, so the chosen ones go first; a
``serve`` process on the same store may take some of them, which is just as good: what is
watched is the changeset's row, not who synced it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.domain import ChangesetRef, HostPullState, Repo
from repo_updater.core.ports import RepoSource
from repo_updater.service_layer.changeset_syncer import ChangesetSyncer
from repo_updater.store import changesets as cs_store
from repo_updater.store.schema import changesets

POLL = 0.2  # seconds between looks while another process holds the work


@dataclass(frozen=True, slots=True)
class SyncNow:
    synced: list[int]  # synced, or failed with a sync error (both are a result to show)
    waiting: list[int]  # not synced before the deadline (their requests stay queued)
    unknown: list[int]  # no such published changeset (or its repository was removed)


async def _marks(engine: AsyncEngine, ids: Sequence[int]) -> dict[int, tuple[object, int]]:
    """What changes when a changeset is synced: its last sync time, or its failure count."""
    c = changesets.c
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(c.id, c.last_synced_at, c.sync_failures).where(c.id.in_(list(ids)))
        )
        return {r.id: (r.last_synced_at, r.sync_failures) for r in rows}


async def sync_now(
    engine: AsyncEngine,
    syncer: ChangesetSyncer,
    ids: Sequence[int],
    clock: Callable[[], datetime],
    *,
    wait: float = 60.0,
) -> SyncNow:
    before = await _marks(engine, ids)
    async with engine.begin() as conn:
        requested = set(await cs_store.requestable(conn, ids))
        await cs_store.request_sync(conn, requested, "cli", clock())
    unknown = [i for i in ids if i not in requested]
    waiting = [i for i in ids if i in requested]
    deadline = time.monotonic() + wait
    while waiting and time.monotonic() < deadline:
        done = await syncer.run_once()
        now = await _marks(engine, waiting)
        waiting = [i for i in waiting if now.get(i) == before.get(i)]
        if waiting and done.claimed == done.released:  # nothing for us: another worker has it
            await asyncio.sleep(POLL)
    synced = [i for i in ids if i in requested and i not in waiting]
    return SyncNow(synced=synced, waiting=waiting, unknown=unknown)


def source_for(sources: Sequence[RepoSource], repo: Repo) -> RepoSource | None:
    """The configured connection to the code host a repository lives on."""
    for source in sources:
        if source.kind is repo.host_kind and source.host_url == repo.host_url:
            return source
    return None


async def missing_pulls(source: RepoSource, repo: Repo, numbers: Sequence[int]) -> list[int]:
    """The numbers the code host has no pull request for (it answered 404). Raises the
    source's ``SourceError`` when the host cannot be asked."""
    refs = [
        ChangesetRef(
            changeset_id=i + 1,  # not stored yet: any distinct ids pair answers with refs
            repo_name=repo.external_name,
            repo_external_id=repo.external_id,
            number=n,
        )
        for i, n in enumerate(numbers)
    ]
    snapshots = {s.changeset_id: s for s in await source.load_changesets(refs)}
    return [
        ref.number
        for ref in refs
        if (snap := snapshots.get(ref.changeset_id)) is None or snap.state is HostPullState.DELETED
    ]
