"""Repositories and the events outbox."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.inputs import CLEAN, PageQuery, query_params, text
from repo_updater.entrypoints.api.models import EventOut, Page, RepoOut, answer
from repo_updater.entrypoints.api.paging import after_id, cut
from repo_updater.store import events as event_store
from repo_updater.store import repos as repo_store

routes = web.RouteTableDef()


class RepoQuery(PageQuery):
    archived: bool | None = None
    name: Annotated[str, text(500), CLEAN] | None = Field(None, description="part of the name")


class EventQuery(PageQuery):
    kind: Annotated[str, text(64), CLEAN] | None = Field(None, description="e.g. RepoArchived")


@routes.get("/api/repos")
@endpoint(Access.READ, "List repositories", query=RepoQuery, response=Page[RepoOut])
async def repos(request: web.Request) -> web.Response:
    app = the_app(request)
    q = query_params(request, RepoQuery)
    async with app.api_engine.connect() as conn:
        rows = await repo_store.list_repos(
            conn,
            archived=q.archived,
            name_contains=q.name,
            after_id=after_id(q.after),
            limit=q.limit + 1,
        )
    items, next_cursor = cut(rows, q.limit, lambda r: str(r.id))
    return answer(Page[RepoOut](items=items, next=next_cursor))


@routes.get("/api/events")
@endpoint(Access.READ, "List repository events (the outbox)", query=EventQuery,
          response=Page[EventOut])  # fmt: skip
async def events(request: web.Request) -> web.Response:
    app = the_app(request)
    q = query_params(request, EventQuery)
    async with app.api_engine.connect() as conn:
        rows = await event_store.list_events(
            conn, kind=q.kind, after_id=after_id(q.after), limit=q.limit + 1
        )
    items, next_cursor = cut(rows, q.limit, lambda e: str(e.id))
    return answer(Page[EventOut](items=items, next=next_cursor))
