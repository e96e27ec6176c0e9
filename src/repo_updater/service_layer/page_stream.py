"""Prefetching a listing for the repo syncer (issue 12, item 2).

:func:`page_groups` reads a source's pages in a task of its own, up to ``depth`` pages ahead,
and hands them to the syncer in groups: every page already fetched, at most ``max_group``.
So the next page is fetched while the store writes the previous ones, and a group of pages
can be written in one transaction; a transaction never waits on the network. The source
interface is unchanged (an async iterator of pages); a listing error is raised after the pages
fetched before it were handed over (they are valid: ``RepoSource.list_repos``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from repo_updater.core.domain import SourcedRepo

Page = Sequence[SourcedRepo]
_END = object()


async def _produce(pages: AsyncIterator[Page], queue: asyncio.Queue[Any]) -> None:
    try:
        async for page in pages:
            await queue.put(page)
    except Exception as exc:  # handed to the consumer, raised there in order
        await queue.put(exc)
    else:
        await queue.put(_END)
    finally:
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def page_groups(
    pages: AsyncIterator[Page], *, max_group: int = 10, depth: int | None = None
) -> AsyncGenerator[list[Page], None]:
    """Yield the pages of ``pages`` in order, in groups of those fetched so far (at least one,
    at most ``max_group``), fetching up to ``depth`` (default ``max_group``) pages ahead."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=depth or max_group)
    producer = asyncio.create_task(_produce(pages, queue))
    try:
        done = False
        while not done:
            items = [await queue.get()]
            while len(items) < max_group and not queue.empty():
                items.append(queue.get_nowait())
            group: list[Page] = []
            error: BaseException | None = None
            for item in items:
                if item is _END:
                    done = True
                    break
                if isinstance(item, BaseException):
                    error = item
                    break
                group.append(item)
            if group:
                yield group
            if error is not None:
                raise error
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
