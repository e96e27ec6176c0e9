"""What a route declares about itself: who may call it, what it takes and what it answers.

Every route handler carries one ``Endpoint``, set with the ``@endpoint(...)`` decorator under
its ``@routes.get/post(...)`` line. The security middleware reads ``access``; the input parsers
(``api.inputs``) read the models; ``/openapi.json`` is generated from all of it, so the
document cannot drift from the server. ``build_api`` refuses to start with a route that
declares nothing.

    @routes.post("/api/batch-changes/{id}/close")
    @endpoint(Access.WRITE, "Close a batch change", path=IdPath, response=BatchChangeOut,
              errors=(404,))
    async def close_batch_change(request: web.Request) -> web.Response: ...

``Access``:
- ``READ``: a read or write token; no token needed when reads are open (loopback + config).
- ``WRITE``: a write token in ``Authorization: Bearer``, ``Content-Type: application/json``,
  and no foreign ``Origin``. Nothing unauthenticated changes state (DESIGN invariant 7).
- ``PUBLIC``: anyone who reaches the server (health, the OpenAPI document, the login form).
- ``OWN``: the route authenticates requests itself (webhooks: the host's signature); the
  middleware checks nothing, not even the Host header. Use ``max_body`` for its size limit.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

DEFAULT_MAX_BODY = 64 * 1024
MAX_BODY = 1024 * 1024  # the most any route may take (webhook deliveries, bulk tracking)


class Access(enum.Enum):
    PUBLIC = "public"
    READ = "read"
    WRITE = "write"
    OWN = "own"


@dataclass(frozen=True, slots=True)
class Endpoint:
    access: Access
    summary: str
    path: type[BaseModel] | None = None  # path parameters
    query: type[BaseModel] | None = None  # query parameters (unknown ones are rejected)
    body: type[BaseModel] | None = None  # JSON request body (unknown fields are rejected)
    form: type[BaseModel] | None = None  # an HTML form post (documentation only)
    response: type[BaseModel] | None = None  # the success body (JSON)
    status: int = 200  # the success status
    content_type: str = "application/json"  # of the success body
    errors: tuple[int, ...] = ()  # statuses beyond the ones every route of its access has
    html_errors: tuple[int, ...] = ()  # error statuses answered as an HTML page (forms)
    max_body: int = DEFAULT_MAX_BODY
    description: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.max_body <= MAX_BODY:
            raise ValueError(f"max_body must be at most {MAX_BODY}")


H = TypeVar("H", bound=Callable[..., Any])
_ATTR = "__repo_updater_endpoint__"


def endpoint(access: Access, summary: str, **kw: Any) -> Callable[[H], H]:
    """Declare a handler's access, inputs and answer (see the module docstring)."""
    spec = Endpoint(access, summary, **kw)

    def mark(handler: H) -> H:
        setattr(handler, _ATTR, spec)
        return handler

    return mark


def endpoint_of_handler(handler: Any) -> Endpoint | None:
    spec = getattr(handler, _ATTR, None)
    return spec if isinstance(spec, Endpoint) else None


def endpoint_of(request: web.Request) -> Endpoint | None:
    """The declaration of the route a request matched (None: no route matched)."""
    return endpoint_of_handler(request.match_info.handler)
