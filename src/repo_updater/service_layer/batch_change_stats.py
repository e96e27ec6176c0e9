"""A batch change at a glance: counts by state and the burndown series, for the API's
``/api/batch-changes/{id}/stats`` (and the CLI's status view)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.burndown import BurndownPoint, BurndownSweep, moments
from repo_updater.store import batch_change_stats as stats_store
from repo_updater.store.batch_change_stats import StateCounts
from repo_updater.store.changeset_queries import get_batch_change


@dataclass(frozen=True, slots=True)
class BatchChangeStats:
    batch_change_id: int
    counts: StateCounts
    burndown: list[BurndownPoint]


async def batch_change_stats(
    conn: AsyncConnection,
    batch_change_id: int,
    now: datetime,
    *,
    points: int = 30,
    since: datetime | None = None,
) -> BatchChangeStats | None:
    """None if there is no such batch change. The burndown runs from ``since`` (default: the
    batch change's creation) to ``now`` in ``points`` evenly spaced moments."""
    batch_change = await get_batch_change(conn, batch_change_id)
    if batch_change is None:
        return None
    start = min(since or batch_change.created_at, now)
    sweep = BurndownSweep(moments(start, now, points))
    async for at, changeset_id, state in stats_store.transitions(conn, batch_change_id, now):
        sweep.feed(at, changeset_id, state)
    counts = await stats_store.state_counts(conn, batch_change_id)
    return BatchChangeStats(batch_change_id, counts, sweep.points())
