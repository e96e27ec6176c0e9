"""What every source shares: repo selection, store-name prefixes, an HTTP client that maps
failures onto our exceptions, retries what is worth retrying and honours rate limits, and
``RestSource``, the constructor work and plumbing every source does around that client."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Required, TypedDict
from urllib.parse import urlsplit

import httpx

from repo_updater.domain import (
    HostError,
    HostKind,
    NotFound,
    RateLimited,
    RepoArchived,
    RequestCounter,
    SourceError,
    Unauthorized,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which repositories of a host a service covers.

    ``owners``: orgs (GitHub, Gitea), groups (GitLab), project keys (Bitbucket Server).
    ``repos``: explicit host-relative full names. ``exclude``: glob patterns on full names.
    """

    owners: tuple[str, ...] = ()
    repos: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def excluded(self, full_name: str) -> bool:
        lowered = full_name.lower()
        return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.exclude)


def default_name_prefix(base_url: str) -> str:
    """``https://api.github.com`` -> ``github.com``; ``http://127.0.0.1:7700/github`` ->
    ``127.0.0.1:7700/github``; ``https://gitlab.example.com/`` -> ``gitlab.example.com``."""
    parts = urlsplit(base_url)
    host = parts.netloc
    if host == "api.github.com":
        host = "github.com"
    path = parts.path.rstrip("/")
    for suffix in ("/api/v4", "/api/v1", "/api/v3", "/rest/api/1.0"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return f"{host}{path}"


def normalise_base_url(base_url: str) -> str:
    return base_url.rstrip("/")


def api_root(base_url: str, suffix: str) -> str:
    """``http://h/gitlab`` or ``http://h/gitlab/api/v4`` -> ``http://h/gitlab/api/v4``."""
    base = normalise_base_url(base_url)
    return base if base.endswith(suffix) else base + suffix


# A classifier looks at a response that is not 2xx and says what it means, or returns None to
# fall back to the generic mapping.
Classifier = Callable[[httpx.Response], SourceError | None]


@dataclass(slots=True)
class RetryPolicy:
    attempts: int = 3  # for 5xx, timeouts and transport errors
    backoff: float = 0.2  # seconds, doubled each attempt
    max_rate_limit_wait: float = 60.0  # sleep through rate limits shorter than this


@dataclass(slots=True)
class HostClient:
    """An httpx client for one code host. Never lets a token into an error message."""

    base_url: str
    headers: Mapping[str, str]
    classify: Classifier | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    counter: RequestCounter = field(default_factory=RequestCounter)
    secrets: tuple[str, ...] = ()
    _client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=dict(self.headers),
                timeout=self.timeout,
                transport=self.transport,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return text

    async def request(
        self, method: str, url: str, *, kind: str = "request", **kwargs: Any
    ) -> httpx.Response:
        """Send a request; return the 2xx/304 response or raise a ``SourceError``.

        Only URLs on the host's own origin are requested (a ``Link`` or redirect to another
        host would carry the token there). Same-origin redirects (renamed repositories answer
        301) are followed, up to 5 hops."""
        self._check_origin(method, url)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.counter.add(kind)
                response = await self._send_following_redirects(method, url, **kwargs)
            except httpx.TimeoutException:
                retryable = True
                error: SourceError = HostError(f"{method} {self.redact(url)}: timed out")
            except httpx.HTTPError as exc:
                retryable = True
                error = HostError(f"{method} {self.redact(url)}: {self.redact(str(exc))}")
            else:
                if response.is_success or response.status_code == 304:
                    return response
                # Only server-side failures are worth another try; a 4xx will not change.
                retryable = response.status_code >= 500
                error = self._map(method, url, response)
            if isinstance(error, RateLimited):
                if error.retry_after <= self.retry.max_rate_limit_wait and attempt <= 5:
                    log.warning(
                        "rate limited by %s; waiting %.1fs", self.base_url, error.retry_after
                    )
                    await asyncio.sleep(error.retry_after)
                    continue
                raise error
            if isinstance(error, HostError) and retryable and attempt < self.retry.attempts:
                await asyncio.sleep(self.retry.backoff * (2 ** (attempt - 1)))
                continue
            raise error

    def _check_origin(self, method: str, url: str) -> None:
        target = httpx.URL(url)
        if not target.is_absolute_url:
            return
        base = httpx.URL(self.base_url)
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise HostError(
                f"{method} {self.redact(url)}: refusing to send credentials to another origin "
                f"than {self.base_url} (check the host's external URL setting)"
            )

    async def _send_following_redirects(
        self, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        for _ in range(5):
            response = await self.client().request(method, url, **kwargs)
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = response.headers.get("location")
            if not location:
                return response
            url = str(response.url.join(location))
            self._check_origin(method, url)
            if response.status_code in (301, 302, 303) and method not in ("GET", "HEAD"):
                return response  # a write answered with a redirect: report it, don't replay it
            kwargs.pop("params", None)  # the Location carries its own query
        raise HostError(f"{method} {self.redact(url)}: too many redirects")

    def _map(self, method: str, url: str, response: httpx.Response) -> SourceError:
        if self.classify is not None:
            mapped = self.classify(response)
            if mapped is not None:
                return mapped
        where = f"{method} {self.redact(url)}"
        status = response.status_code
        detail = self.redact(response_message(response))
        if status == 429:
            return RateLimited(f"{where}: rate limited", retry_after_seconds(response.headers))
        if status == 401:
            return Unauthorized(f"{where}: 401 unauthorized (check the token)")
        if status == 404:
            return NotFound(f"{where}: 404 not found")
        if status == 403 and "archived" in detail.lower():
            return RepoArchived(f"{where}: {detail}")
        if status == 403:
            return Unauthorized(f"{where}: 403 forbidden: {detail}")
        return HostError(f"{where}: HTTP {status}: {detail[:200]}")

    async def get_json(
        self, url: str, *, kind: str = "request", **kwargs: Any
    ) -> tuple[Any, httpx.Response]:
        response = await self.request("GET", url, kind=kind, **kwargs)
        return decode_json(response, self.redact(url)), response


def decode_json(response: httpx.Response, where: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        raise HostError(f"GET {where}: response is not valid JSON (truncated?)") from None


def response_message(
    response: httpx.Response,
    *,
    keys: tuple[str, ...] = ("message", "error", "errors"),
    limit: int | None = None,
) -> str:
    """The error message of a JSON body: the first of ``keys`` it has (cut to ``limit``), else
    the body (or the raw text) cut to 200 characters."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        for key in keys:
            if key in body:
                return str(body[key])[:limit]
    return str(body)[:200]


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float:
    """Seconds to wait from ``Retry-After`` or a rate-limit reset header (epoch seconds)."""
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        reset = headers.get(name)
        if reset is not None:
            try:
                import time

                current = time.time() if now is None else now
                return max(0.0, float(reset) - current)
            except ValueError:
                pass
    return 60.0


_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)+)")


def parse_next_link(headers: Mapping[str, str]) -> str | None:
    """The ``rel="next"`` URL of an RFC 5988 ``Link`` header, if any.

    A ``Link`` header we cannot read raises ``HostError``: treating it as "no next page" would
    end a listing early, and a short listing must never look complete (invariant 1).
    """
    link = headers.get("link")
    if not link or not link.strip():
        return None
    entries = _LINK_RE.findall(link)
    if not entries:
        raise HostError(f"malformed Link header: {link[:200]!r}")
    for url, params in entries:
        rels = re.findall(r'rel\s*=\s*"?([^";]+)"?', params)
        if any("next" in rel.split() for rel in rels):
            return str(url)
    return None


DEFAULT_CONCURRENCY = 8  # requests in flight while loading changesets


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


class RestSource:
    """The plumbing every source shares: ``service_id``, ``name_prefix`` and ``selection``;
    a ``HostClient`` (as ``_client``) with the token in its headers and kept out of its errors,
    classifying failures with ``_classify``; a semaphore bounding ``_get``; ``counter``;
    ``aclose``.

    A subclass sets ``kind`` and ``api_suffix`` (appended to the base URL unless it already
    ends with it); its constructor takes its own options and ``**options:
    Unpack[SourceOptions]`` and passes those on to ``super().__init__``.
    """

    kind: HostKind
    api_suffix: ClassVar[str] = ""

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
    ) -> None:
        """``headers``: sent with every request. ``token_header``: the header that carries the
        token, and its value with ``{}`` where the token goes."""
        if name_prefix is None:  # "" means: no prefix at all
            name_prefix = default_name_prefix(base_url)
        self.service_id = normalise_base_url(base_url)
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
            retry=retry if retry is not None else RetryPolicy(),
            timeout=timeout,
            transport=transport,
            counter=counter if counter is not None else RequestCounter(),
            secrets=(token,) if token else (),
        )
        self._limit = asyncio.Semaphore(max(1, concurrency))

    @property
    def counter(self) -> RequestCounter:
        return self._client.counter

    async def aclose(self) -> None:
        await self._client.aclose()

    def _classify(self, response: httpx.Response) -> SourceError | None:
        """What a non-2xx response means, or None for the generic mapping."""
        return None

    async def _get(self, url: str, *, kind: str, **kwargs: Any) -> tuple[Any, httpx.Response]:
        """GET JSON with at most ``concurrency`` requests of this source in flight."""
        async with self._limit:
            return await self._client.get_json(url, kind=kind, **kwargs)
