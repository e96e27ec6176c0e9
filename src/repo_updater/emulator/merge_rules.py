"""What every emulated host checks before a write: the secondary write limit, whether a pull
request may be merged (its state, conflicts, the repository's approval and check rules), and
the write log. Each host words its answers its own way; the facts are the same."""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass

from repo_updater.core.domain import CheckState, HostPullState, ReviewState
from repo_updater.emulator.state import (
    EmulatedComment,
    EmulatedPull,
    EmulatedRepo,
    HostState,
    utcnow,
)
from repo_updater.emulator.write_rules import RepoRules


class Blocker(enum.Enum):
    MERGED = "merged"
    CLOSED = "closed"
    DRAFT = "draft"
    METHOD = "method"  # the merge method is not allowed on the repository
    APPROVALS = "approvals"
    CHECKS = "checks"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class MergeCheck:
    blocker: Blocker | None
    approvals_missing: int = 0

    @property
    def ok(self) -> bool:
        return self.blocker is None


def approvals(pull: EmulatedPull) -> tuple[int, bool]:
    """Reviewers whose latest decisive review approves, and whether one requests changes."""
    latest: dict[str, ReviewState] = {}
    for review in pull.reviews:
        if review.state in (ReviewState.APPROVED, ReviewState.CHANGES_REQUESTED):
            latest[review.author] = review.state
        elif review.state is ReviewState.DISMISSED:
            latest.pop(review.author, None)
    verdicts = list(latest.values())
    return verdicts.count(ReviewState.APPROVED), ReviewState.CHANGES_REQUESTED in verdicts


def merge_check(pull: EmulatedPull, rules: RepoRules, method: str) -> MergeCheck:
    """Why the pull request cannot be merged with ``method`` now, in the order hosts check."""
    if pull.state is HostPullState.MERGED:
        return MergeCheck(Blocker.MERGED)
    if pull.state is HostPullState.CLOSED:
        return MergeCheck(Blocker.CLOSED)
    if pull.state is HostPullState.DRAFT:
        return MergeCheck(Blocker.DRAFT)
    if method not in rules.merge_methods:
        return MergeCheck(Blocker.METHOD)
    approved, changes_requested = approvals(pull)
    if rules.required_approvals and (approved < rules.required_approvals or changes_requested):
        return MergeCheck(Blocker.APPROVALS, max(rules.required_approvals - approved, 1))
    if rules.required_checks and pull.check_state is not CheckState.PASSED:
        return MergeCheck(Blocker.CHECKS)
    if pull.conflicted:
        return MergeCheck(Blocker.CONFLICT)
    return MergeCheck(None)


def merge(host: HostState, repo: EmulatedRepo, pull: EmulatedPull) -> None:
    host.set_pull_state(repo.full_name, pull.number, HostPullState.MERGED)


def touch(pull: EmulatedPull) -> None:
    """A change of the pull request itself (title, body, draft): Bitbucket's version moves."""
    pull.updated_at = utcnow()
    pull.version += 1


def over_limit(host: HostState) -> bool:
    """Count a write against the host's secondary limit; True when it must be refused."""
    return not host.writes.admit(time.time())


def log_write(
    host: HostState, action: str, repo: EmulatedRepo, number: int | None, status: int
) -> None:
    host.writes.record(time.time(), action, repo.id, number, status, repo.archived)


_COMMENT_IDS = itertools.count(1)


def add_comment(pull: EmulatedPull, body: str, author: str = "repo-updater") -> EmulatedComment:
    comment = EmulatedComment(id=next(_COMMENT_IDS), body=body, author=author, at=utcnow())
    pull.comments.append(comment)
    pull.updated_at = comment.at
    return comment
