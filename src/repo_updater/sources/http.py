"""The HTTP client every source uses: it maps failures onto our exceptions (one classifier for
every host, which a host refines), retries what is worth retrying, honours rate limits, and
never sends a token to another origin nor lets one into an error message."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson

from repo_updater.core.errors import (
    Conflict,
    Forbidden,
    HostError,
    NotFound,
    RateLimited,
    Refused,
    RepoArchived,
    SourceError,
    Unauthorized,
)
from repo_updater.core.ports import RequestCounter
from repo_updater.sources.transport import AiohttpTransport

log = logging.getLogger(__name__)


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
    """An httpx client (over aiohttp: ``sources.transport``) for one code host. Never lets a
    token into an error message."""

    base_url: str
    headers: Mapping[str, str]
    classify: Classifier | None = None
    archived_statuses: tuple[int, ...] = ()  # besides a 403 that says "archived"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    counter: RequestCounter = field(default_factory=RequestCounter)
    secrets: tuple[str, ...] = ()
    # The code host's ``host_url`` (its source's), which names it in the counter as in every
    # other figure; empty: ``base_url``.
    host_url: str = ""
    _client: httpx.AsyncClient | None = None
    # (base_url, scheme, host, port) of ``base_url``, parsed once: every request checks its
    # origin, and httpx's URL parsing is ~20 us (a 1,000-page listing sends 1,000 requests).
    _origin: tuple[str, str, str, int | None] | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers=dict(self.headers),
                timeout=self.timeout,
                # aiohttp on the wire (sources/transport.py); a test may inject its own.
                transport=self.transport if self.transport is not None else AiohttpTransport(),
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
        self,
        method: str,
        url: str,
        *,
        kind: str = "request",
        idempotent: bool = True,
        wait_rate_limits: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request; return the 2xx/304 response or raise a ``SourceError``.

        Only URLs on the host's own origin are requested (a ``Link`` or redirect to another
        host would carry the token there). Same-origin redirects (renamed repositories answer
        301) are followed, up to 5 hops.

        ``idempotent=False`` (a comment, a merge, a GraphQL mutation): the request is repeated
        only when it surely never reached the host (the connection failed); after a timeout or
        a 5xx it may have been applied, so the error goes to the caller, who can look before
        trying again. ``wait_rate_limits=False``: a rate limit is raised at once instead of
        slept through (the reconciler shares the wait with its other workers)."""
        _, response = await self._send(
            method,
            url,
            kind=kind,
            parse=False,
            idempotent=idempotent,
            wait_rate_limits=wait_rate_limits,
            **kwargs,
        )
        return response

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        kind: str = "request",
        retry_invalid: bool | None = None,
        **kwargs: Any,
    ) -> tuple[Any, httpx.Response]:
        """``request``, and the decoded JSON body (None for a 304). A 2xx whose body is not
        valid JSON (a page cut short by a proxy or a dropped connection) is retried like a
        5xx when ``retry_invalid`` (default: for GET and HEAD, which are safe to repeat; a
        GraphQL query passes True), then raises ``HostError``. A request that is not
        ``idempotent`` is never repeated for an invalid body: the host did answer 2xx, so the
        write was applied."""
        if retry_invalid is None:
            retry_invalid = method in ("GET", "HEAD")
        return await self._send(method, url, kind=kind, parse=True, retry_invalid=retry_invalid,
                                **kwargs)  # fmt: skip

    async def _send(
        self,
        method: str,
        url: str,
        *,
        kind: str,
        parse: bool,
        retry_invalid: bool = False,
        idempotent: bool = True,
        wait_rate_limits: bool = True,
        **kwargs: Any,
    ) -> tuple[Any, httpx.Response]:
        self._check_origin(method, url)
        attempt = 0
        while True:
            attempt += 1
            try:
                self.counter.add(kind, self.host_url or self.base_url)
                response = await self._send_following_redirects(method, url, **kwargs)
                self._note_budget(response)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                retryable = True  # the request never left: safe to send again
                error: SourceError = HostError(
                    f"{method} {self.redact(url)}: {self.redact(str(exc)) or 'cannot connect'}"
                )
            except httpx.TimeoutException:
                retryable = idempotent
                error = HostError(f"{method} {self.redact(url)}: timed out")
            except httpx.HTTPError as exc:
                retryable = idempotent
                error = HostError(f"{method} {self.redact(url)}: {self.redact(str(exc))}")
            else:
                if response.status_code == 304:
                    return None, response
                if response.is_success:
                    if not parse:
                        return None, response
                    try:
                        return decode_json(response, self.redact(url), method), response
                    except HostError as invalid:
                        retryable, error = retry_invalid and idempotent, invalid
                else:
                    # Only server-side failures are worth another try; a 4xx will not change.
                    retryable = idempotent and response.status_code >= 500
                    error = self._map(response)
            if isinstance(error, RateLimited):
                if not wait_rate_limits:
                    raise error
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

    def _note_budget(self, response: httpx.Response) -> None:
        """Keep the rate-limit budget the host reports (GitHub and Gitea:
        ``X-RateLimit-Remaining``; GitLab: ``RateLimit-Remaining``) for ``/metrics``."""
        for header in ("x-ratelimit-remaining", "ratelimit-remaining"):
            value = response.headers.get(header)
            if value is not None and value.isdigit():
                self.counter.remaining(self.host_url or self.base_url, int(value))
                return

    def _check_origin(self, method: str, url: str) -> None:
        if "://" not in url:  # relative (httpx calls a URL absolute with a scheme and a host)
            return
        target = httpx.URL(url)
        if not target.is_absolute_url:
            return
        if self._origin is None or self._origin[0] != self.base_url:
            base = httpx.URL(self.base_url)
            self._origin = (self.base_url, base.scheme, base.host, base.port)
        if (target.scheme, target.host, target.port) != self._origin[1:]:
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

    def _map(self, response: httpx.Response) -> SourceError:
        if self.classify is not None:
            mapped = self.classify(response)
            if mapped is not None:
                return mapped
        return classify_status(response, self.redact, archived_statuses=self.archived_statuses)

    async def get_json(
        self, url: str, *, kind: str = "request", **kwargs: Any
    ) -> tuple[Any, httpx.Response]:
        """GET JSON; an invalid (truncated) body is retried like a 5xx."""
        return await self.request_json("GET", url, kind=kind, **kwargs)


def decode_json(response: httpx.Response, where: str, method: str = "GET") -> Any:
    """The JSON body, parsed by orjson (3x faster than ``json`` on a listing page, see
    bench/results/host_latency.md); what orjson refuses and ``json`` reads (an integer beyond
    64 bits) is read by ``json``."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(response.content)
    except ValueError:
        raise HostError(f"{method} {where}: response is not valid JSON (truncated?)") from None


def response_message(response: httpx.Response, *, limit: int = 200) -> str:
    """The host's error message, cut to ``limit``: ``message`` or ``error`` of a JSON body,
    else its ``errors[].message`` joined (Bitbucket Server, GitHub validation errors), else
    the body itself."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return response.text[:limit]
    if isinstance(body, dict):
        for key in ("message", "error"):
            if key in body:
                return str(body[key])[:limit]
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))[
                :limit
            ]
    return str(body)[:limit]


def classify_status(
    response: httpx.Response,
    redact: Callable[[str], str],
    *,
    archived_statuses: tuple[int, ...] = (),
) -> SourceError:
    """What a non-2xx answer means, for every host (a source refines it with its own
    classifier first): 429 -> RateLimited (``Retry-After`` or an epoch reset header); 401 ->
    Unauthorized; ``archived_statuses`` or a 403 whose message says "archived" ->
    RepoArchived; other 403 -> Forbidden; 404 -> NotFound; 409 -> Conflict; another 4xx ->
    Refused; anything else -> HostError (retried when it is a 5xx)."""
    request = response.request
    where = f"{request.method} {redact(str(request.url))[:300]}"
    status = response.status_code
    detail = redact(response_message(response))
    if status == 429:
        wait = retry_after_seconds(response.headers)
        return RateLimited(f"{where}: rate limited (retry after {wait:.0f}s)", wait)
    if status == 401:
        return Unauthorized(f"{where}: 401 unauthorized (check the token)")
    if status in archived_statuses or (status == 403 and "archived" in detail.lower()):
        return RepoArchived(f"{where}: repository is archived: {detail}")
    if status == 403:
        return Forbidden(f"{where}: 403 forbidden: {detail}")
    if status == 404:
        return NotFound(f"{where}: 404 not found: {detail}")
    if status == 409:
        return Conflict(f"{where}: 409 conflict: {detail}")
    if 400 <= status < 500:
        return Refused(f"{where}: HTTP {status}: {detail}")
    return HostError(f"{where}: HTTP {status}: {detail}")


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
    return parse_links(headers).get("next")


def parse_links(headers: Mapping[str, str]) -> dict[str, str]:
    """The URLs of an RFC 5988 ``Link`` header by relation (``next``, ``last``...), the first
    of each; ``{}`` without one. A ``Link`` header we cannot read raises ``HostError`` (see
    ``parse_next_link``)."""
    link = headers.get("link")
    if not link or not link.strip():
        return {}
    entries = _LINK_RE.findall(link)
    if not entries:
        raise HostError(f"malformed Link header: {link[:200]!r}")
    out: dict[str, str] = {}
    for url, params in entries:
        for rel in re.findall(r'rel\s*=\s*"?([^";]+)"?', params):
            for name in rel.split():
                out.setdefault(name, str(url))
    return out


def page_number(url: str | None, param: str = "page") -> int | None:
    """The page number a paging URL asks for (its first ``param``), or None. Read with
    ``urllib.parse`` (a few us) rather than ``httpx.URL`` (~20 us): it runs twice a page."""
    if url is None:
        return None
    for key, value in parse_qsl(urlsplit(url).query):
        if key == param:
            return int(value) if value.isdigit() else None
    return None


def rebase_link(url: str, api_suffix: str) -> str:
    """A pagination link (``Link: rel="next"``) made relative to the client's configured API
    root: the part of its path after ``api_suffix`` (e.g. ``/api/v4``), with its query.

    Hosts build these links from their own configured external URL (GitLab's ``gitlab.host``,
    Gitea's ``ROOT_URL``), which need not be the URL we reach them at (an internal name, a
    port-forward, a proxy): followed as is, page 2 would be "another origin". Re-based, the
    request goes to the configured origin, the only one that ever gets the token."""
    target = httpx.URL(url)
    path = target.raw_path.decode("ascii", errors="replace")  # path and query
    index = path.find(api_suffix + "/")
    if index < 0:
        raise HostError(f"pagination link {url[:200]!r} does not point into {api_suffix}")
    return path[index + len(api_suffix) :]
