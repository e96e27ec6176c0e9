"""Changesets: list them (paged, filtered, in id order or what needs attention first), one by
id with its state history, and a forced sync of one (coalesced)."""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Annotated

from aiohttp import web
from pydantic import BeforeValidator, Field

from repo_updater.core.burndown import UNSYNCED
from repo_updater.core.domain import ExternalState
from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.inputs import (
    ApiError,
    Id,
    IdPath,
    PageQuery,
    RankedCursor,
    no_body,
    path_params,
    query_params,
)
from repo_updater.entrypoints.api.models import (
    ChangesetDetail,
    ChangesetOut,
    ChangesetSyncRequested,
    Page,
    StateChangeOut,
    answer,
)
from repo_updater.entrypoints.api.paging import after_key, cut
from repo_updater.service_layer.forced_syncs import force_changeset_sync
from repo_updater.store import changeset_queries as queries
from repo_updater.store.changeset_queries import ChangesetFilter, ChangesetOrder

routes = web.RouteTableDef()

HISTORY_SHOWN = 100


class StateFilter(enum.StrEnum):
    """Every ExternalState, and UNSYNCED for a changeset never synced."""

    DRAFT = ExternalState.DRAFT.value
    OPEN = ExternalState.OPEN.value
    CLOSED = ExternalState.CLOSED.value
    MERGED = ExternalState.MERGED.value
    DELETED = ExternalState.DELETED.value
    READONLY = ExternalState.READONLY.value
    UNSYNCED = UNSYNCED


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class ChangesetQuery(PageQuery):
    after: RankedCursor | None = None
    batch_change: Id | None = Field(None, description="only this batch change's changesets")
    state: Annotated[StateFilter, BeforeValidator(_upper)] | None = Field(
        None, description="external state, case-insensitive; UNSYNCED: never synced"
    )
    errored: bool | None = Field(None, description="true: only those whose last sync failed")
    order: ChangesetOrder = Field(
        ChangesetOrder.ID, description="attention: sync errors first, then READONLY, then the rest"
    )


@routes.get("/api/changesets")
@endpoint(Access.READ, "List changesets", query=ChangesetQuery, response=Page[ChangesetOut])
async def changesets(request: web.Request) -> web.Response:
    app = the_app(request)
    q = query_params(request, ChangesetQuery)
    where = ChangesetFilter(
        batch_change_id=q.batch_change,
        state=q.state.value if q.state is not None else None,
        errored=q.errored,
    )
    ranked = q.order is ChangesetOrder.ATTENTION
    after = after_key(q.after, ranked=ranked)
    async with app.api_engine.connect() as conn:
        rows = await queries.page_changesets(
            conn, where, order=q.order, after=after, limit=q.limit + 1
        )
    items, next_cursor = cut(
        rows, q.limit, lambda r: f"{r[1][0]}.{r[1][1]}" if ranked else str(r[1][1])
    )
    return answer(Page[ChangesetOut](items=[view for view, _ in items], next=next_cursor))


@routes.get("/api/changesets/{id}")
@endpoint(Access.READ, "One changeset, with its state history", path=IdPath,
          response=ChangesetDetail, errors=(404,))  # fmt: skip
async def get_changeset(request: web.Request) -> web.Response:
    app = the_app(request)
    cs_id = path_params(request, IdPath).id
    async with app.api_engine.connect() as conn:
        view = await queries.get_changeset(conn, cs_id)
        history = await queries.state_history(conn, cs_id, limit=HISTORY_SHOWN)
    if view is None:
        raise ApiError(f"no changeset with id {cs_id}", status=404)
    detail = ChangesetOut.model_validate(view).model_dump()
    changes = [StateChangeOut.model_validate(h) for h in history]
    return answer(ChangesetDetail(**detail, state_history=changes))


@routes.post("/api/changesets/{id}/sync")
@endpoint(
    Access.WRITE,
    "Sync a changeset now",
    description="Coalesced: a pending request covers it; one synced less than "
    "api.forced_sync_min_gap seconds ago is synced when the gap has passed.",
    path=IdPath,
    response=ChangesetSyncRequested,
    status=202,
    errors=(404, 409),
)
async def sync_changeset(request: web.Request) -> web.Response:
    app = the_app(request)
    cs_id = path_params(request, IdPath).id
    await no_body(request)
    gap = timedelta(seconds=app.config.api.forced_sync_min_gap)
    async with app.api_engine.begin() as conn:
        forced = await force_changeset_sync(conn, cs_id, app.clock(), gap, "api")
    if forced is None:
        raise ApiError(f"no changeset with id {cs_id}", status=404)
    if not forced.coalesced:
        app.changeset_syncer.wake()
    body = ChangesetSyncRequested(requested=cs_id, due_at=forced.due_at, coalesced=forced.coalesced)
    return answer(body, 202)
