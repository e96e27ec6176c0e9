"""GitLab's recorded answers (fixtures/gitlab, shaped as GitLab's documentation shows them)
replayed through ``GitLabSource``."""

from __future__ import annotations

import pytest

from repo_updater.core.domain import ChangesetRef, CheckState, HostPullState, ReviewState
from repo_updater.core.selection import Selection
from repo_updater.sources.gitlab import GitLabSource
from repo_updater.sources.http import RetryPolicy
from tests.conformance.replay import Replay

RETRY = RetryPolicy(attempts=1, backoff=0.0, max_rate_limit_wait=0.0)


def source(replay: Replay, selection: Selection | None = None) -> GitLabSource:
    return GitLabSource(
        base_url=replay.base_url,
        token="glpat-t0ken",
        selection=selection or Selection(),
        transport=replay.transport,
        retry=RETRY,
    )


@pytest.mark.parametrize(
    "fixture", ["gitlab/group_projects_offset", "gitlab/group_projects_keyset"]
)
async def test_listing_follows_pages_not_the_links_origin(fixture: str) -> None:
    """The Link URLs carry GitLab's external_url, not the URL we reach it at. Before: "refusing
    to send credentials to another origin" on page 2. After: X-Next-Page on the configured URL,
    or (keyset, Link only) the link re-based on it; every request stays on our origin."""
    replay = Replay.load(fixture)
    src = source(replay, Selection(owners=("acme",)))
    repos = [r async for page in src.list_repos() for r in page]
    await src.aclose()
    replay.assert_all_used()  # also: nothing was sent to gitlab.example.com
    assert len(repos) == 2 and len(replay.served) == 2


async def test_offset_listing_reads_projects() -> None:
    replay = Replay.load("gitlab/group_projects_offset")
    src = source(replay, Selection(owners=("acme",)))
    repos = [r async for page in src.list_repos() for r in page]
    await src.aclose()
    assert [(r.name, r.archived, r.fork, r.private) for r in repos] == [
        ("acme/api", False, False, True),
        ("acme/sub/web", True, True, False),
    ]


async def test_merge_requests_reviewers_approvals_pipelines_and_locked() -> None:
    replay = Replay.load("gitlab/merge_requests")
    src = source(replay)
    refs = [ChangesetRef(n, "acme/app", "7", n) for n in range(1, 6)]
    snaps = await src.load_changesets(refs)
    await src.aclose()
    replay.assert_all_used()  # no per-MR requests for the locked and the merged one
    got = [(s.state, s.review_state, s.check_state) for s in snaps]
    assert got == [
        # manual: blocked on a person, no verdict; bob's requested_changes beats ann's approval
        (HostPullState.OPEN, ReviewState.CHANGES_REQUESTED, CheckState.UNKNOWN),
        # scheduled: a delayed job starts by itself; "reviewed" is a comment
        (HostPullState.OPEN, ReviewState.COMMENTED, CheckState.PENDING),
        # canceling ends canceled; dee approved without being a reviewer (/approvals)
        (HostPullState.DRAFT, ReviewState.APPROVED, CheckState.FAILED),
        # locked (a merge in progress, or locked by an admin): CLOSED, as in Sourcegraph
        (HostPullState.CLOSED, ReviewState.PENDING, CheckState.UNKNOWN),
        (HostPullState.MERGED, ReviewState.PENDING, CheckState.UNKNOWN),
    ]
    assert [e.kind for e in snaps[4].events] == ["merged"]
