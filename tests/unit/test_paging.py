"""``sources.paging``: pages fetched concurrently are yielded in order, the listing ends where
the host says it ends, a failure surfaces at its page after every page before it, and a rate
limit pauses every fetch and halves the concurrency. No clock assertions: the fakes finish in
an order the test chooses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from repo_updater.core.errors import HostError, RateLimited
from repo_updater.sources.paging import Pacer, Page, ordered_pages

Fetch = Callable[[int], Awaitable[Page[list[int]]]]


class FakeHost:
    """Pages 1..``pages`` of ``size`` numbers; page ``n`` answers after ``delay(n)`` event-loop
    turns (later pages first when the delays say so); records what was asked and how many
    fetches ran at once."""

    def __init__(self, pages: int, *, size: int = 3, delay: Callable[[int], int] | None = None):
        self.pages, self.size = pages, size
        self.delay = delay or (lambda n: 0)
        self.asked: list[int] = []
        self.in_flight = self.peak = 0
        self.fail: dict[int, Exception] = {}

    def page(self, n: int) -> Page[list[int]]:
        items = list(range((n - 1) * self.size, n * self.size)) if n <= self.pages else []
        return Page(items, n < self.pages, self.pages if n < self.pages else None)

    async def fetch(self, n: int) -> Page[list[int]]:
        self.asked.append(n)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            for _ in range(self.delay(n)):
                await asyncio.sleep(0)
            error = self.fail.pop(n, None)
            if error is not None:
                raise error
            return self.page(n)
        finally:
            self.in_flight -= 1


async def collect(host: FakeHost, limit: int) -> list[list[int]]:
    pacer = Pacer(limit, max_wait=5.0)
    return [page async for page in ordered_pages(host.page(1), host.fetch, pacer)]


async def test_pages_come_in_order_although_later_ones_answer_first() -> None:
    host = FakeHost(40, delay=lambda n: 50 - n)  # page 40 answers first
    pages = await collect(host, 8)
    assert pages == [host.page(n).items for n in range(1, 41)]
    assert sorted(host.asked) == list(range(2, 41))  # each page asked once
    assert host.peak == 8


@pytest.mark.parametrize("limit", [1, 3])
async def test_never_more_requests_in_flight_than_the_limit(limit: int) -> None:
    host = FakeHost(20, delay=lambda n: n % 5)
    assert len(await collect(host, limit)) == 20
    assert host.peak == limit


async def test_a_failure_on_page_k_raises_after_pages_before_it_and_cancels_the_rest() -> None:
    host = FakeHost(30, delay=lambda n: 0 if n == 7 else 20)  # page 7 fails first
    host.fail[7] = HostError("GET page 7: HTTP 502")
    seen: list[list[int]] = []
    with pytest.raises(HostError, match="page 7"):
        async for page in ordered_pages(host.page(1), host.fetch, Pacer(8, max_wait=5.0)):
            seen.append(page)
    assert seen == [host.page(n).items for n in range(1, 7)]
    assert max(host.asked) < 30 and host.in_flight == 0  # the rest was cancelled


async def test_the_listing_ends_at_the_first_page_that_says_so() -> None:
    host = FakeHost(10)
    host.pages = 4  # shrank after page 1 announced 10: pages 5.. are not listed
    first = Page(list(range(3)), True, 10)
    pages = [p async for p in ordered_pages(first, host.fetch, Pacer(8, max_wait=5.0))]
    assert len(pages) == 4


async def test_a_page_that_announces_more_pages_extends_the_listing() -> None:
    host = FakeHost(12)
    first = Page(list(range(3)), True, 5)  # page 1 saw 5 pages; 12 by the time page 5 came
    pages = [p async for p in ordered_pages(first, host.fetch, Pacer(4, max_wait=5.0))]
    assert len(pages) == 12 and pages[-1] == host.page(12).items


async def test_without_a_last_page_the_listing_goes_one_page_at_a_time() -> None:
    host = FakeHost(6)
    first = Page(list(range(3)), True, None)

    async def no_last(n: int) -> Page[list[int]]:
        page = await host.fetch(n)
        return Page(page.items, page.more, None)

    pages = [p async for p in ordered_pages(first, no_last, Pacer(8, max_wait=5.0))]
    assert len(pages) == 6 and host.peak == 1


async def test_a_rate_limit_pauses_and_halves_the_concurrency() -> None:
    host = FakeHost(30, delay=lambda n: 2)
    host.fail[5] = RateLimited("secondary rate limit", 0.01)
    pacer = Pacer(8, max_wait=5.0)
    pages = [p async for p in ordered_pages(host.page(1), host.fetch, pacer)]
    assert pages == [host.page(n).items for n in range(1, 31)]
    assert (pacer.limit, pacer.rate_limited) == (4, 1)
    assert host.asked.count(5) == 2  # tried again after the pause


async def test_a_rate_limit_longer_than_the_patience_is_raised() -> None:
    host = FakeHost(5)
    host.fail[3] = RateLimited("secondary rate limit", 600)
    with pytest.raises(RateLimited):
        await collect(host, 4)
