"""External services: their status, and a request to sync one now."""

from __future__ import annotations

from aiohttp import web

from repo_updater.entrypoints.api.common import error, ok, the_app
from repo_updater.store import external_services as service_store

routes = web.RouteTableDef()


@routes.get("/api/services")
async def services(request: web.Request) -> web.Response:
    app = the_app(request)
    async with app.engine.connect() as conn:
        return ok(await service_store.list_services(conn))


@routes.post("/api/services/{name}/sync")
async def sync_service(request: web.Request) -> web.Response:
    app = the_app(request)
    name = request.match_info["name"]
    async with app.engine.begin() as conn:
        if not await service_store.request_service_sync(conn, name, app.clock()):
            return error(f"no external service named {name!r}", 404)
    return ok({"requested": name}, 202)
