"""External services: their status, their recent syncs, and a forced sync of one (coalesced:
at most one per ``api.forced_sync_min_gap`` seconds, however many are asked for)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from aiohttp import web
from pydantic import Field

from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.inputs import (
    ASCII_INT,
    ApiError,
    PageQuery,
    PathModel,
    QueryModel,
    no_body,
    path_params,
    query_params,
)
from repo_updater.entrypoints.api.models import (
    Page,
    ServiceOut,
    ServiceSyncOut,
    ServiceSyncRequested,
    ServiceSyncs,
    answer,
)
from repo_updater.entrypoints.api.paging import after_id, cut
from repo_updater.service_layer.forced_syncs import force_service_sync
from repo_updater.store import external_services as service_store
from repo_updater.store import sync_history

routes = web.RouteTableDef()


class ServicePath(PathModel):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


@routes.get("/api/services")
@endpoint(Access.READ, "List the external services", query=PageQuery, response=Page[ServiceOut])
async def services(request: web.Request) -> web.Response:
    app = the_app(request)
    q = query_params(request, PageQuery)
    async with app.api_engine.connect() as conn:
        rows = await service_store.list_services(
            conn, after_id=after_id(q.after), limit=q.limit + 1
        )
    items, next_cursor = cut(rows, q.limit, lambda s: str(s.id))
    return answer(Page[ServiceOut](items=items, next=next_cursor))


class SyncsQuery(QueryModel):
    limit: Annotated[int, Field(ge=1, le=sync_history.KEEP), ASCII_INT] = Field(
        20, description="how many of the newest syncs"
    )


@routes.get("/api/services/{name}/syncs")
@endpoint(Access.READ, "A service's recent repo syncs, newest first", path=ServicePath,
          query=SyncsQuery, response=ServiceSyncs, errors=(404,))  # fmt: skip
async def service_syncs(request: web.Request) -> web.Response:
    app = the_app(request)
    name = path_params(request, ServicePath).name
    q = query_params(request, SyncsQuery)
    async with app.api_engine.connect() as conn:
        status = await service_store.service_sync_status(conn, name, app.clock())
        if status is None:
            raise ApiError(f"no external service named {name!r}", status=404)
        rows = await sync_history.recent_syncs(conn, status.id, limit=q.limit)
    items = [ServiceSyncOut.model_validate(r) for r in rows]
    return answer(ServiceSyncs(service=name, items=items))


@routes.post("/api/services/{name}/sync")
@endpoint(
    Access.WRITE,
    "Sync a service now",
    description="Coalesced: at most one sync per api.forced_sync_min_gap seconds; the answer "
    "says when it is due and whether an earlier request or a recent sync covers this one.",
    path=ServicePath,
    response=ServiceSyncRequested,
    status=202,
    errors=(404,),
)
async def sync_service(request: web.Request) -> web.Response:
    app = the_app(request)
    name = path_params(request, ServicePath).name
    await no_body(request)
    gap = timedelta(seconds=app.config.api.forced_sync_min_gap)
    async with app.api_engine.begin() as conn:
        forced = await force_service_sync(conn, name, app.clock(), gap)
    if forced is None:
        raise ApiError(f"no external service named {name!r}", status=404)
    body = ServiceSyncRequested(requested=name, due_at=forced.due_at, coalesced=forced.coalesced)
    return answer(body, 202)
