"""Domain types shared by every layer: plain values, no I/O.

Sources produce ``SourcedRepo`` and ``ChangesetSnapshot`` values; the store keeps ``Repo`` and
``Changeset`` rows; the pure core (diff, changeset state, scheduling) works on these values.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

# Pull request numbers are 32-bit on every host (GitHub's GraphQL ``Int``).
MAX_PULL_NUMBER = 2**31 - 1


class HostKind(enum.StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"
    BITBUCKET_SERVER = "bitbucketServer"


# --------------------------------------------------------------------------------------------
# Repositories
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourcedRepo:
    """A repository as a code host lists it.

    ``external_id`` is the host's stable id (survives renames). ``name`` is the host-relative
    full name, e.g. ``acme/widgets`` or ``group/sub/project``.
    """

    external_id: str
    name: str
    url: str
    archived: bool = False
    fork: bool = False
    private: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository as the store keeps it. ``name`` is globally unique, e.g.
    ``127.0.0.1:7700/github/acme/widgets`` or ``github.com/acme/widgets``."""

    id: int
    name: str
    service_type: HostKind
    service_id: str  # the host's base URL, identifies the code host instance
    external_id: str
    external_name: str  # host-relative full name, e.g. "acme/widgets"
    url: str
    archived: bool
    fork: bool
    private: bool
    description: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None


# --------------------------------------------------------------------------------------------
# Changesets
# --------------------------------------------------------------------------------------------


class ExternalState(enum.StrEnum):
    DRAFT = "DRAFT"
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    MERGED = "MERGED"
    DELETED = "DELETED"
    READONLY = "READONLY"


class ReviewState(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    CHANGES_REQUESTED = "CHANGES_REQUESTED"
    COMMENTED = "COMMENTED"
    DISMISSED = "DISMISSED"


class CheckState(enum.StrEnum):
    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    PASSED = "PASSED"
    FAILED = "FAILED"


class PublicationState(enum.StrEnum):
    UNPUBLISHED = "UNPUBLISHED"
    PUBLISHED = "PUBLISHED"


class BatchChangeState(enum.StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class HostPullState(enum.StrEnum):
    """What the code host itself says about a pull request (before our derivation)."""

    OPEN = "OPEN"
    DRAFT = "DRAFT"
    CLOSED = "CLOSED"
    MERGED = "MERGED"
    DELETED = "DELETED"  # the host answered 404 for it


@dataclass(frozen=True, slots=True)
class ChangesetEvent:
    """One entry of a changeset's timeline (review, check, state change, comment...)."""

    kind: str  # e.g. "reviewed", "check_passed", "closed", "merged", "reopened"
    at: datetime
    actor: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ChangesetRef:
    """What a source needs to load a changeset: the repo (host-relative name and external id)
    and the pull request's number on that repo."""

    changeset_id: int
    repo_name: str  # host-relative full name, e.g. "acme/widgets"
    repo_external_id: str
    number: int


@dataclass(frozen=True, slots=True)
class ChangesetSnapshot:
    """A pull request as the code host reports it right now."""

    changeset_id: int
    number: int
    state: HostPullState
    title: str = ""
    url: str = ""
    review_state: ReviewState = ReviewState.PENDING
    check_state: CheckState = CheckState.UNKNOWN
    additions: int = 0
    deletions: int = 0
    head_ref: str = ""
    base_ref: str = ""
    updated_at: datetime | None = None
    events: tuple[ChangesetEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class NewChangesetSpec:
    """What the reconciler asks a host to open."""

    repo_name: str
    title: str
    body: str
    head_ref: str
    base_ref: str
    draft: bool = False


# --------------------------------------------------------------------------------------------
# Code-host errors: every source maps HTTP failures onto these, and nothing else escapes.
# --------------------------------------------------------------------------------------------


class SourceError(Exception):
    """Base class for code-host failures. Messages never contain tokens."""


class RateLimited(SourceError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotFound(SourceError):
    pass


class RepoArchived(SourceError):
    """A write was refused because the repository is archived (read-only)."""


class Unauthorized(SourceError):
    pass


class HostError(SourceError):
    """Anything else: 5xx, timeouts, malformed or truncated responses."""


# --------------------------------------------------------------------------------------------
# Source protocol: one implementation per code host.
# --------------------------------------------------------------------------------------------


class RepoSource(Protocol):
    kind: HostKind
    service_id: str  # normalised base URL of the host
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


@dataclass(slots=True)
class RequestCounter:
    """Counts HTTP requests a source made (for benchmarks and metrics)."""

    count: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str) -> None:
        self.count += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
