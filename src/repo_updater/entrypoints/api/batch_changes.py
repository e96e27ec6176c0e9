"""Batch changes: list (by name too), one by id, its stats and burndown, create, close, and
track pull requests in one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from repo_updater.core.burndown import MAX_POINTS, STATES
from repo_updater.core.domain import MAX_BATCH_CHANGE_NAME, MAX_PULL_NUMBER, BatchChangeState
from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import MAX_BODY, Access, endpoint
from repo_updater.entrypoints.api.inputs import (
    ASCII_INT,
    CLEAN,
    JSON_INT,
    ApiError,
    BodyModel,
    IdPath,
    PageQuery,
    QueryModel,
    json_body,
    no_body,
    path_params,
    query_params,
    text,
)
from repo_updater.entrypoints.api.models import (
    BatchChangeOut,
    BatchChangeStats,
    BurndownOut,
    BurndownPointOut,
    Page,
    Tracked,
    TrackedMany,
    TrackResult,
    answer,
)
from repo_updater.entrypoints.api.paging import after_id, cut
from repo_updater.service_layer.batch_change_stats import batch_change_stats
from repo_updater.store import changeset_queries as queries
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store

routes = web.RouteTableDef()

MAX_BULK = 10_000
MAX_DESCRIPTION = 10_000


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class BatchChangeQuery(PageQuery):
    state: Annotated[BatchChangeState, BeforeValidator(_upper)] | None = Field(
        None, description="case-insensitive"
    )
    name: Annotated[str, text(MAX_BATCH_CHANGE_NAME), CLEAN] | None = Field(
        None, description="the exact name (names are unique)"
    )


class NewBatchChange(BodyModel):
    model_config = ConfigDict(str_strip_whitespace=True)
    name: Annotated[str, text(MAX_BATCH_CHANGE_NAME, min_length=1), CLEAN]
    description: Annotated[str, text(MAX_DESCRIPTION), CLEAN] = ""


RepoName = Annotated[str, text(500, min_length=1), CLEAN]
PullNumber = Annotated[int, Field(strict=True, ge=1, le=MAX_PULL_NUMBER), JSON_INT]


class PullRef(BodyModel):
    repo: RepoName = Field(description="the repository's name, as GET /api/repos lists it")
    number: PullNumber


ONE_FORM: list[Any] = [{"required": ["repo", "number"]}, {"required": ["changesets"]}]


class TrackBody(BodyModel):
    """``repo`` and ``number`` for one pull request, or ``changesets`` for many."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["repo", "number"]}, {"required": ["changesets"]}]
        }
    )
    repo: RepoName | None = None
    number: PullNumber | None = None
    changesets: Annotated[list[PullRef], Field(min_length=1, max_length=MAX_BULK)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TrackBody:
        single = self.repo is not None or self.number is not None
        if self.changesets is not None and single:
            raise ValueError("give 'repo' and 'number', or 'changesets', not both")
        if self.changesets is None:
            for name in ("repo", "number"):
                if getattr(self, name) is None:
                    raise ValueError(f"field {name!r} is required (or give 'changesets')")
        return self

    def refs(self) -> list[PullRef]:
        if self.changesets is not None:
            return self.changesets
        assert self.repo is not None and self.number is not None
        return [PullRef(repo=self.repo, number=self.number)]


class StatsQuery(QueryModel):
    points: Annotated[int, Field(ge=2, le=MAX_POINTS), ASCII_INT] = Field(
        30, description="moments in the burndown series, evenly spaced up to now"
    )
    since: datetime | None = Field(None, description="start of the series (default: creation)")


@routes.get("/api/batch-changes")
@endpoint(Access.READ, "List batch changes", query=BatchChangeQuery, response=Page[BatchChangeOut])
async def batch_changes(request: web.Request) -> web.Response:
    app = the_app(request)
    q = query_params(request, BatchChangeQuery)
    async with app.api_engine.connect() as conn:
        rows = await queries.list_batch_changes(
            conn, q.state, name=q.name, after_id=after_id(q.after), limit=q.limit + 1
        )
    items, next_cursor = cut(rows, q.limit, lambda b: str(b.id))
    return answer(Page[BatchChangeOut](items=items, next=next_cursor))


@routes.post("/api/batch-changes")
@endpoint(Access.WRITE, "Create a batch change", body=NewBatchChange, response=BatchChangeOut,
          status=201, errors=(409,))  # fmt: skip
async def create_batch_change(request: web.Request) -> web.Response:
    app = the_app(request)
    body = await json_body(request, NewBatchChange)
    async with app.api_engine.begin() as conn:
        new_id = await cs_store.create_batch_change(conn, body.name, body.description, app.clock())
        created = await queries.get_batch_change(conn, new_id)
    return answer(BatchChangeOut.model_validate(created), 201)


@routes.get("/api/batch-changes/{id}")
@endpoint(Access.READ, "One batch change", path=IdPath, response=BatchChangeOut, errors=(404,))
async def get_batch_change(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_params(request, IdPath).id
    async with app.api_engine.connect() as conn:
        found = await queries.get_batch_change(conn, bc_id)
    if found is None:
        raise ApiError(f"no batch change with id {bc_id}", status=404)
    return answer(BatchChangeOut.model_validate(found))


@routes.get("/api/batch-changes/{id}/stats")
@endpoint(
    Access.READ,
    "Counts by state and the burndown of a batch change",
    description="The burndown counts the batch change's changesets by external state at each "
    f"moment; bands: {', '.join(STATES)} (READONLY is its own band).",
    path=IdPath,
    query=StatsQuery,
    response=BatchChangeStats,
    errors=(404,),
)
async def stats(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_params(request, IdPath).id
    q = query_params(request, StatsQuery)
    since = q.since.replace(tzinfo=UTC) if q.since and q.since.tzinfo is None else q.since
    async with app.api_engine.connect() as conn:
        found = await batch_change_stats(conn, bc_id, app.clock(), points=q.points, since=since)
    if found is None:
        raise ApiError(f"no batch change with id {bc_id}", status=404)
    c = found.counts
    burndown = [BurndownPointOut(at=p.at, counts=p.counts) for p in found.burndown]
    return answer(
        BatchChangeStats(
            batch_change_id=bc_id, total=c.total, by_state=c.by_state, errored=c.errored,
            by_review_state=c.by_review_state, by_check_state=c.by_check_state,
            burndown=BurndownOut(points=burndown),
        )
    )  # fmt: skip


@routes.post("/api/batch-changes/{id}/close")
@endpoint(Access.WRITE, "Close a batch change (its changesets stop syncing)", path=IdPath,
          response=BatchChangeOut, errors=(404,))  # fmt: skip
async def close_batch_change(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_params(request, IdPath).id
    await no_body(request)
    async with app.api_engine.begin() as conn:
        await cs_store.close_batch_change(conn, bc_id, app.clock())
        closed = await queries.get_batch_change(conn, bc_id)
    return answer(BatchChangeOut.model_validate(closed))


@routes.post("/api/batch-changes/{id}/changesets")
@endpoint(
    Access.WRITE,
    "Track pull requests in a batch change",
    description=f"One ({{repo, number}}) or up to {MAX_BULK} ({{changesets: [...]}}), all or "
    "nothing; each gets a sync requested.",
    path=IdPath,
    body=TrackBody,
    response=TrackResult,
    status=201,
    errors=(404, 409),
    max_body=MAX_BODY,
)
async def track_changesets(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_params(request, IdPath).id
    body = await json_body(request, TrackBody)
    refs = body.refs()
    async with app.api_engine.begin() as conn:
        ids_by_name = await repo_store.repo_ids_by_name(conn, [r.repo for r in refs])
        unknown = [r.repo for r in refs if r.repo not in ids_by_name]
        if unknown:
            raise ApiError(f"no repository named {unknown[0]!r}", status=404)
        pairs = [(ids_by_name[r.repo], r.number) for r in refs]
        cs_ids = await cs_store.track_changesets(conn, bc_id, pairs, app.clock())
    app.changeset_syncer.wake()
    tracked = [
        Tracked(id=cs_id, repo=r.repo, number=r.number)
        for cs_id, r in zip(cs_ids, refs, strict=True)
    ]
    result: Any = TrackedMany(changesets=tracked) if body.changesets is not None else tracked[0]
    return answer(TrackResult(result), 201)
