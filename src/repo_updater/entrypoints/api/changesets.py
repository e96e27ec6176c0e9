"""Changesets: list them, and request a sync of one."""

from __future__ import annotations

from aiohttp import web

from repo_updater.core.domain import ExternalState
from repo_updater.entrypoints.api.common import BadRequest, error, ok, path_id, query_int, the_app
from repo_updater.store import changesets as cs_store

routes = web.RouteTableDef()


@routes.get("/api/changesets")
async def changesets(request: web.Request) -> web.Response:
    app = the_app(request)
    state = request.query.get("state")
    if state is not None and state not in ExternalState.__members__:
        raise BadRequest(f"state must be one of {', '.join(ExternalState.__members__)}")
    async with app.engine.connect() as conn:
        rows = await cs_store.list_changesets(
            conn,
            batch_change_id=query_int(request, "batch_change"),
            state=ExternalState(state) if state else None,
        )
    return ok(rows)


@routes.post("/api/changesets/{id}/sync")
async def sync_changeset(request: web.Request) -> web.Response:
    app = the_app(request)
    cs_id = path_id(request)
    async with app.engine.begin() as conn:
        count = await cs_store.request_sync(conn, [cs_id], "api", app.clock())
    if count == 0:
        return error(f"no changeset with id {cs_id}", 404)
    app.changeset_syncer.wake()
    return ok({"requested": cs_id}, 202)
