"""GitHubSource against the real GitHub emulator on loopback."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime

import pytest

from repo_updater.core.domain import (
    ChangesetRef,
    CheckState,
    HostKind,
    HostPullState,
    NewChangesetSpec,
    ReviewState,
    SourcedRepo,
)
from repo_updater.core.errors import (
    HostError,
    NotFound,
    RateLimited,
    RepoArchived,
    SourceError,
    Unauthorized,
)
from repo_updater.core.ports import RequestCounter
from repo_updater.core.selection import Selection
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import HostState
from repo_updater.sources.github import GitHubSource
from repo_updater.sources.http import RetryPolicy

GH = HostKind.GITHUB
TOKEN = "ghp_s3cr3tT0kenValue"
FAST = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=2.0)


def host(emu: RunningEmulator) -> HostState:
    return emu.state.host(GH)


def make_source(
    emu: RunningEmulator,
    selection: Selection,
    *,
    token: str | None = None,
    retry: RetryPolicy = FAST,
    counter: RequestCounter | None = None,
    batch_size: int = 50,
    timeout: float = 5.0,
) -> GitHubSource:
    return GitHubSource(
        base_url=emu.base_url(GH),
        token=token,
        selection=selection,
        retry=retry,
        counter=counter,
        batch_size=batch_size,
        timeout=timeout,
    )


async def collect(
    source: GitHubSource, pages: list[Sequence[SourcedRepo]] | None = None
) -> list[SourcedRepo]:
    out: list[SourcedRepo] = []
    async for page in source.list_repos():
        if pages is not None:
            pages.append(page)
        out.extend(page)
    return out


# --- listing ---------------------------------------------------------------------------------


async def test_lists_pages_of_an_org(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=2, repos_per_org=250)
    host(emu).set_archived("org0/repo-7", True)
    counter = RequestCounter()
    source = make_source(emu, Selection(owners=("org0",)), counter=counter)
    assert source.host_url == emu.base_url(GH)
    assert source.name_prefix == f"127.0.0.1:{emu.port}/github"
    pages: list[Sequence[SourcedRepo]] = []
    repos = await collect(source, pages)
    await source.aclose()
    assert [len(p) for p in pages] == [100, 100, 50]
    assert counter.by_kind == {"list_repos": 3}
    assert [r.name for r in repos] == [f"org0/repo-{i}" for i in range(250)]
    emulated = host(emu).repo("org0/repo-7")
    assert repos[7] == SourcedRepo(
        external_id=str(emulated.id),
        name="org0/repo-7",
        url=f"{emu.base_url(GH)}/org0/repo-7",
        archived=True,
    )
    assert sum(r.archived for r in repos) == 1


async def test_excludes_explicit_repos_and_user_fallback(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=2, repos_per_org=5)
    host(emu).add_repo("alice", "dotfiles", fork=True, description="mine")
    host(emu).add_repo("alice", "diary", private=True)  # /users/alice/repos does not list it
    host(emu).users.add("alice")
    counter = RequestCounter()
    selection = Selection(
        owners=("org0", "alice"),
        repos=("org1/repo-2", "org1/repo-3", "org1/missing", "org1/repo-4"),
        exclude=("org0/repo-[34]", "ORG1/REPO-4"),
    )
    source = make_source(emu, selection, counter=counter)
    repos = await collect(source)
    await source.aclose()
    assert [r.name for r in repos] == [
        "org0/repo-0",
        "org0/repo-1",
        "org0/repo-2",
        "alice/dotfiles",
        "org1/repo-2",
        "org1/repo-3",
    ]
    alice = repos[3]
    assert (alice.fork, alice.private, alice.description) == (True, False, "mine")
    # org0, alice (orgs 404, who the token is, then users), three explicit repos; the excluded
    # one is not fetched.
    assert counter.by_kind == {"list_repos": 3, "get_viewer": 1, "get_repo": 3}


async def test_token_owner_lists_own_private_repos(emu: RunningEmulator) -> None:
    """``/users/{u}/repos`` lists public repos only; for the token's own user the source
    lists ``/user/repos?affiliation=owner`` (private ones included, not other orgs')."""
    h = host(emu)
    h.add_repo("Alice", "dotfiles")
    h.add_repo("Alice", "diary", private=True)
    h.add_repo("bob", "notes", private=True)
    h.add_repo("acme", "app")
    h.users.update({"Alice", "bob"})
    h.settings.viewer = "Alice"
    counter = RequestCounter()
    source = make_source(emu, Selection(owners=("alice", "bob")), token=TOKEN, counter=counter)
    repos = await collect(source)
    await source.aclose()
    names = [(r.name, r.private) for r in repos]
    assert names == [("Alice/dotfiles", False), ("Alice/diary", True)]
    # bob is another user: public repos only, of which he has none. /user asked once.
    assert counter.by_kind == {"list_repos": 4, "get_viewer": 1}


async def test_unknown_owner_is_an_error_not_an_empty_listing(emu: RunningEmulator) -> None:
    source = make_source(emu, Selection(owners=("ghost",)))
    with pytest.raises(NotFound, match="ghost"):
        await collect(source)
    await source.aclose()


async def test_unchanged_relisting_uses_etags(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=250)
    host(emu).add_repo("org1", "solo")
    host(emu).faults.rate_limit_remaining = 100
    source = make_source(emu, Selection(owners=("org0",), repos=("org1/solo",)))
    first = await collect(source)
    assert host(emu).faults.rate_limit_remaining == 96
    second = await collect(source)
    assert second == first
    assert host(emu).faults.rate_limit_remaining == 96  # four 304s cost nothing
    host(emu).set_archived("org0/repo-120", True)
    host(emu).add_repo("org0", "new")
    third = await collect(source)
    await source.aclose()
    assert [r.name for r in third if r.archived] == ["org0/repo-120"]
    assert third[-2].name == "org0/new" and len(third) == 252
    assert host(emu).faults.rate_limit_remaining == 94  # only pages 2 and 3 changed


async def test_new_page_behind_an_unchanged_full_last_page_is_listed(
    emu: RunningEmulator,
) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=200)
    source = make_source(emu, Selection(owners=("org0",)))
    assert len(await collect(source)) == 200
    host(emu).add_repo("org0", "spill")  # page 2 is unchanged (304) but now has a next page
    pages: list[Sequence[SourcedRepo]] = []
    repos = await collect(source, pages)
    await source.aclose()
    assert [len(p) for p in pages] == [100, 100, 1] and repos[-1].name == "org0/spill"


# --- faults while listing --------------------------------------------------------------------


async def test_server_errors_mid_listing_raise_after_earlier_pages(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=250)
    faults = host(emu).faults
    faults.errors_next, faults.path_contains = 5, "page=2"
    source = make_source(emu, Selection(owners=("org0",)), token=TOKEN)
    pages: list[Sequence[SourcedRepo]] = []
    with pytest.raises(HostError, match="HTTP 502") as caught:
        await collect(source, pages)
    assert [len(p) for p in pages] == [100]
    assert faults.errors_next == 3  # two attempts, then gave up
    assert TOKEN not in str(caught.value)
    faults.errors_next = 1  # a transient error is retried
    assert len(await collect(source)) == 250
    await source.aclose()


async def test_timeouts_are_retried_then_raise(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=3)
    faults = host(emu).faults
    faults.timeouts_next, faults.timeout_seconds = 1, 5.0
    source = make_source(emu, Selection(owners=("org0",)), timeout=0.2)
    assert len(await collect(source)) == 3  # one timeout, then a successful retry
    faults.timeouts_next = 2
    started = time.monotonic()
    with pytest.raises(HostError, match="timed out"):
        await collect(source)
    assert time.monotonic() - started < 2.0
    await source.aclose()


async def test_truncated_page_is_a_host_error(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=150)
    faults = host(emu).faults
    faults.truncate_next, faults.path_contains = 1, "page=2"
    source = make_source(emu, Selection(owners=("org0",)))
    pages: list[Sequence[SourcedRepo]] = []
    with pytest.raises(HostError, match="not valid JSON"):
        await collect(source, pages)
    assert [len(p) for p in pages] == [100]
    await source.aclose()


async def test_secondary_rate_limit_waits_when_short(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=3)
    faults = host(emu).faults
    faults.rate_limited_next, faults.retry_after = 1, 1
    source = make_source(emu, Selection(owners=("org0",)))
    started = time.monotonic()
    assert len(await collect(source)) == 3
    assert time.monotonic() - started >= 0.9
    assert host(emu).request_count == 2
    faults.rate_limited_next, faults.retry_after = 1, 30
    with pytest.raises(RateLimited) as caught:
        await collect(source)
    assert caught.value.retry_after == 30
    assert "secondary rate limit" in str(caught.value)
    await source.aclose()


async def test_primary_rate_limit_exhausted(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=3)
    faults = host(emu).faults
    faults.rate_limit_remaining, faults.rate_limit_reset_in = 0, 60
    source = make_source(emu, Selection(owners=("org0",)), token=TOKEN)
    with pytest.raises(RateLimited) as caught:
        await collect(source)
    assert 55 <= caught.value.retry_after <= 61
    assert "primary rate limit" in str(caught.value) and TOKEN not in str(caught.value)
    await source.aclose()


async def test_primary_rate_limit_waits_for_a_near_reset(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=3)
    faults = host(emu).faults
    faults.rate_limit_remaining, faults.rate_limit_reset_in = 0, 1
    source = make_source(emu, Selection(owners=("org0",)))
    assert len(await collect(source)) == 3
    assert faults.rate_limit_remaining == faults.rate_limit_total - 1
    await source.aclose()


async def test_bad_token_is_unauthorized_and_never_leaks(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=3)
    host(emu).token = "the-right-one"
    source = make_source(emu, Selection(owners=("org0",)), token=TOKEN)
    with pytest.raises(Unauthorized) as caught:
        await collect(source)
    assert TOKEN not in str(caught.value)
    await source.aclose()
    ok = make_source(emu, Selection(owners=("org0",)), token="the-right-one")
    assert len(await collect(ok)) == 3
    await ok.aclose()


async def test_token_is_redacted_even_when_it_is_in_the_url(emu: RunningEmulator) -> None:
    """An owner named like the token puts it in the URL: every error message redacts it."""
    host(emu).add_repo(TOKEN, "x")
    faults = host(emu).faults
    source = make_source(emu, Selection(owners=(TOKEN,)), token=TOKEN, timeout=0.2)
    scenarios = [
        ("errors_next", 5),
        ("truncate_next", 1),
        ("timeouts_next", 5),
        ("rate_limited_next", 1),
    ]
    faults.retry_after, faults.timeout_seconds = 30, 5.0
    for name, value in scenarios:
        setattr(faults, name, value)
        with pytest.raises(SourceError) as caught:
            await collect(source)
        assert TOKEN not in str(caught.value), name
        assert "[REDACTED]" in str(caught.value), name
        setattr(faults, name, 0)
    await source.aclose()


# --- changesets ------------------------------------------------------------------------------


def refs_for(names_numbers: Sequence[tuple[str, int]]) -> list[ChangesetRef]:
    return [
        ChangesetRef(changeset_id=i + 1, repo_name=name, repo_external_id="", number=number)
        for i, (name, number) in enumerate(names_numbers)
    ]


async def test_load_changesets_batches_graphql_requests(emu: RunningEmulator) -> None:
    emu.state.seed(GH, orgs=3, repos_per_org=10, pulls_per_repo=4)
    wanted = [(f"org{i % 3}/repo-{i % 10}", 1 + i % 4) for i in range(120)]
    refs = refs_for(wanted)
    counter = RequestCounter()
    source = make_source(emu, Selection(), counter=counter)
    before = host(emu).request_count
    snapshots = await source.load_changesets(refs)
    await source.aclose()
    assert counter.by_kind == {"graphql": 3}
    assert host(emu).request_count - before == 3
    assert [s.changeset_id for s in snapshots] == [r.changeset_id for r in refs]
    assert [s.number for s in snapshots] == [n for _, n in wanted]
    assert all(s.state is HostPullState.OPEN for s in snapshots)
    assert snapshots[5].url == f"{emu.base_url(GH)}/org2/repo-5/pull/2"
    assert await make_source(emu, Selection()).load_changesets([]) == []


async def test_missing_pull_request_is_deleted_missing_repo_only_when_confirmed(
    emu: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A pull request its repository does not have is deleted. A repository NOT_FOUND may be
    lost access: its pull requests are left out (retried) until the repo syncer confirms the
    repository is gone (``repo_deleted``)."""
    host(emu).add_repo("acme", "app")
    host(emu).add_pull("acme/app", title="kept")
    source = make_source(emu, Selection())
    refs = refs_for([("acme/app", 1), ("acme/app", 2), ("acme/gone", 1)])
    snapshots = await source.load_changesets(refs)
    assert [(s.changeset_id, s.state) for s in snapshots] == [
        (1, HostPullState.OPEN),
        (2, HostPullState.DELETED),
    ]
    assert snapshots[0].title == "kept"
    assert "acme/gone not found or not visible to the token" in caplog.text
    confirmed = dataclasses.replace(refs[2], repo_deleted=True)
    again = await source.load_changesets([confirmed])
    await source.aclose()
    assert [(s.changeset_id, s.state) for s in again] == [(3, HostPullState.DELETED)]


async def test_state_review_check_and_events_mapping(emu: RunningEmulator) -> None:
    h = host(emu)
    h.add_repo("acme", "app")
    h.add_pull("acme/app", title="draft", state=HostPullState.DRAFT)  # 1
    h.add_pull("acme/app", title="approved")  # 2
    h.add_review("acme/app", 2, author="ann", state=ReviewState.CHANGES_REQUESTED)
    h.add_review("acme/app", 2, author="ann", state=ReviewState.APPROVED)
    h.set_check_state("acme/app", 2, CheckState.PASSED)
    h.add_pull("acme/app", title="changes")  # 3
    h.add_review("acme/app", 3, author="ann", state=ReviewState.APPROVED)
    h.add_review("acme/app", 3, author="bob", state=ReviewState.CHANGES_REQUESTED)
    h.set_check_state("acme/app", 3, CheckState.FAILED)
    h.add_pull("acme/app", title="merged")  # 4
    h.set_pull_state("acme/app", 4, HostPullState.MERGED)
    h.add_pull("acme/app", title="closed")  # 5
    h.set_pull_state("acme/app", 5, HostPullState.CLOSED)
    h.set_check_state("acme/app", 5, CheckState.UNKNOWN)
    h.add_pull("acme/app", title="reopened")  # 6
    h.set_pull_state("acme/app", 6, HostPullState.CLOSED)
    h.set_pull_state("acme/app", 6, HostPullState.OPEN)
    source = make_source(emu, Selection())
    snaps = await source.load_changesets(refs_for([("acme/app", n) for n in range(1, 7)]))
    await source.aclose()
    assert [s.state for s in snaps] == [
        HostPullState.DRAFT,
        HostPullState.OPEN,
        HostPullState.OPEN,
        HostPullState.MERGED,
        HostPullState.CLOSED,
        HostPullState.OPEN,
    ]
    assert [s.review_state for s in snaps[:3]] == [
        ReviewState.PENDING,
        ReviewState.APPROVED,
        ReviewState.CHANGES_REQUESTED,
    ]
    assert [s.check_state for s in snaps] == [
        CheckState.PENDING,
        CheckState.PASSED,
        CheckState.FAILED,
        CheckState.PENDING,
        CheckState.UNKNOWN,
        CheckState.PENDING,
    ]
    assert [(e.kind, e.actor, e.detail) for e in snaps[2].events] == [
        ("reviewed", "ann", "APPROVED"),
        ("reviewed", "bob", "CHANGES_REQUESTED"),
    ]
    assert [e.kind for e in snaps[3].events] == ["merged", "closed"]
    assert [e.kind for e in snaps[5].events] == ["closed", "reopened"]
    assert all(isinstance(e.at, datetime) and e.at.tzinfo for s in snaps for e in s.events)
    pull = h.repo("acme/app").pulls[2]
    assert (snaps[1].head_ref, snaps[1].base_ref) == (pull.head_ref, "main")
    assert (snaps[1].additions, snaps[1].deletions, snaps[1].title) == (10, 2, "approved")
    assert snaps[1].updated_at == pull.updated_at.replace(microsecond=0)


async def test_graphql_server_error_raises(emu: RunningEmulator) -> None:
    host(emu).add_repo("acme", "app")
    host(emu).faults.errors_next = 5
    source = make_source(emu, Selection())
    with pytest.raises(HostError):
        await source.load_changesets(refs_for([("acme/app", 1)]))
    await source.aclose()


async def test_create_and_close_changesets(emu: RunningEmulator) -> None:
    host(emu).add_repo("acme", "app")
    source = make_source(emu, Selection(), token=None)
    spec = NewChangesetSpec(
        repo_name="acme/app", title="Bump", body="b", head_ref="batch/bump", base_ref="main"
    )
    created = await source.create_changeset(spec)
    assert (created.number, created.state, created.head_ref) == (
        1,
        HostPullState.OPEN,
        "batch/bump",
    )
    again = await source.create_changeset(spec)  # already open for that branch: the same PR
    assert again.number == 1 and len(host(emu).repo("acme/app").pulls) == 1
    draft = await source.create_changeset(
        NewChangesetSpec("acme/app", "Draft", "", head_ref="batch/d", base_ref="main", draft=True)
    )
    assert draft.state is HostPullState.DRAFT and draft.number == 2
    closed = await source.close_changeset("acme/app", 1)
    assert closed.state is HostPullState.CLOSED
    with pytest.raises(NotFound):
        await source.close_changeset("acme/app", 99)
    await source.aclose()


async def test_writes_to_archived_repo_raise_repo_archived(emu: RunningEmulator) -> None:
    host(emu).add_repo("acme", "app")
    host(emu).add_pull("acme/app", title="t")
    host(emu).set_archived("acme/app", True)
    source = make_source(emu, Selection(), token=TOKEN)
    spec = NewChangesetSpec("acme/app", "t", "", head_ref="h", base_ref="main")
    with pytest.raises(RepoArchived, match="archived so is read-only"):
        await source.create_changeset(spec)
    with pytest.raises(RepoArchived) as caught:
        await source.close_changeset("acme/app", 1)
    assert TOKEN not in str(caught.value)
    assert host(emu).repo("acme/app").pulls[1].state is HostPullState.OPEN
    await source.aclose()


# --- partial failures, renames, empty orgs (review fixes) -------------------------------------


async def test_one_forbidden_repo_fails_only_its_changesets(
    emu: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    h = host(emu)
    h.token = TOKEN
    for name in ("app", "secret", "lib"):
        h.add_repo("acme", name)
        h.add_pull(f"acme/{name}", title=f"{name} 1")
        h.add_pull(f"acme/{name}", title=f"{name} 2")
    h.repo("acme/secret").forbidden = True
    refs = refs_for(
        [("acme/app", 1), ("acme/secret", 1), ("acme/lib", 2), ("acme/secret", 2), ("acme/app", 9)]
    )
    source = make_source(emu, Selection(), token=TOKEN)
    with caplog.at_level("WARNING"):
        snapshots = await source.load_changesets(refs)
    # The forbidden repo's refs are left out (the syncer retries them); the rest are loaded,
    # including a pull request that is really gone.
    assert [(s.changeset_id, s.state) for s in snapshots] == [
        (1, HostPullState.OPEN),
        (3, HostPullState.OPEN),
        (5, HostPullState.DELETED),
    ]
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "acme/secret" in warning and "FORBIDDEN" in warning and TOKEN not in warning
    # When nothing could be loaded, the error says why instead of returning nothing.
    with pytest.raises(HostError, match="acme/secret") as caught:
        await source.load_changesets(refs_for([("acme/secret", 1)]))
    assert TOKEN not in str(caught.value)
    # A rate limit still fails the whole call: those refs must wait, not count as failed.
    h.faults.rate_limited_next, h.faults.retry_after = 1, 120
    with pytest.raises(RateLimited):
        await source.load_changesets(refs)
    await source.aclose()


async def test_renamed_repo_is_followed_by_rest_and_graphql(emu: RunningEmulator) -> None:
    h = host(emu)
    repo = h.add_repo("acme", "old")
    h.add_pull("acme/old", title="before the rename")
    h.rename_repo("acme/old", "new")
    source = make_source(emu, Selection(repos=("acme/old",)))
    # GET /repos/acme/old answers 301 to /repositories/{id}: the repo, under its new name.
    listed = await collect(source)
    assert [(r.external_id, r.name) for r in listed] == [(str(repo.id), "acme/new")]
    assert await collect(source) == listed  # and again, through the ETag cache
    # GraphQL resolves the old name too: the pull request is not reported deleted.
    [snapshot] = await source.load_changesets(refs_for([("acme/old", 1)]))
    assert snapshot.state is HostPullState.OPEN and snapshot.title == "before the rename"
    # Writes to the old name are redirected with 307 and land on the renamed repo.
    spec = NewChangesetSpec(
        repo_name="acme/old", title="after", body="", head_ref="x", base_ref="main"
    )
    created = await source.create_changeset(spec)
    closed = await source.close_changeset("acme/old", created.number)
    await source.aclose()
    assert created.number == 2 and closed.state is HostPullState.CLOSED
    assert h.repo("acme/new").pulls[2].state is HostPullState.CLOSED


async def test_org_whose_last_repo_is_gone_is_a_complete_empty_listing(
    emu: RunningEmulator,
) -> None:
    h = host(emu)
    h.add_repo("acme", "only")
    source = make_source(emu, Selection(owners=("acme",)))
    assert [r.name for r in await collect(source)] == ["acme/only"]
    h.delete_repo("acme/only")
    pages: list[Sequence[SourcedRepo]] = []
    assert await collect(source, pages) == [] and pages == [[]]  # no NotFound: nothing left
    await source.aclose()


async def test_a_304_with_a_link_header_is_trusted_over_the_cached_next_page(
    emu: RunningEmulator,
) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=201)
    counter = RequestCounter()
    source = make_source(emu, Selection(owners=("org0",)), counter=counter)
    assert len(await collect(source)) == 201
    host(emu).delete_repo("org0/repo-200")  # page 2 is unchanged (304) but now the last one
    pages: list[Sequence[SourcedRepo]] = []
    repos = await collect(source, pages)
    await source.aclose()
    assert [len(p) for p in pages] == [100, 100] and len(repos) == 200
    assert counter.by_kind == {"list_repos": 5}  # 3, then 2: no request for a stale page 3
