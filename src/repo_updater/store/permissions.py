"""The permission-sync queue (who can read each repo: ``store.repo_permissions``).

``permission_sync_requests`` holds each private repo's next permissions sync (one row per repo
at most; duplicates collapse): due now when something changed (the repo syncer writes it in the
same transaction as its diff), at the refresh time once synced, at the retry time after a
failure. Changes (priority 0) are claimed before refreshes (priority 1), each oldest first, by
two LIMITed selects on ``(priority, requested_at)``; on PostgreSQL with ``FOR UPDATE SKIP
LOCKED``, so concurrent workers take disjoint repos. A claim records the request's generation:
finishing it reschedules the row only if nothing re-requested it meanwhile; a request that
arrived mid-sync stays due (it is never dropped).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.domain import HostKind
from repo_updater.core.permissions import (
    REASON_REFRESH,
    RepoRef,
)
from repo_updater.store.schema import (
    UTCDateTime,
    permission_sync_requests,
    repo_permissions,
    repos,
)
from repo_updater.store.sql import dialect_insert

HostKey = tuple[HostKind, str]  # (host_kind, host_url): one code host
CHANGE, REFRESH = 0, 1  # priorities: something changed / the periodic refresh


def _b(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


# --- requests -----------------------------------------------------------------------------------


async def request_permission_syncs(
    conn: AsyncConnection, requests: Iterable[tuple[int, str]], now: datetime
) -> int:
    """Request a permissions sync of each ``(repo id, reason)``, due ``now``. A repo with a
    row already gets its generation bumped (a sync in flight does not consume the new request),
    the new reason, priority CHANGE, and stays as early as it was. Returns the rows written."""
    q = permission_sync_requests
    by_repo = dict(requests)  # one per repo: the last reason given wins
    total = 0
    for part in chunks(sorted(by_repo.items())):
        values = [
            {"repo_id": rid, "reason": why, "requested_at": now, "priority": CHANGE}
            for rid, why in part
        ]
        insert = dialect_insert(conn, q).values(values)
        upsert = insert.on_conflict_do_update(
            index_elements=[q.c.repo_id],
            set_={
                "generation": q.c.generation + 1,
                "reason": insert.excluded.reason,
                "priority": CHANGE,
                "requested_at": sa.case(
                    (q.c.requested_at < insert.excluded.requested_at, q.c.requested_at),
                    else_=insert.excluded.requested_at,
                ),
            },
        )
        total += (await conn.execute(upsert)).rowcount or 0
    return total


async def request_for_repos(
    conn: AsyncConnection, repo_ids: Iterable[int], reason: str, now: datetime
) -> int:
    return await request_permission_syncs(conn, ((rid, reason) for rid in repo_ids), now)


async def pending_permission_syncs(conn: AsyncConnection) -> list[tuple[int, str]]:
    """Every request row: (repo id, reason), by repo id (due or scheduled)."""
    q = permission_sync_requests
    rows = await conn.execute(sa.select(q.c.repo_id, q.c.reason).order_by(q.c.repo_id))
    return [(r[0], r[1]) for r in rows]


# --- claims ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedRepo:
    """A repo whose permissions sync this worker claimed."""

    repo_id: int
    name: str  # store name
    external_id: str
    external_name: str
    host_kind: HostKind
    host_url: str
    private: bool
    deleted: bool
    claimed_by: str
    failures: int  # consecutive failures before this attempt

    @property
    def host(self) -> HostKey:
        return (self.host_kind, self.host_url)

    @property
    def ref(self) -> RepoRef:
        return RepoRef(external_id=self.external_id, name=self.external_name)


def _claim_free(now: datetime) -> sa.ColumnElement[bool]:
    q = permission_sync_requests
    return sa.or_(q.c.claimed_until.is_(None), q.c.claimed_until <= now)


async def claim_permission_syncs(
    conn: AsyncConnection,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    *,
    skip_hosts: Collection[HostKey] = (),
) -> list[ClaimedRepo]:
    """Claim up to ``limit`` due repos: changes first, then refreshes, each oldest first; not
    under a live claim, not on ``skip_hosts`` (hosts backing off)."""
    if limit < 1:
        return []
    q, r = permission_sync_requests, repos
    base = (
        sa.select(
            q.c.repo_id,
            q.c.failures,
            r.c.name,
            r.c.external_id,
            r.c.external_name,
            r.c.host_kind,
            r.c.host_url,
            r.c.private,
            r.c.deleted_at,
        )
        .select_from(q.join(r, r.c.id == q.c.repo_id))
        .where(q.c.requested_at <= now, _claim_free(now))
        .with_for_update(of=q, skip_locked=True)
    )
    for host_kind, host_url in skip_hosts:
        base = base.where(
            sa.not_(sa.and_(r.c.host_kind == str(host_kind), r.c.host_url == host_url))
        )
    candidates: list[Any] = []
    for priority in (CHANGE, REFRESH):
        if len(candidates) >= limit:
            break
        stmt = (
            base.where(q.c.priority == priority)
            .order_by(q.c.requested_at, q.c.repo_id)
            .limit(limit - len(candidates))
        )
        candidates += (await conn.execute(stmt)).all()
    if not candidates:
        return []
    won = set(
        (
            await conn.execute(
                q.update()
                .where(
                    q.c.repo_id.in_([c.repo_id for c in candidates]),
                    q.c.requested_at <= now,
                    _claim_free(now),
                )
                .values(
                    claimed_by=worker_id,
                    claimed_until=now + lease,
                    claimed_generation=q.c.generation,
                )
                .returning(q.c.repo_id)
            )
        ).scalars()
    )
    return [
        ClaimedRepo(
            repo_id=c.repo_id,
            name=c.name,
            external_id=c.external_id,
            external_name=c.external_name,
            host_kind=HostKind(c.host_kind),
            host_url=c.host_url,
            private=bool(c.private),
            deleted=c.deleted_at is not None,
            claimed_by=worker_id,
            failures=c.failures,
        )
        for c in candidates
        if c.repo_id in won
    ]


async def still_claimed(conn: AsyncConnection, claimed: Sequence[ClaimedRepo]) -> set[int]:
    """The claimed repos this worker still holds (locked until the transaction ends on
    PostgreSQL): a worker whose lease ran out and was taken over writes nothing."""
    if not claimed:
        return set()
    q = permission_sync_requests
    out: set[int] = set()
    for worker in {c.claimed_by for c in claimed}:
        ids = [c.repo_id for c in claimed if c.claimed_by == worker]
        for part in chunks(ids):
            stmt = (
                sa.select(q.c.repo_id)
                .where(q.c.repo_id.in_(part), q.c.claimed_by == worker)
                .with_for_update()
            )
            out.update((await conn.execute(stmt)).scalars())
    return out


_SAME_GENERATION = permission_sync_requests.c.generation == sa.func.coalesce(
    permission_sync_requests.c.claimed_generation, -1
)
_MINE = sa.and_(
    permission_sync_requests.c.repo_id == _b("b_id"),
    permission_sync_requests.c.claimed_by == _b("b_worker"),
)
_UNCLAIMED = {"claimed_by": None, "claimed_until": None, "claimed_generation": None}


async def complete_synced(
    conn: AsyncConnection,
    done: Sequence[tuple[ClaimedRepo, datetime]],
    now: datetime,
) -> None:
    """End the claims of synced repos, each ``(claimed, next refresh time)``: the request they
    satisfied becomes the scheduled refresh; a newer request stays due as it was."""
    if not done:
        return
    q = permission_sync_requests
    await conn.execute(
        q.update()
        .where(_MINE)
        .values(
            reason=sa.case((_SAME_GENERATION, REASON_REFRESH), else_=q.c.reason),
            priority=sa.case((_SAME_GENERATION, REFRESH), else_=q.c.priority),
            requested_at=sa.case(
                (_SAME_GENERATION, _b("b_next", UTCDateTime())), else_=q.c.requested_at
            ),
            last_synced_at=now,
            failures=0,
            last_error=None,
            **_UNCLAIMED,
        ),
        [{"b_id": c.repo_id, "b_worker": c.claimed_by, "b_next": at} for c, at in done],
    )


async def complete_failed(
    conn: AsyncConnection, failed: Sequence[tuple[ClaimedRepo, str, datetime]]
) -> None:
    """End the claims of failed syncs, each ``(claimed, error, retry time)``: the request
    waits until the retry time (a newer request stays due); stored permissions are kept."""
    if not failed:
        return
    q = permission_sync_requests
    await conn.execute(
        q.update()
        .where(_MINE)
        .values(
            requested_at=sa.case(
                (_SAME_GENERATION, _b("b_retry", UTCDateTime())), else_=q.c.requested_at
            ),
            failures=q.c.failures + 1,
            last_error=_b("b_error", sa.Text),
            **_UNCLAIMED,
        ),
        [
            {"b_id": c.repo_id, "b_worker": c.claimed_by, "b_error": error[:2000], "b_retry": at}
            for c, error, at in failed
        ],
    )


async def release(
    conn: AsyncConnection, claimed: Sequence[ClaimedRepo], not_before: datetime | None
) -> None:
    """Give claims back unsynced, no failure counted: due again at ``not_before`` at the
    earliest (the host rate-limited us), or as due as they were (None: shutting down)."""
    if not claimed:
        return
    q = permission_sync_requests
    if not_before is None:
        await conn.execute(
            q.update().where(_MINE).values(**_UNCLAIMED),
            [{"b_id": c.repo_id, "b_worker": c.claimed_by} for c in claimed],
        )
        return
    not_before_param = _b("b_not_before", UTCDateTime())
    await conn.execute(
        q.update()
        .where(_MINE)
        .values(
            requested_at=sa.case(
                (q.c.requested_at < not_before_param, not_before_param),
                else_=q.c.requested_at,
            ),
            **_UNCLAIMED,
        ),
        [
            {"b_id": c.repo_id, "b_worker": c.claimed_by, "b_not_before": not_before}
            for c in claimed
        ],
    )


async def forget(conn: AsyncConnection, claimed: Sequence[ClaimedRepo]) -> None:
    """Delete the requests of claimed repos that need no sync (deleted or public)."""
    q = permission_sync_requests
    if claimed:
        await conn.execute(
            q.delete().where(_MINE),
            [{"b_id": c.repo_id, "b_worker": c.claimed_by} for c in claimed],
        )


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """A repo's permission-sync row: when it is next due, why, and how the last sync went."""

    due_at: datetime
    reason: str
    last_synced_at: datetime | None
    failures: int
    last_error: str | None


async def sync_status(conn: AsyncConnection, repo_id: int) -> SyncStatus | None:
    q = permission_sync_requests
    row = (await conn.execute(sa.select(q).where(q.c.repo_id == repo_id))).first()
    if row is None:
        return None
    return SyncStatus(
        row.requested_at, row.reason, row.last_synced_at, row.failures, row.last_error
    )


@dataclass(frozen=True, slots=True)
class PermissionCounts:
    due: int  # requests due now: the queue the worker drains
    scheduled: int  # every row (private repos with a sync due now or later)
    failing: int  # rows whose last sync failed
    never_synced: int
    grants: int
    oldest_sync: datetime | None  # every private repo was synced since then (if none never was)


async def permission_counts(conn: AsyncConnection, now: datetime) -> PermissionCounts:
    q = permission_sync_requests
    row = (
        await conn.execute(
            sa.select(
                sa.func.count().filter(q.c.requested_at <= now),
                sa.func.count(),
                sa.func.count().filter(q.c.failures > 0),
                sa.func.count().filter(q.c.last_synced_at.is_(None)),
                sa.func.min(q.c.last_synced_at, type_=UTCDateTime()),
            )
        )
    ).one()
    grants = await conn.execute(sa.select(sa.func.count()).select_from(repo_permissions))
    return PermissionCounts(
        due=row[0],
        scheduled=row[1],
        failing=row[2],
        never_synced=row[3],
        grants=int(grants.scalar_one()),
        oldest_sync=row[4] if row[3] == 0 else None,
    )
