"""Who can read a private repository: the pure half of the permissions syncer.

- values: ``Access`` (what a grant allows, comparable across hosts), ``AccountPermission`` (one
  account's grant on one repo, with the level as the host names it), ``RepoRef``;
- each host's levels mapped onto ``Access`` (``None``: the level cannot read the code);
- ``merge_grants`` (an account listed several times, through a team and directly, say, keeps
  its highest grant), ``diff_permissions`` (stored vs fetched: only what changed is written)
  and ``permission_events`` (one outbox event per change);
- ``plan_for_page``: which repos of a written repo-diff page need a permissions sync, and which
  turned public and drop their stored permissions;
- ``next_refresh_at``: when a synced repo is refreshed again (interval minus jitter).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from repo_updater.core.diff import Change, PageDiff
from repo_updater.core.domain import RepoEvent, RepoEventKind


class Access(enum.StrEnum):
    """What a grant allows, whatever the host calls it (ordered: read < write < admin)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Access.READ: 1, Access.WRITE: 2, Access.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class RepoRef:
    """What a permission source needs to find a repository on its host."""

    external_id: str
    name: str  # host-relative full name, e.g. "acme/widgets" or "KEY/slug"


@dataclass(frozen=True, slots=True)
class AccountPermission:
    """One account that can read one repository.

    ``login`` is the account's name on the host as the host spells it (logins are compared
    ignoring case, as every host does); ``permission`` is the level as the host names it
    (GitHub ``maintain``, GitLab ``developer``, Bitbucket ``REPO_WRITE``); ``account_id`` is
    the host's stable id of the account ("" when the host does not say)."""

    login: str
    permission: str
    access: Access
    account_id: str = ""

    @property
    def key(self) -> str:
        return self.login.lower()


# --- each host's levels ---------------------------------------------------------------------

# GitHub ``permissions`` flags, highest first (docs: "List repository collaborators").
_GITHUB_FLAGS = (
    ("admin", Access.ADMIN),
    ("maintain", Access.WRITE),
    ("push", Access.WRITE),
    ("triage", Access.READ),
    ("pull", Access.READ),
)


def github_access(flags: Mapping[str, Any]) -> tuple[str, Access] | None:
    """A GitHub collaborator's ``permissions`` object -> (its highest flag, access). The
    ``role_name`` is what the source stores when present (custom roles have their own names);
    the flags say what it allows."""
    for flag, access in _GITHUB_FLAGS:
        if flags.get(flag) is True:
            return flag, access
    return None


# GitLab access levels (docs: "Group and project members API"). Guest (10), Planner (15) and
# Minimal access (5) cannot read the code of a private project: they are not readers.
GITLAB_LEVELS = {
    20: ("reporter", Access.READ),
    30: ("developer", Access.WRITE),
    40: ("maintainer", Access.ADMIN),
    50: ("owner", Access.ADMIN),
}


def gitlab_access(level: int) -> tuple[str, Access] | None:
    return GITLAB_LEVELS.get(level)


# Gitea access modes (``models/perm``): a collaborator's effective permission or a team's.
_GITEA = {"read": Access.READ, "write": Access.WRITE, "admin": Access.ADMIN, "owner": Access.ADMIN}


def gitea_access(mode: str) -> Access | None:
    return _GITEA.get(mode.lower())


# Bitbucket Server repository and project permissions. A project grant implies the same on each
# of its repositories. PROJECT_VIEW lets a user see the project, not read its code.
_BITBUCKET = {
    "REPO_READ": Access.READ,
    "REPO_WRITE": Access.WRITE,
    "REPO_ADMIN": Access.ADMIN,
    "PROJECT_READ": Access.READ,
    "PROJECT_WRITE": Access.WRITE,
    "PROJECT_ADMIN": Access.ADMIN,
}


def bitbucket_access(permission: str) -> Access | None:
    return _BITBUCKET.get(permission)


# --- merge and diff ---------------------------------------------------------------------------


def merge_grants(grants: Iterable[AccountPermission]) -> list[AccountPermission]:
    """One grant per account (logins compared ignoring case): the highest access, the first
    seen among equals. Sorted by login."""
    best: dict[str, AccountPermission] = {}
    for grant in grants:
        held = best.get(grant.key)
        if held is None or grant.access.rank > held.access.rank:
            if held is not None and not grant.account_id and held.account_id:
                grant = AccountPermission(
                    grant.login, grant.permission, grant.access, held.account_id
                )
            best[grant.key] = grant
    return [best[k] for k in sorted(best)]


@dataclass(slots=True)
class PermissionDiff:
    granted: list[AccountPermission] = field(default_factory=list)
    revoked: list[AccountPermission] = field(default_factory=list)
    changed: list[tuple[AccountPermission, AccountPermission]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.granted or self.revoked or self.changed)

    @property
    def writes(self) -> int:
        return len(self.granted) + len(self.revoked) + len(self.changed)


def diff_permissions(
    stored: Iterable[AccountPermission], fetched: Iterable[AccountPermission]
) -> PermissionDiff:
    """What to write so that the stored grants of a repo become what the host says now."""
    before = {g.key: g for g in stored}
    out = PermissionDiff()
    for grant in merge_grants(fetched):
        held = before.pop(grant.key, None)
        if held is None:
            out.granted.append(grant)
        elif held == grant:
            out.unchanged += 1
        else:
            out.changed.append((held, grant))
    out.revoked = [before[k] for k in sorted(before)]
    return out


def permission_events(
    repo_id: int, diff: PermissionDiff, *, why: str | None = None
) -> list[RepoEvent]:
    """One outbox event per change: ``PermissionGranted``, ``PermissionChanged`` (with the
    previous level) and ``PermissionRevoked``; ``why`` goes into every payload when given."""
    extra = {} if why is None else {"why": why}

    def payload(g: AccountPermission, **more: object) -> dict[str, object]:
        base = {"login": g.login, "permission": g.permission, "access": g.access.value}
        return {**base, **more, **extra}

    out = [RepoEvent(RepoEventKind.PERMISSION_GRANTED, repo_id, payload(g)) for g in diff.granted]
    out += [
        RepoEvent(
            RepoEventKind.PERMISSION_CHANGED,
            repo_id,
            payload(new, previous_permission=old.permission, previous_access=old.access.value),
        )
        for old, new in diff.changed
    ]
    out += [RepoEvent(RepoEventKind.PERMISSION_REVOKED, repo_id, payload(g)) for g in diff.revoked]
    return out


# --- which repos need a sync --------------------------------------------------------------------

# Why a permissions sync was requested. ``refresh`` is the periodic one, the only one with a
# lower priority than the others (a repo made private must not wait behind a full refresh).
REASON_ADDED = "added"
REASON_RESTORED = "restored"
REASON_MADE_PRIVATE = "made_private"
REASON_OWNER_CHANGED = "owner_changed"
REASON_REQUESTED = "requested"
REASON_REFRESH = "refresh"


def owner_of(external_name: str) -> str:
    """``acme/widgets`` -> ``acme``; ``group/sub/project`` -> ``group/sub``; lower-cased, as
    the hosts compare owners."""
    return external_name.rpartition("/")[0].lower()


@dataclass(frozen=True, slots=True)
class PermissionPlan:
    requests: list[tuple[int, str]]  # (repo id, reason)
    made_public: list[int]  # repo ids whose stored permissions go


def _change_reason(c: Change) -> str | None:
    if "private" in c.fields:
        return REASON_MADE_PRIVATE
    if owner_of(c.stored.external_name) != owner_of(c.sourced.name):
        return REASON_OWNER_CHANGED
    return None


def plan_for_page(diff: PageDiff, new_ids: Mapping[str, int]) -> PermissionPlan:
    """Only private repos have permissions to sync: a new or restored private repo, a repo
    made private, and a private repo whose owner changed (moved to another org or group, or
    the owner renamed: the grants that came with the owner changed). A repo made public drops
    its permissions: anyone can read it. Other changes (description, archived, a rename within
    the owner) leave who can read it as it was."""
    requests = [(new_ids[r.external_id], REASON_ADDED) for r, _ in diff.added if r.private]
    requests += [(c.stored.id, REASON_RESTORED) for c in diff.revived if c.sourced.private]
    made_public = [c.stored.id for c in diff.revived if not c.sourced.private]
    for c in diff.modified:
        if not c.sourced.private:
            if "private" in c.fields:
                made_public.append(c.stored.id)
            continue
        reason = _change_reason(c)
        if reason is not None:
            requests.append((c.stored.id, reason))
    return PermissionPlan(requests, made_public)


# --- the periodic refresh -------------------------------------------------------------------------

DEFAULT_REFRESH_INTERVAL = timedelta(hours=24)
DEFAULT_REFRESH_JITTER = 0.1


def next_refresh_at(now: datetime, interval: timedelta, jitter: float, draw: float) -> datetime:
    """When a repo whose permissions were synced at ``now`` is refreshed again.

    ``interval`` is the longest a repo's permissions go without a refresh; each repo comes
    back up to ``jitter`` (a fraction) of it earlier, by ``draw`` in [0, 1) picked per repo by
    the caller. Repos synced together (the first sync of a large service) so spread out over
    ``jitter * interval`` instead of all coming back in one burst, and the spread holds from one
    refresh to the next; jitter only ever shortens the interval, so it stays a bound."""
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    if not 0 <= draw < 1:
        raise ValueError("draw must be in [0, 1)")
    if interval <= timedelta(0):
        raise ValueError("interval must be positive")
    return now + interval * (1 - jitter * draw)


def revoked_all(grants: Sequence[AccountPermission]) -> PermissionDiff:
    """The diff that drops every grant (a repo made public)."""
    return PermissionDiff(revoked=sorted(grants, key=lambda g: g.key))
