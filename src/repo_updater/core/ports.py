"""What the services need from a code host, as protocols (the sources implement them), and the
request counter a source reports its traffic to. No I/O here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from repo_updater.core.domain import (
    ChangesetRef,
    ChangesetSnapshot,
    HostKind,
    NewChangesetSpec,
    SourcedRepo,
)
from repo_updater.core.permissions import AccountPermission, RepoRef


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


@runtime_checkable
class PermissionSource(Protocol):
    """Says who can read a repository on one code host (the permissions syncer's side).

    ``load_permissions`` pages through every grant the host knows for the repo (direct
    collaborators, teams or groups, the owner's members, as the host models them) and returns
    one ``AccountPermission`` per account that can read the code (repeats are merged by the
    caller, keeping the highest). Raises ``NotFound`` when the repo is gone or hidden from the
    token, ``Forbidden`` when the token may not list its members, ``RateLimited`` when the host
    asks us to wait."""

    kind: HostKind
    host_url: str

    async def load_permissions(self, repo: RepoRef) -> list[AccountPermission]: ...


@dataclass(slots=True)
class RequestCounter:
    """Counts HTTP requests a source made (for benchmarks and metrics)."""

    count: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.count += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
