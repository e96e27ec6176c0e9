"""Every source's writes (``ChangesetWriter``) against the emulator of its host on loopback:
the same operations on all four hosts, then what differs between them (archived refusals,
drafts, merge rules, Bitbucket's version lock, GitLab's and Gitea's draft titles)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.core.errors import (
    Conflict,
    HostError,
    NotFound,
    RateLimited,
    Refused,
    RepoArchived,
)
from repo_updater.core.operations import MergeMethod
from repo_updater.core.ports import WritingSource
from repo_updater.core.selection import Selection
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import HostState
from repo_updater.sources import source_class
from repo_updater.sources.github import GitHubSource
from repo_updater.sources.http import RetryPolicy

FAST = RetryPolicy(attempts=2, backoff=0.001, max_rate_limit_wait=5.0)
OWNER = {HostKind.BITBUCKET_SERVER: "ACME"}
KINDS = list(HostKind)


def repo_name(kind: HostKind) -> str:
    return f"{OWNER.get(kind, 'acme')}/app"


@pytest.fixture(params=KINDS, ids=[k.value for k in KINDS])
def kind(request: pytest.FixtureRequest) -> HostKind:
    value: HostKind = request.param
    return value


@pytest.fixture
async def writer(emu: RunningEmulator, kind: HostKind) -> AsyncIterator[WritingSource]:
    emu.state.host(kind).add_repo(OWNER.get(kind, "acme"), "app")
    source = source_class(kind)(
        base_url=emu.base_url(kind), token=None, selection=Selection(), retry=FAST
    )
    yield source
    await source.aclose()


def pulls(emu: RunningEmulator, kind: HostKind) -> HostState:
    return emu.state.host(kind)


async def test_close_reopen_draft_ready_update_comment_merge(
    emu: RunningEmulator, kind: HostKind, writer: WritingSource
) -> None:
    h, name = pulls(emu, kind), repo_name(kind)
    pull = h.add_pull(name, title="Bump deps")
    n = pull.number
    assert (await writer.close_changeset(name, n)).state is HostPullState.CLOSED
    assert h.repo(name).pulls[n].state.value == "CLOSED"
    assert (await writer.reopen_changeset(name, n)).state is HostPullState.OPEN
    assert (await writer.convert_to_draft(name, n)).state is HostPullState.DRAFT
    assert h.repo(name).pulls[n].state.value == "DRAFT"
    updated = await writer.update_changeset(name, n, title="Bump all deps", body="why")
    assert updated.state is HostPullState.DRAFT  # a draft stays a draft (GitLab/Gitea: prefix)
    assert pull.body == "why" and pull.title.endswith("Bump all deps")
    assert (await writer.mark_ready(name, n)).state is HostPullState.OPEN
    assert pull.title == "Bump all deps"
    since = datetime.now(UTC) - timedelta(seconds=5)
    assert not await writer.has_comment(name, n, "Please review", since)
    await writer.add_comment(name, n, "Please review")
    assert [c.body for c in pull.comments] == ["Please review"]
    assert await writer.has_comment(name, n, "Please review", since)
    assert not await writer.has_comment(name, n, "Something else", since)
    merged = await writer.merge_changeset(name, n, MergeMethod.SQUASH)
    assert merged.state is HostPullState.MERGED and pull.state.value == "MERGED"


POSTED = {HostKind.GITLAB: "/notes"}  # where a comment is posted (else .../comments)
LOOKED_UP = {HostKind.GITLAB: "/notes", HostKind.BITBUCKET_SERVER: "/activities"}


async def test_a_write_that_may_have_been_applied_is_not_sent_again_but_a_read_is(
    emu: RunningEmulator, kind: HostKind, writer: WritingSource
) -> None:
    """``HostClient``'s retry rules with the reconciler's writes: a comment answered with a 5xx
    (it may have been applied) or with a 2xx whose body was cut short (it was) is not posted
    again; a read answered so is asked again (and the reconciler's look before a second
    attempt is such a read)."""
    h, name = pulls(emu, kind), repo_name(kind)
    n = h.add_pull(name, title="Bump deps").number
    faults = h.faults
    faults.path_contains = POSTED.get(kind, "/comments")
    faults.errors_next = 1
    before = h.request_count
    with pytest.raises(HostError):
        await writer.add_comment(name, n, "Please review")
    assert h.request_count - before == 1 and h.repo(name).pulls[n].comments == []
    faults.truncate_next, before = 1, h.request_count
    with contextlib.suppress(HostError):  # a source that reads the answer finds it cut short
        await writer.add_comment(name, n, "Please review")
    assert h.request_count - before == 1
    assert [c.body for c in h.repo(name).pulls[n].comments] == ["Please review"]  # once
    faults.path_contains = LOOKED_UP.get(kind, "/comments")
    faults.truncate_next, before = 1, h.request_count
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert await writer.has_comment(name, n, "Please review", since)
    assert h.request_count - before == 2  # the cut-short answer, then the whole one


async def test_github_graphql_writes_go_to_the_configured_endpoint_and_spend_its_budget(
    emu: RunningEmulator,
) -> None:
    """GitHub Enterprise Server (``.../api/v3``) serves GraphQL at ``/api/graphql``; the
    node-id query is a read (a 5xx is asked again), the mutation is not repeated; and a
    GraphQL budget that is used up holds the mutation back with ``RateLimited``."""
    gh = emu.state.host(HostKind.GITHUB)
    gh.add_repo("acme", "app")
    n = gh.add_pull("acme/app", title="Bump deps", state=HostPullState.DRAFT).number
    source = GitHubSource(
        base_url=emu.base_url(HostKind.GITHUB) + "/api/v3", token=None, selection=Selection(),
        retry=FAST,
    )  # fmt: skip
    try:
        assert source.graphql_url.endswith("/github/api/graphql")
        gh.faults.errors_next, gh.faults.path_contains = 1, "/api/graphql"
        before = gh.request_count
        assert (await source.mark_ready("acme/app", n)).state is HostPullState.OPEN
        assert gh.request_count - before == 3  # the query, the query again, the mutation
        source.budget.exhausted(time.time() + 3600)
        before = gh.request_count
        with pytest.raises(RateLimited):
            await source.convert_to_draft("acme/app", n)
        assert gh.request_count == before and gh.repo("acme/app").pulls[n].state.value == "OPEN"
    finally:
        await source.aclose()


async def test_archived_repository_refuses_with_repo_archived(
    emu: RunningEmulator, kind: HostKind, writer: WritingSource
) -> None:
    h, name = pulls(emu, kind), repo_name(kind)
    n = h.add_pull(name, title="t").number
    h.set_archived(name, True)
    with pytest.raises(RepoArchived):
        await writer.add_comment(name, n, "hello")
    with pytest.raises(RepoArchived):
        await writer.merge_changeset(name, n, MergeMethod.MERGE)
    assert h.repo(name).pulls[n].comments == []
    refused = [w for w in h.writes.log if w.archived]
    assert refused and all(w.status >= 400 for w in refused)


async def test_unmergeable_pull_request_is_refused(
    emu: RunningEmulator, kind: HostKind, writer: WritingSource
) -> None:
    h, name = pulls(emu, kind), repo_name(kind)
    repo = h.repo(name)
    h.writes.set_repo(repo.id, required_approvals=1, required_checks=True)
    n = h.add_pull(name, title="t").number
    with pytest.raises(Refused):
        await writer.merge_changeset(name, n, MergeMethod.MERGE)
    h.add_review(name, n, author="ann", state=ReviewState.APPROVED)
    h.set_check_state(name, n, CheckState.PASSED)
    assert (await writer.merge_changeset(name, n, MergeMethod.MERGE)).state is HostPullState.MERGED
    with pytest.raises((Refused, Conflict)):  # merged already (Bitbucket: 409 "not open")
        await writer.merge_changeset(name, n, MergeMethod.MERGE)


async def test_secondary_write_limit_is_raised_at_once_with_retry_after(
    emu: RunningEmulator, kind: HostKind, writer: WritingSource
) -> None:
    h, name = pulls(emu, kind), repo_name(kind)
    n = h.add_pull(name, title="t").number
    h.writes.per_minute, h.writes.retry_after = 1, 42
    await writer.add_comment(name, n, "first")
    with pytest.raises(RateLimited) as info:
        await writer.add_comment(name, n, "second")
    assert info.value.retry_after == 42  # not slept through: the caller pauses every worker
    assert [c.body for c in h.repo(name).pulls[n].comments] == ["first"]


async def test_missing_pull_request_is_not_found(kind: HostKind, writer: WritingSource) -> None:
    with pytest.raises(NotFound):
        await writer.close_changeset(repo_name(kind), 404)


# --- what differs between hosts ----------------------------------------------------------------


@pytest.mark.parametrize("kind", [HostKind.GITHUB])
async def test_github_draft_on_a_plan_without_drafts_opens_ready_and_says_so(
    emu: RunningEmulator, writer: WritingSource
) -> None:
    from repo_updater.core.domain import NewChangesetSpec

    h = pulls(emu, HostKind.GITHUB)
    h.writes.set_repo(h.repo("acme/app").id, drafts=False)
    spec = NewChangesetSpec("acme/app", "Bump", "", "bump", "main", draft=True)
    created = await writer.create_changeset(spec)
    assert created.state is HostPullState.OPEN
    assert [e.kind for e in created.events] == ["draft_unsupported"]
    with pytest.raises(Refused, match="Draft pull requests are not supported"):
        await writer.convert_to_draft("acme/app", created.number)


@pytest.mark.parametrize("kind", [HostKind.GITLAB])
async def test_gitlab_existing_merge_request_must_match_source_and_target(
    emu: RunningEmulator, writer: WritingSource
) -> None:
    from repo_updater.core.domain import NewChangesetSpec

    h = pulls(emu, HostKind.GITLAB)
    other = h.add_pull("acme/app", title="to release", head_ref="bump", base_ref="release")
    created = await writer.create_changeset(
        NewChangesetSpec("acme/app", "to main", "", "bump", "main")
    )
    assert created.number != other.number  # same source branch, other target: a new MR
    again = await writer.create_changeset(
        NewChangesetSpec("acme/app", "to main", "", "bump", "main")
    )
    assert again.number == created.number and len(h.repo("acme/app").pulls) == 2


@pytest.mark.parametrize("kind", [HostKind.GITEA])
async def test_gitea_patch_on_archived_succeeds_and_old_gitea_answers_404(
    emu: RunningEmulator, writer: WritingSource
) -> None:
    h = pulls(emu, HostKind.GITEA)
    n = h.add_pull("acme/app", title="t").number
    h.set_archived("acme/app", True)
    # Gitea does not guard PATCH with mustNotBeArchived: closing works on the real host.
    assert (await writer.close_changeset("acme/app", n)).state is HostPullState.CLOSED
    h.writes.gitea_version = (1, 20)  # before 1.21 the guard answered 404, not 423
    with pytest.raises(RepoArchived):
        await writer.add_comment("acme/app", n, "hello")
    assert [w.status for w in h.writes.log if w.action == "comment"] == [404]


@pytest.mark.parametrize("kind", [HostKind.BITBUCKET_SERVER])
async def test_bitbucket_retries_once_on_an_out_of_date_version(
    emu: RunningEmulator, writer: WritingSource
) -> None:
    h = pulls(emu, HostKind.BITBUCKET_SERVER)
    pull = h.add_pull("ACME/app", title="t")
    h.add_review("ACME/app", pull.number, author="ann", state=ReviewState.APPROVED)
    original = writer._read  # type: ignore[attr-defined]

    async def stale_read(repo: str, number: int) -> object:
        data = await original(repo, number)
        pull.version += 1  # someone else changes the pull request right after our read
        return data

    writer._read = stale_read  # type: ignore[attr-defined]
    updated = await writer.update_changeset("ACME/app", pull.number, title="New", body=None)
    assert updated.title == "New" and pull.title == "New"
    assert [r.author for r in pull.reviews] == ["ann"]  # the PUT sent the reviewers back
    statuses = [w.status for w in h.writes.log if w.action == "update"]
    assert statuses == [409, 200]
