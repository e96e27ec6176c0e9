"""The sources against the emulator where it answers as the real hosts do and the project used
to get it wrong (issue 13): GitHub's GraphQL rate limit at HTTP 200, null ``reviewDecision``,
``/users/{u}/repos`` being public only, GitHub Enterprise Server's ``/api/graphql``; paging
``Link`` headers that point at the host's own external URL (GitLab, Gitea); Gitea's capped page
size and paged reviews; GitLab reviewers; Bitbucket Server's empty projects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from repo_updater.core.domain import (
    ChangesetRef,
    ChangesetSnapshot,
    HostKind,
    HostPullState,
    ReviewState,
    SourcedRepo,
)
from repo_updater.core.errors import NotFound, RateLimited
from repo_updater.core.ports import RepoSource, RequestCounter
from repo_updater.core.selection import Selection
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import HostState
from repo_updater.sources import source_class
from repo_updater.sources.github import GitHubSource
from repo_updater.sources.http import RetryPolicy

FAST = RetryPolicy(attempts=2, backoff=0.001, max_rate_limit_wait=1.0)
FOREIGN = "https://code.example.com"  # the host's idea of its own URL; nothing listens there


def make(emu: RunningEmulator, kind: HostKind, counter: RequestCounter, **kw: Any) -> Any:
    kw.setdefault("base_url", emu.base_url(kind))
    kw.setdefault("selection", Selection())
    return source_class(kind)(token="t0ken", retry=FAST, counter=counter, **kw)


def refs(h: HostState, repo: str, numbers: Sequence[int]) -> list[ChangesetRef]:
    rid = str(h.repo(repo).id)
    return [ChangesetRef(i + 1, repo, rid, n) for i, n in enumerate(numbers)]


async def listed(source: RepoSource) -> list[SourcedRepo]:
    try:
        return [r async for page in source.list_repos() for r in page]
    finally:
        await source.aclose()


async def loaded(source: RepoSource, wanted: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
    try:
        return await source.load_changesets(wanted)
    finally:
        await source.aclose()


# --- GitHub ----------------------------------------------------------------------------------


@pytest.mark.parametrize("error_type", ["RATE_LIMITED", "RATE_LIMIT", ""])
async def test_github_graphql_rate_limit_at_http_200_backs_the_host_off(
    emu: RunningEmulator, error_type: str
) -> None:
    """GitHub answers an exhausted GraphQL limit with 200, ``errors`` (either type, or only a
    message) and ``x-ratelimit-remaining: 0``: the source raises ``RateLimited`` until the
    reset, and sends nothing more before it."""
    h = emu.state.host(HostKind.GITHUB)
    h.add_repo("acme", "app")
    h.add_pull("acme/app", title="one")
    h.faults.rate_limit_remaining, h.faults.rate_limit_reset_in = 0, 600
    h.faults.graphql_rate_limit_type = error_type
    counter = RequestCounter()
    source: GitHubSource = make(emu, HostKind.GITHUB, counter)
    with pytest.raises(RateLimited, match="rate limit") as first:
        await source.load_changesets(refs(h, "acme/app", [1]))
    assert 590 <= first.value.retry_after <= 602 and first.value.loaded == ()
    with pytest.raises(RateLimited):  # backing off: no request goes out
        await loaded(source, refs(h, "acme/app", [1]))
    assert counter.by_kind == {"graphql": 1}


async def test_github_budget_backs_off_before_the_limit_keeping_what_loaded(
    emu: RunningEmulator,
) -> None:
    """``rateLimit.remaining`` says the next batch would not fit: the source stops before
    sending it and hands over what it loaded."""
    h = emu.state.host(HostKind.GITHUB)
    h.add_repo("acme", "app")
    for n in range(3):
        h.add_pull("acme/app", title=f"pr {n}")
    h.faults.rate_limit_remaining = 2
    counter = RequestCounter()
    source = make(emu, HostKind.GITHUB, counter, batch_size=1, rate_limit_reserve=0)
    with pytest.raises(RateLimited, match="nearly used up") as info:
        await loaded(source, refs(h, "acme/app", [1, 2, 3]))
    assert [s.number for s in info.value.loaded] == [1, 2]
    assert counter.by_kind == {"graphql": 2} and h.faults.rate_limit_remaining == 0


async def test_github_null_review_decision_comes_from_latest_reviews(
    emu: RunningEmulator,
) -> None:
    """Without a branch rule ``reviewDecision`` is null; the reviewers' latest opinionated
    reviews say what it would be (it used to read PENDING)."""
    h = emu.state.host(HostKind.GITHUB)
    h.add_repo("acme", "free")  # no review rule
    h.add_repo("acme", "ruled").review_required = True
    for repo in ("acme/free", "acme/ruled"):
        for title in ("approved", "changes", "re-approved", "comment only", "none"):
            h.add_pull(repo, title=title)
        h.add_review(repo, 1, author="ann", state=ReviewState.APPROVED)
        h.add_review(repo, 2, author="ann", state=ReviewState.APPROVED)
        h.add_review(repo, 2, author="bob", state=ReviewState.CHANGES_REQUESTED)
        h.add_review(repo, 3, author="bob", state=ReviewState.CHANGES_REQUESTED)
        h.add_review(repo, 3, author="bob", state=ReviewState.APPROVED)
        h.add_review(repo, 4, author="cy", state=ReviewState.COMMENTED)
    source = make(emu, HostKind.GITHUB, RequestCounter())
    snaps = await loaded(source, refs(h, "acme/free", range(1, 6)) + refs(h, "acme/ruled", [1]))
    expected = ["APPROVED", "CHANGES_REQUESTED", "APPROVED", "PENDING", "PENDING", "APPROVED"]
    assert [s.review_state.value for s in snaps] == expected


async def test_github_enterprise_server_graphql_endpoint(emu: RunningEmulator) -> None:
    """A GHES base URL ends in ``/api/v3``; its GraphQL endpoint is ``/api/graphql`` (the
    source used to post to ``/api/v3/graphql``, a 404)."""
    h = emu.state.host(HostKind.GITHUB)
    h.add_repo("acme", "app")
    h.add_pull("acme/app", title="one")
    base = emu.base_url(HostKind.GITHUB) + "/api/v3"
    counter = RequestCounter()
    source = make(emu, HostKind.GITHUB, counter, base_url=base, selection=Selection(("acme",)))
    assert source.graphql_url == emu.base_url(HostKind.GITHUB) + "/api/graphql"
    assert [r.name for r in await listed(source)] == ["acme/app"]
    source = make(emu, HostKind.GITHUB, counter, base_url=base)
    [snap] = await loaded(source, refs(h, "acme/app", [1]))
    assert snap.state is HostPullState.OPEN and snap.title == "one"
    assert counter.by_kind == {"list_repos": 1, "graphql": 1}


# --- GitLab and Gitea: Link headers carry the host's own URL --------------------------------


async def test_gitlab_listing_pages_on_the_configured_url_not_the_links(
    emu: RunningEmulator,
) -> None:
    h = emu.state.host(HostKind.GITLAB)
    for i in range(250):
        h.add_repo("grp/sub" if i % 2 else "grp", f"p{i}")
    h.settings.external_url = FOREIGN  # GitLab's gitlab.host: Link URLs point there
    counter = RequestCounter()
    source = make(emu, HostKind.GITLAB, counter, selection=Selection(("grp",)))
    assert len(await listed(source)) == 250
    assert counter.by_kind == {"list_repos": 3}


async def test_gitea_listing_pages_on_the_configured_url_and_the_servers_page_size(
    emu: RunningEmulator,
) -> None:
    """Gitea's Link URLs start with its ROOT_URL, and an admin may cap ``limit`` below the 50
    the source asks for: page by page number, with the size page 1 had."""
    h = emu.state.host(HostKind.GITEA)
    for i in range(75):
        h.add_repo("acme", f"r{i}")
    h.settings.external_url, h.settings.max_page_size = FOREIGN, 20
    counter = RequestCounter()
    source = make(emu, HostKind.GITEA, counter, selection=Selection(("acme",)))
    assert [r.name for r in await listed(source)] == [f"acme/r{i}" for i in range(75)]
    assert counter.by_kind == {"list_repos": 4}


async def test_gitea_reads_every_page_of_reviews(emu: RunningEmulator) -> None:
    """Reviews are paged (30 by default): the change request after 40 approvals counts."""
    h = emu.state.host(HostKind.GITEA)
    h.add_repo("acme", "app")
    h.add_pull("acme/app", title="busy")
    for i in range(40):
        h.add_review("acme/app", 1, author=f"fan{i}", state=ReviewState.APPROVED)
    h.add_review("acme/app", 1, author="fan3", state=ReviewState.CHANGES_REQUESTED)
    h.settings.max_page_size = 30
    counter = RequestCounter()
    source = make(emu, HostKind.GITEA, counter)
    [snap] = await loaded(source, refs(h, "acme/app", [1]))
    assert snap.review_state is ReviewState.CHANGES_REQUESTED
    assert counter.by_kind["load_reviews"] == 2


# --- GitLab reviewers, Bitbucket Server empty projects ---------------------------------------


async def test_gitlab_review_state_from_the_reviewers(emu: RunningEmulator) -> None:
    """GitLab CE never reports ``detailed_merge_status: requested_changes``: the reviewers'
    ``state`` does (and ``reviewed`` is a comment)."""
    h = emu.state.host(HostKind.GITLAB)
    h.add_repo("grp", "app")
    for title in ("changes", "approved", "commented", "nobody"):
        h.add_pull("grp/app", title=title)
    h.add_review("grp/app", 1, author="ann", state=ReviewState.APPROVED)
    h.add_review("grp/app", 1, author="bob", state=ReviewState.CHANGES_REQUESTED)
    h.add_review("grp/app", 2, author="ann", state=ReviewState.APPROVED)
    h.add_review("grp/app", 3, author="cy", state=ReviewState.COMMENTED)
    counter = RequestCounter()
    snaps = await loaded(make(emu, HostKind.GITLAB, counter), refs(h, "grp/app", range(1, 5)))
    assert [s.review_state.value for s in snaps] == [
        "CHANGES_REQUESTED",
        "APPROVED",
        "COMMENTED",
        "PENDING",
    ]
    assert counter.by_kind["load_reviewers"] == 4 and counter.by_kind["load_approvals"] == 4


async def test_bitbucket_empty_project_lists_nothing_unknown_one_is_an_error(
    emu: RunningEmulator,
) -> None:
    h = emu.state.host(HostKind.BITBUCKET_SERVER)
    h.add_repo("EMPTY", "gone")
    h.delete_repo("EMPTY/gone")  # the project stays, with no repositories
    counter = RequestCounter()
    source = make(emu, HostKind.BITBUCKET_SERVER, counter, selection=Selection(("EMPTY",)))
    assert await listed(source) == []
    source = make(emu, HostKind.BITBUCKET_SERVER, counter, selection=Selection(("NOPE",)))
    with pytest.raises(NotFound, match="does not exist"):
        await listed(source)
