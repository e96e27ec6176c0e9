"""HTTP API (JSON) and the dashboard (a static page drawn from the API).

Every route declares who may call it and what it takes and answers (``api.endpoint``); the
security middleware (``api.security``) enforces the access, ``api.inputs`` parses the inputs,
``api.errors`` makes every error JSON, and ``/openapi.json`` (``api.openapi``) documents it
all. The routes, by module:

  GET  /, /static/app.js, /static/app.css  dashboard (page, assets)   dashboard
  GET  /api/pulse                         what the dashboard polls
  GET  /login, POST /login, POST /logout  dashboard login (cookie)    login
  GET  /api/services                      services, sync status      external_services
  GET  /api/services/{name}/syncs         its recent repo syncs
  POST /api/services/{name}/sync          forced sync (coalesced)
  GET  /api/repos, GET /api/events                                    repos
  POST /api/repos/{id}/sync               single-repo sync (now)
  POST /webhooks/{service}                a code host's delivery (signed)  webhooks
  GET  /api/repos/{id}/permissions        who can read a repository  permissions
  GET  /api/batch-changes[?name=]         list; by exact name        batch_changes
  POST /api/batch-changes                 {"name", "description"?}
  GET  /api/batch-changes/{id}, .../{id}/stats (counts, burndown)
  POST /api/batch-changes/{id}/close
  POST /api/batch-changes/{id}/changesets {"repo", "number"} or {"changesets": [...]}
  GET  /api/changesets, GET /api/changesets/{id}                      changesets
  POST /api/changesets/{id}/sync          forced sync (coalesced)
  POST /api/batch-changes/{id}/operations a bulk operation (close, merge, ...)  operations
  GET  /api/operations, GET /api/operations/{id} (progress, results)
  POST /api/batch-specs[/preview]         {"spec": {...}}: apply / preview  batch_specs
  GET  /healthz (readiness: 503 while the store is unreachable), GET /metrics   observability
  GET  /openapi.json                                                  openapi
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from repo_updater.bootstrap import App
from repo_updater.config import ApiConfig, is_loopback
from repo_updater.entrypoints.api import (
    batch_changes,
    batch_specs,
    changesets,
    dashboard,
    external_services,
    login,
    observability,
    openapi,
    operations,
    permissions,
    repos,
    webhooks,
)
from repo_updater.entrypoints.api.common import APP_KEY
from repo_updater.entrypoints.api.endpoint import MAX_BODY
from repo_updater.entrypoints.api.errors import HEALTH_KEY, errors_middleware
from repo_updater.entrypoints.api.security import GUARD_KEY, Guard, security_middleware

log = logging.getLogger(__name__)

ROUTE_MODULES = (
    observability,
    dashboard,
    login,
    openapi,
    external_services,
    repos,
    permissions,
    batch_changes,
    changesets,
    operations,
    webhooks,
    batch_specs,
)


class ExposureRefused(RuntimeError):
    """``serve`` would expose an API nobody can authenticate to: no token exists."""


def build_api(app: App, api: ApiConfig | None = None) -> web.Application:
    """The API's aiohttp application (an app factory: nothing is built at import time), for
    the address in ``api`` (default: the config's). Raises ``openapi.UndocumentedRoute`` for a
    route that declares no ``@endpoint``."""
    api = api or app.config.api
    web_app = web.Application(
        middlewares=[errors_middleware, security_middleware], client_max_size=MAX_BODY
    )
    web_app[APP_KEY] = app
    web_app[HEALTH_KEY] = app.health
    web_app[GUARD_KEY] = Guard(api, app.api_engine)
    for module in ROUTE_MODULES:
        web_app.add_routes(module.routes)
    version = importlib.metadata.version("repo-updater")
    web_app[openapi.OPENAPI_KEY] = openapi.document(
        web_app, reads_open=api.reads_open, version=version
    )
    return web_app


async def _refuse_open_exposure(app: App, host: str, port: int) -> None:
    """Refuse to listen beyond loopback while no token exists: every request would fail."""
    if is_loopback(host):
        return
    from repo_updater.service_layer.api_tokens import any_token

    async with app.api_engine.connect() as conn:
        if not await any_token(conn):
            raise ExposureRefused(
                f"refusing to serve the API on {host or '*'}:{port}, beyond loopback, while no "
                "API token exists: create one first with `repo-updater tokens create NAME "
                "--scope read|write`, or listen on 127.0.0.1"
            )


@contextlib.asynccontextmanager
async def running_api(app: App, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    await _refuse_open_exposure(app, host, port)
    web_app = build_api(app, app.config.api.model_copy(update={"host": host, "port": port}))
    # aiohttp arms its keep-alive timer when a connection opens and only a complete request
    # head disarms it: a client that has not sent one within ``header_timeout`` (a slowloris)
    # is disconnected, as is one idling that long between keep-alive requests.
    runner = web.AppRunner(
        web_app, access_log=None, keepalive_timeout=app.config.api.header_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = int(runner.addresses[0][1])
    web_app[GUARD_KEY].port = bound
    try:
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound}"
    finally:
        await runner.cleanup()
