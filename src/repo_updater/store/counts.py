"""Counts for the ``/metrics`` endpoint and what the dashboard polls: a few cheap aggregate
queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.store.schema import (
    bulk_operations,
    changeset_sync_requests,
    changesets,
    external_services,
    repos,
)


@dataclass(frozen=True, slots=True)
class ServiceCounts:
    name: str
    last_sync_at: float | None  # epoch seconds
    last_success_at: float | None
    failed: bool


@dataclass(slots=True)
class StoreCounts:
    repos: dict[str, int] = field(default_factory=dict)  # live / archived / deleted
    changesets: dict[str, int] = field(default_factory=dict)  # by external state
    changeset_sync_requests: int = 0
    operations: dict[str, int] = field(default_factory=dict)  # bulk operations by state
    services: list[ServiceCounts] = field(default_factory=list)


async def store_counts(conn: AsyncConnection) -> StoreCounts:
    out = StoreCounts()
    row = (
        await conn.execute(
            sa.select(
                sa.func.count().filter(repos.c.deleted_at.is_(None)),
                sa.func.count().filter(repos.c.deleted_at.is_(None), repos.c.archived.is_(True)),
                sa.func.count().filter(repos.c.deleted_at.is_not(None)),
            )
        )
    ).one()
    out.repos = {"live": row[0], "archived": row[1], "deleted": row[2]}
    states = await conn.execute(
        sa.select(changesets.c.external_state, sa.func.count()).group_by(
            changesets.c.external_state
        )
    )
    out.changesets = {(s or "UNSYNCED"): n for s, n in states}
    count = await conn.execute(sa.select(sa.func.count()).select_from(changeset_sync_requests))
    out.changeset_sync_requests = int(count.scalar_one())
    ops = await conn.execute(
        sa.select(bulk_operations.c.state, sa.func.count()).group_by(bulk_operations.c.state)
    )
    out.operations = {str(state): n for state, n in ops}
    services = await conn.execute(
        sa.select(
            external_services.c.name,
            external_services.c.last_sync_at,
            external_services.c.last_success_at,
            external_services.c.last_sync_error,
        ).where(external_services.c.deleted_at.is_(None))
    )
    out.services = [
        ServiceCounts(name, _epoch(at), _epoch(ok), error is not None)
        for name, at, ok, error in services
    ]
    return out


def _epoch(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


@dataclass(frozen=True, slots=True)
class ChangeMarker:
    """What the dashboard polls. ``states`` changes when a batch change's counts or burndown
    may have (a state change, a tracked or closed batch change, a sync error set or cleared);
    ``anything`` also when any changeset or service was synced at all."""

    states: str
    anything: str


async def change_marker(conn: AsyncConnection) -> ChangeMarker:
    """One round trip; the maxima walk primary keys, except ``changesets.updated_at`` and the
    count of errored changesets (scans: about a millisecond per 10,000 changesets)."""
    from repo_updater.store.schema import (
        batch_change_changesets,
        batch_changes,
        changeset_state_history,
        service_sync_history,
    )

    def biggest(column: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
        return sa.select(sa.func.max(column)).scalar_subquery()

    def count(table: sa.Table, *where: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
        return sa.select(sa.func.count()).select_from(table).where(*where).scalar_subquery()

    row = (
        await conn.execute(
            sa.select(
                biggest(changeset_state_history.c.id),
                count(batch_change_changesets),
                biggest(batch_changes.c.id),
                biggest(batch_changes.c.closed_at),
                count(changesets, changesets.c.sync_error.is_not(None)),
                biggest(changesets.c.updated_at),
                biggest(service_sync_history.c.id),
                biggest(external_services.c.last_sync_at),
                biggest(external_services.c.sync_requested_at),
            )
        )
    ).one()
    values = ["" if v is None else str(v) for v in row]
    return ChangeMarker(states="|".join(values[:5]), anything="|".join(values))
