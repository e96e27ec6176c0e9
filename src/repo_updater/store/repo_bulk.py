"""The repo syncer's write of a group of pages that only add repos (a first sync, issue 12
item 3): one statement per table for the whole group, in the caller's transaction.

On PostgreSQL each statement is built once and takes its rows as arrays, one parameter per
column, read back by ``unnest``: the statement text is the same for every group (one prepared
statement, no per-row parameters to bind). On SQLite the portable multi-row inserts of
``store.repos`` and ``store.events`` do the same job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import HostKind, RepoEvent, SourcedRepo
from repo_updater.store import events as event_store
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import UTCDateTime, events, external_service_repos, repos

_REPO_ARRAYS = (
    ("name", sa.String),
    ("external_name", sa.String),
    ("url", sa.String),
    ("archived", sa.Boolean),
    ("fork", sa.Boolean),
    ("private", sa.Boolean),
    ("description", sa.Text),
    ("external_id", sa.String),
)


def _array(name: str, type_: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=postgresql.ARRAY(type_))


def _insert_repos_pg() -> Any:
    arrays = (_array(f"a_{n}", t) for n, t in _REPO_ARRAYS)
    rows = sa.func.unnest(*arrays).table_valued(*(n for n, _ in _REPO_ARRAYS)).render_derived()
    now = sa.bindparam("now", type_=UTCDateTime)
    select = sa.select(
        *(rows.c[n] for n, _ in _REPO_ARRAYS),
        sa.bindparam("host_kind", type_=sa.String),
        sa.bindparam("host_url", type_=sa.String),
        now,
        now,
    )
    columns = [n for n, _ in _REPO_ARRAYS] + ["host_kind", "host_url", "created_at", "updated_at"]
    return repos.insert().from_select(columns, select).returning(repos.c.id, repos.c.external_id)


def _link_pg() -> Any:
    ids = sa.func.unnest(_array("repo_ids", sa.Integer)).table_valued("repo_id").render_derived()
    select = sa.select(
        sa.bindparam("service_id", type_=sa.Integer),
        ids.c.repo_id,
        sa.bindparam("now", type_=UTCDateTime),
    )
    link = external_service_repos
    return (
        postgresql.insert(link)
        .from_select(["external_service_id", "repo_id", "created_at"], select)
        .on_conflict_do_nothing()
    )


def _events_pg() -> Any:
    rows = (
        sa.func.unnest(
            _array("kinds", sa.String), _array("repo_ids", sa.Integer), _array("payloads", sa.Text)
        )
        .table_valued("kind", "repo_id", "payload")
        .render_derived()
    )
    select = sa.select(
        rows.c.kind,
        rows.c.repo_id,
        sa.bindparam("service_id", type_=sa.Integer),
        sa.cast(rows.c.payload, events.c.payload.type),
        sa.bindparam("now", type_=UTCDateTime),
    )
    columns = ["kind", "repo_id", "external_service_id", "payload", "created_at"]
    return events.insert().from_select(columns, select)


_INSERT_REPOS_PG = _insert_repos_pg()
_LINK_PG = _link_pg()
_EVENTS_PG = _events_pg()


async def insert_repos(
    conn: AsyncConnection,
    host_kind: HostKind,
    host_url: str,
    added: Sequence[tuple[SourcedRepo, str]],
    now: datetime,
) -> dict[str, int]:
    """Insert new repos, each with its store name, in one statement (PostgreSQL); returns
    external id -> new repo id."""
    if not added:
        return {}
    if conn.dialect.name != "postgresql":
        return await repo_store.insert_repos(conn, host_kind, host_url, added, now)
    params: dict[str, Any] = {
        "a_name": [name for _, name in added],
        "a_external_name": [r.name for r, _ in added],
        "a_url": [r.url for r, _ in added],
        "a_archived": [r.archived for r, _ in added],
        "a_fork": [r.fork for r, _ in added],
        "a_private": [r.private for r, _ in added],
        "a_description": [r.description for r, _ in added],
        "a_external_id": [r.external_id for r, _ in added],
        "host_kind": str(host_kind),
        "host_url": host_url,
        "now": now,
    }
    result = await conn.execute(_INSERT_REPOS_PG, params)
    return {r.external_id: r.id for r in result}


async def link_repos(
    conn: AsyncConnection, external_service_id: int, repo_ids: Sequence[int], now: datetime
) -> None:
    """Link repos to the service in one statement (PostgreSQL); links already there stay."""
    if not repo_ids:
        return
    if conn.dialect.name != "postgresql":
        await repo_store.link_repos(conn, external_service_id, repo_ids, now)
        return
    params = {"repo_ids": list(repo_ids), "service_id": external_service_id, "now": now}
    await conn.execute(_LINK_PG, params)


async def add_events(
    conn: AsyncConnection,
    external_service_id: int | None,
    rows: Sequence[RepoEvent],
    now: datetime,
) -> None:
    """Append outbox events in one statement (PostgreSQL), in the order given."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        await event_store.add_events(conn, external_service_id, rows, now)
        return
    params = {
        "kinds": [str(e.kind) for e in rows],
        "repo_ids": [e.repo_id for e in rows],
        "payloads": [json.dumps(dict(e.payload)) for e in rows],
        "service_id": external_service_id,
        "now": now,
    }
    await conn.execute(_EVENTS_PG, params)
