"""Stored webhook deliveries (``webhook_deliveries``) and each service's webhook health.

A delivery is stored once verified, before the receiver answers 2xx (``store_delivery``:
a repeated ``(service, delivery id)`` inserts nothing). Workers claim unprocessed deliveries
in id order with an expiring lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; the claiming
UPDATE re-checks the claim, which keeps several tasks of one SQLite process apart), so a
worker that dies after the 2xx, or mid-processing, loses nothing: its claim runs out and
another takes the delivery. A failed attempt parks the delivery until its retry time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.domain import HostKind
from repo_updater.store.schema import changesets, external_services, repos, webhook_deliveries
from repo_updater.store.sql import dialect_insert

MAX_ATTEMPTS = 5  # then the delivery is given up (set processed, its error kept): polling repairs


@dataclass(frozen=True, slots=True)
class ServiceRef:
    id: int
    kind: str


async def live_service(conn: AsyncConnection, name: str) -> ServiceRef | None:
    es = external_services
    row = (
        await conn.execute(
            sa.select(es.c.id, es.c.kind).where(es.c.name == name, es.c.deleted_at.is_(None))
        )
    ).first()
    return None if row is None else ServiceRef(row.id, row.kind)


async def store_delivery(
    conn: AsyncConnection,
    external_service_id: int,
    *,
    delivery_id: str,
    event: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> int | None:
    """Store a verified delivery and note its arrival on the service; returns its row id, or
    None when this delivery id was stored before (a redelivery: nothing changes)."""
    w = webhook_deliveries
    row = (
        await conn.execute(
            dialect_insert(conn, w)
            .values(
                external_service_id=external_service_id,
                delivery_id=delivery_id,
                event=event,
                headers=dict(headers),
                body=body,
                received_at=now,
            )
            .on_conflict_do_nothing(index_elements=[w.c.external_service_id, w.c.delivery_id])
            .returning(w.c.id)
        )
    ).first()
    await note_delivery(conn, external_service_id, now)
    return None if row is None else int(row.id)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    external_service_id: int
    delivery_id: str
    event: str
    headers: Mapping[str, str]
    body: bytes


async def store_deliveries(
    conn: AsyncConnection, items: Sequence[NewDelivery], now: datetime
) -> list[bool]:
    """``store_delivery`` for many (one statement, one service update each): whether each
    was stored (False: its id was stored before, or earlier in ``items``)."""
    w = webhook_deliveries
    first: dict[tuple[int, str], int] = {}
    for i, d in enumerate(items):
        first.setdefault((d.external_service_id, d.delivery_id), i)
    rows = [
        {"external_service_id": d.external_service_id, "delivery_id": d.delivery_id,
         "event": d.event, "headers": dict(d.headers), "body": d.body, "received_at": now}
        for i, d in enumerate(items)
        if first[(d.external_service_id, d.delivery_id)] == i
    ]  # fmt: skip
    stored: set[tuple[int, str]] = set()
    # One statement with the rows as executemany parameters: SQLAlchemy batches them into
    # multi-row INSERTs ("insertmanyvalues") from one cached compilation; ``.values(rows)``
    # would compile a new statement for every batch size (the most CPU in a profile).
    insert = (
        dialect_insert(conn, w)
        .on_conflict_do_nothing(index_elements=[w.c.external_service_id, w.c.delivery_id])
        .returning(w.c.external_service_id, w.c.delivery_id)
    )
    if rows:
        result = await conn.execute(insert, rows)
        stored.update((r.external_service_id, r.delivery_id) for r in result)
    for svc_id in sorted({d.external_service_id for d in items}):
        await note_delivery(conn, svc_id, now)
    return [
        first[(d.external_service_id, d.delivery_id)] == i
        and (d.external_service_id, d.delivery_id) in stored
        for i, d in enumerate(items)
    ]


async def note_delivery(conn: AsyncConnection, external_service_id: int, now: datetime) -> None:
    es = external_services
    await conn.execute(
        es.update().where(es.c.id == external_service_id).values(webhook_last_delivery_at=now)
    )


async def note_rejection(
    conn: AsyncConnection, external_service_id: int, why: str, now: datetime
) -> None:
    es = external_services
    await conn.execute(
        es.update()
        .where(es.c.id == external_service_id)
        .values(webhook_last_rejected_at=now, webhook_last_rejection=why[:200])
    )


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: int
    external_service_id: int
    delivery_id: str
    event: str
    headers: dict[str, str]
    body: bytes
    attempts: int  # before this one


async def claim_deliveries(
    conn: AsyncConnection, worker_id: str, now: datetime, lease: timedelta, limit: int
) -> list[ClaimedDelivery]:
    """Claim up to ``limit`` unprocessed deliveries, oldest first, that no live claim holds
    (a parked one is free again at its retry time)."""
    w = webhook_deliveries
    free = sa.or_(w.c.claimed_until.is_(None), w.c.claimed_until <= now)
    candidates = (
        sa.select(w.c.id)
        .where(w.c.processed_at.is_(None), free)
        .order_by(w.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await conn.execute(candidates)).scalars())
    if not ids:
        return []
    rows = await conn.execute(
        w.update()
        .where(w.c.id.in_(ids), w.c.processed_at.is_(None), free)
        .values(claimed_by=worker_id, claimed_until=now + lease)
        .returning(
            w.c.id,
            w.c.external_service_id,
            w.c.delivery_id,
            w.c.event,
            w.c.headers,
            w.c.body,
            w.c.attempts,
        )
    )
    out = [
        ClaimedDelivery(
            r.id,
            r.external_service_id,
            r.delivery_id,
            r.event,
            dict(r.headers),
            bytes(r.body),
            r.attempts,
        )
        for r in rows
    ]
    return sorted(out, key=lambda d: d.id)


async def complete(
    conn: AsyncConnection, worker_id: str, ids: Sequence[int], now: datetime, error: str | None
) -> int:
    """Mark claimed deliveries processed (``error``: given up with that error)."""
    if not ids:
        return 0
    w = webhook_deliveries
    result = await conn.execute(
        w.update()
        .where(w.c.id.in_(list(ids)), w.c.claimed_by == worker_id)
        .values(
            processed_at=now,
            claimed_by=None,
            claimed_until=None,
            last_error=error,
            attempts=w.c.attempts + 1,
        )
    )
    return int(result.rowcount or 0)


async def retry_later(
    conn: AsyncConnection, worker_id: str, ids: Sequence[int], error: str, retry_at: datetime
) -> None:
    """A failed attempt: park the deliveries until ``retry_at``."""
    if not ids:
        return
    w = webhook_deliveries
    await conn.execute(
        w.update()
        .where(w.c.id.in_(list(ids)), w.c.claimed_by == worker_id)
        .values(
            claimed_by=None,
            claimed_until=retry_at,
            last_error=error[:1000],
            attempts=w.c.attempts + 1,
        )
    )


async def release(conn: AsyncConnection, worker_id: str, ids: Sequence[int]) -> None:
    """Hand claims back unprocessed (shutdown)."""
    if not ids:
        return
    w = webhook_deliveries
    await conn.execute(
        w.update()
        .where(w.c.id.in_(list(ids)), w.c.claimed_by == worker_id)
        .values(claimed_by=None, claimed_until=None)
    )


async def prune(conn: AsyncConnection, before: datetime, limit: int = 5000) -> int:
    """Delete up to ``limit`` deliveries processed before ``before`` (their ids no longer
    guard against a redelivery: by then polling has long seen what they said)."""
    w = webhook_deliveries
    ids = sa.select(w.c.id).where(w.c.processed_at < before).limit(limit).scalar_subquery()
    result = await conn.execute(w.delete().where(w.c.id.in_(ids)))
    return int(result.rowcount or 0)


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    stored: int
    pending: int
    failed: int  # given up


async def counts(conn: AsyncConnection, external_service_id: int | None = None) -> DeliveryCounts:
    w = webhook_deliveries
    stmt = sa.select(
        sa.func.count(),
        sa.func.count().filter(w.c.processed_at.is_(None)),
        sa.func.count().filter(w.c.processed_at.is_not(None), w.c.last_error.is_not(None)),
    )
    if external_service_id is not None:
        stmt = stmt.where(w.c.external_service_id == external_service_id)
    stored, pending, failed = (await conn.execute(stmt)).one()
    return DeliveryCounts(int(stored), int(pending), int(failed))


async def changesets_named(
    conn: AsyncConnection,
    host_kind: HostKind,
    host_url: str,
    pulls: Collection[tuple[str, int]],
    repo_external_ids: Collection[str],
) -> list[int]:
    """Changesets on this code host's live repos that deliveries name: ``pulls`` as (repo
    external id, number), and every changeset of ``repo_external_ids``."""
    c, r = changesets, repos
    base = (
        sa.select(c.c.id)
        .select_from(c.join(r, r.c.id == c.c.repo_id))
        .where(r.c.host_kind == str(host_kind), r.c.host_url == host_url, r.c.deleted_at.is_(None))
    )
    out: set[int] = set()
    for part in chunks(sorted({(rid, str(n)) for rid, n in pulls}), 200):
        stmt = base.where(sa.tuple_(r.c.external_id, c.c.external_id).in_(part))
        out.update((await conn.execute(stmt)).scalars())
    for ids in chunks(sorted(set(repo_external_ids)), 500):
        out.update((await conn.execute(base.where(r.c.external_id.in_(ids)))).scalars())
    return sorted(out)
