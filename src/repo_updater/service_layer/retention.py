"""Retention of the ``events`` outbox: events older than the configured retention are deleted
in batches of short transactions (a long delete would hold SQLite's one writer), by the serve
loop once at start and then every ``PRUNE_EVERY`` seconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.service_layer.health import Health, pause
from repo_updater.store import events as event_store

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds
PRUNE_BATCH = 5000  # events per transaction


async def prune_events(
    engine: AsyncEngine,
    now: datetime,
    retention: timedelta,
    *,
    batch: int = PRUNE_BATCH,
) -> int:
    """Delete every event older than ``retention``, ``batch`` per transaction; returns how
    many were deleted."""
    before, total = now - retention, 0
    while True:
        async with engine.begin() as conn:
            deleted = await event_store.prune_events(conn, before=before, limit=batch)
        total += deleted
        if deleted < batch:
            break
        await asyncio.sleep(0)  # let the other loops of this process write in between
    if total:
        log.info("events retention: deleted %d events older than %s", total, before.isoformat())
    return total


async def run(
    engine: AsyncEngine,
    clock: Callable[[], datetime],
    retention: timedelta,
    stop: asyncio.Event,
    *,
    health: Health,
    every: float = PRUNE_EVERY,
) -> None:
    """Prune at once, then every ``every`` seconds until ``stop`` is set."""
    while not stop.is_set():
        started = health.started()
        try:
            await prune_events(engine, clock(), retention)
            wait = every
            health.succeeded("events retention", started)
        except Exception as exc:
            wait = max(health.failed("events retention", exc), 5.0)
        await pause(stop, min(wait, every))
