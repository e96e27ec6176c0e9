"""The middleware every emulated host sub-app runs: auth, rate limits, fault switches, ETags.

``fault_middleware(host, style)`` returns an aiohttp middleware that, per request:

1. counts it (``host.request_count``, and ``host.in_flight`` / ``host.max_in_flight``: the
   requests being answered at once) and adds ``faults.latency_ms``;
2. answers 401 when ``host.token`` is set and the request does not carry it
   (``Authorization: Bearer|token <t>``, ``Authorization: Basic`` with the token as password,
   or ``PRIVATE-TOKEN: <t>``);
3. applies the one-shot switches of ``host.faults`` (when ``faults.path_contains`` is set,
   only to requests whose path and query contain it): ``rate_limited_next`` (GitHub: 403
   secondary rate limit, others: 429, both with ``Retry-After``), ``errors_next``
   (``error_status``), ``timeouts_next`` (sleep ``timeout_seconds``, then answer normally)
   and ``truncate_next`` (the handler's JSON body cut in half, sent as a well-formed
   response);
4. enforces the primary limit ``faults.rate_limit_remaining`` (None = unlimited): each
   request that is not a 304 consumes one; at 0 GitHub answers 403 "API rate limit exceeded"
   (GraphQL: HTTP 200 with an error of type ``faults.graphql_rate_limit_type`` and no data,
   as GitHub does), others 429. The window resets ``rate_limit_reset_in`` seconds after it
   started, restoring ``rate_limit_total``;
5. adds an ``ETag`` to GET responses with a body and answers ``304 Not Modified`` when
   ``If-None-Match`` matches;
6. adds the style's rate-limit headers to every answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import math
import time
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict

from repo_updater.emulator.state import HostState

RateLimitStyle = Literal["github", "gitlab", "gitea", "none"]

_GITHUB_DOCS = "https://docs.github.com/rest"
# Headers a 304 keeps from the full answer.
_KEPT_ON_304 = ("Link", "Cache-Control", "Vary", "Last-Modified")


def fault_middleware(host: HostState, style: RateLimitStyle) -> Middleware:
    """Build the middleware for one host sub-app (see the module docstring)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        host.request_count += 1
        host.in_flight += 1
        host.max_in_flight = max(host.max_in_flight, host.in_flight)
        try:
            return await answer(request, handler)
        finally:
            host.in_flight -= 1

    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        faults = host.faults
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if host.token is not None and request_token(request) != host.token:
            message = "Bad credentials" if style == "github" else "401 Unauthorized"
            return _error(style, 401, message)

        targeted = not faults.path_contains or faults.path_contains in request.path_qs
        now = time.time()
        _roll_window(host, now)
        if targeted and faults.rate_limited_next > 0:
            faults.rate_limited_next -= 1
            return _secondary_limit(host, style)
        if faults.rate_limit_remaining is not None and faults.rate_limit_remaining <= 0:
            if style == "github" and request.path.endswith("/graphql"):
                return _graphql_limit(host)
            return _primary_limit(host, style)
        if targeted and faults.errors_next > 0:
            faults.errors_next -= 1
            response: web.StreamResponse = _error(
                style, faults.error_status, "Server Error (emulated fault)"
            )
            _add_rate_headers(response, host, style)
            return response
        if targeted and faults.timeouts_next > 0:
            faults.timeouts_next -= 1
            await asyncio.sleep(faults.timeout_seconds)

        response = await handler(request)

        body = response.body if isinstance(response, web.Response) else None
        has_body = isinstance(body, bytes) and len(body) > 0
        if targeted and faults.truncate_next > 0 and has_body and response.status < 300:
            assert isinstance(body, bytes)
            faults.truncate_next -= 1
            response = _truncated(response, body)
        elif has_body and request.method in ("GET", "HEAD") and response.status == 200:
            assert isinstance(body, bytes)
            etag = '"' + hashlib.sha1(body, usedforsecurity=False).hexdigest() + '"'
            if etag_matches(request.headers.get("If-None-Match"), etag):
                response = _not_modified(response, etag)
            else:
                response.headers["ETag"] = etag
        if response.status != 304 and faults.rate_limit_remaining is not None:
            faults.rate_limit_remaining = max(0, faults.rate_limit_remaining - 1)
        _add_rate_headers(response, host, style)
        return response

    return middleware


def request_token(request: web.Request) -> str | None:
    """The token a request carries, in any of the forms code hosts accept."""
    private = request.headers.get("PRIVATE-TOKEN")
    if private:
        return private
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    scheme = scheme.lower()
    if scheme in ("bearer", "token"):
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def _roll_window(host: HostState, now: float) -> None:
    """Start the primary rate-limit window, or reset it when it has expired."""
    faults = host.faults
    if host.rate_limit_reset_at is None:
        host.rate_limit_reset_at = now + faults.rate_limit_reset_in
    elif now >= host.rate_limit_reset_at:
        host.rate_limit_reset_at = now + faults.rate_limit_reset_in
        if faults.rate_limit_remaining is not None:
            faults.rate_limit_remaining = faults.rate_limit_total


def _reset_epoch(host: HostState) -> int:
    reset_at = host.rate_limit_reset_at
    if reset_at is None:
        reset_at = time.time() + host.faults.rate_limit_reset_in
    return math.ceil(reset_at)


def _add_rate_headers(response: web.StreamResponse, host: HostState, style: RateLimitStyle) -> None:
    if style == "none":
        return
    faults = host.faults
    limit = faults.rate_limit_total
    remaining = limit if faults.rate_limit_remaining is None else faults.rate_limit_remaining
    reset = str(_reset_epoch(host))
    headers = response.headers
    if style == "gitlab":
        headers["RateLimit-Limit"] = str(limit)
        headers["RateLimit-Remaining"] = str(remaining)
        headers["RateLimit-Reset"] = reset
        headers["RateLimit-Observed"] = str(limit - remaining)
        return
    headers["X-RateLimit-Limit"] = str(limit)
    headers["X-RateLimit-Remaining"] = str(remaining)
    headers["X-RateLimit-Reset"] = reset
    if style == "github":
        headers["X-RateLimit-Used"] = str(limit - remaining)
        headers["X-RateLimit-Resource"] = "core"


def _error(style: RateLimitStyle, status: int, message: str) -> web.Response:
    body: dict[str, str] = {"message": message}
    if style == "github":
        body["documentation_url"] = _GITHUB_DOCS
        body["status"] = str(status)
    return web.json_response(body, status=status)


def _secondary_limit(host: HostState, style: RateLimitStyle) -> web.Response:
    retry_after = str(host.faults.retry_after)
    if style == "github":
        response = _error(
            style,
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you "
            "try again.",
        )
    else:
        response = _error(style, 429, "Too Many Requests: retry later")
    response.headers["Retry-After"] = retry_after
    _add_rate_headers(response, host, style)
    return response


def _primary_limit(host: HostState, style: RateLimitStyle) -> web.Response:
    if style == "github":
        response = _error(style, 403, "API rate limit exceeded for this token.")
    else:
        response = _error(style, 429, "Rate limit exceeded")
        wait = max(0, _reset_epoch(host) - math.floor(time.time()))
        response.headers["Retry-After"] = str(wait)
    _add_rate_headers(response, host, style)
    return response


def _graphql_limit(host: HostState) -> web.Response:
    """GitHub GraphQL's exhausted primary limit: 200, an error, ``x-ratelimit-remaining: 0``."""
    error: dict[str, Any] = {
        "message": "API rate limit already exceeded for user ID 1.",
    }
    kind = host.faults.graphql_rate_limit_type
    if kind:
        error = {"type": kind, "code": "graphql_rate_limit", **error}
    response = web.json_response({"errors": [error]})
    _add_rate_headers(response, host, "github")
    response.headers["X-RateLimit-Resource"] = "graphql"
    return response


def _truncated(response: web.StreamResponse, body: bytes) -> web.Response:
    headers = CIMultiDict(response.headers)
    headers.pop("Content-Length", None)
    headers.pop("ETag", None)
    return web.Response(status=response.status, body=body[: len(body) // 2], headers=headers)


def _not_modified(response: web.StreamResponse, etag: str) -> web.Response:
    headers = CIMultiDict[str]()
    headers["ETag"] = etag
    for name in _KEPT_ON_304:
        if name in response.headers:
            headers[name] = response.headers[name]
    return web.Response(status=304, headers=headers)
