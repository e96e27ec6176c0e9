"""GitLabSource against the GitLab emulator on loopback: listing, errors, batched MR loading,
writes to archived projects."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aiohttp import web

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
from repo_updater.core.ports import RepoSource, RequestCounter
from repo_updater.core.selection import Selection
from repo_updater.emulator import gitlab as gitlab_emulator
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import EmulatedReview, EmulatorState, HostState, utcnow
from repo_updater.sources.gitlab import GitLabSource
from repo_updater.sources.http import RetryPolicy

TOKEN = "glpat-secret-token-123"
FAST = RetryPolicy(attempts=3, backoff=0.001, max_rate_limit_wait=2.0)


@pytest.fixture(autouse=True)
def _token(emu: RunningEmulator) -> None:
    emu.state.host(HostKind.GITLAB).token = TOKEN


def host(emu: RunningEmulator) -> HostState:
    return emu.state.host(HostKind.GITLAB)


def source(emu: RunningEmulator, selection: Selection, **kw: object) -> GitLabSource:
    kw.setdefault("token", TOKEN)
    return GitLabSource(
        base_url=emu.base_url(HostKind.GITLAB),
        selection=selection,
        retry=FAST,
        **kw,  # type: ignore[arg-type]
    )


async def collect(src: GitLabSource) -> list[Sequence[SourcedRepo]]:
    try:
        return [page async for page in src.list_repos()]
    finally:
        await src.aclose()


async def test_lists_group_with_subgroups_over_several_pages(emu: RunningEmulator) -> None:
    h = host(emu)
    for i in range(5):
        h.add_repo("acme", f"top-{i}")
    for i in range(4):
        h.add_repo("acme/platform/infra", f"deep-{i}", archived=i == 0, private=True)
    h.add_repo("acme-other", "not-mine")
    h.add_repo("acme", "forked", fork=True, description="a fork")
    src = source(emu, Selection(owners=("acme",)), per_page=3)
    pages = await collect(src)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    repos = {r.name: r for page in pages for r in page}
    assert len(repos) == 10 and "acme-other/not-mine" not in repos
    deep = repos["acme/platform/infra/deep-0"]
    assert deep.archived and deep.private and not repos["acme/platform/infra/deep-1"].archived
    assert deep.external_id == str(h.repo("acme/platform/infra/deep-0").id)
    assert deep.url.endswith("/gitlab/acme/platform/infra/deep-0")
    assert repos["acme/forked"].fork and repos["acme/forked"].description == "a fork"
    assert src.counter.by_kind == {"list_repos": 4}


async def test_subgroup_alone_exclude_explicit_and_dedupe(emu: RunningEmulator) -> None:
    h = host(emu)
    for i in range(3):
        h.add_repo("acme/platform", f"svc-{i}")
    h.add_repo("acme/platform", "legacy-old")
    h.add_repo("solo", "one")
    h.add_repo("solo", "skipped-too")
    selection = Selection(
        owners=("acme/platform",),
        repos=("solo/one", "acme/platform/svc-0", "solo/skipped-too", "solo/gone"),
        exclude=("*legacy*", "solo/skipped-*"),
    )
    names = [r.name for page in await collect(source(emu, selection)) for r in page]
    assert names == [
        "acme/platform/svc-0",
        "acme/platform/svc-1",
        "acme/platform/svc-2",
        "solo/one",
    ]


async def test_unknown_group_raises_not_found(emu: RunningEmulator) -> None:
    with pytest.raises(NotFound):
        await collect(source(emu, Selection(owners=("nope",))))


async def test_fault_mid_listing_raises_after_earlier_pages(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=5, org_prefix="grp")
    src = source(emu, Selection(owners=("grp0",)), per_page=2)
    pages: list[Sequence[SourcedRepo]] = []
    try:
        with pytest.raises(HostError, match="502"):
            async for page in src.list_repos():
                pages.append(page)
                host(emu).faults.errors_next = 10  # every retry of the next page fails
    finally:
        await src.aclose()
    assert [len(p) for p in pages] == [2]


async def test_transient_fault_is_retried(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=3, org_prefix="grp")
    host(emu).faults.errors_next = 2
    pages = await collect(source(emu, Selection(owners=("grp0",))))
    assert sum(len(p) for p in pages) == 3


async def test_truncated_page_is_a_host_error(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=3, org_prefix="grp")
    host(emu).faults.truncate_next = 1
    with pytest.raises(HostError, match="JSON"):
        await collect(source(emu, Selection(owners=("grp0",))))


async def test_short_rate_limit_waits_and_long_one_raises(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=3, org_prefix="grp")
    faults = host(emu).faults
    faults.rate_limited_next, faults.retry_after = 1, 0
    pages = await collect(source(emu, Selection(owners=("grp0",))))
    assert sum(len(p) for p in pages) == 3

    faults.rate_limited_next, faults.retry_after = 1, 3600
    with pytest.raises(RateLimited) as info:
        await collect(source(emu, Selection(owners=("grp0",))))
    assert info.value.retry_after == pytest.approx(3600)


async def test_bad_token_is_unauthorized_and_never_leaks(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=1, org_prefix="grp")
    wrong = "glpat-wrong-token-456"
    with pytest.raises(Unauthorized) as info:
        await collect(source(emu, Selection(owners=("grp0",)), token=wrong))
    assert wrong not in str(info.value) and TOKEN not in str(info.value)
    # The Bearer form works too.
    pages = await collect(source(emu, Selection(owners=("grp0",)), oauth=True))
    assert len(pages) == 1


def _refs(
    h: HostState, full_name: str, numbers: Sequence[int], start_id: int
) -> list[ChangesetRef]:
    repo = h.repo(full_name)
    return [
        ChangesetRef(
            changeset_id=start_id + i,
            repo_name=full_name,
            repo_external_id=str(repo.id),
            number=n,
        )
        for i, n in enumerate(numbers)
    ]


async def test_load_changesets_batches_one_request_per_project(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=3, pulls_per_repo=4, org_prefix="grp")
    h = host(emu)
    h.set_pull_state("grp0/repo-0", 2, HostPullState.MERGED)
    h.set_pull_state("grp0/repo-0", 3, HostPullState.CLOSED)
    h.set_pull_state("grp0/repo-1", 1, HostPullState.DRAFT)
    h.repo("grp0/repo-0").pulls[1].check_state = CheckState.PASSED
    h.repo("grp0/repo-0").pulls[4].check_state = CheckState.FAILED
    review = EmulatedReview(author="bob", state=ReviewState.CHANGES_REQUESTED, at=utcnow())
    h.repo("grp0/repo-1").pulls[2].reviews.append(review)
    refs = _refs(h, "grp0/repo-0", [1, 2, 3, 4, 99], 1) + _refs(h, "grp0/repo-1", [1, 2], 10)
    refs += _refs(h, "grp0/repo-2", [3], 20)
    counter = RequestCounter()
    src = source(emu, Selection(), counter=counter)
    snaps = await src.load_changesets(refs)
    await src.aclose()
    # One iids[] request per project; for each of the 5 open MRs: the single MR (GitLab lists
    # MRs without head_pipeline), its reviewers and its approvals.
    assert counter.by_kind == {
        "load_changesets": 3,
        "load_changeset_detail": 5,
        "load_reviewers": 5,
        "load_approvals": 5,
    }
    assert [s.changeset_id for s in snaps] == [r.changeset_id for r in refs]
    states = [s.state for s in snaps]
    assert states == [
        HostPullState.OPEN,
        HostPullState.MERGED,
        HostPullState.CLOSED,
        HostPullState.OPEN,
        HostPullState.DELETED,
        HostPullState.DRAFT,
        HostPullState.OPEN,
        HostPullState.OPEN,
    ]
    assert snaps[0].check_state is CheckState.PASSED
    assert snaps[3].check_state is CheckState.FAILED
    assert snaps[6].check_state is CheckState.PENDING
    assert snaps[6].review_state is ReviewState.CHANGES_REQUESTED
    assert snaps[1].events[0].kind == "merged"
    assert snaps[0].url.endswith("/gitlab/grp0/repo-0/-/merge_requests/1")
    assert snaps[0].head_ref == "batch/change-1" and snaps[0].base_ref == "main"


async def test_load_changesets_of_deleted_project_are_deleted(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=1, pulls_per_repo=1, org_prefix="grp")
    h = host(emu)
    refs = _refs(h, "grp0/repo-0", [1], 1)
    h.delete_repo("grp0/repo-0")
    src = source(emu, Selection())
    snaps = await src.load_changesets(refs)
    await src.aclose()
    assert snaps[0].state is HostPullState.DELETED


async def test_pipelines_and_approvals_from_per_mr_requests() -> None:
    """Real GitLab lists MRs without head_pipeline: the source GETs open MRs for it."""
    state = EmulatorState()
    state.seed(HostKind.GITLAB, orgs=1, repos_per_org=1, pulls_per_repo=3, org_prefix="grp")
    h = state.host(HostKind.GITLAB)
    h.set_pull_state("grp0/repo-0", 3, HostPullState.MERGED)
    h.repo("grp0/repo-0").pulls[1].check_state = CheckState.PASSED
    h.repo("grp0/repo-0").pulls[1].reviews.append(
        EmulatedReview(author="al", state=ReviewState.APPROVED, at=utcnow())
    )
    root = web.Application()
    root.add_subapp("/gitlab", gitlab_emulator.build_app(state, list_pipelines=False))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        counter = RequestCounter()
        src = GitLabSource(
            base_url=f"http://127.0.0.1:{port}/gitlab",
            token=None,
            selection=Selection(),
            counter=counter,
            load_approvals=True,
        )
        snaps = await src.load_changesets(_refs(h, "grp0/repo-0", [1, 2, 3], 1))
        await src.aclose()
    finally:
        await runner.cleanup()
    # 1 list + (MR, reviewers, approvals) for each of the 2 open MRs; none for the merged one.
    assert counter.by_kind == {
        "load_changesets": 1,
        "load_changeset_detail": 2,
        "load_reviewers": 2,
        "load_approvals": 2,
    }
    assert snaps[0].check_state is CheckState.PASSED
    assert snaps[0].review_state is ReviewState.APPROVED
    assert snaps[1].review_state is ReviewState.PENDING
    assert snaps[2].state is HostPullState.MERGED


async def test_create_and_close_merge_request(emu: RunningEmulator) -> None:
    h = host(emu)
    h.add_repo("acme/sub", "app")
    src = source(emu, Selection())
    spec = NewChangesetSpec(
        repo_name="acme/sub/app", title="Bump deps", body="b", head_ref="bump", base_ref="main"
    )
    created = await src.create_changeset(spec)
    assert created.changeset_id == 0 and created.state is HostPullState.OPEN
    assert h.repo("acme/sub/app").pulls[created.number].head_ref == "bump"
    again = await src.create_changeset(spec)  # already open for the branch: the same MR
    assert again.number == created.number and len(h.repo("acme/sub/app").pulls) == 1
    closed = await src.close_changeset("acme/sub/app", created.number)
    assert closed.state is HostPullState.CLOSED
    draft = await src.create_changeset(
        NewChangesetSpec(
            repo_name="acme/sub/app",
            title="WIP",
            body="",
            head_ref="d",
            base_ref="main",
            draft=True,
        )
    )
    assert draft.state is HostPullState.DRAFT
    await src.aclose()


async def test_writes_to_archived_project_raise_repo_archived(emu: RunningEmulator) -> None:
    h = host(emu)
    h.add_repo("acme", "old")
    h.add_pull("acme/old", title="t")
    h.set_archived("acme/old", True)
    src = source(emu, Selection())
    with pytest.raises(RepoArchived) as info:
        await src.close_changeset("acme/old", 1)
    assert TOKEN not in str(info.value)
    spec = NewChangesetSpec(repo_name="acme/old", title="t", body="", head_ref="x", base_ref="main")
    with pytest.raises(RepoArchived):
        await src.create_changeset(spec)
    await src.aclose()


async def test_listing_follows_renames_and_deletes(emu: RunningEmulator) -> None:
    h = host(emu)
    for i in range(3):
        h.add_repo("acme/a", f"r{i}")
    first = [r.name for p in await collect(source(emu, Selection(owners=("acme",)))) for r in p]
    assert first == ["acme/a/r0", "acme/a/r1", "acme/a/r2"]
    h.rename_repo("acme/a/r1", "elsewhere/r1")
    h.delete_repo("acme/a/r2")
    h.add_repo("acme/b", "new")
    again = [r.name for p in await collect(source(emu, Selection(owners=("acme",)))) for r in p]
    assert again == ["acme/a/r0", "acme/b/new"]


async def test_timeout_is_retried_then_raises(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=2, org_prefix="grp")
    faults = host(emu).faults
    faults.timeouts_next, faults.timeout_seconds = 1, 5.0
    pages = await collect(source(emu, Selection(owners=("grp0",)), timeout=0.2))
    assert sum(len(p) for p in pages) == 2
    faults.timeouts_next = 3  # every attempt times out
    with pytest.raises(HostError, match="timed out"):
        await collect(source(emu, Selection(owners=("grp0",)), timeout=0.2))


def test_is_a_repo_source() -> None:
    src: RepoSource = GitLabSource(
        base_url="http://127.0.0.1:7700/gitlab/", token=None, selection=Selection()
    )
    assert src.kind is HostKind.GITLAB
    assert src.name_prefix == "127.0.0.1:7700/gitlab"
    assert src.host_url == "http://127.0.0.1:7700/gitlab"


async def test_listing_falls_back_to_x_next_page_after_following_links(
    emu: RunningEmulator,
) -> None:
    """Page 2 comes without a Link header (a proxy stripped it): X-Next-Page still says
    there is a page 3, so the listing goes on instead of ending early, silently."""
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=7, org_prefix="grp")
    src = source(emu, Selection(owners=("grp0",)), per_page=3)
    sizes = []
    async for page in src.list_repos():
        sizes.append(len(page))
        host(emu).faults.drop_link_next = 1  # page 2 (reached by its Link) has none
    await src.aclose()
    assert sizes == [3, 3, 1]


async def test_group_whose_last_project_is_gone_lists_empty(emu: RunningEmulator) -> None:
    h = host(emu)
    h.add_repo("acme/sub", "only")
    h.delete_repo("acme/sub/only")
    # A complete, empty listing (no NotFound), so the sync may remove the deleted project.
    assert await collect(source(emu, Selection(owners=("acme",)))) == []
    assert await collect(source(emu, Selection(owners=("acme/sub",)))) == []
    with pytest.raises(NotFound):
        await collect(source(emu, Selection(owners=("acme/other",))))


async def test_one_failing_project_fails_only_its_changesets(
    emu: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.state.seed(HostKind.GITLAB, orgs=1, repos_per_org=3, pulls_per_repo=2, org_prefix="grp")
    h = host(emu)
    refs = _refs(h, "grp0/repo-0", [1, 2], 1) + _refs(h, "grp0/repo-1", [1], 10)
    refs += _refs(h, "grp0/repo-2", [2], 20)
    bad = f"/projects/{h.repo('grp0/repo-1').id}/"
    h.faults.errors_next, h.faults.error_status, h.faults.path_contains = 50, 403, bad
    src = source(emu, Selection())
    with caplog.at_level("WARNING"):
        snaps = await src.load_changesets(refs)
    assert [s.changeset_id for s in snaps] == [1, 2, 20]
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "grp0/repo-1" in warning and TOKEN not in warning
    with pytest.raises(SourceError, match="403"):  # nothing loaded: the error, not []
        await src.load_changesets(_refs(h, "grp0/repo-1", [1], 10))
    h.faults.errors_next = 0
    h.faults.rate_limited_next, h.faults.retry_after = 5, 600  # rate limits still propagate
    with pytest.raises(RateLimited):
        await src.load_changesets(refs)
    await src.aclose()


async def test_old_path_of_a_renamed_project_still_finds_it(emu: RunningEmulator) -> None:
    h = host(emu)
    repo = h.add_repo("acme", "old")
    h.rename_repo("acme/old", "new")
    [[found]] = await collect(source(emu, Selection(repos=("acme/old",))))
    assert (found.external_id, found.name) == (str(repo.id), "acme/new")
