"""Gitea's recorded answers (fixtures/gitea, shaped as Gitea's API documentation shows them)
replayed through ``GiteaSource``; the fields it reads are checked against
specs/gitea_rest.yaml."""

from __future__ import annotations

import pytest

from repo_updater.core.domain import ChangesetRef, CheckState, HostPullState, ReviewState
from repo_updater.core.selection import Selection
from repo_updater.sources.gitea import GiteaSource
from repo_updater.sources.http import RetryPolicy
from tests.conformance.replay import ReadLog, Replay, excerpt, track_reads, undeclared_reads

RETRY = RetryPolicy(attempts=1, backoff=0.0, max_rate_limit_wait=0.0)


def source(replay: Replay, selection: Selection | None = None) -> GiteaSource:
    return GiteaSource(
        base_url=replay.base_url,
        token="gitea-t0ken",
        selection=selection or Selection(),
        transport=replay.transport,
        retry=RETRY,
    )


async def test_org_listing_pages_by_number_on_our_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """ROOT_URL is another origin and the server caps limit at 2. Before: page 2 was refused
    ("another origin"), and without the Link the paging math (page * 50 < 3) stopped after
    page 1. After: page numbers on the configured URL until X-Total-Count is reached."""
    replay = Replay.load("gitea/org_repos_root_url")
    log = ReadLog(api_path="/api/v1")
    track_reads(monkeypatch, log)
    src = source(replay, Selection(owners=("acme",)))
    repos = [r async for page in src.list_repos() for r in page]
    await src.aclose()
    replay.assert_all_used()
    assert [(r.name, r.private, r.archived) for r in repos] == [
        ("acme/api", False, False),
        ("acme/web", True, False),
        ("acme/old", True, True),  # internal counts as private
    ]
    assert list(undeclared_reads(excerpt("gitea_rest.yaml"), log)) == []


async def test_pulls_diff_stats_paged_reviews_and_status(monkeypatch: pytest.MonkeyPatch) -> None:
    replay = Replay.load("gitea/pulls")
    log = ReadLog(api_path="/api/v1")
    track_reads(monkeypatch, log)
    src = source(replay)
    snaps = await src.load_changesets([ChangesetRef(n, "acme/app", "1", n) for n in (3, 2, 1)])
    await src.aclose()
    replay.assert_all_used()
    open_pr, merged, closed = snaps
    assert (open_pr.state, open_pr.additions, open_pr.deletions) == (HostPullState.OPEN, 12, 4)
    # bob's change request on the second page of reviews is his last word
    assert open_pr.review_state is ReviewState.CHANGES_REQUESTED
    assert open_pr.check_state is CheckState.PASSED  # skipped counts as success
    # listed only: no diff stats (None: unknown, the store keeps its values; was 0/0)
    assert (merged.state, merged.additions, merged.deletions) == (HostPullState.MERGED, None, None)
    assert merged.head_ref == "batch-2"  # the label, not refs/pull/2/head
    assert closed.state is HostPullState.CLOSED
    assert list(undeclared_reads(excerpt("gitea_rest.yaml"), log)) == []
