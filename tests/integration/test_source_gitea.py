"""GiteaSource against the Gitea emulator on loopback: org/user listing, errors, PR loading
request counts, writes to archived repos."""

from __future__ import annotations

from collections.abc import Sequence

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
from repo_updater.core.errors import HostError, NotFound, RateLimited, RepoArchived, Unauthorized
from repo_updater.core.ports import RepoSource, RequestCounter
from repo_updater.core.selection import Selection
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import EmulatedReview, HostState, utcnow
from repo_updater.sources.gitea import GiteaSource
from repo_updater.sources.http import RetryPolicy

TOKEN = "gitea-secret-token-123"
FAST = RetryPolicy(attempts=3, backoff=0.001, max_rate_limit_wait=2.0)


@pytest.fixture(autouse=True)
def _token(emu: RunningEmulator) -> None:
    emu.state.host(HostKind.GITEA).token = TOKEN


def host(emu: RunningEmulator) -> HostState:
    return emu.state.host(HostKind.GITEA)


def source(emu: RunningEmulator, selection: Selection, **kw: object) -> GiteaSource:
    kw.setdefault("token", TOKEN)
    return GiteaSource(
        base_url=emu.base_url(HostKind.GITEA),
        selection=selection,
        retry=FAST,
        **kw,  # type: ignore[arg-type]
    )


async def collect(src: GiteaSource) -> list[Sequence[SourcedRepo]]:
    try:
        return [page async for page in src.list_repos()]
    finally:
        await src.aclose()


async def test_lists_org_over_pages_and_user_by_fallback(emu: RunningEmulator) -> None:
    h = host(emu)
    for i in range(7):
        h.add_repo("acme", f"r{i}", archived=i == 3, private=i == 4, fork=i == 5)
    h.add_repo("alice", "dotfiles")
    h.users.add("alice")
    counter = RequestCounter()
    src = source(emu, Selection(owners=("acme", "alice")), limit=3, counter=counter)
    pages = await collect(src)
    assert [len(p) for p in pages] == [3, 3, 1, 1]
    repos = {r.name: r for page in pages for r in page}
    assert repos["acme/r3"].archived and not repos["acme/r2"].archived
    assert repos["acme/r4"].private and repos["acme/r5"].fork
    assert repos["alice/dotfiles"].external_id == str(h.repo("alice/dotfiles").id)
    assert repos["acme/r0"].url.endswith("/gitea/acme/r0")
    # 3 org pages, then /orgs/alice (404) and /users/alice.
    assert counter.count == 5


async def test_exclude_explicit_repos_and_missing_owner(emu: RunningEmulator) -> None:
    h = host(emu)
    for name in ("keep", "drop-me", "other"):
        h.add_repo("acme", name)
    h.add_repo("solo", "x")
    selection = Selection(owners=("acme",), repos=("solo/x", "solo/gone"), exclude=("*/drop-*",))
    names = sorted(r.name for page in await collect(source(emu, selection)) for r in page)
    assert names == ["acme/keep", "acme/other", "solo/x"]
    with pytest.raises(NotFound):
        await collect(source(emu, Selection(owners=("nobody",))))


async def test_fault_mid_listing_raises_after_earlier_pages(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITEA, orgs=1, repos_per_org=5)
    src = source(emu, Selection(owners=("org0",)), limit=2)
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
    emu.state.seed(HostKind.GITEA, orgs=1, repos_per_org=2)
    faults = host(emu).faults
    faults.truncate_next = 1  # retried like a 5xx
    assert len(await collect(source(emu, Selection(owners=("org0",))))) == 1
    faults.truncate_next = FAST.attempts  # truncated on every attempt
    with pytest.raises(HostError, match="JSON"):
        await collect(source(emu, Selection(owners=("org0",))))
    assert faults.truncate_next == 0

    faults.rate_limited_next, faults.retry_after = 1, 0
    assert len(await collect(source(emu, Selection(owners=("org0",))))) == 1
    faults.rate_limited_next, faults.retry_after = 1, 900
    with pytest.raises(RateLimited) as limited:
        await collect(source(emu, Selection(owners=("org0",))))
    assert limited.value.retry_after == pytest.approx(900)

    with pytest.raises(Unauthorized) as info:
        await collect(source(emu, Selection(owners=("org0",)), token="wrong-token-xyz"))
    assert "wrong-token-xyz" not in str(info.value)


def refs_for(
    h: HostState, full_name: str, numbers: Sequence[int], start: int
) -> list[ChangesetRef]:
    rid = str(h.repo(full_name).id)
    return [ChangesetRef(start + i, full_name, rid, n) for i, n in enumerate(numbers)]


async def test_load_changesets_states_reviews_checks(emu: RunningEmulator) -> None:
    emu.state.seed(HostKind.GITEA, orgs=1, repos_per_org=1, pulls_per_repo=4)
    h = host(emu)
    h.set_pull_state("org0/repo-0", 2, HostPullState.MERGED)
    h.set_pull_state("org0/repo-0", 3, HostPullState.CLOSED)
    h.set_pull_state("org0/repo-0", 4, HostPullState.DRAFT)
    pull = h.repo("org0/repo-0").pulls[1]
    pull.check_state = CheckState.FAILED
    pull.reviews += [
        EmulatedReview("bob", ReviewState.CHANGES_REQUESTED, utcnow()),
        EmulatedReview("bob", ReviewState.APPROVED, utcnow()),  # bob's last word counts
    ]
    refs = refs_for(h, "org0/repo-0", [1, 2, 3, 4, 77], 1)
    counter = RequestCounter()
    src = source(emu, Selection(), counter=counter)
    snaps = await src.load_changesets(refs)
    await src.aclose()
    assert [s.state for s in snaps] == [
        HostPullState.OPEN,
        HostPullState.MERGED,
        HostPullState.CLOSED,
        HostPullState.DRAFT,
        HostPullState.DELETED,
    ]
    assert snaps[0].review_state is ReviewState.APPROVED
    assert snaps[0].check_state is CheckState.FAILED
    assert snaps[3].check_state is CheckState.PENDING
    assert snaps[1].events[0].kind == "merged"
    # Gitea lists PRs without diff stats: the open ones are fetched singly for them, the
    # others' are unknown (None: the store keeps what it knew), never 0.
    assert [(s.additions, s.deletions) for s in snaps[:4]] == [
        (10, 2),
        (None, None),
        (None, None),
        (10, 2),
    ]
    # 1 listing page + 1 GET confirming #77 is gone + (single GET + reviews + status) for
    # each of the 2 open PRs.
    assert counter.by_kind == {
        "load_changesets": 1,
        "load_changeset": 3,
        "load_reviews": 2,
        "load_checks": 2,
    }


async def test_load_changesets_prefers_single_gets_over_long_listings(
    emu: RunningEmulator,
) -> None:
    emu.state.seed(HostKind.GITEA, orgs=1, repos_per_org=1, pulls_per_repo=260)
    h = host(emu)
    # #1..#3 are old (on the last listing page of 6); newest first, #260 is on page 1.
    refs = refs_for(h, "org0/repo-0", [1, 2, 260], 1)
    counter = RequestCounter()
    src = source(
        emu,
        Selection(),
        counter=counter,
        load_reviews=False,
        load_checks=False,
        load_diff_stats=False,
    )
    snaps = await src.load_changesets(refs)
    await src.aclose()
    assert all(s.state is HostPullState.OPEN for s in snaps)
    assert counter.by_kind == {"load_changesets": 1, "load_changeset": 2}

    # Many refs spread over the listing: paging is cheaper, until one page is left and one ref
    # is missing (a tie: the single GET is as cheap).
    many = refs_for(h, "org0/repo-0", list(range(1, 261, 13)), 10)
    counter2 = RequestCounter()
    src = source(
        emu,
        Selection(),
        counter=counter2,
        load_reviews=False,
        load_checks=False,
        load_diff_stats=False,
    )
    snaps = await src.load_changesets(many)
    await src.aclose()
    assert all(s.state is HostPullState.OPEN for s in snaps) and len(snaps) == 20
    assert counter2.by_kind == {"load_changesets": 5, "load_changeset": 1}


async def test_create_close_and_archived_writes(emu: RunningEmulator) -> None:
    h = host(emu)
    h.add_repo("acme", "app")
    src = source(emu, Selection())
    spec = NewChangesetSpec("acme/app", "Bump", "body", "batch/bump", "main")
    created = await src.create_changeset(spec)
    assert created.changeset_id == 0 and created.state is HostPullState.OPEN
    assert (await src.create_changeset(spec)).number == created.number  # 409 -> existing
    assert len(h.repo("acme/app").pulls) == 1
    assert (await src.close_changeset("acme/app", created.number)).state is HostPullState.CLOSED
    draft = await src.create_changeset(NewChangesetSpec("acme/app", "D", "", "d", "main", True))
    assert draft.state is HostPullState.DRAFT

    h.set_archived("acme/app", True)
    # Gitea does not guard PATCH on an archived repo (closing works); creating is refused.
    assert (await src.close_changeset("acme/app", draft.number)).state is HostPullState.CLOSED
    with pytest.raises(RepoArchived) as info:
        await src.create_changeset(NewChangesetSpec("acme/app", "x", "", "y", "main"))
    assert TOKEN not in str(info.value)
    await src.aclose()


def test_is_a_repo_source() -> None:
    src: RepoSource = GiteaSource(
        base_url="https://gitea.example.com/api/v1", token=None, selection=Selection()
    )
    assert src.kind is HostKind.GITEA and src.name_prefix == "gitea.example.com"


async def test_renamed_repo_is_followed_through_gitea_redirects(emu: RunningEmulator) -> None:
    h = host(emu)
    repo = h.add_repo("acme", "old")
    h.add_pull("acme/old", title="one")
    h.add_pull("acme/old", title="two")
    refs = refs_for(h, "acme/old", [1, 2], 1)
    h.rename_repo("acme/old", "new")
    # Gitea answers 307 to the same path under the new name; the source follows it.
    [[found]] = await collect(source(emu, Selection(repos=("acme/old",))))
    assert (found.external_id, found.name) == (str(repo.id), "acme/new")
    src = source(emu, Selection())
    snaps = await src.load_changesets(refs)
    single = await src.load_changesets(refs[:1])
    await src.aclose()
    assert [s.state for s in snaps + single] == [HostPullState.OPEN] * 3
    assert [s.title for s in snaps] == ["one", "two"]


async def test_org_whose_last_repo_is_gone_lists_empty(emu: RunningEmulator) -> None:
    h = host(emu)
    h.add_repo("acme", "only")
    h.delete_repo("acme/only")
    assert await collect(source(emu, Selection(owners=("acme",)))) == []  # complete, no 404
    with pytest.raises(NotFound):
        await collect(source(emu, Selection(owners=("ghost",))))


async def test_one_failing_repo_fails_only_its_changesets(
    emu: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.state.seed(HostKind.GITEA, orgs=1, repos_per_org=3, pulls_per_repo=2)
    h = host(emu)
    refs = refs_for(h, "org0/repo-0", [1, 2], 1) + refs_for(h, "org0/repo-1", [1, 2], 10)
    refs += refs_for(h, "org0/repo-2", [2], 20)
    h.faults.errors_next, h.faults.path_contains = 50, "/repos/org0/repo-1/"
    src = source(emu, Selection(), load_reviews=False, load_checks=False)
    with caplog.at_level("WARNING"):
        snaps = await src.load_changesets(refs)
    assert [s.changeset_id for s in snaps] == [1, 2, 20]
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "org0/repo-1" in warning and TOKEN not in warning
    h.faults.errors_next = 0
    h.faults.rate_limited_next, h.faults.retry_after = 5, 600  # rate limits still propagate
    with pytest.raises(RateLimited):
        await src.load_changesets(refs)
    await src.aclose()
