"""A code host that says who can read its repos from memory (a real ``PermissionSource``, not a
mock), and helpers that write the repo rows the permissions syncer works on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.domain import HostKind
from repo_updater.core.errors import RateLimited
from repo_updater.core.permissions import Access, AccountPermission, RepoRef
from repo_updater.store import permissions as permission_store
from repo_updater.store.schema import repo_permissions, repos
from tests.support.fakes import T0

LEVELS = {"read": Access.READ, "write": Access.WRITE, "admin": Access.ADMIN}


def grant(login: str, level: str = "read") -> AccountPermission:
    return AccountPermission(login, level, LEVELS[level], account_id=f"id-{login.lower()}")


@dataclass
class FakePermissionHost:
    """Grants by host-relative repo name. Switches: ``rate_limit_for`` (RateLimited on the next
    loads), ``fail`` (that error for the named repos), ``gate`` (holds loads until set;
    ``loading`` is set when one starts)."""

    kind: HostKind = HostKind.GITHUB
    host_url: str = "https://github.example"
    grants: dict[str, list[AccountPermission]] = field(default_factory=dict)
    rate_limit_for: float | None = None
    fail: dict[str, Exception] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    loading: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[HostKind, str]:
        return (self.kind, self.host_url)

    async def load_permissions(self, repo: RepoRef) -> list[AccountPermission]:
        self.calls.append(repo.name)
        self.loading.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.rate_limit_for is not None:
            raise RateLimited("API rate limit exceeded", retry_after=self.rate_limit_for)
        if repo.name in self.fail:
            raise self.fail[repo.name]
        return list(self.grants.get(repo.name, []))


async def add_repo(
    conn: AsyncConnection,
    external_name: str,
    *,
    host: FakePermissionHost | None = None,
    private: bool = True,
    request: bool = True,
    now: datetime = T0,
) -> int:
    """A repos row (as the repo syncer would write it) and, for a private one, its request."""
    src = host or FakePermissionHost()
    result = await conn.execute(
        repos.insert()
        .values(
            name=f"{src.host_url.split('://')[1]}/{external_name}",
            host_kind=str(src.kind),
            host_url=src.host_url,
            external_id=f"id-{external_name}",
            external_name=external_name,
            url=f"{src.host_url}/{external_name}",
            private=private,
            created_at=now,
            updated_at=now,
        )
        .returning(repos.c.id)
    )
    repo_id = int(result.scalar_one())
    if request:
        await permission_store.request_for_repos(conn, [repo_id], "added", now)
    return repo_id


async def stored(engine: AsyncEngine, repo_id: int) -> dict[str, str]:
    """login -> permission of a repo's stored grants."""
    p = repo_permissions
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(p.c.login, p.c.permission).where(p.c.repo_id == repo_id)
        )
        return {r[0]: r[1] for r in rows}
