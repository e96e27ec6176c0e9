"""Who may do what (DESIGN invariant 7: nothing unauthenticated changes state, and a browser
page on another origin cannot either).

For every route but ``Access.OWN`` ones (see ``api.endpoint``), in this order:

1. **Host.** The ``Host`` header must name this server: the configured host and port, on
   loopback also ``localhost`` / ``127.0.0.1`` / ``[::1]``, plus ``api.allowed_hosts`` (a
   reverse proxy's name). A page on a rebound DNS name (DNS rebinding) gets 421. A server
   bound to every interface (``0.0.0.0``) with no ``allowed_hosts`` accepts any Host: every
   request there needs a token anyway.
2. **Writes**: no foreign ``Origin`` (a page elsewhere cannot post here: 403), a write token
   in ``Authorization: Bearer`` (401 without one, 403 with a read token), and
   ``Content-Type: application/json`` (415), which a browser cannot send cross-origin
   without a preflight that this server never answers.
3. **Reads**: open without a token only while ``api.reads_open`` (loopback, and
   ``api.open_reads`` not false); otherwise a token, from the ``Authorization`` header or the
   HttpOnly ``SameSite=Strict`` cookie that ``/login`` sets. The cookie authenticates reads
   only, never writes. A token presented and not valid is always a 401, open reads or not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import ApiConfig
from repo_updater.entrypoints.api.endpoint import Access, endpoint_of
from repo_updater.entrypoints.api.inputs import ApiError
from repo_updater.service_layer.api_tokens import Scope, identify

COOKIE = "repo_updater_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
WILDCARDS = frozenset({"", "0.0.0.0", "[::]"})
_HOST_RE = re.compile(r"^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::([0-9]{1,5}))?$")
# The name of the token a request presented (set by ``Guard.scope``), for ``requester``.
TOKEN_NAME_KEY = web.RequestKey("repo_updater_token_name", str)
TOKEN_HINT = "create one with `repo-updater tokens create NAME --scope read|write`"


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class Misdirected(ApiError):
    status = 421


class UnsupportedMediaType(ApiError):
    status = 415


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` (or ``[v6]:port``), lower-cased; None if it is not one."""
    value = value.strip().lower()
    if value.count(":") > 1 and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address, as in the config
    match = _HOST_RE.fullmatch(value)
    if match is None:
        return None
    return match.group(1), int(match.group(2)) if match.group(2) else None


@dataclass
class Guard:
    """The checks above, for one running server (``port`` is known once it listens)."""

    config: ApiConfig
    engine: AsyncEngine  # the API's pool, for token lookups
    port: int | None = None

    def __post_init__(self) -> None:
        host = parse_host(self.config.host) or (self.config.host.lower(), None)
        self._host = host[0]
        self._extra = [h for h in map(parse_host, self.config.allowed_hosts) if h is not None]

    @property
    def reads_open(self) -> bool:
        return self.config.reads_open

    def host_allowed(self, header: str) -> bool:
        parsed = parse_host(header)
        if parsed is None:
            return False
        name, port = parsed
        if any(name == n and (p is None or p == port) for n, p in self._extra):
            return True
        if self._host in WILDCARDS and not self._extra:
            return True
        names = {self._host}
        if self.config.loopback or self._host in WILDCARDS:
            names |= LOOPBACK_NAMES
        return name in names and (port == self.port or (port is None and self.port == 80))

    def check_host(self, request: web.Request) -> None:
        if not self.host_allowed(request.headers.get("Host", "")):
            raise Misdirected(
                "this server does not answer to that Host header; if a proxy forwards to it, "
                "add the name to api.allowed_hosts"
            )

    async def scope(self, request: web.Request) -> Scope | None:
        """The scope of the token the request presents; None if it presents none."""
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <token>'")
            return await self.scope_of_token(token.strip(), request=request)
        cookie = request.cookies.get(COOKIE)
        if cookie and request.method in ("GET", "HEAD"):
            return await self.scope_of_token(
                cookie, "your login is no longer valid; log in again", request=request
            )
        return None

    async def scope_of_token(
        self,
        token: str,
        problem: str = "the token is not valid (revoked?)",
        *,
        request: web.Request | None = None,
    ) -> Scope:
        """The token's scope (401 if it is not live); its name is kept on ``request``."""
        async with self.engine.connect() as conn:
            holder = await identify(conn, token)
        if holder is None:
            raise Unauthorized(problem)
        if request is not None:
            request[TOKEN_NAME_KEY] = holder.name
        return holder.scope


def requester(request: web.Request) -> str:
    """Who asked, for the records a request leaves (``api:<token name>``; ``api`` when no
    token was presented, as for open reads)."""
    name = request.get(TOKEN_NAME_KEY)
    return f"api:{name}" if name else "api"


def check_origin(request: web.Request) -> None:
    """A write from a browser must come from a page of this server."""
    origin = request.headers.get("Origin")
    if request.headers.get("Sec-Fetch-Site") == "cross-site" or (
        origin is not None and not same_origin(origin, request.headers.get("Host", ""))
    ):
        raise Forbidden("a write from another origin is refused")


def same_origin(origin: str, host: str) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()


def check_json(request: web.Request) -> None:
    charset = request.charset
    if request.content_type != "application/json" or charset not in (None, "utf-8"):
        raise UnsupportedMediaType("a write needs Content-Type: application/json (UTF-8)")


GUARD_KEY = web.AppKey("repo_updater_guard", Guard)


@web.middleware
async def security_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    spec = endpoint_of(request)
    access = spec.access if spec is not None else Access.PUBLIC
    if access is not Access.OWN:
        guard = request.app[GUARD_KEY]
        guard.check_host(request)
        if access is Access.WRITE:
            check_origin(request)
            scope = await guard.scope(request)
            if scope is None:
                raise Unauthorized(f"a write needs a write token ({TOKEN_HINT})")
            if not scope.allows(Scope.WRITE):
                raise Forbidden("this token has the read scope; a write needs a write token")
            check_json(request)
        elif access is Access.READ:
            scope = await guard.scope(request)
            if scope is None and not guard.reads_open:
                if spec is not None and spec.content_type == "text/html":
                    raise web.HTTPSeeOther("/login")
                raise Unauthorized(f"this API needs a token ({TOKEN_HINT})")
    response: web.StreamResponse = await handler(request)
    return response
