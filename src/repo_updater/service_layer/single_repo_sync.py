"""A user's single-repo sync (``repo-updater repos sync NAME``, ``POST /api/repos/{id}/sync``):
ask the host for that one repository now, through the same path a webhook takes
(``RepoSyncer.sync_one``: the same diff, the same transaction as a full sync)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core.domain import Repo
from repo_updater.core.ports import RepoSource, SingleRepoSource
from repo_updater.service_layer.repo_syncer import RepoSyncer, SyncResult
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import external_service_repos, external_services


class NoSuchRepo(LookupError):
    """No live repo by that id or name, or no service configured here lists it."""


@dataclass(frozen=True, slots=True)
class SingleSync:
    before: Repo
    after: Repo | None  # None: removed (gone from the host or from the selection)
    result: SyncResult


async def sync_single_repo(
    engine: AsyncEngine,
    syncer: RepoSyncer,
    services: Sequence[ServiceConfig],
    sources: Mapping[str, RepoSource],
    *,
    repo_id: int | None = None,
    name: str | None = None,
    via: str,
) -> SingleSync:
    """Sync one stored repo (by id or store name) from the first configured service that
    links it. Raises ``NoSuchRepo``, or the source's ``SourceError``."""
    by_name = {s.name: s for s in services}
    async with engine.connect() as conn:
        repo = await (repo_store.get_repo(conn, repo_id) if repo_id is not None
                      else repo_store.get_repo_by_name(conn, name or ""))  # fmt: skip
        if repo is None or repo.deleted_at is not None:
            raise NoSuchRepo("no live repository by that " + ("id" if repo_id else "name"))
        link, es = external_service_repos, external_services
        rows = await conn.execute(
            sa.select(es.c.id, es.c.name)
            .select_from(link.join(es, es.c.id == link.c.external_service_id))
            .where(link.c.repo_id == repo.id, es.c.deleted_at.is_(None))
            .order_by(es.c.id)
        )
        linked = [(r.id, r.name) for r in rows if r.name in by_name and r.name in sources]
    if not linked:
        raise NoSuchRepo(f"no external service configured here lists {repo.name}")
    svc_id, svc_name = linked[0]
    source = sources[svc_name]
    if not isinstance(source, SingleRepoSource):
        raise NoSuchRepo(f"{svc_name}'s source cannot fetch one repository")
    fetched = await source.get_repo(repo.external_id, repo.external_name)
    result = await syncer.sync_one(
        by_name[svc_name], svc_id, source, fetched, external_id=repo.external_id, via=via
    )
    async with engine.connect() as conn:
        after = await repo_store.get_repo(conn, repo.id)
    return SingleSync(repo, None if after is None or after.deleted_at else after, result)
