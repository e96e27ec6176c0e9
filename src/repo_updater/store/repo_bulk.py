"""The repo syncer's write of a group of pages that only add repos (a first sync, issue 12
item 3): one statement per table for the whole group, in the caller's transaction.

Each statement takes all its rows as a few parameters, whatever their number: on PostgreSQL
arrays, one per column, read back by ``unnest``; on SQLite one JSON array of rows, read back by
``json_each``. The statement text is the same for every group (one prepared statement) and
nothing is bound row by row: with an executemany, SQLAlchemy's per-row parameter handling
(about 4 bound values a row, each through its type's processor) took a third of a 100,000-repo
SQLite first sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import HostKind, RepoEvent, SourcedRepo
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


def _insert_repos(values: Iterable[Any]) -> Any:
    """``INSERT INTO repos .. SELECT`` of the ``_REPO_ARRAYS`` columns read from ``values``, the
    host and the time given once, ``RETURNING`` each new id with its external id."""
    now = sa.bindparam("now", type_=UTCDateTime)
    host_kind = sa.bindparam("host_kind", type_=sa.String)
    select = sa.select(*values, host_kind, sa.bindparam("host_url", type_=sa.String), now, now)
    columns = [n for n, _ in _REPO_ARRAYS] + ["host_kind", "host_url", "created_at", "updated_at"]
    return repos.insert().from_select(columns, select).returning(repos.c.id, repos.c.external_id)


def _insert_repos_pg() -> Any:
    arrays = (_array(f"a_{n}", t) for n, t in _REPO_ARRAYS)
    rows = sa.func.unnest(*arrays).table_valued(*(n for n, _ in _REPO_ARRAYS)).render_derived()
    return _insert_repos(rows.c[n] for n, _ in _REPO_ARRAYS)


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


def _json_rows() -> Any:
    """``json_each(:rows)``: each value one row, a JSON array read with ``->>``."""
    return sa.func.json_each(sa.bindparam("rows", type_=sa.String)).table_valued("value")


def _field(rows: Any, i: int) -> Any:
    return rows.c.value.op("->>")(sa.literal_column(f"'$[{i}]'"))


def _insert_repos_sqlite() -> Any:
    rows = _json_rows()
    return _insert_repos(_field(rows, i) for i in range(len(_REPO_ARRAYS)))


def _link_sqlite() -> Any:
    rows = _json_rows()
    select = sa.select(
        sa.bindparam("service_id", type_=sa.Integer),
        rows.c.value,
        sa.bindparam("now", type_=UTCDateTime),
    ).where(sa.true())  # SQLite: "INSERT .. SELECT .. ON CONFLICT" needs a WHERE to parse
    return (
        sqlite.insert(external_service_repos)
        .from_select(["external_service_id", "repo_id", "created_at"], select)
        .on_conflict_do_nothing()
    )


def _events_sqlite() -> Any:
    rows = _json_rows()
    select = sa.select(
        _field(rows, 0),
        _field(rows, 1),
        sa.bindparam("service_id", type_=sa.Integer),
        rows.c.value.op("->")(sa.literal_column("'$[2]'")),  # the payload, as JSON text
        sa.bindparam("now", type_=UTCDateTime),
    )
    columns = ["kind", "repo_id", "external_service_id", "payload", "created_at"]
    return events.insert().from_select(columns, select)


def _sqlite_json(rows: list[Any]) -> str:
    """The rows as one JSON text for ``json_each`` (no text holds a NUL, at which SQLite's JSON
    functions would end it: ``SourcedRepo`` drops them)."""
    return orjson.dumps(rows).decode()


_INSERT_REPOS_SQLITE = _insert_repos_sqlite()
_LINK_SQLITE = _link_sqlite()
_EVENTS_SQLITE = _events_sqlite()


def _repo_rows(added: Sequence[tuple[SourcedRepo, str]]) -> list[list[Any]]:
    """Each new repo's values, in the order of ``_REPO_ARRAYS``."""
    return [
        [name, r.name, r.url, r.archived, r.fork, r.private, r.description, r.external_id]
        for r, name in added
    ]


async def insert_repos(
    conn: AsyncConnection,
    host_kind: HostKind,
    host_url: str,
    added: Sequence[tuple[SourcedRepo, str]],
    now: datetime,
) -> dict[str, int]:
    """Insert new repos, each with its store name, in one statement; returns external id ->
    new repo id."""
    if not added:
        return {}
    rows = _repo_rows(added)
    params: dict[str, Any] = {"host_kind": str(host_kind), "host_url": host_url, "now": now}
    if conn.dialect.name == "sqlite":
        params["rows"] = _sqlite_json(rows)
        result = await conn.execute(_INSERT_REPOS_SQLITE, params)
    else:
        columns = zip(*rows, strict=True)
        params.update(
            {f"a_{n}": list(col) for (n, _), col in zip(_REPO_ARRAYS, columns, strict=True)}
        )
        result = await conn.execute(_INSERT_REPOS_PG, params)
    return {r.external_id: r.id for r in result}


async def link_repos(
    conn: AsyncConnection, external_service_id: int, repo_ids: Sequence[int], now: datetime
) -> None:
    """Link repos to the service in one statement; links already there stay."""
    if not repo_ids:
        return
    params: dict[str, Any] = {"service_id": external_service_id, "now": now}
    if conn.dialect.name == "sqlite":
        params["rows"] = _sqlite_json(list(repo_ids))
        await conn.execute(_LINK_SQLITE, params)
    else:
        params["repo_ids"] = list(repo_ids)
        await conn.execute(_LINK_PG, params)


async def add_events(
    conn: AsyncConnection,
    external_service_id: int | None,
    rows: Sequence[RepoEvent],
    now: datetime,
) -> None:
    """Append outbox events in one statement, in the order given."""
    if not rows:
        return
    params: dict[str, Any] = {"service_id": external_service_id, "now": now}
    if conn.dialect.name == "sqlite":
        params["rows"] = _sqlite_json([[str(e.kind), e.repo_id, dict(e.payload)] for e in rows])
        await conn.execute(_EVENTS_SQLITE, params)
    else:
        params["kinds"] = [str(e.kind) for e in rows]
        params["repo_ids"] = [e.repo_id for e in rows]
        params["payloads"] = [json.dumps(dict(e.payload)) for e in rows]
        await conn.execute(_EVENTS_PG, params)
