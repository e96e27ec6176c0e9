"""Hand-written fakes for changeset tests: a code host that serves pull requests from memory
(a real ``RepoSource``, not a mock), a settable clock, and helpers that write store rows."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import (
    ChangesetRef,
    ChangesetSnapshot,
    HostKind,
    HostPullState,
    SourcedRepo,
)
from repo_updater.core.errors import RateLimited
from repo_updater.core.ports import RequestCounter
from repo_updater.store.schema import repos

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class TickingClock:
    """A clock that moves one second forward each time it is read (so that every write of a
    test has its own time)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class FakeSource:
    """A code host keeping pull requests in a dict keyed by (host-relative repo name, number).

    ``load_changesets`` answers like a batching host: one "request" per ``page_size`` refs,
    DELETED for pull requests it does not know. Switches: ``rate_limit_for`` raises RateLimited
    on the next loads, ``fail_with`` raises that error, ``gate`` holds loads until set
    (``loading`` is set when a load starts), so a test can act while a sync is in flight.
    """

    kind: HostKind = HostKind.GITHUB
    host_url: str = "https://github.example"
    name_prefix: str = "github.example"
    repos: list[SourcedRepo] = field(default_factory=list)
    pulls: dict[tuple[str, int], ChangesetSnapshot] = field(default_factory=dict)
    page_size: int = 100
    rate_limit_for: float | None = None
    rate_limit_after: int = 0  # refs loaded (and handed over) before the rate limit hits
    fail_with: Exception | None = None  # a SourceError, or anything to play a buggy source
    gate: asyncio.Event | None = None
    loading: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[list[ChangesetRef]] = field(default_factory=list)
    requests: RequestCounter = field(default_factory=RequestCounter)

    @property
    def key(self) -> tuple[HostKind, str]:
        return (self.kind, self.host_url)

    def set_pull(
        self, repo_name: str, number: int, state: HostPullState = HostPullState.OPEN, **kw: Any
    ) -> None:
        """Create or change a pull request; ``kw`` are ChangesetSnapshot fields."""
        current = self.pulls.get((repo_name, number))
        base = current or ChangesetSnapshot(
            changeset_id=0,
            number=number,
            state=state,
            title=f"PR {number} on {repo_name}",
            url=f"{self.host_url}/{repo_name}/pull/{number}",
        )
        self.pulls[(repo_name, number)] = dataclasses.replace(base, state=state, **kw)

    async def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        for start in range(0, len(self.repos), self.page_size):
            self.requests.add("list_repos")
            yield self.repos[start : start + self.page_size]

    async def load_changesets(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        self.calls.append(list(refs))
        self.loading.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.rate_limit_for is not None:
            self.requests.add("rate_limited")
            loaded = self._snapshots(refs[: self.rate_limit_after])
            raise RateLimited("API rate limit exceeded", self.rate_limit_for, loaded=loaded)
        if self.fail_with is not None:
            self.requests.add("failed")
            raise self.fail_with
        for _ in range(0, len(refs), self.page_size):
            self.requests.add("load_changesets")
        return self._snapshots(refs)

    def _snapshots(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        out = []
        for ref in refs:
            pull = self.pulls.get((ref.repo_name, ref.number))
            if pull is None:
                out.append(ChangesetSnapshot(ref.changeset_id, ref.number, HostPullState.DELETED))
            else:
                out.append(dataclasses.replace(pull, changeset_id=ref.changeset_id))
        return out

    async def aclose(self) -> None:
        return None


async def insert_repo(
    conn: AsyncConnection,
    external_name: str,
    *,
    source: FakeSource | None = None,
    archived: bool = False,
    now: datetime = T0,
) -> int:
    """Write a repos row directly (the repo store belongs to the repo syncer)."""
    src = source or FakeSource()
    result = await conn.execute(
        repos.insert()
        .values(
            name=f"{src.name_prefix}/{external_name}",
            host_kind=str(src.kind),
            host_url=src.host_url,
            external_id=f"id-{external_name}",
            external_name=external_name,
            url=f"{src.host_url}/{external_name}",
            archived=archived,
            created_at=now,
            updated_at=now,
        )
        .returning(repos.c.id)
    )
    return int(result.scalar_one())


async def set_archived(conn: AsyncConnection, repo_id: int, archived: bool) -> None:
    await conn.execute(repos.update().where(repos.c.id == repo_id).values(archived=archived))


async def count(conn: AsyncConnection, table: sa.Table) -> int:
    return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())
