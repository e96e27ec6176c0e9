"""Who can read each private repo (``repo_permissions``): written as diffs
(``core.permissions.diff_permissions``), so a re-sync that finds what is stored writes nothing;
dropped with the repo's sync request when it is made public; read by the API and the CLI. The
sync queue itself is ``store.permissions``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.permissions import Access, AccountPermission, PermissionDiff
from repo_updater.store.permissions import SyncStatus, sync_status
from repo_updater.store.schema import (
    external_service_repos,
    permission_sync_requests,
    repo_permissions,
    repos,
)


def _b(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


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
    columns = (p.c.repo_id, p.c.login, p.c.permission, p.c.access, p.c.account_id)
    for part in chunks(sorted(out)):
        rows = await conn.execute(sa.select(*columns).where(p.c.repo_id.in_(part)))
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


async def analyze(conn: AsyncConnection) -> None:
    """Refresh PostgreSQL's planner statistics of the grants and the queue. A table that grew
    a lot since it was last analyzed (autovacuum off or not yet run) is planned as if it were
    small: the per-chunk lookup of stored grants becomes a scan of every grant (measured: 100
    ms per 25 repos at 200,000 grants), a full sync O(grants^2). SQLite plans these lookups on
    the primary key without statistics."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("ANALYZE repo_permissions, permission_sync_requests"))
