"""GitHub GraphQL for changesets: one aliased query per batch of pull requests, the mapping of a
``PullRequest`` node onto a ``ChangesetSnapshot``, and of the answer's ``errors`` onto the
aliases they hit (pure, no I/O)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from repo_updater.core.domain import (
    ChangesetEvent,
    ChangesetRef,
    ChangesetSnapshot,
    CheckState,
    HostPullState,
    ReviewState,
)
from repo_updater.core.errors import HostError

TIMELINE_ITEMS = 100  # GitHub's maximum page size; the most recent items matter most
REVIEWERS = 100  # latest opinionated review per reviewer; more reviewers than this is rare

# ``reviewDecision`` is null when the base branch has no "require reviews" rule; the reviewers'
# latest opinionated reviews (writers only, as for the decision) then give the review state.
PULL_REQUEST_FRAGMENT = f"""
fragment pr on PullRequest {{
  number title url state isDraft additions deletions headRefName baseRefName updatedAt
  reviewDecision
  latestOpinionatedReviews(last: {REVIEWERS}, writersOnly: true) {{ nodes {{ state }} }}
  commits(last: 1) {{ nodes {{ commit {{ statusCheckRollup {{ state }} }} }} }}
  timelineItems(
    last: {TIMELINE_ITEMS}
    itemTypes: [PULL_REQUEST_REVIEW, CLOSED_EVENT, MERGED_EVENT, REOPENED_EVENT]
  ) {{
    nodes {{
      __typename
      ... on PullRequestReview {{ state submittedAt author {{ login }} }}
      ... on ClosedEvent {{ createdAt actor {{ login }} }}
      ... on MergedEvent {{ createdAt actor {{ login }} }}
      ... on ReopenedEvent {{ createdAt actor {{ login }} }}
    }}
  }}
}}
"""

_CHECKS = {
    "SUCCESS": CheckState.PASSED,
    "FAILURE": CheckState.FAILED,
    "ERROR": CheckState.FAILED,
    "PENDING": CheckState.PENDING,
    "EXPECTED": CheckState.PENDING,
}
_REVIEWS = {
    "APPROVED": ReviewState.APPROVED,
    "CHANGES_REQUESTED": ReviewState.CHANGES_REQUESTED,
}
_EVENTS = {"ClosedEvent": "closed", "MergedEvent": "merged", "ReopenedEvent": "reopened"}


def build_query(refs: Sequence[ChangesetRef]) -> tuple[str, list[tuple[str, str]]]:
    """One query for ``refs``: a ``rN`` alias per repository holding a ``pN`` alias per pull
    request. Returns the query and, per ref, its ``(repo alias, pull alias)``."""
    repo_aliases: dict[str, str] = {}
    pulls: dict[str, list[str]] = {}
    aliases: list[tuple[str, str]] = []
    for i, ref in enumerate(refs):
        repo_alias = repo_aliases.setdefault(ref.repo_name, f"r{len(repo_aliases)}")
        pull_alias = f"p{i}"
        pulls.setdefault(repo_alias, []).append(
            f"{pull_alias}: pullRequest(number: {int(ref.number)}) {{ ...pr }}"
        )
        aliases.append((repo_alias, pull_alias))
    parts = []
    for repo_name, repo_alias in repo_aliases.items():
        owner, _, name = repo_name.partition("/")
        parts.append(
            f"{repo_alias}: repository(owner: {json.dumps(owner)}, name: {json.dumps(name)}) "
            f"{{ {' '.join(pulls[repo_alias])} }}"
        )
    body = "\n  ".join(parts)
    query = f"query {{\n  {body}\n  rateLimit {{ cost remaining resetAt }}\n}}\n"
    return query + PULL_REQUEST_FRAGMENT, aliases


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _login(actor: Any) -> str:
    return str(actor.get("login", "")) if isinstance(actor, dict) else ""


def host_state(node: dict[str, Any]) -> HostPullState:
    state = node["state"]
    if state == "MERGED":
        return HostPullState.MERGED
    if state == "CLOSED":
        return HostPullState.CLOSED
    if state == "OPEN":
        return HostPullState.DRAFT if node.get("isDraft") else HostPullState.OPEN
    raise ValueError(f"unknown pull request state {state!r}")


def review_state(node: dict[str, Any]) -> ReviewState:
    """``reviewDecision`` when GitHub made one (REVIEW_REQUIRED: PENDING); when it is null (no
    review rule on the base branch), each reviewer's latest opinionated review: any change
    request wins, then any approval, then a comment; dismissed reviews count for nothing."""
    decision = node.get("reviewDecision")
    if decision is not None:
        return _REVIEWS.get(str(decision), ReviewState.PENDING)
    reviews = (node.get("latestOpinionatedReviews") or {}).get("nodes") or []
    states = {r.get("state") for r in reviews if isinstance(r, dict)}
    for state in ("CHANGES_REQUESTED", "APPROVED", "COMMENTED"):
        if state in states:
            return ReviewState(state)
    return ReviewState.PENDING


def check_state(node: dict[str, Any]) -> CheckState:
    commits = (node.get("commits") or {}).get("nodes") or []
    if not commits or not isinstance(commits[-1], dict):
        return CheckState.UNKNOWN
    rollup = (commits[-1].get("commit") or {}).get("statusCheckRollup")
    if not isinstance(rollup, dict):
        return CheckState.UNKNOWN
    return _CHECKS.get(str(rollup.get("state")), CheckState.UNKNOWN)


def events(node: dict[str, Any]) -> tuple[ChangesetEvent, ...]:
    out: list[ChangesetEvent] = []
    for item in (node.get("timelineItems") or {}).get("nodes") or []:
        if not isinstance(item, dict):
            continue
        typename = item.get("__typename")
        if typename == "PullRequestReview":
            at = _time(item.get("submittedAt"))
            if at is not None:  # pending reviews are not submitted yet
                out.append(
                    ChangesetEvent(
                        kind="reviewed",
                        at=at,
                        actor=_login(item.get("author")),
                        detail=str(item.get("state", "")),
                    )
                )
        elif typename in _EVENTS:
            at = _time(item.get("createdAt"))
            if at is not None:
                out.append(
                    ChangesetEvent(kind=_EVENTS[typename], at=at, actor=_login(item.get("actor")))
                )
    out.sort(key=lambda e: e.at)
    return tuple(out)


def snapshot_from_node(changeset_id: int, node: dict[str, Any]) -> ChangesetSnapshot:
    """Map a ``PullRequest`` node (as selected by ``PULL_REQUEST_FRAGMENT``)."""
    return ChangesetSnapshot(
        changeset_id=changeset_id,
        number=int(node["number"]),
        state=host_state(node),
        title=str(node.get("title") or ""),
        url=str(node.get("url") or ""),
        review_state=review_state(node),
        check_state=check_state(node),
        additions=int(node.get("additions") or 0),
        deletions=int(node.get("deletions") or 0),
        head_ref=str(node.get("headRefName") or ""),
        base_ref=str(node.get("baseRefName") or ""),
        updated_at=_time(node.get("updatedAt")),
        events=events(node),
    )


def alias_failures(
    errors: Any,
    aliases: Sequence[tuple[str, str]],
    *,
    where: str,
    redact: Callable[[str], str],
) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """Map GraphQL ``errors`` onto the aliases they hit: ``(repo alias, pull alias)``, or
    ``(repo alias, "")`` for all of a repository; and, apart, the repository aliases GitHub
    could not resolve (``NOT_FOUND`` at ``[rN]``). ``NOT_FOUND`` at a pull request is no
    failure (null data means deleted). Raises ``HostError`` for an error that hit the whole
    query (no path into a repository alias)."""
    if errors is None:
        return {}, {}
    if not isinstance(errors, list):
        raise HostError(f"{where}: malformed errors in response")
    repo_aliases = {repo for repo, _ in aliases}
    pull_aliases = set(aliases)
    failed: dict[tuple[str, str], str] = {}
    unreachable: dict[str, str] = {}
    for error in errors:
        if not isinstance(error, dict):
            continue
        text = redact(str(error.get("message", error)))[:300]
        kind = error.get("type")
        path = error.get("path")
        repo = path[0] if isinstance(path, list) and path else None
        if not isinstance(path, list) or not isinstance(repo, str) or repo not in repo_aliases:
            raise HostError(f"{where}: {text}")
        if kind == "NOT_FOUND":
            if len(path) == 1:
                unreachable.setdefault(repo, f"NOT_FOUND: {text}")
            continue
        pull = path[1] if len(path) > 1 and (repo, path[1]) in pull_aliases else ""
        label = f"{kind}: {text}" if isinstance(kind, str) else text
        failed.setdefault((repo, pull), label)
    return failed, unreachable


def repo_missing(ref: ChangesetRef, message: str | None) -> str | None:
    """Why a repository that resolved to null is not reason enough to call its pull requests
    deleted, or None when it is. GitHub answers NOT_FOUND alike for a deleted repository and
    for one the token can no longer see (made private, access removed), so deletion needs a
    second, independent signal: the repo syncer (a complete listing and a second look) no
    longer lists the repository (``ref.repo_deleted``)."""
    if ref.repo_deleted:
        return None
    detail = message or "repository resolved to null"
    return (
        f"repository {ref.repo_name} not found or not visible to the token ({detail}); "
        "its pull requests are kept until a repo sync confirms it is gone"
    )
