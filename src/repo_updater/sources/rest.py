"""``RestSource``: the constructor work and plumbing every source shares around its
``HostClient``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar, Required, TypedDict

import httpx

from repo_updater.core.domain import HostKind
from repo_updater.core.errors import SourceError
from repo_updater.core.ports import RequestCounter
from repo_updater.core.selection import Selection, default_name_prefix, normalise_base_url
from repo_updater.sources.http import HostClient, RetryPolicy
from repo_updater.sources.paging import DEFAULT_LIST_CONCURRENCY, Pacer

DEFAULT_CONCURRENCY = 8  # requests in flight while loading changesets


def api_root(base_url: str, suffix: str) -> str:
    """``http://h/gitlab`` or ``http://h/gitlab/api/v4`` -> ``http://h/gitlab/api/v4``."""
    base = normalise_base_url(base_url)
    return base if base.endswith(suffix) else base + suffix


class SourceOptions(TypedDict, total=False):
    """The constructor options every source takes, as keywords; ``RestSource.__init__`` says
    their defaults. A source's constructor takes its own options and ``**SourceOptions``."""

    base_url: Required[str]
    token: Required[str | None]
    selection: Required[Selection]
    name_prefix: str | None  # None: derived from base_url
    transport: httpx.AsyncBaseTransport | None
    retry: RetryPolicy | None
    counter: RequestCounter | None
    timeout: float
    list_concurrency: int  # listing pages in flight at once


class RestSource:
    """The plumbing every source shares: ``host_url``, ``name_prefix`` and ``selection``;
    a ``HostClient`` (as ``_client``) with the token in its headers and kept out of its errors,
    classifying failures with ``_classify`` and then the generic mapping (with
    ``archived_statuses``); a semaphore bounding ``_get``; ``counter``; ``aclose``.

    A subclass sets ``kind`` and ``api_suffix`` (appended to the base URL unless it already
    ends with it); its constructor takes its own options and ``**options:
    Unpack[SourceOptions]`` and passes those on to ``super().__init__``.
    """

    kind: HostKind
    api_suffix: ClassVar[str] = ""
    # Statuses that mean "the repository is archived" on a write (Gitea's 423 Locked).
    archived_statuses: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        *,
        headers: Mapping[str, str],
        token_header: tuple[str, str] = ("Authorization", "Bearer {}"),
        concurrency: int = DEFAULT_CONCURRENCY,
        base_url: str,
        token: str | None,
        selection: Selection,
        name_prefix: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        counter: RequestCounter | None = None,
        timeout: float = 30.0,
        list_concurrency: int = DEFAULT_LIST_CONCURRENCY,
    ) -> None:
        """``headers``: sent with every request. ``token_header``: the header that carries the
        token, and its value with ``{}`` where the token goes. ``list_concurrency``: listing
        pages fetched at once (``sources.paging``), apart from ``concurrency``, which bounds
        the changeset loads."""
        if name_prefix is None:  # "" means: no prefix at all
            name_prefix = default_name_prefix(base_url)
        self.host_url = normalise_base_url(base_url)
        self.name_prefix = name_prefix
        self.selection = selection
        all_headers = dict(headers)
        if token:
            name, value = token_header
            all_headers[name] = value.format(token)
        self._client = HostClient(
            base_url=api_root(base_url, self.api_suffix),
            headers=all_headers,
            classify=self._classify,
            archived_statuses=self.archived_statuses,
            retry=retry if retry is not None else RetryPolicy(),
            timeout=timeout,
            transport=transport,
            counter=counter if counter is not None else RequestCounter(),
            secrets=(token,) if token else (),
            host_url=self.host_url,
        )
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self.list_concurrency = max(1, list_concurrency)

    @property
    def counter(self) -> RequestCounter:
        return self._client.counter

    async def aclose(self) -> None:
        await self._client.aclose()

    def _classify(self, response: httpx.Response) -> SourceError | None:
        """What a non-2xx response means on this host, or None for the generic mapping."""
        return None

    def _list_pacer(self) -> Pacer:
        """A listing's pace: ``list_concurrency`` pages at once, lowered by rate limits."""
        return Pacer(
            self.list_concurrency,
            max_wait=self._client.retry.max_rate_limit_wait,
            where=self.host_url,
        )

    async def _get_page(
        self, url: str, *, kind: str = "list_repos", **kwargs: Any
    ) -> tuple[Any, httpx.Response]:
        """GET one listing page; a rate limit is raised at once, for the ``Pacer`` (the
        listing's own bound; ``concurrency`` is for changeset loads)."""
        return await self._client.get_json(url, kind=kind, wait_rate_limits=False, **kwargs)

    async def _get(self, url: str, *, kind: str, **kwargs: Any) -> tuple[Any, httpx.Response]:
        """GET JSON with at most ``concurrency`` requests of this source in flight."""
        async with self._limit:
            return await self._client.get_json(url, kind=kind, **kwargs)
