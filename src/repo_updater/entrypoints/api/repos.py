"""Repositories and the events outbox."""

from __future__ import annotations

from aiohttp import web

from repo_updater.entrypoints.api.common import ok, query_bool, query_int, query_str, the_app
from repo_updater.store import events as event_store
from repo_updater.store import repos as repo_store

routes = web.RouteTableDef()


@routes.get("/api/repos")
async def repos(request: web.Request) -> web.Response:
    app = the_app(request)
    limit = query_int(request, "limit", 1000, lo=1, hi=10000)
    async with app.engine.connect() as conn:
        rows = await repo_store.list_repos(
            conn,
            archived=query_bool(request, "archived"),
            name_contains=query_str(request, "name"),
            after_id=query_int(request, "after", 0) or 0,
            limit=limit,
        )
    return ok(rows)


@routes.get("/api/events")
async def events(request: web.Request) -> web.Response:
    app = the_app(request)
    limit = query_int(request, "limit", 1000, lo=1, hi=10000) or 1000
    async with app.engine.connect() as conn:
        rows = await event_store.list_events(
            conn,
            kind=query_str(request, "kind"),
            after_id=query_int(request, "after", 0) or 0,
            limit=limit,
        )
    return ok(rows)
