"""Store functions for external services: registration, sync bookkeeping and status, and the
claim that keeps one service's repo sync to one run at a time across processes. Every function
takes an ``AsyncConnection``: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import HostKind
from repo_updater.store.schema import external_service_repos, external_services
from repo_updater.store.sql import insert_ignore

# --- external services ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    """A registered service: its id, and where it was before when this registration changed
    its code host's URL (same name and kind): the caller moves its repos along."""

    id: int
    moved_from: str | None = None


async def upsert_external_service(
    conn: AsyncConnection, *, name: str, kind: HostKind, url: str, config_hash: str, now: datetime
) -> Registration:
    """Register a configured service (insert, or update its kind, URL and config, reviving it
    if it had been retired)."""
    row = (
        await conn.execute(
            sa.select(
                external_services.c.id,
                external_services.c.kind,
                external_services.c.url,
                external_services.c.config_hash,
                external_services.c.deleted_at,
            ).where(external_services.c.name == name)
        )
    ).first()
    if row is None:
        # Another process may register the same service at the same moment: insert-or-ignore,
        # then read whichever row won.
        await insert_ignore(conn, external_services, [
            {"name": name, "kind": str(kind), "url": url, "config_hash": config_hash,
             "created_at": now}
        ])  # fmt: skip
        new_id = await conn.execute(
            sa.select(external_services.c.id).where(external_services.c.name == name)
        )
        return Registration(int(new_id.scalar_one()))
    if (row.kind, row.url, row.config_hash, row.deleted_at) == (str(kind), url, config_hash, None):
        return Registration(int(row.id))
    await conn.execute(
        external_services.update()
        .where(external_services.c.id == row.id)
        .values(
            kind=str(kind),
            url=url,
            config_hash=config_hash,
            deleted_at=None,
            next_sync_at=None,
            sync_failures=0,
            unchanged_syncs=0,
        )
    )
    moved = row.kind == str(kind) and row.url != url
    return Registration(int(row.id), moved_from=row.url if moved else None)


@dataclass(frozen=True, slots=True)
class SyncCounters:
    """What the schedule of a service's next sync depends on (``core.schedule``)."""

    failures: int
    unchanged: int


async def sync_counters(conn: AsyncConnection, external_service_id: int) -> SyncCounters:
    row = (
        await conn.execute(
            sa.select(external_services.c.sync_failures, external_services.c.unchanged_syncs).where(
                external_services.c.id == external_service_id
            )
        )
    ).one()
    return SyncCounters(failures=row.sync_failures, unchanged=row.unchanged_syncs)


async def record_service_sync(
    conn: AsyncConnection,
    external_service_id: int,
    *,
    now: datetime,
    error: str | None,
    next_at: datetime,
    counters: SyncCounters,
    started: datetime | None = None,
) -> None:
    """Record a finished sync: ``last_sync_at`` always, ``last_success_at`` when it had no
    error, the counters and the next sync time the caller computed from them. A forced sync
    asked for at or before ``started`` was served by it; one asked for while it ran stays due
    (the run may have listed past the change)."""
    es = external_services
    served: sa.ColumnElement[bool] = (
        sa.true() if started is None else es.c.sync_requested_at <= started
    )
    values: dict[str, object] = {
        "last_sync_at": now,
        "last_sync_error": error,
        "next_sync_at": next_at,
        "sync_failures": counters.failures,
        "unchanged_syncs": counters.unchanged,
        "sync_requested_at": sa.case((served, None), else_=es.c.sync_requested_at),
    }
    if error is None:
        values["last_success_at"] = now
    await conn.execute(es.update().where(es.c.id == external_service_id).values(values))


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    id: int
    name: str
    kind: str
    url: str
    repo_count: int
    last_sync_at: datetime | None  # the last sync, failed or not
    last_success_at: datetime | None  # the last complete sync
    last_sync_error: str | None
    next_sync_at: datetime | None
    sync_failures: int  # consecutive failed syncs (the backoff)
    sync_requested_at: datetime | None = None  # a forced sync is due then
    webhook_last_delivery_at: datetime | None = None  # the last delivery that verified
    webhook_last_rejected_at: datetime | None = None
    webhook_last_rejection: str | None = None  # why it was refused (no secret in it)
    webhook_verifies: bool | None = None  # see ``verifies``


def verifies(good: datetime | None, bad: datetime | None) -> bool | None:
    """Whether a service's webhook deliveries verify: None before any arrived, else whether
    the last one did (a refused one after the last good one: False)."""
    if good is None and bad is None:
        return None
    return bad is None or (good is not None and good >= bad)


async def list_services(
    conn: AsyncConnection, *, after_id: int | None = None, limit: int | None = None
) -> list[ServiceStatus]:
    """Live services: by name, or, when paging (``after_id`` given), by id."""
    count = (
        sa.select(sa.func.count())
        .where(external_service_repos.c.external_service_id == external_services.c.id)
        .scalar_subquery()
    )
    stmt = sa.select(external_services, count.label("repo_count")).where(
        external_services.c.deleted_at.is_(None)
    )
    if after_id is None:
        stmt = stmt.order_by(external_services.c.name)
    else:
        stmt = stmt.where(external_services.c.id > after_id).order_by(external_services.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = await conn.execute(stmt)
    return [
        ServiceStatus(
            id=r.id,
            name=r.name,
            kind=r.kind,
            url=r.url,
            repo_count=r.repo_count,
            last_sync_at=r.last_sync_at,
            last_success_at=r.last_success_at,
            last_sync_error=r.last_sync_error,
            next_sync_at=r.next_sync_at,
            sync_failures=r.sync_failures,
            sync_requested_at=r.sync_requested_at,
            webhook_last_delivery_at=r.webhook_last_delivery_at,
            webhook_last_rejected_at=r.webhook_last_rejected_at,
            webhook_last_rejection=r.webhook_last_rejection,
            webhook_verifies=verifies(r.webhook_last_delivery_at, r.webhook_last_rejected_at),
        )
        for r in rows
    ]


# --- claiming a service's repo sync (several processes on one database) --------------------------


async def claim_service(
    conn: AsyncConnection, external_service_id: int, *, token: str, now: datetime, until: datetime
) -> bool:
    """Atomically take the right to sync a service, if nobody holds an unexpired claim.
    ``token`` identifies this one sync run (not just the worker)."""
    result = await conn.execute(
        external_services.update()
        .where(
            external_services.c.id == external_service_id,
            sa.or_(
                external_services.c.claimed_until.is_(None),
                external_services.c.claimed_until < now,
            ),
        )
        .values(claimed_by=token, claimed_until=until)
    )
    return result.rowcount == 1


async def renew_service_claim(
    conn: AsyncConnection, external_service_id: int, *, token: str, until: datetime
) -> bool:
    """Extend our claim; False if it was lost (expired and taken by another run)."""
    result = await conn.execute(
        external_services.update()
        .where(
            external_services.c.id == external_service_id, external_services.c.claimed_by == token
        )
        .values(claimed_until=until)
    )
    return result.rowcount == 1


async def release_service(conn: AsyncConnection, external_service_id: int, *, token: str) -> None:
    await conn.execute(
        external_services.update()
        .where(
            external_services.c.id == external_service_id, external_services.c.claimed_by == token
        )
        .values(claimed_by=None, claimed_until=None)
    )


async def due_services(conn: AsyncConnection, now: datetime) -> list[str]:
    es = external_services
    rows = await conn.execute(
        sa.select(es.c.name).where(
            es.c.deleted_at.is_(None),
            sa.or_(es.c.next_sync_at.is_(None), es.c.next_sync_at <= now,
                   es.c.sync_requested_at <= now),
        )
    )  # fmt: skip
    return [r[0] for r in rows]


@dataclass(frozen=True, slots=True)
class ServiceSyncStatus:
    """What decides when a forced sync of a service may run."""

    id: int
    last_sync_at: datetime | None
    running: bool  # a sync holds a live claim on the service
    requested_at: datetime | None  # a forced sync already due then


async def service_sync_status(
    conn: AsyncConnection, name: str, now: datetime
) -> ServiceSyncStatus | None:
    es = external_services
    row = (
        await conn.execute(
            sa.select(es.c.id, es.c.last_sync_at, es.c.claimed_until, es.c.sync_requested_at)
            .where(es.c.name == name, es.c.deleted_at.is_(None))
        )
    ).first()  # fmt: skip
    if row is None:
        return None
    running = row.claimed_until is not None and row.claimed_until > now
    return ServiceSyncStatus(row.id, row.last_sync_at, running, row.sync_requested_at)


async def request_service_sync(
    conn: AsyncConnection,
    external_service_id: int,
    at: datetime,
    *,
    replace_up_to: datetime | None = None,
) -> None:
    """Ask for a sync of the service at ``at``, unless one is asked for sooner; one asked for
    at or before ``replace_up_to`` (served by the sync now running) is replaced."""
    es = external_services
    asked = es.c.sync_requested_at
    replace = [asked.is_(None), asked > at]
    if replace_up_to is not None:
        replace.append(asked <= replace_up_to)
    await conn.execute(
        es.update()
        .where(es.c.id == external_service_id, sa.or_(*replace))
        .values(sync_requested_at=at)
    )


# --- retiring services the config no longer has ---------------------------------------------------


async def unconfigured_services(
    conn: AsyncConnection, configured: Collection[str]
) -> list[tuple[int, str]]:
    """Live services whose names are not in ``configured``: (id, name)."""
    rows = await conn.execute(
        sa.select(external_services.c.id, external_services.c.name)
        .where(external_services.c.deleted_at.is_(None))
        .order_by(external_services.c.id)
    )
    return [(r.id, r.name) for r in rows if r.name not in configured]


async def mark_retired(conn: AsyncConnection, external_service_id: int, now: datetime) -> bool:
    """Mark a live service deleted (no longer listed or synced); False if it was not live."""
    result = await conn.execute(
        external_services.update()
        .where(
            external_services.c.id == external_service_id,
            external_services.c.deleted_at.is_(None),
        )
        .values(deleted_at=now, claimed_by=None, claimed_until=None)
    )
    return result.rowcount == 1
