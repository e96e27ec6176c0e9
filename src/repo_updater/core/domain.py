"""Domain types shared by every layer: plain values, no I/O.

Sources produce ``SourcedRepo`` and ``ChangesetSnapshot`` values; the store keeps ``Repo`` and
changeset rows; the pure core (diff, changeset state, scheduling) works on these values.

Names used everywhere: a *code host* is one GitHub/GitLab/Gitea/Bitbucket Server instance,
identified by its kind and its normalised base URL (``host_kind``, ``host_url``); an *external
service* is one configured connection to a code host (a name, a token, a selection), stored in
``external_services`` and referred to by ``external_service_id``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Ids, offsets and pull request numbers are 32-bit integers in the store (PostgreSQL
# ``integer``) and on every host (GitHub's GraphQL ``Int``): a larger one would fail in SQL, or
# fail the whole batch of pull requests it is loaded in.
MAX_INT = 2**31 - 1
MAX_PULL_NUMBER = MAX_INT
MAX_BATCH_CHANGE_NAME = 200  # characters (batch_changes.name)


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

    def __post_init__(self) -> None:
        # No text the store keeps may hold a NUL: PostgreSQL refuses it (a description with one
        # failed the whole sync) and SQLite's JSON functions end a text there. A host never
        # means one; it is dropped where a listed repo is made, so the diff compares with what
        # the store can keep (else the repo would look modified on every sync).
        for name in ("external_id", "name", "url", "description"):
            value = getattr(self, name)
            if isinstance(value, str) and "\x00" in value:
                object.__setattr__(self, name, value.replace("\x00", ""))


@dataclass(frozen=True, slots=True)
class Repo:
    """A repository as the store keeps it. ``name`` is globally unique, e.g.
    ``127.0.0.1:7700/github/acme/widgets`` or ``github.com/acme/widgets``."""

    id: int
    name: str
    host_kind: HostKind
    host_url: str  # the host's normalised base URL: identifies the code host instance
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


class RepoEventKind(enum.StrEnum):
    """What happened to a repository, as recorded in the ``events`` outbox."""

    ADDED = "RepoAdded"
    RESTORED = "RepoRestored"  # listed again after it had been removed
    MODIFIED = "RepoModified"
    RENAMED = "RepoRenamed"
    ARCHIVED = "RepoArchived"
    UNARCHIVED = "RepoUnarchived"
    DELETED = "RepoDeleted"
    # Who can read a private repo (the permissions syncer): one event per account and change.
    PERMISSION_GRANTED = "PermissionGranted"
    PERMISSION_CHANGED = "PermissionChanged"
    PERMISSION_REVOKED = "PermissionRevoked"


@dataclass(frozen=True, slots=True)
class RepoEvent:
    """One outbox row: written in the same transaction as the change it reports."""

    kind: RepoEventKind
    repo_id: int
    payload: Mapping[str, Any]


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
    """A pull request as the code host reports it right now.

    ``additions`` / ``deletions`` are None when the answer did not say (list endpoints of
    Gitea and GitHub's REST ``GET /pulls`` leave them out): the store keeps what it knew."""

    changeset_id: int
    number: int
    state: HostPullState
    title: str = ""
    url: str = ""
    review_state: ReviewState = ReviewState.PENDING
    check_state: CheckState = CheckState.UNKNOWN
    additions: int | None = None
    deletions: int | None = None
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
