"""GitHub's recorded answers (fixtures/github, shaped as GitHub's documentation shows them)
replayed through ``GitHubSource``; the REST fields it reads are checked against
specs/github_rest.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from repo_updater.core.domain import (
    ChangesetRef,
    CheckState,
    HostPullState,
    NewChangesetSpec,
    ReviewState,
)
from repo_updater.core.errors import RateLimited
from repo_updater.core.selection import Selection
from repo_updater.sources import github_writes
from repo_updater.sources.github import GitHubSource
from repo_updater.sources.http import RetryPolicy
from tests.conformance.replay import ReadLog, Replay, excerpt, track_reads, undeclared_reads

RETRY = RetryPolicy(attempts=1, backoff=0.0, max_rate_limit_wait=0.0)


def source(replay: Replay, **kw: Any) -> GitHubSource:
    kw.setdefault("selection", Selection())
    return GitHubSource(
        base_url=replay.base_url, token="ghp_t0ken", transport=replay.transport, retry=RETRY, **kw
    )


def ref(changeset_id: int, repo: str, number: int) -> ChangesetRef:
    return ChangesetRef(changeset_id, repo, "", number)


@pytest.mark.parametrize(
    ("fixture", "wait"),
    [
        ("github/graphql_rate_limited", (1100.0, 1202.0)),  # until x-ratelimit-reset
        ("github/graphql_rate_limit_code", (1100.0, 1202.0)),
        ("github/graphql_secondary_limit", (90.0, 90.0)),  # retry-after
    ],
)
async def test_graphql_rate_limit_at_http_200(fixture: str, wait: tuple[float, float]) -> None:
    """Before: only ``type == "RATE_LIMITED"`` was seen, and a body without data failed the
    batch as a host error. After: every form is a rate limit, with GitHub's wait."""
    replay = Replay.load(fixture)
    src = source(replay)
    with pytest.raises(RateLimited) as info:
        await src.load_changesets([ref(1, "acme/app", 7)])
    await src.aclose()
    assert wait[0] <= info.value.retry_after <= wait[1]
    replay.assert_all_used()


async def test_graphql_null_review_decision_missing_pr_and_unresolved_repo() -> None:
    replay = Replay.load("github/graphql_pull_requests")
    src = source(replay)
    refs = [ref(1, "acme/app", 7), ref(2, "acme/app", 8), ref(3, "acme/secret", 1)]
    snaps = await src.load_changesets(refs)
    await src.aclose()
    replay.assert_all_used()
    # acme/secret did not resolve: maybe deleted, maybe no longer visible; left for a retry.
    assert [(s.changeset_id, s.state) for s in snaps] == [
        (1, HostPullState.OPEN),
        (2, HostPullState.DELETED),
    ]
    pr = snaps[0]
    assert pr.review_state is ReviewState.CHANGES_REQUESTED  # reviewDecision was null
    assert pr.check_state is CheckState.PENDING  # EXPECTED
    assert (pr.additions, pr.deletions, pr.head_ref) == (12, 3, "batch/bump-lodash")
    assert [(e.kind, e.actor, e.detail) for e in pr.events] == [
        ("reviewed", "ann", "APPROVED"),
        ("reviewed", "bob", "CHANGES_REQUESTED"),
    ]
    assert src.budget.remaining == 4990


async def test_enterprise_server_graphql_endpoint_and_no_rate_limit() -> None:
    replay = Replay.load("github/ghes_graphql")
    src = source(replay)
    [snap] = await src.load_changesets([ref(1, "acme/app", 3)])
    await src.aclose()
    replay.assert_all_used()
    assert replay.served == ["POST /api/graphql"]
    assert (snap.state, snap.review_state, snap.check_state) == (
        HostPullState.MERGED,
        ReviewState.APPROVED,
        CheckState.PASSED,
    )
    assert src.budget.remaining is None  # GHES: rate limits off, nothing held back


async def test_token_owner_listing_reads_only_documented_fields(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    replay = Replay.load("github/rest_token_owner_repos")
    log = ReadLog(api_path="")
    track_reads(monkeypatch, log)
    src = source(replay, selection=Selection(owners=("alice",)))
    repos = [r async for page in src.list_repos() for r in page]
    await src.aclose()
    replay.assert_all_used()
    assert [(r.name, r.private, r.archived) for r in repos] == [
        ("alice/dotfiles", False, False),
        ("alice/diary", True, True),
    ]
    assert list(undeclared_reads(excerpt("github_rest.yaml"), log)) == []
    assert log.reads["GET /user/repos"] >= {"id", "full_name", "html_url", "archived", "private"}


async def test_pull_found_by_listing_has_unknown_diff_stats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``GET /pulls`` answers pull-request-simple, without diff stats: unknown, not 0/0."""
    replay = Replay.load("github/rest_existing_pull_simple")
    log = ReadLog(api_path="")
    track_reads(monkeypatch, log, github_writes)  # the writes decode their answers themselves
    src = source(replay)
    spec = NewChangesetSpec("acme/app", "Bump deps", "", "batch/bump", "main")
    snap = await src.create_changeset(spec)
    await src.aclose()
    replay.assert_all_used()
    assert (snap.number, snap.state, snap.head_ref) == (1347, HostPullState.OPEN, "batch/bump")
    assert (snap.additions, snap.deletions) == (None, None)
    assert list(undeclared_reads(excerpt("github_rest.yaml"), log)) == []
