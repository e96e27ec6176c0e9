"""Store functions for repos and their links to external services (the services themselves:
``store.external_services``; the outbox: ``store.events``). The store takes and returns domain
values and owns its columns. Every function takes an ``AsyncConnection``: the caller owns the
transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.diff import Change, SeenIds, removed_ids
from repo_updater.core.domain import HostKind, Repo, SourcedRepo
from repo_updater.store.repo_lookup import stored_for_page as stored_for_page
from repo_updater.store.schema import external_service_repos, external_services, repos
from repo_updater.store.sql import insert_ignore

# --- reading for the diff ---------------------------------------------------------------------


_LIVE_HOLDERS_PG = sa.select(
    repos.c.id, sa.func.lower(repos.c.name).label("lname"), repos.c.external_id
).where(
    sa.func.lower(repos.c.name)
    == sa.any_(sa.bindparam("names", type_=postgresql.ARRAY(sa.String))),
    repos.c.deleted_at.is_(None),
)


async def live_holders(conn: AsyncConnection, names: Iterable[str]) -> dict[str, tuple[int, str]]:
    """Lower-cased store name -> (id, external id) of the live repo holding it (names are
    unique ignoring case)."""
    out: dict[str, tuple[int, str]] = {}
    lowered = sa.func.lower(repos.c.name)
    wanted = sorted({n.lower() for n in names})
    if conn.dialect.name == "postgresql" and wanted:  # one statement whatever the count
        rows = await conn.execute(_LIVE_HOLDERS_PG, {"names": wanted})
        return {r.lname: (r.id, r.external_id) for r in rows}
    for part in chunks(wanted, 500):
        rows = await conn.execute(
            sa.select(repos.c.id, lowered.label("lname"), repos.c.external_id).where(
                lowered.in_(part), repos.c.deleted_at.is_(None)
            )
        )
        for r in rows:
            out[r.lname] = (r.id, r.external_id)
    return out


async def external_ids_of(conn: AsyncConnection, repo_ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in chunks(list(repo_ids), 500):
        rows = await conn.execute(
            sa.select(repos.c.id, repos.c.external_id).where(repos.c.id.in_(part))
        )
        out.update({r.id: r.external_id for r in rows})
    return out


async def analyze(conn: AsyncConnection) -> None:
    """Refresh PostgreSQL's planner statistics of the tables the per-page lookups read.

    Without them (a table that grew a lot since it was last analyzed, autovacuum off or not
    yet run) PostgreSQL plans :func:`stored_for_page` as a scan of every row of the service
    with the external ids as a filter: each page then costs O(rows), a sync O(rows^2).
    SQLite plans these lookups on the unique index without statistics: nothing to do."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("ANALYZE repos, external_service_repos"))


async def linked_repo_ids(conn: AsyncConnection, external_service_id: int) -> list[int]:
    rows = await conn.execute(
        sa.select(external_service_repos.c.repo_id).where(
            external_service_repos.c.external_service_id == external_service_id
        )
    )
    return list(rows.scalars().all())  # one fetch, not one per row (100k ids: a third less)


def _unseen_pg() -> sa.Select[Any]:
    link, seen = external_service_repos, sa.bindparam("seen", type_=sa.LargeBinary)
    # CASE, not OR: get_bit raises on an id beyond the bitmap, and OR may evaluate both sides.
    bit = sa.case((link.c.repo_id < sa.bindparam("nbits"), sa.func.get_bit(seen, link.c.repo_id)))
    return (
        sa.select(link.c.repo_id)
        .where(link.c.external_service_id == sa.bindparam("service_id"))
        .where(sa.func.coalesce(bit, 0) == 0)
        .order_by(link.c.repo_id)
    )


_UNSEEN_PG = _unseen_pg()


async def unseen_linked_ids(
    conn: AsyncConnection, external_service_id: int, seen: SeenIds
) -> list[int]:
    """Repos linked to the service that ``seen`` does not hold, in id order. PostgreSQL tests
    the ids against the bitmap itself, so a listing that saw every linked repo reads back
    none (not all 100,000 of them to compare in Python). SQLite, in process, reads them."""
    if conn.dialect.name != "postgresql":
        return removed_ids(await linked_repo_ids(conn, external_service_id), seen)
    bits = seen.bitmap()
    params = {"service_id": external_service_id, "seen": bits, "nbits": 8 * len(bits)}
    return list((await conn.execute(_UNSEEN_PG, params)).scalars().all())


# --- writing ----------------------------------------------------------------------------------


def _columns(repo: SourcedRepo, name: str) -> dict[str, Any]:
    """The columns a listing sets, from the sourced repo and its store name."""
    return {
        "name": name,
        "external_name": repo.name,
        "url": repo.url,
        "archived": repo.archived,
        "fork": repo.fork,
        "private": repo.private,
        "description": repo.description,
    }


async def insert_repos(
    conn: AsyncConnection,
    host_kind: HostKind,
    host_url: str,
    added: Sequence[tuple[SourcedRepo, str]],
    now: datetime,
) -> dict[str, int]:
    """Insert new repos, each with its store name; returns external id -> new repo id."""
    if not added:
        return {}
    rows = [
        {
            **_columns(repo, name),
            "host_kind": str(host_kind),
            "host_url": host_url,
            "external_id": repo.external_id,
            "created_at": now,
            "updated_at": now,
        }
        for repo, name in added
    ]
    # No ``sort_by_parameter_order``: the ids are matched by external id, and asking for the
    # parameter order makes SQLAlchemy send one INSERT per row on SQLite (issue 12, item 1);
    # without it the rows go as a few multi-row ``INSERT .. VALUES .. RETURNING``.
    result = await conn.execute(repos.insert().returning(repos.c.id, repos.c.external_id), rows)
    return {r.external_id: r.id for r in result}


_UPDATE_KEYS = ("name", "external_name", "url", "archived", "fork", "private", "description")


async def update_repos(conn: AsyncConnection, changes: Sequence[Change], now: datetime) -> None:
    """Write what the host says of stored repos (modified or revived: live again)."""
    if not changes:
        return
    stmt = (
        repos.update()
        .where(repos.c.id == sa.bindparam("b_id"))
        .values(
            {
                **{k: sa.bindparam(f"b_{k}") for k in _UPDATE_KEYS},
                "updated_at": sa.bindparam("b_updated_at"),
                "deleted_at": None,
            }
        )
    )
    params = [
        {
            "b_id": c.stored.id,
            "b_updated_at": now,
            **{f"b_{k}": v for k, v in _columns(c.sourced, c.new_name).items()},
        }
        for c in changes
    ]
    await conn.execute(stmt, params)


async def link_repos(
    conn: AsyncConnection, external_service_id: int, repo_ids: Iterable[int], now: datetime
) -> None:
    values = [
        {"external_service_id": external_service_id, "repo_id": rid, "created_at": now}
        for rid in repo_ids
    ]
    if values:
        await insert_ignore(conn, external_service_repos, values)


async def unlink(
    conn: AsyncConnection, external_service_id: int, repo_ids: Sequence[int]
) -> list[int]:
    """Unlink repos from the service; returns those no other service links any more (the
    caller soft-deletes them)."""
    orphans: list[int] = []
    for part in chunks(list(repo_ids), 500):
        await conn.execute(
            external_service_repos.delete().where(
                external_service_repos.c.external_service_id == external_service_id,
                external_service_repos.c.repo_id.in_(part),
            )
        )
        still_linked = {
            r[0]
            for r in await conn.execute(
                sa.select(external_service_repos.c.repo_id).where(
                    external_service_repos.c.repo_id.in_(part)
                )
            )
        }
        orphans.extend(rid for rid in part if rid not in still_linked)
    return orphans


async def move_host(
    conn: AsyncConnection,
    external_service_id: int,
    host_kind: HostKind,
    old_url: str,
    new_url: str,
    now: datetime,
) -> list[int]:
    """Move the repos a service links on ``(host_kind, old_url)`` to ``new_url``: its code
    host's URL changed (http -> https, a new port) but the repos are the same, so each keeps
    its row, id and changesets. Left where they are: repos another live service still links
    at the old URL (it still lists them there), and repos whose key is taken at the new URL
    (an earlier version may have added them anew; the next complete sync removes the old
    row as unlisted). Returns the moved ids."""
    link, svc = external_service_repos, external_services
    other_old_url = (
        sa.select(sa.literal(1))
        .select_from(link.join(svc, svc.c.id == link.c.external_service_id))
        .where(
            link.c.repo_id == repos.c.id,
            link.c.external_service_id != external_service_id,
            svc.c.deleted_at.is_(None),
            svc.c.kind == str(host_kind),
            svc.c.url == old_url,
        )
        .exists()
    )
    taken = sa.alias(repos, "taken")
    key_taken = (
        sa.select(sa.literal(1))
        .where(
            taken.c.host_kind == str(host_kind),
            taken.c.host_url == new_url,
            taken.c.external_id == repos.c.external_id,
        )
        .exists()
    )
    linked = sa.select(link.c.repo_id).where(link.c.external_service_id == external_service_id)
    result = await conn.execute(
        repos.update()
        .where(
            repos.c.host_kind == str(host_kind),
            repos.c.host_url == old_url,
            repos.c.id.in_(linked),
            ~other_old_url,
            ~key_taken,
        )
        .values(host_url=new_url, updated_at=now)
        .returning(repos.c.id)
    )
    return sorted(r[0] for r in result)


async def set_archived_flag(
    conn: AsyncConnection, repo_id: int, archived: bool, now: datetime
) -> str | None:
    """Flip a live repo's archived flag; returns its store name, or None when it is gone or
    already in that state (nothing written)."""
    result = await conn.execute(
        repos.update()
        .where(
            repos.c.id == repo_id,
            repos.c.deleted_at.is_(None),
            repos.c.archived.is_not(archived),
        )
        .values(archived=archived, updated_at=now)
        .returning(repos.c.name)
    )
    name: str | None = result.scalar_one_or_none()
    return name


async def soft_delete(conn: AsyncConnection, repo_ids: Sequence[int], now: datetime) -> list[int]:
    """Mark live repos deleted and drop all their links; returns the ids that were live."""
    if not repo_ids:
        return []
    result = await conn.execute(
        repos.update()
        .where(repos.c.id.in_(list(repo_ids)), repos.c.deleted_at.is_(None))
        .values(deleted_at=now, updated_at=now)
        .returning(repos.c.id)
    )
    ids = [r[0] for r in result]
    if ids:
        await conn.execute(
            external_service_repos.delete().where(external_service_repos.c.repo_id.in_(ids))
        )
    return ids


# --- queries for the CLI, API and tests ---------------------------------------------------------


def _repo(r: Any) -> Repo:
    return Repo(
        id=r.id,
        name=r.name,
        host_kind=HostKind(r.host_kind),
        host_url=r.host_url,
        external_id=r.external_id,
        external_name=r.external_name,
        url=r.url,
        archived=r.archived,
        fork=r.fork,
        private=r.private,
        description=r.description,
        created_at=r.created_at,
        updated_at=r.updated_at,
        deleted_at=r.deleted_at,
    )


async def list_repos(
    conn: AsyncConnection,
    *,
    archived: bool | None = None,
    include_deleted: bool = False,
    name_contains: str | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[Repo]:
    query = sa.select(repos).where(repos.c.id > after_id).order_by(repos.c.id)
    if archived is not None:
        query = query.where(repos.c.archived.is_(archived))
    if not include_deleted:
        query = query.where(repos.c.deleted_at.is_(None))
    if name_contains:
        query = query.where(repos.c.name.contains(name_contains, autoescape=True))
    if limit is not None:
        query = query.limit(limit)
    return [_repo(r) for r in await conn.execute(query)]


async def repo_ids_by_name(conn: AsyncConnection, names: Iterable[str]) -> dict[str, int]:
    """Live repos' ids by their exact store names (unknown names are absent)."""
    out: dict[str, int] = {}
    for part in chunks(sorted(set(names)), 500):
        rows = await conn.execute(
            sa.select(repos.c.name, repos.c.id).where(
                repos.c.name.in_(part), repos.c.deleted_at.is_(None)
            )
        )
        out.update({r.name: r.id for r in rows})
    return out


async def get_repo(conn: AsyncConnection, repo_id: int) -> Repo | None:
    row = (await conn.execute(sa.select(repos).where(repos.c.id == repo_id))).first()
    return None if row is None else _repo(row)


async def get_repo_by_name(conn: AsyncConnection, name: str) -> Repo | None:
    row = (
        await conn.execute(
            sa.select(repos).where(repos.c.name == name, repos.c.deleted_at.is_(None))
        )
    ).first()
    return None if row is None else _repo(row)


async def count_rows(conn: AsyncConnection, table: sa.Table) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
