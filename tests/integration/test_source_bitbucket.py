"""BitbucketServerSource against the Bitbucket Server emulator on loopback."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from repo_updater.core.domain import (
    ChangesetRef,
    CheckState,
    HostKind,
    HostPullState,
    ReviewState,
    SourcedRepo,
)
from repo_updater.core.errors import HostError, NotFound, RateLimited, Unauthorized
from repo_updater.core.ports import RepoSource, RequestCounter
from repo_updater.core.selection import Selection
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import EmulatedReview, HostState, utcnow
from repo_updater.sources.bitbucket import BitbucketServerSource
from repo_updater.sources.http import RetryPolicy

TOKEN = "bbs-secret-token-123"
FAST = RetryPolicy(attempts=3, backoff=0.001, max_rate_limit_wait=2.0)


@pytest.fixture(autouse=True)
def _token(emu: RunningEmulator) -> None:
    emu.state.host(HostKind.BITBUCKET_SERVER).token = TOKEN


def host(emu: RunningEmulator) -> HostState:
    return emu.state.host(HostKind.BITBUCKET_SERVER)


def source(emu: RunningEmulator, selection: Selection, **kw: object) -> BitbucketServerSource:
    kw.setdefault("token", TOKEN)
    return BitbucketServerSource(
        base_url=emu.base_url(HostKind.BITBUCKET_SERVER),
        selection=selection,
        retry=FAST,
        **kw,  # type: ignore[arg-type]
    )


async def collect(src: BitbucketServerSource) -> list[Sequence[SourcedRepo]]:
    try:
        return [page async for page in src.list_repos()]
    finally:
        await src.aclose()


async def test_lists_projects_over_pages_with_archived_flag(emu: RunningEmulator) -> None:
    h = host(emu)
    for i in range(5):
        h.add_repo("PROJ", f"svc-{i}", archived=i == 1, private=i != 2)
    h.add_repo("OTHER", "lib", fork=True)
    h.add_repo("OTHER", "legacy-thing")
    h.add_repo("SOLO", "one")
    counter = RequestCounter()
    selection = Selection(
        owners=("PROJ", "OTHER"), repos=("SOLO/one", "SOLO/none"), exclude=("*/legacy-*",)
    )
    src = source(emu, selection, limit=2, counter=counter)
    pages = await collect(src)
    assert [len(p) for p in pages] == [2, 2, 1, 1, 1]
    repos = {r.name: r for page in pages for r in page}
    assert sorted(repos) == [
        "OTHER/lib",
        "PROJ/svc-0",
        "PROJ/svc-1",
        "PROJ/svc-2",
        "PROJ/svc-3",
        "PROJ/svc-4",
        "SOLO/one",
    ]
    assert repos["PROJ/svc-1"].archived and not repos["PROJ/svc-0"].archived
    assert repos["PROJ/svc-0"].private and not repos["PROJ/svc-2"].private
    assert repos["OTHER/lib"].fork
    assert repos["PROJ/svc-0"].external_id == str(h.repo("PROJ/svc-0").id)
    assert repos["PROJ/svc-0"].url.endswith("/bitbucket/projects/PROJ/repos/svc-0/browse")
    # PROJ: 3 pages and one asked ahead past the end (Bitbucket sends no total: pages 2.. are
    # asked ahead by start offset, see sources.paging), OTHER: 1 page (its excluded repo is
    # dropped), then the 2 explicit GETs.
    assert counter.by_kind == {"list_repos": 5, "get_repo": 2}


async def test_unknown_project_raises(emu: RunningEmulator) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        await collect(source(emu, Selection(owners=("NOPE",))))


async def test_fault_mid_listing_raises_after_earlier_pages(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.BITBUCKET_SERVER, orgs=1, repos_per_org=5, org_prefix="P")
    src = source(emu, Selection(owners=("P0",)), limit=2)
    pages: list[Sequence[SourcedRepo]] = []
    try:
        with pytest.raises(HostError):
            async for page in src.list_repos():
                pages.append(page)
                host(emu).faults.errors_next = 10
    finally:
        await src.aclose()
    assert [len(p) for p in pages] == [2]


async def test_truncated_page_rate_limits_and_bad_token(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.BITBUCKET_SERVER, orgs=1, repos_per_org=2, org_prefix="P")
    faults = host(emu).faults
    faults.truncate_next = 1  # retried like a 5xx
    assert len(await collect(source(emu, Selection(owners=("P0",))))) == 1
    faults.truncate_next = FAST.attempts  # truncated on every attempt
    with pytest.raises(HostError, match="JSON"):
        await collect(source(emu, Selection(owners=("P0",))))
    assert faults.truncate_next == 0

    faults.rate_limited_next, faults.retry_after = 1, 0
    assert len(await collect(source(emu, Selection(owners=("P0",))))) == 1
    faults.rate_limited_next, faults.retry_after = 1, 600
    with pytest.raises(RateLimited) as limited:
        await collect(source(emu, Selection(owners=("P0",))))
    assert limited.value.retry_after == pytest.approx(600)

    with pytest.raises(Unauthorized) as info:
        await collect(source(emu, Selection(owners=("P0",)), token="nope-token-999"))
    assert "nope-token-999" not in str(info.value) and TOKEN not in str(info.value)


def refs_for(
    h: HostState, full_name: str, numbers: Sequence[int], start: int
) -> list[ChangesetRef]:
    rid = str(h.repo(full_name).id)
    return [ChangesetRef(start + i, full_name, rid, n) for i, n in enumerate(numbers)]


async def test_load_changesets_states_reviews_and_request_counts(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.BITBUCKET_SERVER, orgs=1, repos_per_org=2, pulls_per_repo=3)
    h = host(emu)
    h.set_pull_state("org0/repo-0", 2, HostPullState.MERGED)
    h.set_pull_state("org0/repo-0", 3, HostPullState.CLOSED)
    h.set_pull_state("org0/repo-1", 1, HostPullState.DRAFT)
    pull = h.repo("org0/repo-0").pulls[1]
    pull.reviews.append(EmulatedReview("ann", ReviewState.APPROVED, utcnow()))
    pull.reviews.append(EmulatedReview("ben", ReviewState.CHANGES_REQUESTED, utcnow()))
    h.repo("org0/repo-1").pulls[2].reviews.append(
        EmulatedReview("ann", ReviewState.APPROVED, utcnow())
    )
    pull.check_state = CheckState.FAILED
    h.repo("org0/repo-1").pulls[2].check_state = CheckState.PASSED
    refs = refs_for(h, "org0/repo-0", [1, 2, 3, 42], 1) + refs_for(h, "org0/repo-1", [2], 10)
    refs += refs_for(h, "org0/repo-1", [1], 11)
    counter = RequestCounter()
    src = source(emu, Selection(), counter=counter)
    snaps = await src.load_changesets(refs)
    await src.aclose()
    assert [s.changeset_id for s in snaps] == [1, 2, 3, 4, 10, 11]
    assert [s.state for s in snaps] == [
        HostPullState.OPEN,
        HostPullState.MERGED,
        HostPullState.CLOSED,
        HostPullState.DELETED,
        HostPullState.OPEN,
        HostPullState.DRAFT,
    ]
    assert snaps[0].review_state is ReviewState.CHANGES_REQUESTED
    assert snaps[4].review_state is ReviewState.APPROVED
    assert snaps[1].events[0].kind == "merged" and snaps[2].events[0].kind == "closed"
    assert snaps[0].url.endswith("/projects/org0/repos/repo-0/pull-requests/1")
    assert snaps[0].head_ref == "batch/change-1" and snaps[0].base_ref == "main"
    # Build statuses of the head commits: FAILED, SUCCESSFUL, INPROGRESS; none when closed.
    assert [s.check_state for s in snaps] == [
        CheckState.FAILED,
        CheckState.UNKNOWN,
        CheckState.UNKNOWN,
        CheckState.UNKNOWN,
        CheckState.PASSED,
        CheckState.PENDING,
    ]
    # repo-0: one listing page + one GET confirming #42 is gone; repo-1: one listing page;
    # the build statuses of each of the 3 open PRs.
    assert counter.by_kind == {"load_changesets": 2, "load_changeset": 1, "load_checks": 3}


async def test_single_ref_uses_one_get_and_deleted_repo_is_deleted(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.BITBUCKET_SERVER, orgs=1, repos_per_org=2, pulls_per_repo=2)
    h = host(emu)
    refs = refs_for(h, "org0/repo-0", [2], 1) + refs_for(h, "org0/repo-1", [1, 2], 2)
    h.delete_repo("org0/repo-1")
    counter = RequestCounter()
    src = source(emu, Selection(), counter=counter)
    snaps = await src.load_changesets(refs)
    await src.aclose()
    assert [s.state for s in snaps] == [
        HostPullState.OPEN,
        HostPullState.DELETED,
        HostPullState.DELETED,
    ]
    assert counter.by_kind == {"load_changeset": 3, "load_changesets": 1, "load_checks": 1}


def test_is_a_repo_source() -> None:
    src: RepoSource = BitbucketServerSource(
        base_url="https://bb.example.com", token=None, selection=Selection(), name_prefix="bb"
    )
    assert src.kind is HostKind.BITBUCKET_SERVER and src.name_prefix == "bb"


async def test_one_failing_repo_fails_only_its_changesets(
    emu: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.state.seed(HostKind.BITBUCKET_SERVER, orgs=1, repos_per_org=3, pulls_per_repo=2)
    h = host(emu)
    refs = refs_for(h, "org0/repo-0", [1, 2], 1) + refs_for(h, "org0/repo-1", [1], 10)
    refs += refs_for(h, "org0/repo-2", [1, 2], 20)
    h.faults.errors_next, h.faults.path_contains = 50, "/repos/repo-1/"
    src = source(emu, Selection())
    with caplog.at_level("WARNING"):
        snaps = await src.load_changesets(refs)
    assert [s.changeset_id for s in snaps] == [1, 2, 20, 21]
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "org0/repo-1" in warning and TOKEN not in warning
    with pytest.raises(HostError):  # nothing loaded at all: the error, not an empty list
        await src.load_changesets(refs_for(h, "org0/repo-1", [1], 10))
    h.faults.errors_next = 0
    h.faults.rate_limited_next, h.faults.retry_after = 5, 600  # rate limits still propagate
    with pytest.raises(RateLimited):
        await src.load_changesets(refs)
    await src.aclose()
