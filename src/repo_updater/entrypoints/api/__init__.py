"""HTTP API (JSON) and a small read-only dashboard.

Routes:
  GET  /                               dashboard (HTML)
  GET  /api/services                   services with repo counts and last sync status
  POST /api/services/{name}/sync       sync that service now
  GET  /api/repos?archived=&name=&after=&limit=
  GET  /api/events?kind=&after=&limit=
  GET  /api/batch-changes
  POST /api/batch-changes              {"name": str, "description": str?}
  POST /api/batch-changes/{id}/close
  POST /api/batch-changes/{id}/changesets   {"repo": store name, "number": int}  (track a PR)
                                       or {"changesets": [{"repo", "number"}, ...]} (bulk)
  GET  /api/changesets?batch_change=&state=
  POST /api/changesets/{id}/sync       request an immediate sync
  POST /api/batch-changes/{id}/operations   a bulk operation (close, merge, comment, ...)
  GET  /api/operations[/{id}]          operations, progress, results (see ``operations``)
  GET  /healthz
  GET  /metrics                        Prometheus text format

Bad input answers 400 with ``{"error": "..."}`` and changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from repo_updater.bootstrap import App
from repo_updater.entrypoints.api import (
    batch_changes,
    changesets,
    dashboard,
    external_services,
    observability,
    operations,
    repos,
)
from repo_updater.entrypoints.api.common import APP_KEY, errors_middleware

ROUTE_MODULES = (
    observability,
    dashboard,
    external_services,
    repos,
    batch_changes,
    changesets,
    operations,
)


def build_api(app: App) -> web.Application:
    """The API's aiohttp application (an app factory: nothing is built at import time)."""
    web_app = web.Application(middlewares=[errors_middleware])
    web_app[APP_KEY] = app
    for module in ROUTE_MODULES:
        web_app.add_routes(module.routes)
    return web_app


@contextlib.asynccontextmanager
async def running_api(app: App, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    runner = web.AppRunner(build_api(app), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = int(runner.addresses[0][1])
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
