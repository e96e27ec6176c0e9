"""Write budgets per code host (``host_write_budgets``): the token buckets of its
content-creation limits and the end of a pause a rate limit asked for, in the database so that
every worker process shares them (the arithmetic is ``core.pacing``).

Taking a token starts with an upsert of the host's row, which takes the row's write lock
(PostgreSQL) or the database's (SQLite) before the buckets are read: two workers cannot both
spend the last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import HostKind
from repo_updater.core.pacing import Bucket, WriteLimit, take
from repo_updater.store.schema import host_write_budgets
from repo_updater.store.sql import dialect_insert

HostKey = tuple[HostKind, str]


@dataclass(frozen=True, slots=True)
class BudgetView:
    host_kind: HostKind
    host_url: str
    buckets: dict[int, Bucket]  # by window seconds, as last written
    paused_until: datetime | None


def _where(host: HostKey) -> sa.ColumnElement[bool]:
    t = host_write_budgets
    return sa.and_(t.c.host_kind == str(host[0]), t.c.host_url == host[1])


async def _lock_row(conn: AsyncConnection, host: HostKey, now: datetime) -> sa.Row[Any]:
    """The host's row, created if missing, locked for the rest of the transaction."""
    t = host_write_budgets
    insert = dialect_insert(conn, t).values(
        host_kind=str(host[0]), host_url=host[1], buckets={}, updated_at=now
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[t.c.host_kind, t.c.host_url], set_={"updated_at": now}
    ).returning(t.c.buckets, t.c.paused_until)
    return (await conn.execute(upsert)).one()


def _bucket(raw: Any) -> Bucket | None:
    try:
        tokens, at = raw
        return Bucket(float(tokens), datetime.fromisoformat(str(at)))
    except (TypeError, ValueError):
        return None  # unreadable (or from an older format): start full


async def take_tokens(
    conn: AsyncConnection,
    host: HostKey,
    limits: Sequence[WriteLimit],
    now: datetime,
    count: int = 1,
) -> tuple[int, float]:
    """Take up to ``count`` write tokens of ``host``: ``(taken, 0.0)``, or ``(0, seconds to
    wait)`` when the host is paused or a bucket is empty. Commit soon: the host's row stays
    locked until the transaction ends."""
    row = await _lock_row(conn, host, now)
    stored = row.buckets if isinstance(row.buckets, dict) else {}
    current = [_bucket(stored.get(str(limit.window_seconds))) for limit in limits]
    decision = take(limits, current, now, paused_until=row.paused_until, count=count)
    if decision.granted:
        buckets = {
            str(limit.window_seconds): [bucket.tokens, bucket.refilled_at.isoformat()]
            for limit, bucket in zip(limits, decision.buckets, strict=True)
        }
        await conn.execute(host_write_budgets.update().where(_where(host)).values(buckets=buckets))
    return decision.granted_count, decision.wait_seconds


async def pause_host(conn: AsyncConnection, host: HostKey, until: datetime, now: datetime) -> None:
    """No writes to ``host`` before ``until`` (a ``Retry-After``), from any worker; a longer
    pause already recorded stands."""
    await _lock_row(conn, host, now)
    t = host_write_budgets
    await conn.execute(
        t.update()
        .where(_where(host), sa.or_(t.c.paused_until.is_(None), t.c.paused_until < until))
        .values(paused_until=until)
    )


async def list_budgets(conn: AsyncConnection) -> list[BudgetView]:
    t = host_write_budgets
    rows = await conn.execute(sa.select(t).order_by(t.c.host_kind, t.c.host_url))
    out = []
    for row in rows:
        buckets = row.buckets if isinstance(row.buckets, dict) else {}
        parsed = {}
        for window, raw in buckets.items():
            bucket = _bucket(raw)
            if bucket is not None and str(window).isdigit():
                parsed[int(window)] = bucket
        out.append(BudgetView(HostKind(row.host_kind), row.host_url, parsed, row.paused_until))
    return out
