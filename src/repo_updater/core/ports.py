"""What the services need from a code host, as protocols (the sources implement them), and the
request counter a source reports its traffic to. No I/O here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from repo_updater.core.domain import (
    ChangesetRef,
    ChangesetSnapshot,
    HostKind,
    NewChangesetSpec,
    SourcedRepo,
)
from repo_updater.core.operations import MergeMethod
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


@runtime_checkable
class SingleRepoSource(Protocol):
    """Fetches one repository by the host's id (a webhook's single-repo sync)."""

    kind: HostKind
    host_url: str

    async def get_repo(self, external_id: str, name: str) -> SourcedRepo | None:
        """The repository with this host id as the host shows it now, or None when the host
        has no such repository (or no longer shows it to the token). ``name``: its
        host-relative name as last known (hosts without a lookup by id use it). Raises
        ``SourceError`` for anything else (rate limit, host down)."""
        ...


class ChangesetWriter(Protocol):
    """Changes pull requests on a code host (the reconciler's side).

    ``repo_name`` is the host-relative name (``acme/widgets``), ``number`` the pull request's
    number on it. Every write raises ``RepoArchived`` when the host refuses it because the
    repository is archived (whatever status the host uses for that), ``NotFound``,
    ``Unauthorized``, ``Refused`` (the host said no: not mergeable, validation failed) or
    ``Conflict``; ``RateLimited`` is raised at once, not slept through, so the caller can
    pause every worker. Snapshots returned carry ``changeset_id`` 0 (the caller knows which
    changeset it wrote) and at least the new ``state``."""

    async def create_changeset(self, spec: NewChangesetSpec) -> ChangesetSnapshot:
        """Open a pull request, or return the one already open for the same branches."""
        ...

    async def close_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot: ...

    async def reopen_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot: ...

    async def merge_changeset(
        self, repo_name: str, number: int, method: MergeMethod
    ) -> ChangesetSnapshot: ...

    async def update_changeset(
        self, repo_name: str, number: int, *, title: str | None, body: str | None
    ) -> ChangesetSnapshot:
        """Change the title and/or description (a draft stays a draft)."""
        ...

    async def mark_ready(self, repo_name: str, number: int) -> ChangesetSnapshot:
        """Undraft: mark the pull request ready for review."""
        ...

    async def convert_to_draft(self, repo_name: str, number: int) -> ChangesetSnapshot: ...

    async def add_comment(self, repo_name: str, number: int, body: str) -> None: ...

    async def has_comment(self, repo_name: str, number: int, body: str, since: datetime) -> bool:
        """Whether a comment with exactly ``body`` was posted on the pull request at or after
        ``since`` (to tell whether an interrupted ``add_comment`` went through)."""
        ...


class FileWriter(Protocol):
    """Reads files and makes commits through a code host's API, without a git checkout (the
    batch spec applier's side). ``repo_name`` is host-relative. Writes raise as
    ``ChangesetWriter``'s do (``RepoArchived`` when the repository is archived)."""

    def commit_cost(self, files: Mapping[str, str | None]) -> int:
        """How many write requests ``commit_files`` sends at most (for the write budget)."""
        ...

    async def default_branch(self, repo_name: str) -> str: ...

    async def read_files(
        self, repo_name: str, ref: str, paths: Sequence[str]
    ) -> dict[str, str | None]:
        """The content of each path at ``ref`` (None: no such file)."""
        ...

    async def commit_files(
        self,
        repo_name: str,
        *,
        base: str,
        branch: str,
        files: Mapping[str, str | None],
        message: str,
        existing: Collection[str],
    ) -> None:
        """ONE commit on top of ``base``'s head that writes ``files`` (None deletes a file),
        and ``branch`` pointed at it: created, or force-updated when it exists. ``existing``:
        which of the paths exist on ``base`` (some APIs name create and update apart).
        Where a host's API cannot force-update a branch or make one commit of many files,
        its source says what it does instead."""
        ...


class WritingSource(RepoSource, ChangesetWriter, Protocol):
    """A source that reads and writes: the reconciler loads a changeset again before it
    repeats a write that may have reached the host."""


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
