"""In-memory world of the code-host emulator: hosts, repos, pull requests, fault switches.

One ``EmulatorState`` holds one ``HostState`` per host kind. HTTP handlers (one module per
host) read and change it; the admin API and tests change it directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.emulator.git import RepoGit, seeded
from repo_updater.emulator.write_rules import WriteRules

if TYPE_CHECKING:
    from repo_updater.emulator.webhooks import WebhookSender

# Told of every change a webhook reports: (what, repo, pull request or None, old full name).
ChangeListener = Callable[[str, "EmulatedRepo", "EmulatedPull | None", str], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class EmulatedReview:
    author: str
    state: ReviewState
    at: datetime


@dataclass(slots=True)
class EmulatedEvent:
    """A state change on a pull request's timeline: ``closed``, ``merged`` or ``reopened``."""

    kind: str
    at: datetime
    actor: str = "octocat"


@dataclass(slots=True)
class EmulatedComment:
    id: int
    body: str
    author: str
    at: datetime


@dataclass(slots=True)
class EmulatedPull:
    number: int
    title: str
    body: str = ""
    state: HostPullState = HostPullState.OPEN  # OPEN, DRAFT, CLOSED or MERGED
    head_ref: str = "feature"
    base_ref: str = "main"
    author: str = "octocat"
    additions: int = 10
    deletions: int = 2
    check_state: CheckState = CheckState.PENDING
    reviews: list[EmulatedReview] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    events: list[EmulatedEvent] = field(default_factory=list)
    comments: list[EmulatedComment] = field(default_factory=list)
    version: int = 0  # Bitbucket's optimistic lock: bumped by every change of the PR itself
    conflicted: bool = False  # the head does not merge cleanly into the base


@dataclass(slots=True)
class EmulatedRepo:
    id: int
    owner: str  # org / group path / project key
    name: str
    archived: bool = False
    fork: bool = False
    private: bool = False
    description: str = ""
    default_branch: str = "main"
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    pulls: dict[int, EmulatedPull] = field(default_factory=dict)
    next_pull_number: int = 1
    # The token may not read this repo (SAML enforcement, IP allow list): GitHub GraphQL
    # answers a ``FORBIDDEN`` error at the repository's path.
    forbidden: bool = False
    # The base branch requires reviews (a branch protection rule): without one, GitHub's
    # ``reviewDecision`` is null.
    review_required: bool = False
    # Who has access: login -> level and group (team) name -> level, levels from ``LEVELS``.
    collaborators: dict[str, str] = field(default_factory=dict)
    group_access: dict[str, str] = field(default_factory=dict)
    # Files, commits and branches (``emulator.git``), made on first use: seeded with a few
    # files on the default branch.
    _git: RepoGit | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def git(self) -> RepoGit:
        if self._git is None:
            self._git = seeded(self.name, self.default_branch)
        return self._git


# Access levels the emulator keeps, host-neutral and ordered; each host's routes name them as
# that host does (``emulator.permissions``). A guest (GitLab) cannot read a private repo's code.
LEVELS = ("guest", "read", "triage", "write", "maintain", "admin")


def higher(a: str | None, b: str) -> str:
    return b if a is None or LEVELS.index(b) > LEVELS.index(a) else a


@dataclass(slots=True)
class Faults:
    """Switches that make the next requests to a host fail.

    Counters are decremented as requests consume them. ``path_contains`` restricts them to
    requests whose path (with query string) contains that substring (empty: any request
    except admin ones).
    """

    errors_next: int = 0  # answer 5xx
    error_status: int = 502
    timeouts_next: int = 0  # sleep ``timeout_seconds`` before answering
    timeout_seconds: float = 30.0
    truncate_next: int = 0  # send a page whose JSON body is cut short
    rate_limited_next: int = 0  # answer 429 (GitHub: 403 secondary limit) with Retry-After
    retry_after: int = 1
    rate_limit_remaining: int | None = None  # primary limit left; None = unlimited
    rate_limit_total: int = 5000
    rate_limit_reset_in: int = 60  # seconds until the primary limit resets
    path_contains: str = ""
    latency_ms: int = 0  # added to every request
    # GitLab group listing: send the next pages without their ``Link`` header (as a proxy
    # that strips it would), leaving only ``X-Next-Page`` to say where the listing goes.
    drop_link_next: int = 0
    # GitHub GraphQL answers an exhausted primary limit with HTTP 200 and an error of this
    # ``type`` (both RATE_LIMITED and RATE_LIMIT are seen; "" sends only the message).
    graphql_rate_limit_type: str = "RATE_LIMITED"


@dataclass(slots=True)
class HostSettings:
    """How a host is configured, as its admin would set it (not a fault)."""

    # The host's own idea of its URL (GitLab ``external_url``, Gitea ``ROOT_URL``): paging
    # ``Link`` headers point there, whatever URL the client used. None: the request's origin.
    external_url: str | None = None
    # GitHub: the login of the token's user (``GET /user``); None: ``/user`` answers 401.
    viewer: str | None = None
    # Gitea: ``[api] MAX_RESPONSE_ITEMS``, the page size ``limit`` is capped at (None: 50).
    max_page_size: int | None = None


@dataclass(slots=True)
class HostState:
    kind: HostKind
    token: str | None = None  # when set, requests must carry it
    repos: dict[int, EmulatedRepo] = field(default_factory=dict)
    by_full_name: dict[str, int] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    settings: HostSettings = field(default_factory=HostSettings)
    request_count: int = 0
    in_flight: int = 0  # requests being answered now (the fault middleware counts them)
    max_in_flight: int = 0  # the most at once since the last reset
    users: set[str] = field(default_factory=set)  # owners that are users, not orgs (GitHub)
    # Every org/group/project key that has ever held a repo (and a group's parents): it still
    # exists, and lists ``[]``, after its last repo is deleted or moved away.
    owners: set[str] = field(default_factory=set)
    # Old full names of renamed repos -> repo id. GitHub and Gitea redirect requests for an
    # old name to the repo, and GitHub GraphQL resolves it, until a repo takes that name.
    redirects: dict[str, int] = field(default_factory=dict)
    rate_limit_reset_at: float | None = None  # epoch seconds; managed by the fault middleware
    # Groups (GitHub/Gitea teams, GitLab groups, Bitbucket groups): name -> member logins; and
    # members of an owner (org, group, project) with a level on each of its repos.
    groups: dict[str, list[str]] = field(default_factory=dict)
    owner_members: dict[str, dict[str, str]] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)  # login -> user id, on first use
    writes: WriteRules = field(default_factory=WriteRules)  # merge rules, write limits, log
    on_change: ChangeListener | None = None  # the webhook sender (``emulator.webhooks``)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Per-owner repos in id order, rebuilt lazily after repos are added, renamed or deleted
    # (listing 100,000 repos page by page must not scan them all for every page).
    _owner_index: dict[str, tuple[EmulatedRepo, ...]] | None = None
    _indexed_count: int = -1

    def changed(self, what: str, repo: EmulatedRepo, pull: EmulatedPull | None = None,
                old_name: str = "") -> None:  # fmt: skip
        if self.on_change is not None:
            self.on_change(what, repo, pull, old_name)

    def invalidate(self) -> None:
        """Forget cached listings; call after changing ``repos`` or an owner directly."""
        self._owner_index = None

    def owner_repos(self, owner: str, *, include_subgroups: bool = False) -> Sequence[EmulatedRepo]:
        """Repos of an owner in id order (stable pagination), cached and without copying: do
        not mutate the result."""
        index = self._owner_index
        if index is None or self._indexed_count != len(self.repos):
            grouped: dict[str, list[EmulatedRepo]] = {}
            for repo in sorted(self.repos.values(), key=lambda r: r.id):
                grouped.setdefault(repo.owner, []).append(repo)
            index = {o: tuple(rs) for o, rs in grouped.items()}
            self._owner_index, self._indexed_count = index, len(self.repos)
        if not include_subgroups:
            return index.get(owner, ())
        prefix = owner + "/"
        out = [r for o, rs in index.items() if o == owner or o.startswith(prefix) for r in rs]
        out.sort(key=lambda r: r.id)
        return out

    # --- repos -----------------------------------------------------------------------------

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        archived: bool = False,
        fork: bool = False,
        private: bool = False,
        description: str = "",
    ) -> EmulatedRepo:
        full = f"{owner}/{name}"
        if full in self.by_full_name:
            raise ValueError(f"repository {full} already exists")
        repo = EmulatedRepo(
            id=next(self._ids),
            owner=owner,
            name=name,
            archived=archived,
            fork=fork,
            private=private,
            description=description,
        )
        self.repos[repo.id] = repo
        self.by_full_name[full] = repo.id
        self.redirects.pop(full, None)  # a new repo under an old name ends the redirect
        self.add_owner(owner)
        self.invalidate()
        return repo

    def add_owner(self, owner: str) -> None:
        """Record that an org/group exists (with its parent groups, for GitLab paths)."""
        parts = owner.split("/")
        self.owners.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))

    def owner_exists(self, owner: str) -> bool:
        return owner in self.owners or owner in self.users

    def repo(self, full_name: str) -> EmulatedRepo:
        try:
            return self.repos[self.by_full_name[full_name]]
        except KeyError:
            raise KeyError(f"no repository {full_name}") from None

    def find_repo(self, full_name: str) -> EmulatedRepo | None:
        rid = self.by_full_name.get(full_name)
        return None if rid is None else self.repos[rid]

    def redirected_repo(self, full_name: str) -> EmulatedRepo | None:
        """The repo that was once called ``full_name`` and has been renamed since."""
        rid = self.redirects.get(full_name)
        return None if rid is None else self.repos.get(rid)

    def resolve_repo(self, full_name: str) -> EmulatedRepo | None:
        """``find_repo``, following renames (like GitHub GraphQL's ``repository``)."""
        return self.find_repo(full_name) or self.redirected_repo(full_name)

    def set_archived(self, full_name: str, archived: bool) -> EmulatedRepo:
        repo = self.repo(full_name)
        flipped = repo.archived != archived
        repo.archived = archived
        repo.updated_at = utcnow()
        if flipped:
            self.changed("archived" if archived else "unarchived", repo)
        return repo

    def rename_repo(self, full_name: str, new_name: str) -> EmulatedRepo:
        """Rename within the same owner, or move when ``new_name`` contains a slash."""
        repo = self.repo(full_name)
        owner, _, name = new_name.rpartition("/")
        owner = owner or repo.owner
        new_full = f"{owner}/{name}"
        if new_full in self.by_full_name:
            raise ValueError(f"repository {new_full} already exists")
        del self.by_full_name[full_name]
        repo.owner, repo.name = owner, name
        repo.updated_at = utcnow()
        self.by_full_name[new_full] = repo.id
        self.redirects.pop(new_full, None)
        if new_full != full_name:
            self.redirects[full_name] = repo.id
        self.add_owner(owner)
        self.invalidate()
        moved = owner.lower() != full_name.rpartition("/")[0].lower()
        self.changed("transferred" if moved else "renamed", repo, old_name=full_name)
        return repo

    def delete_repo(self, full_name: str) -> None:
        repo = self.repo(full_name)
        del self.by_full_name[full_name]
        del self.repos[repo.id]
        for old in [o for o, rid in self.redirects.items() if rid == repo.id]:
            del self.redirects[old]
        self.invalidate()
        self.changed("deleted", repo)

    # --- who has access --------------------------------------------------------------------

    def account_id(self, login: str) -> int:
        """A stable user id for a login (allocated on first use, never reused)."""
        key = login.lower()
        if key not in self.accounts:
            self.accounts[key] = 1000 + len(self.accounts)
        return self.accounts[key]

    def set_private(self, full_name: str, private: bool) -> EmulatedRepo:
        repo = self.repo(full_name)
        flipped = repo.private != private
        repo.private = private
        repo.updated_at = utcnow()
        if flipped:
            self.changed("privatized" if private else "publicized", repo)
        return repo

    def set_collaborator(self, full_name: str, login: str, level: str | None) -> EmulatedRepo:
        """Add a collaborator with ``level`` (or change it); ``None`` removes them."""
        repo = self.repo(full_name)
        if level is None:
            repo.collaborators.pop(login, None)
        else:
            if level not in LEVELS:
                raise ValueError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
            self.account_id(login)
            repo.collaborators[login] = level
        return repo

    def effective_access(self, repo: EmulatedRepo) -> dict[str, str]:
        """Every account with access to ``repo`` and its highest level: direct collaborators,
        members of groups with access, members of the owner, and a user owner (admin)."""
        out: dict[str, str] = {}

        def grant(login: str, level: str) -> None:
            out[login] = higher(out.get(login), level)

        for login, level in repo.collaborators.items():
            grant(login, level)
        for group, level in repo.group_access.items():
            for login in self.groups.get(group, ()):
                grant(login, level)
        for login, level in self.owner_members.get(repo.owner, {}).items():
            grant(login, level)
        if repo.owner in self.users:
            grant(repo.owner, "admin")
        for login in out:
            self.account_id(login)
        return out

    # --- pull requests ---------------------------------------------------------------------

    def add_pull(
        self,
        full_name: str,
        *,
        title: str,
        state: HostPullState = HostPullState.OPEN,
        head_ref: str | None = None,
        base_ref: str = "main",
        body: str = "",
    ) -> EmulatedPull:
        repo = self.repo(full_name)
        number = repo.next_pull_number
        repo.next_pull_number += 1
        pull = EmulatedPull(
            number=number,
            title=title,
            body=body,
            state=state,
            head_ref=head_ref or f"batch/change-{number}",
            base_ref=base_ref,
        )
        if state is HostPullState.MERGED:
            pull.merged_at = pull.closed_at = pull.created_at
            pull.events.append(EmulatedEvent("merged", pull.created_at))
            pull.events.append(EmulatedEvent("closed", pull.created_at))
        elif state is HostPullState.CLOSED:
            pull.closed_at = pull.created_at
            pull.events.append(EmulatedEvent("closed", pull.created_at))
        repo.pulls[number] = pull
        return pull

    def set_pull_state(self, full_name: str, number: int, state: HostPullState) -> EmulatedPull:
        pull = self.repo(full_name).pulls[number]
        previous = pull.state
        pull.state = state
        pull.version += 1
        now = utcnow()
        pull.updated_at = now
        pull.closed_at = now if state in (HostPullState.CLOSED, HostPullState.MERGED) else None
        pull.merged_at = now if state is HostPullState.MERGED else None
        was_closed = previous in (HostPullState.CLOSED, HostPullState.MERGED)
        if state is HostPullState.MERGED and previous is not HostPullState.MERGED:
            pull.events.append(EmulatedEvent("merged", now))
            pull.events.append(EmulatedEvent("closed", now))
        elif state is HostPullState.CLOSED and not was_closed:
            pull.events.append(EmulatedEvent("closed", now))
        elif state in (HostPullState.OPEN, HostPullState.DRAFT) and was_closed:
            pull.events.append(EmulatedEvent("reopened", now))
        if state is not previous:
            self.changed("pull_state", self.repo(full_name), pull)
        return pull

    def add_review(
        self, full_name: str, number: int, *, author: str, state: ReviewState
    ) -> EmulatedPull:
        pull = self.repo(full_name).pulls[number]
        now = utcnow()
        pull.reviews.append(EmulatedReview(author=author, state=state, at=now))
        pull.updated_at = now
        self.changed("review", self.repo(full_name), pull)
        return pull

    def set_check_state(self, full_name: str, number: int, state: CheckState) -> EmulatedPull:
        pull = self.repo(full_name).pulls[number]
        pull.check_state = state
        pull.updated_at = utcnow()
        self.changed("check", self.repo(full_name), pull)
        return pull


@dataclass(slots=True)
class EmulatorState:
    hosts: dict[HostKind, HostState] = field(
        default_factory=lambda: {kind: HostState(kind=kind) for kind in HostKind}
    )
    webhooks: WebhookSender = field(default_factory=lambda: _sender())

    def __post_init__(self) -> None:
        from repo_updater.emulator.webhooks import Change

        for kind, host in self.hosts.items():

            def listener(what: str, repo: EmulatedRepo, pull: EmulatedPull | None, old: str,
                         kind: HostKind = kind) -> None:  # fmt: skip
                self.webhooks.notify(kind, Change(what, repo, pull, old))

            host.on_change = listener

    def host(self, kind: HostKind | str) -> HostState:
        return self.hosts[HostKind(kind)]

    def seed(
        self,
        kind: HostKind,
        *,
        orgs: int = 1,
        repos_per_org: int = 10,
        pulls_per_repo: int = 0,
        org_prefix: str = "org",
        private: bool = False,
        collaborators_per_repo: int = 0,
    ) -> None:
        """Create ``orgs`` owners named ``{org_prefix}{i}`` with ``repos_per_org`` repos each
        (``repo-{j}``) and ``pulls_per_repo`` open pull requests on each repo; ``private``
        repos with ``collaborators_per_repo`` collaborators each (``user-{n}``, levels in
        turn read, write, admin)."""
        host = self.host(kind)
        for i in range(orgs):
            owner = f"{org_prefix}{i}"
            for j in range(repos_per_org):
                repo = host.add_repo(owner, f"repo-{j}", private=private)
                for k in range(pulls_per_repo):
                    host.add_pull(repo.full_name, title=f"Batch change {k} on {repo.name}")
                for n in range(collaborators_per_repo):
                    level = ("read", "write", "admin")[n % 3]
                    host.set_collaborator(repo.full_name, f"user-{n}", level)


def _sender() -> WebhookSender:
    from repo_updater.emulator.webhooks import WebhookSender

    return WebhookSender()
