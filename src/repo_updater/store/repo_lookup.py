"""The repo syncer's per-page read: the stored rows of one page's external ids.

It runs once per listed page (1,000 times for 100,000 repos), so its statement is built once
per dialect and takes the ids as ONE parameter: a PostgreSQL array (``= ANY(:ids)``) or, on
SQLite, a JSON array read by ``json_each``. The statement text is then the same for every page
(no IN-list expansion, one compiled-cache entry), and the lookup stays an index walk of the
unique (host_kind, host_url, external_id) key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.diff import StoredRepo
from repo_updater.core.domain import HostKind
from repo_updater.store.schema import external_service_repos, repos


def _lookup(dialect: str) -> sa.Select[Any]:
    link = external_service_repos
    ids: sa.ColumnElement[bool]
    if dialect == "postgresql":
        param = sa.bindparam("ids", type_=postgresql.ARRAY(sa.String))
        ids = repos.c.external_id == sa.any_(param)
    else:
        each = sa.func.json_each(sa.bindparam("ids", type_=sa.String)).table_valued("value")
        ids = repos.c.external_id.in_(sa.select(each.c.value))
    return (
        sa.select(
            repos.c.id,
            repos.c.name,
            repos.c.external_id,
            repos.c.external_name,
            repos.c.url,
            repos.c.archived,
            repos.c.fork,
            repos.c.private,
            repos.c.description,
            repos.c.deleted_at.is_not(None).label("deleted"),
            link.c.repo_id.is_not(None).label("linked"),
        )
        .select_from(
            repos.outerjoin(
                link,
                sa.and_(
                    link.c.repo_id == repos.c.id,
                    link.c.external_service_id == sa.bindparam("service_id"),
                ),
            )
        )
        .where(
            repos.c.host_kind == sa.bindparam("host_kind"),
            repos.c.host_url == sa.bindparam("host_url"),
            ids,
        )
    )


_STATEMENTS = {name: _lookup(name) for name in ("postgresql", "sqlite")}


async def stored_for_page(
    conn: AsyncConnection,
    *,
    host_kind: HostKind,
    host_url: str,
    external_service_id: int,
    external_ids: Sequence[str],
) -> dict[str, StoredRepo]:
    """Stored rows (live or deleted) with these external ids, and whether each is linked to
    the service being synced."""
    if not external_ids:
        return {}
    dialect = conn.dialect.name
    ids: Any = list(external_ids) if dialect == "postgresql" else json.dumps(list(external_ids))
    params = {
        "ids": ids,
        "host_kind": str(host_kind),
        "host_url": host_url,
        "service_id": external_service_id,
    }
    result = await conn.execute(_STATEMENTS[dialect], params)
    # The columns are StoredRepo's, in its order and types (booleans come back as such from
    # both dialects), so each row becomes one without a per-field conversion.
    make = StoredRepo._make
    return {row[2]: make(row) for row in result.all()}  # all(): one fetch, not one per row
