"""Repositories and the events outbox."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from repo_updater.core.errors import SourceError
from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.inputs import (
    CLEAN,
    ApiError,
    IdPath,
    PageQuery,
    no_body,
    path_params,
    query_params,
    text,
)
from repo_updater.entrypoints.api.models import EventOut, Page, RepoOut, RepoSyncOut, answer
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


@routes.post("/api/repos/{id}/sync")
@endpoint(
    Access.WRITE,
    "Sync one repository now",
    description="Asks its code host for this one repository and writes what changed, as a "
    "full sync would (an archive flip makes its open changesets READONLY and requests their "
    "syncs in the same transaction). 502 when the host cannot be asked.",
    path=IdPath,
    response=RepoSyncOut,
    errors=(404, 502),
)
async def sync_repo(request: web.Request) -> web.Response:
    from repo_updater.service_layer.single_repo_sync import NoSuchRepo, sync_single_repo

    app = the_app(request)
    repo_id = path_params(request, IdPath).id
    await no_body(request)
    try:
        done = await sync_single_repo(
            app.engine, app.repo_syncer, app.config.external_services, app.sources,
            repo_id=repo_id, via="api",
        )  # fmt: skip
    except NoSuchRepo as exc:
        raise ApiError(str(exc), status=404) from None
    except SourceError as exc:
        raise ApiError(f"the code host could not be asked: {exc}", status=502) from None
    after = done.after or done.before
    body = RepoSyncOut(
        repo=RepoOut.model_validate(after),
        removed=done.after is None,
        archived_flipped=done.after is not None and done.after.archived != done.before.archived,
        changeset_syncs_requested=done.result.changeset_syncs_requested,
    )
    return answer(body)
