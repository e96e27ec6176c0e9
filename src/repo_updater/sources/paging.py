"""Concurrent listing by page number, yielded in order.

A host that says how many pages a listing has (GitHub and Gitea: ``Link: rel="last"`` or
``X-Total-Count``; GitLab: ``X-Total-Pages``) can be asked for pages 2..N at once instead of
one after the other: against a host answering a page in 300 ms, 1,000 pages take 300 s one at a
time and about 300 s / ``concurrency`` this way.

``ordered_pages`` keeps the sequential semantics the repo syncer relies on:

- pages are yielded in page order, each exactly once;
- the listing ends at the first page (in order) that says no page follows, whatever pages
  behind it were already fetched (they are dropped); a page that says more pages follow than
  the first one did extends the listing (a repo added while we page);
- a page that fails (after ``HostClient``'s retries) raises when its turn comes, after every
  page before it was yielded, and cancels the others: a listing cut short is never complete,
  so the syncer removes nothing;
- at most ``concurrency`` requests are in flight, and no more than ``concurrency`` pages are
  fetched ahead of the one the consumer is on (memory stays flat in the size of the listing).

Rate limits (GitHub's secondary limit: 403 with ``Retry-After``; 429 elsewhere) are handled
here rather than slept through by each request: every fetch stops until the wait is over
(``Pacer.pause``) and the concurrency is halved (down to 1) for the rest of the listing. A wait
longer than ``max_wait``, or more than ``MAX_RATE_LIMITED`` limits in a row on one page, raises
``RateLimited`` as a sequential listing would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from repo_updater.core.errors import RateLimited

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_LIST_CONCURRENCY = 8
MAX_RATE_LIMITED = 5  # rate limits in a row on one page before giving up, as HostClient does


@dataclass(slots=True)
class Page(Generic[T]):
    """One fetched page: its ``items``, whether the host says a page follows (``more``), and
    the number of the listing's last page when the host says it (``last``)."""

    items: T
    more: bool
    last: int | None = None


class Pacer:
    """A concurrency limit that a rate limit can lower, and a shared pause.

    ``run(fetch)`` waits for a slot (at most ``limit`` fetches at once) and for any pause to
    end, then awaits ``fetch()``; a ``RateLimited`` it raises pauses every fetch for its
    ``retry_after``, halves ``limit`` and tries again (see the module docstring)."""

    def __init__(self, limit: int, *, max_wait: float, where: str = "") -> None:
        self.limit = max(1, limit)
        self.max_wait = max_wait
        self.where = where
        self.in_flight = 0
        self.peak = 0  # the most fetches seen in flight at once
        self.rate_limited = 0  # rate limits met
        self._resume_at = 0.0  # time.monotonic() before which nothing is sent
        self._changed = asyncio.Condition()

    def shrink(self) -> None:
        self.limit = max(1, self.limit // 2)

    def pause(self, seconds: float) -> None:
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def _acquire(self) -> None:
        async with self._changed:
            while True:
                wait = self._resume_at - time.monotonic()
                if wait <= 0 and self.in_flight < self.limit:
                    break
                if wait > 0:
                    try:
                        await asyncio.wait_for(self._changed.wait(), wait)
                    except TimeoutError:
                        pass
                else:
                    await self._changed.wait()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    async def _release(self) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    async def run(self, fetch: Callable[[], Awaitable[R]]) -> R:
        limited = 0
        while True:
            await self._acquire()
            try:
                return await fetch()
            except RateLimited as exc:
                limited += 1
                self.rate_limited += 1
                if exc.retry_after > self.max_wait or limited > MAX_RATE_LIMITED:
                    raise
                self.shrink()
                self.pause(exc.retry_after)
                log.warning(
                    "rate limited by %s; waiting %.1fs, then at most %d requests at once",
                    self.where, exc.retry_after, self.limit,
                )  # fmt: skip
            finally:
                await self._release()


async def ordered_pages(
    first: Page[T],
    fetch: Callable[[int], Awaitable[Page[T]]],
    pacer: Pacer,
    *,
    speculate: bool = False,
) -> AsyncIterator[T]:
    """``first``'s items, then pages 2, 3, ... fetched by number with ``fetch(n)`` through
    ``pacer``, concurrently up to the last page the host announced, in order (see the module
    docstring). A host that announces no last page is paged one page at a time, unless
    ``speculate``: for hosts that answer a page past the end with an empty last page (GitLab
    above 10,000 projects, Bitbucket Server), pages are asked ahead anyway, as many as have
    been seen so far, up to ``concurrency`` (a 3-page listing costs 4 requests, a long one up
    to ``concurrency - 1`` requests past its end)."""
    yield first.items
    if not first.more:
        return
    unbounded = speculate and first.last is None
    last = max(first.last or 0, 2)
    tasks: dict[int, asyncio.Task[Page[T]]] = {}
    following = 2  # the next page to yield
    started = 1  # the highest page asked for
    try:
        while True:
            # Ask ahead up to the announced last page, no further than ``limit`` pages.
            window = max(pacer.limit, 1)
            if unbounded:  # ask ahead as far as the pages seen so far: the waste stays small
                window = min(window, following - 1)
            ahead = following + window - 1
            while started < (ahead if unbounded else min(last, ahead)):
                started += 1
                tasks[started] = asyncio.create_task(pacer.run(_bind(fetch, started)))
            task = tasks.pop(following)
            page = await task
            yield page.items
            if not page.more:
                return
            following += 1
            if page.last is not None:
                last = max(last, page.last)
            last = max(last, following)
    finally:
        for pending in tasks.values():
            pending.cancel()
        if tasks:
            await asyncio.gather(*tasks.values(), return_exceptions=True)


def _bind(fetch: Callable[[int], Awaitable[Page[T]]], n: int) -> Callable[[], Awaitable[Page[T]]]:
    return lambda: fetch(n)
