"""Permission-sync requests and who can read each private repo.

``permission_sync_requests`` holds each private repo's next permissions sync (one row per repo
at most; duplicates collapse): due now when something changed (the repo syncer writes it in the
same transaction as its diff), at the refresh time once synced, at the retry time after a
failure. Changes (priority 0) are claimed before refreshes (priority 1), each oldest first, by
two LIMITed selects on ``(priority, requested_at)``; on PostgreSQL with ``FOR UPDATE SKIP
LOCKED``, so concurrent workers take disjoint repos. A claim records the request's generation:
finishing it reschedules the row only if nothing re-requested it meanwhile; a request that
arrived mid-sync stays due (it is never dropped).

``repo_permissions`` is written as diffs (``core.permissions.diff_permissions``): a re-sync
that finds what is stored writes nothing there.
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
    Access,
    AccountPermission,
    PermissionDiff,
    RepoRef,
)
from repo_updater.store.schema import (
    UTCDateTime,
    external_service_repos,
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
    conn: AsyncConnection, claimed: Sequence[ClaimedRepo], not_before: datetime
) -> None:
    """Give claims back unsynced (the host rate-limited us): due again at ``not_before`` at
    the earliest, no failure counted."""
    if not claimed:
        return
    q = permission_sync_requests
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


# --- grants -------------------------------------------------------------------------------------


def _grant(row: Any) -> AccountPermission:
    return AccountPermission(
        login=row.login,
        permission=row.permission,
        access=Access(row.access),
        account_id=row.account_id,
    )


async def stored_permissions(
    conn: AsyncConnection, repo_ids: Collection[int]
) -> dict[int, list[AccountPermission]]:
    """The stored grants of these repos (every id present, maybe with an empty list)."""
    p = repo_permissions
    out: dict[int, list[AccountPermission]] = {rid: [] for rid in repo_ids}
    for part in chunks(sorted(out)):
        rows = await conn.execute(sa.select(p).where(p.c.repo_id.in_(part)))
        for row in rows:
            out[row.repo_id].append(_grant(row))
    return out


async def write_diffs(
    conn: AsyncConnection, diffs: Sequence[tuple[int, PermissionDiff]], now: datetime
) -> int:
    """Write each repo's diff; returns the rows inserted, updated and deleted."""
    p = repo_permissions
    inserts = [
        {"repo_id": rid, "account_key": g.key, "login": g.login, "account_id": g.account_id,
         "permission": g.permission, "access": g.access.value, "granted_at": now,
         "updated_at": now}
        for rid, d in diffs
        for g in d.granted
    ]  # fmt: skip
    updates = [
        {"b_repo": rid, "b_key": new.key, "b_login": new.login, "b_account": new.account_id,
         "b_permission": new.permission, "b_access": new.access.value}
        for rid, d in diffs
        for _, new in d.changed
    ]  # fmt: skip
    deletes = [{"b_repo": rid, "b_key": g.key} for rid, d in diffs for g in d.revoked]
    for part in chunks(inserts):
        await conn.execute(p.insert(), list(part))
    this_row = sa.and_(p.c.repo_id == _b("b_repo"), p.c.account_key == _b("b_key"))
    if updates:
        await conn.execute(
            p.update()
            .where(this_row)
            .values(
                login=_b("b_login", sa.String),
                account_id=_b("b_account", sa.String),
                permission=_b("b_permission", sa.String),
                access=_b("b_access", sa.String),
                updated_at=now,
            ),
            updates,
        )
    if deletes:
        await conn.execute(p.delete().where(this_row), deletes)
    return len(inserts) + len(updates) + len(deletes)


async def drop_permissions(
    conn: AsyncConnection, repo_ids: Collection[int]
) -> dict[int, list[AccountPermission]]:
    """Delete every grant and the sync request of these repos (made public: anyone can read
    them); returns the grants deleted, by repo."""
    if not repo_ids:
        return {}
    stored = await stored_permissions(conn, repo_ids)
    p, q = repo_permissions, permission_sync_requests
    for part in chunks(sorted(repo_ids)):
        await conn.execute(p.delete().where(p.c.repo_id.in_(part)))
        await conn.execute(q.delete().where(q.c.repo_id.in_(part)))
    return {rid: grants for rid, grants in stored.items() if grants}


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """A stored grant, for the API and the CLI."""

    login: str
    permission: str
    access: str
    account_id: str
    granted_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """A repo's permission-sync row: when it is next due, why, and how the last sync went."""

    due_at: datetime
    reason: str
    last_synced_at: datetime | None
    failures: int
    last_error: str | None


async def permissions_of(
    conn: AsyncConnection, repo_id: int, *, after: str | None = None, limit: int | None = None
) -> list[Grant]:
    """A repo's grants by login (case-insensitive order); ``after`` a login: the next page."""
    p = repo_permissions
    query = sa.select(p).where(p.c.repo_id == repo_id).order_by(p.c.account_key)
    if after is not None:
        query = query.where(p.c.account_key > after.lower())
    if limit is not None:
        query = query.limit(limit)
    return [
        Grant(r.login, r.permission, r.access, r.account_id, r.granted_at, r.updated_at)
        for r in await conn.execute(query)
    ]


async def sync_status(conn: AsyncConnection, repo_id: int) -> SyncStatus | None:
    q = permission_sync_requests
    row = (await conn.execute(sa.select(q).where(q.c.repo_id == repo_id))).first()
    if row is None:
        return None
    return SyncStatus(
        row.requested_at, row.reason, row.last_synced_at, row.failures, row.last_error
    )


@dataclass(frozen=True, slots=True)
class ReadableRepo:
    """A repo an account can read, with its grant."""

    id: int
    name: str
    permission: str
    access: str


async def repos_readable_by(
    conn: AsyncConnection, login: str, external_service_id: int
) -> list[ReadableRepo]:
    """The live private repos of a service that ``login`` can read (by name)."""
    p, r, link = repo_permissions, repos, external_service_repos
    query = (
        sa.select(r.c.id, r.c.name, p.c.permission, p.c.access)
        .select_from(
            p.join(r, r.c.id == p.c.repo_id).join(
                link,
                sa.and_(
                    link.c.repo_id == r.c.id, link.c.external_service_id == external_service_id
                ),
            )
        )
        .where(p.c.account_key == login.lower(), r.c.deleted_at.is_(None))
        .order_by(r.c.name)
    )
    return [
        ReadableRepo(row.id, row.name, row.permission, row.access)
        for row in await conn.execute(query)
    ]


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


@dataclass(frozen=True, slots=True)
class RepoAccess:
    """Who can read one repo, for the API and the CLI: a public repo has no grants (anyone can
    read it); a private one has the grants of its last permissions sync and that sync's
    status (``None``: no sync requested yet)."""

    repo_id: int
    name: str
    private: bool
    status: SyncStatus | None
    permissions: list[Grant]


async def repo_access(
    conn: AsyncConnection,
    *,
    repo_id: int | None = None,
    name: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> RepoAccess | None:
    """A live repo by id or store name (exact, else ignoring case) and who can read it; None
    when there is no such live repo."""
    r = repos
    query = sa.select(r.c.id, r.c.name, r.c.private).where(r.c.deleted_at.is_(None))
    if repo_id is not None:
        query = query.where(r.c.id == repo_id)
    elif name is not None:
        query = query.where(sa.func.lower(r.c.name) == name.lower())
    else:
        raise ValueError("repo_access needs repo_id or name")
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    status = await sync_status(conn, row.id)
    grants = await permissions_of(conn, row.id, after=after, limit=limit) if row.private else []
    return RepoAccess(row.id, row.name, bool(row.private), status, grants)
