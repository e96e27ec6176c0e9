"""The per-service repos version (``external_services.repos_version``, issue 12 item 4).

Every transaction that changes what the repo syncer reads for a service (a row of a repo the
service links, or its links) bumps that service's version once, in one ordered statement at
the end: :class:`Touched` collects the services while the transaction writes (``note_repos``
before a repo loses its links), :meth:`Touched.bump` bumps them. The repo syncer remembers the
pages it found unchanged under a version, and skips their store read while the version did
not move (``service_layer.page_memo``). Writers: the repo syncer (pages, removals, retiring a
service, a moved code host) and ``repo_changes.set_archived`` (a flip learned without a
listing: a refused write, a webhook).
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.store.schema import external_service_repos, external_services


async def services_of(conn: AsyncConnection, repo_ids: Collection[int]) -> set[int]:
    """The services that link any of these repos."""
    out: set[int] = set()
    link = external_service_repos
    for part in chunks(sorted(set(repo_ids)), 500):
        rows = await conn.execute(
            sa.select(link.c.external_service_id).distinct().where(link.c.repo_id.in_(part))
        )
        out.update(r[0] for r in rows)
    return out


async def current(conn: AsyncConnection, external_service_id: int) -> int:
    es = external_services
    row = await conn.execute(sa.select(es.c.repos_version).where(es.c.id == external_service_id))
    return int(row.scalar_one_or_none() or 0)


class Touched:
    """The services whose repos version a transaction bumps (once each, at the end)."""

    __slots__ = ("cleared", "services")

    def __init__(self, *services: int) -> None:
        self.services: set[int] = set(services)
        self.cleared = False  # the writer's own note: repos beyond its pages changed

    async def note_repos(self, conn: AsyncConnection, repo_ids: Collection[int]) -> None:
        """Note the services linking these repos (call before the write drops their links)."""
        if repo_ids:
            self.services |= await services_of(conn, repo_ids)

    async def bump(self, conn: AsyncConnection) -> dict[int, int]:
        """Bump each noted service's version by one; returns the new versions. The rows are
        locked in id order (PostgreSQL), so concurrent writers cannot deadlock on them."""
        if not self.services:
            return {}
        es = external_services
        ids = sorted(self.services)
        if conn.dialect.name == "postgresql":
            locked = sa.select(es.c.id).where(es.c.id.in_(ids)).order_by(es.c.id).with_for_update()
            await conn.execute(locked)
        result = await conn.execute(
            es.update()
            .where(es.c.id.in_(ids))
            .values(repos_version=es.c.repos_version + 1)
            .returning(es.c.id, es.c.repos_version)
        )
        return {int(r.id): int(r.repos_version) for r in result}
