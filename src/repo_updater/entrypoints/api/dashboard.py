"""The dashboard: a static page (``static/``: HTML, CSS and JavaScript shipped in the package,
no build step, nothing from the internet) that draws itself from the JSON API, and
``/api/pulse``, the small answer it polls to know when to re-read its data.

Pages (hash routes of ``/``): ``#/`` the batch changes, ``#/batch-changes/{id}`` one batch
change (counts, burndown, changesets), ``#/services`` the services and their recent syncs.
The page is a read: open on loopback, else the login cookie (``api.login``). Its assets hold
no data and are public, so the login page can use them too."""

from __future__ import annotations

import hashlib
from importlib import resources

from aiohttp import web

from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.models import Pulse, answer
from repo_updater.store.counts import change_marker

routes = web.RouteTableDef()

# The page may load its own script and style and nothing else; no inline script runs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _static(name: str, content_type: str, request: web.Request) -> web.Response:
    body = _asset(name)
    etag = hashlib.sha256(body).hexdigest()[:20]
    headers = {
        "Cache-Control": "no-cache",
        "ETag": f'"{etag}"',
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("If-None-Match") == f'"{etag}"':
        return web.Response(status=304, headers=headers)
    response = web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)
    response.enable_compression()
    return response


@routes.get("/")
@endpoint(Access.READ, "The dashboard (HTML)", content_type="text/html")
async def dashboard(request: web.Request) -> web.Response:
    response = _static("index.html", "text/html", request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@routes.get("/static/app.js")
@endpoint(Access.PUBLIC, "The dashboard's script", content_type="text/javascript")
async def script(request: web.Request) -> web.Response:
    return _static("app.js", "text/javascript", request)


@routes.get("/static/app.css")
@endpoint(Access.PUBLIC, "The dashboard's style sheet", content_type="text/css")
async def style(request: web.Request) -> web.Response:
    return _static("app.css", "text/css", request)


@routes.get("/api/pulse")
@endpoint(
    Access.READ,
    "What the dashboard polls: a version that changes when its data does",
    description="Cheap (one query): poll it; re-read the lists when `version` differs from the "
    "last one, and the counts and burndown when `states` does.",
    response=Pulse,
)
async def pulse(request: web.Request) -> web.Response:
    app = the_app(request)
    async with app.api_engine.connect() as conn:
        marker = await change_marker(conn)
    return answer(Pulse(version=_digest(marker.anything), states=_digest(marker.states),
                        at=app.clock()))  # fmt: skip


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
