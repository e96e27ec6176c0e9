"""What the emulated hosts enforce on writes, and the log of every write they answered.

- ``RepoRules`` per repository (by id; ``WriteRules.default`` otherwise): required approving
  reviews and passed checks before a merge (GitHub branch protection, GitLab approval rules
  and "pipelines must succeed", Gitea protected branches, Bitbucket merge checks), the merge
  methods the repository allows, and whether draft pull requests exist (GitHub: not on private
  repositories of free plans).
- a secondary write limit shared by every write of the host (``per_minute``: writes in any
  60 s), answered as each host answers it, with ``Retry-After``;
- ``gitea_version``: Gitea 1.21 refuses writes to archived repositories with 423, older ones
  with 404;
- ``log``: one ``WriteRecord`` per write request, with whether the repository was archived
  when it arrived (so a benchmark can count writes sent to an archived repository).

Plain data: no imports from the rest of the emulator (``state`` holds one of these per host).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

ALL_METHODS = frozenset({"merge", "squash", "rebase"})


@dataclass(slots=True)
class RepoRules:
    required_approvals: int = 0
    required_checks: bool = False  # checks must have passed
    drafts: bool = True
    merge_methods: frozenset[str] = ALL_METHODS


@dataclass(frozen=True, slots=True)
class WriteRecord:
    at: float  # time.time() when answered
    action: str  # create, update, merge, comment, ready, draft, decline, reopen
    repo_id: int
    number: int | None
    status: int
    archived: bool  # the repository was archived when the write arrived


@dataclass(slots=True)
class WriteRules:
    default: RepoRules = field(default_factory=RepoRules)
    repos: dict[int, RepoRules] = field(default_factory=dict)
    per_minute: int | None = None  # secondary write limit; None: unlimited
    retry_after: int = 60  # seconds, sent with a secondary-limit answer
    gitea_version: tuple[int, int] = (1, 21)
    log: list[WriteRecord] = field(default_factory=list)
    _recent: collections.deque[float] = field(default_factory=collections.deque)

    def for_repo(self, repo_id: int) -> RepoRules:
        return self.repos.get(repo_id, self.default)

    def set_repo(self, repo_id: int, **rules: object) -> RepoRules:
        current = self.for_repo(repo_id)
        updated = RepoRules(
            **{name: rules.get(name, getattr(current, name)) for name in RepoRules.__slots__}  # type: ignore[arg-type]
        )
        self.repos[repo_id] = updated
        return updated

    def admit(self, now: float) -> bool:
        """Count one write against the secondary limit; False if it is over the limit."""
        if self.per_minute is None:
            return True
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            return False
        self._recent.append(now)
        return True

    def record(
        self,
        at: float,
        action: str,
        repo_id: int,
        number: int | None,
        status: int,
        archived: bool,
    ) -> None:
        self.log.append(WriteRecord(at, action, repo_id, number, status, archived))
