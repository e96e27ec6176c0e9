"""Listing pages concurrently against the emulator on loopback (issue 12, item 6): the bound on
requests in flight per host, pages in order, a failure on page k of N leaves the sync incomplete
and deletes nothing (SQLite and PostgreSQL), a secondary rate limit slows the listing down, and
oldest-first listing keeps unchanged pages at 304 when a repo is added."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from repo_updater.bootstrap import open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostKind, SourcedRepo
from repo_updater.core.errors import HostError
from repo_updater.core.ports import RequestCounter, WritingSource
from repo_updater.core.selection import Selection
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import HostState
from repo_updater.sources import source_class
from repo_updater.sources.github import GitHubSource
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import repos as repo_store

GH = HostKind.GITHUB
FAST = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=2.0)


def host(emu: RunningEmulator) -> HostState:
    return emu.state.host(GH)


def source(emu: RunningEmulator, concurrency: int, **kw: Any) -> GitHubSource:
    return GitHubSource(
        base_url=emu.base_url(GH),
        token=None,
        selection=Selection(owners=("org0",)),
        retry=FAST,
        list_concurrency=concurrency,
        **kw,
    )


async def pages_of(src: GitHubSource) -> list[Sequence[SourcedRepo]]:
    return [page async for page in src.list_repos()]


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_requests_in_flight_stay_within_the_bound_and_pages_come_in_order(
    emu: RunningEmulator, concurrency: int
) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=1_450)
    h = host(emu)
    h.faults.latency_ms = 20  # long enough for every allowed request to be in flight at once
    src = source(emu, concurrency)
    pages = await pages_of(src)
    await src.aclose()
    assert [len(p) for p in pages] == [100] * 14 + [50]
    names = [r.name for p in pages for r in p]
    assert names == [f"org0/repo-{i}" for i in range(1_450)]  # oldest first, in order
    assert h.max_in_flight == concurrency
    assert h.request_count == 15  # each page once


async def test_oldest_first_keeps_unchanged_pages_at_304_when_a_repo_is_added(
    emu: RunningEmulator,
) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=950)
    h = host(emu)
    h.faults.rate_limit_remaining = 1_000  # a 304 costs nothing, as on GitHub
    counter = RequestCounter()
    src = source(emu, 8, counter=counter)
    assert sum(len(p) for p in await pages_of(src)) == 950
    assert h.faults.rate_limit_remaining == 990
    h.add_repo("org0", "newest")
    pages = await pages_of(src)
    await src.aclose()
    assert pages[-1][-1].name == "org0/newest" and sum(len(p) for p in pages) == 951
    assert h.faults.rate_limit_remaining == 989  # only the last page was sent again
    assert counter.by_kind == {"list_repos": 20}


async def test_secondary_rate_limit_mid_listing_pauses_then_completes(
    emu: RunningEmulator,
) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=2_000)
    h = host(emu)
    faults = h.faults
    faults.rate_limited_next, faults.retry_after, faults.path_contains = 1, 1, "&page=3"
    src = source(emu, 8)
    pages = await pages_of(src)
    await src.aclose()
    assert [r.name for p in pages for r in p] == [f"org0/repo-{i}" for i in range(2_000)]
    assert h.request_count == 21  # 20 pages, page 3 twice
    assert faults.rate_limited_next == 0
    pace = src.last_listing
    assert pace is not None and (pace.rate_limited, pace.limit) == (1, 4)  # halved


async def test_failure_on_page_k_of_n_leaves_the_sync_incomplete_and_deletes_nothing(
    emu: RunningEmulator, store_url: str
) -> None:
    h = host(emu)
    for i in range(1_000):
        h.add_repo("acme", f"repo-{i}")
    svc = {"name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["acme"],
           "list_concurrency": 8}  # fmt: skip
    config = parse_config(
        {"database": store_url, "repo_sync_interval": 3600, "external_services": [svc]}, {}
    )
    async with open_app(config, retry=FAST) as app:
        first = await app.repo_sync_worker.sync_service("gh")
        assert first.complete and first.added == 1_000
        h.delete_repo("acme/repo-0")  # would be removed by a complete listing
        h.delete_repo("acme/repo-999")
        h.faults.errors_next, h.faults.path_contains = 2, "&page=7"  # both of FAST's attempts
        second = await app.repo_sync_worker.sync_service("gh")
        assert not second.complete and second.error is not None and "502" in second.error
        assert second.pages == 6 and second.removed == 0
        async with app.engine.connect() as conn:
            live = await repo_store.list_repos(conn)
        assert len(live) == 1_000 and all(r.deleted_at is None for r in live)
        third = await app.repo_sync_worker.sync_service("gh")
        assert third.complete and third.removed == 2


# --- the other hosts ---------------------------------------------------------------------------

OWNERS = {HostKind.GITLAB: "platform", HostKind.GITEA: "infra", HostKind.BITBUCKET_SERVER: "OPS"}


def other_source(emu: RunningEmulator, kind: HostKind, concurrency: int) -> WritingSource:
    return source_class(kind)(
        base_url=emu.base_url(kind),
        token=None,
        selection=Selection(owners=(OWNERS[kind],)),
        retry=FAST,
        list_concurrency=concurrency,
    )


async def names_listed(src: WritingSource) -> tuple[list[str], int]:
    pages = [page async for page in src.list_repos()]
    await src.aclose()
    return [r.name for p in pages for r in p], len(pages)


@pytest.mark.parametrize("kind", list(OWNERS))
async def test_other_hosts_list_concurrently_in_the_order_of_a_sequential_listing(
    emu: RunningEmulator, kind: HostKind
) -> None:
    h = emu.state.host(kind)
    for i in range(1_020):
        h.add_repo(OWNERS[kind], f"repo-{i}")
    sequential, pages = await names_listed(other_source(emu, kind, 1))
    assert len(sequential) == 1_020 and h.max_in_flight == 1
    h.faults.latency_ms = 20
    h.request_count = 0
    concurrent, again = await names_listed(other_source(emu, kind, 4))
    assert concurrent == sequential and again == pages
    assert h.max_in_flight == 4
    # Bitbucket sends no total: pages are asked ahead, a few past the end at most.
    assert pages <= h.request_count <= pages + (3 if kind is HostKind.BITBUCKET_SERVER else 0)


@pytest.mark.parametrize("kind", list(OWNERS))
async def test_other_hosts_a_failed_page_raises_after_the_pages_before_it(
    emu: RunningEmulator, kind: HostKind
) -> None:
    h = emu.state.host(kind)
    for i in range(1_020):
        h.add_repo(OWNERS[kind], f"repo-{i}")
    page_size = 50 if kind is HostKind.GITEA else 100
    h.faults.errors_next = 2  # both of FAST's attempts
    h.faults.path_contains = "start=500" if kind is HostKind.BITBUCKET_SERVER else "page=6&"
    if kind is HostKind.GITLAB:
        h.faults.path_contains = "&page=6"
    src = other_source(emu, kind, 8)
    seen: list[int] = []
    with pytest.raises(HostError, match="502"):
        async for page in src.list_repos():
            seen.append(len(page))
    await src.aclose()
    assert seen == [page_size] * 5


async def test_gitlab_above_10000_projects_asks_ahead_without_a_total(
    emu: RunningEmulator,
) -> None:
    h = emu.state.host(HostKind.GITLAB)
    for i in range(10_050):
        h.add_repo("platform", f"repo-{i}")
    h.faults.latency_ms = 10
    src = other_source(emu, HostKind.GITLAB, 8)
    names, pages = await names_listed(src)
    assert names == [f"platform/repo-{i}" for i in range(10_050)] and pages == 101
    assert 101 <= h.request_count <= 101 + 7  # no X-Total-Pages: a few asked past the end
    assert h.max_in_flight == 8
