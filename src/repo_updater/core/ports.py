"""What the services need from a code host, as protocols (the sources implement them), and the
request counter a source reports its traffic to. No I/O here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from repo_updater.core.domain import (
    ChangesetRef,
    ChangesetSnapshot,
    HostKind,
    NewChangesetSpec,
    SourcedRepo,
)


class RepoSource(Protocol):
    """Reads one code-host connection: its repositories and its pull requests."""

    kind: HostKind
    host_url: str  # normalised base URL: identifies the code host instance
    name_prefix: str  # prepended (with "/") to host-relative names to make store names

    def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        """Yield the configured selection page by page. Raises SourceError if the listing
        cannot be completed; pages yielded before that are valid."""
        ...

    async def load_changesets(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        """Load many pull requests, batched as the host allows. Returns one snapshot per ref
        (state DELETED where the host no longer has it)."""
        ...

    async def aclose(self) -> None: ...


class ChangesetWriter(Protocol):
    """Changes pull requests on a code host (the reconciler's side). A write the host refuses
    because the repository is archived raises ``RepoArchived``. Snapshots returned carry
    ``changeset_id`` 0: the caller knows which changeset it wrote."""

    async def create_changeset(self, spec: NewChangesetSpec) -> ChangesetSnapshot:
        """Open a pull request, or return the one already open for the same branch."""
        ...

    async def close_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot: ...


@dataclass(slots=True)
class RequestCounter:
    """Counts HTTP requests the sources made, by kind and by code host, and keeps the last
    rate-limit budget each host reported (for benchmarks and ``/metrics``)."""

    count: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_host: dict[tuple[str, str], int] = field(default_factory=dict)  # (host, kind) -> count
    rate_limit_remaining: dict[str, int] = field(default_factory=dict)  # host -> remaining

    def add(self, kind: str, host: str = "") -> None:
        self.count += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        key = (host, kind)
        self.by_host[key] = self.by_host.get(key, 0) + 1

    def remaining(self, host: str, value: int) -> None:
        """The host said this many requests (or points) are left in its window."""
        self.rate_limit_remaining[host] = value
