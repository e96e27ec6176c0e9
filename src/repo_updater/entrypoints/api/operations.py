"""Bulk operations on a batch change's changesets.

  POST /api/batch-changes/{id}/operations   {"kind": "close"|"reopen"|"merge"|"comment"|
        "ready"|"draft"|"update", "state"?: "OPEN" | ["OPEN", ...], "changesets"?: [id, ...],
        "merge_method"?: "merge"|"squash"|"rebase", "force"?: bool, "body"?: str,
        "title"?: str}  -> 201 the operation with its progress (the workers run it)
  POST /api/batch-changes/{id}/operations/preview   the same body -> 200 what would be done
        to each changeset, from the stored state; stores nothing (the CLI's --dry-run)
  GET  /api/operations?batch_change=&after=&limit=      newest first, cursor-paged
  GET  /api/operations/{id}?results=STATE&after=&limit= the operation, its progress (counts,
        expected finish) and its changesets' results, cursor-paged by result id

Bad input answers 400 and stores nothing; unknown ids 404.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import BeforeValidator, Field

from repo_updater.core.domain import MAX_INT, ExternalState
from repo_updater.core.operations import (
    MAX_BODY as MAX_TEXT,
)
from repo_updater.core.operations import (
    MAX_TITLE,
    InvalidOperation,
    MergeMethod,
    OperationArgs,
    OperationKind,
    ResultState,
)
from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import MAX_BODY, Access, endpoint
from repo_updater.entrypoints.api.inputs import (
    CLEAN,
    JSON_INT,
    ApiError,
    BadRequest,
    BodyModel,
    Id,
    IdPath,
    PageQuery,
    json_body,
    path_params,
    query_params,
    text,
)
from repo_updater.entrypoints.api.models import (
    OperationDetail,
    OperationOut,
    OperationPreview,
    OperationResultOut,
    OperationStatusOut,
    Page,
    PlannedOut,
    ProgressOut,
    answer,
)
from repo_updater.entrypoints.api.paging import after_id, cut
from repo_updater.entrypoints.api.security import requester
from repo_updater.service_layer import operations
from repo_updater.store import operations as op_store

routes = web.RouteTableDef()

MAX_IDS = 10_000


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


# The body model is strict (JSON types as they are); enums are matched by their value.
State = Annotated[ExternalState, Field(strict=False), BeforeValidator(_upper)]
ChangesetId = Annotated[int, Field(strict=True, ge=1, le=MAX_INT), JSON_INT]


class OperationBody(BodyModel):
    kind: Annotated[OperationKind, Field(strict=False)]
    state: State | Annotated[list[State], Field(min_length=1)] | None = Field(
        None, description="only changesets in this external state (or these states)"
    )
    changesets: Annotated[list[ChangesetId], Field(min_length=1, max_length=MAX_IDS)] | None = (
        Field(None, description="only these changesets (each must be in the batch change)")
    )
    merge_method: Annotated[MergeMethod, Field(strict=False)] | None = Field(
        None, description="merge only (default merge)"
    )
    force: bool = Field(False, description="merge without passed checks and an approval")
    body: Annotated[str, text(MAX_TEXT), CLEAN] | None = Field(
        None, description="comment: the text; update: the new description"
    )
    title: Annotated[str, text(MAX_TITLE), CLEAN] | None = Field(
        None, description="update: the new title"
    )

    def states(self) -> list[ExternalState]:
        if self.state is None:
            return []
        return [self.state] if isinstance(self.state, ExternalState) else list(self.state)

    def operation(self) -> tuple[OperationKind, OperationArgs]:
        args = OperationArgs(
            merge_method=self.merge_method or MergeMethod.MERGE,
            force=self.force,
            body=self.body,
            title=self.title,
        )
        try:
            return self.kind, args.validate(self.kind)
        except InvalidOperation as exc:
            raise BadRequest(str(exc)) from None


class OperationsQuery(PageQuery):
    batch_change: Id | None = Field(None, description="only this batch change's operations")


class ResultsQuery(PageQuery):
    results: Annotated[ResultState, BeforeValidator(_lower)] | None = Field(
        None, description="only the results in this state"
    )


@routes.post("/api/batch-changes/{id}/operations")
@endpoint(Access.WRITE, "Start a bulk operation on a batch change's changesets", path=IdPath,
          body=OperationBody, response=OperationStatusOut, status=201, errors=(404,),
          max_body=MAX_BODY,
          description="Stored for the operation workers, who run it paced and durably; "
          "follow it with GET /api/operations/{id}.")  # fmt: skip
async def create_operation(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_params(request, IdPath).id
    body = await json_body(request, OperationBody)
    kind, args = body.operation()
    try:
        async with app.api_engine.begin() as conn:
            op_id = await operations.enqueue(
                conn, bc_id, kind, args, states=body.states(), changeset_ids=body.changesets or (),
                requested_by=requester(request), now=app.clock(),
            )  # fmt: skip
            status = await operations.status(
                conn, op_id, app.operation_worker.limits_for, app.clock()
            )
    except op_store.ChangesetNotInBatchChange as exc:
        raise ApiError(str(exc), status=404) from None
    app.operation_worker.wake()
    return answer(_status(status), 201)


@routes.post("/api/batch-changes/{id}/operations/preview")
@endpoint(Access.WRITE, "What a bulk operation would do (a dry run)", path=IdPath,
          body=OperationBody, response=OperationPreview, errors=(404,), max_body=MAX_BODY,
          description="Planned from each changeset's stored state; stores nothing.")  # fmt: skip
async def preview_operation(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_params(request, IdPath).id
    body = await json_body(request, OperationBody)
    kind, args = body.operation()
    try:
        async with app.api_engine.connect() as conn:
            planned = await operations.preview(
                conn, bc_id, kind, args, states=body.states(), changeset_ids=body.changesets or ()
            )
    except op_store.ChangesetNotInBatchChange as exc:
        raise ApiError(str(exc), status=404) from None
    return answer(OperationPreview(plans=[_plan(p) for p in planned]))


def _plan(planned: operations.Planned) -> PlannedOut:
    t = planned.target
    return PlannedOut(
        changeset=t.changeset_id,
        repo=t.repo_name,
        number=t.number,
        state=t.facts.external_state,
        plan=planned.plan.describe(),
        calls=[c.describe() for c in planned.plan.calls],
    )


def _status(status: operations.OperationStatus) -> OperationStatusOut:
    p = status.progress
    progress = ProgressOut(
        total=p.total,
        pending=p.pending,
        done=p.done,
        skipped=p.skipped,
        failed=p.failed,
        expected_finish=p.expected_finish,
        fraction=round(p.fraction, 4),
    )
    return OperationStatusOut(
        operation=OperationOut.model_validate(status.operation), progress=progress
    )


@routes.get("/api/operations")
@endpoint(Access.READ, "List bulk operations, newest first", query=OperationsQuery,
          response=Page[OperationStatusOut])  # fmt: skip
async def list_operations(request: web.Request) -> web.Response:
    app = the_app(request)
    q = query_params(request, OperationsQuery)
    async with app.api_engine.connect() as conn:
        views = await op_store.list_operations(
            conn, batch_change_id=q.batch_change, after_id=after_id(q.after), limit=q.limit + 1
        )
        page, next_cursor = cut(views, q.limit, lambda v: str(v.id))
        statuses = await operations.statuses(
            conn, page, app.operation_worker.limits_for, app.clock()
        )
    return answer(Page[OperationStatusOut](items=[_status(s) for s in statuses], next=next_cursor))


@routes.get("/api/operations/{id}")
@endpoint(Access.READ, "One bulk operation: its progress and its changesets' results",
          path=IdPath, query=ResultsQuery, response=OperationDetail, errors=(404,))  # fmt: skip
async def get_operation(request: web.Request) -> web.Response:
    app = the_app(request)
    op_id = path_params(request, IdPath).id
    q = query_params(request, ResultsQuery)
    try:
        async with app.api_engine.connect() as conn:
            status = await operations.status(
                conn, op_id, app.operation_worker.limits_for, app.clock()
            )
            rows = await op_store.list_results(
                conn, op_id, state=q.results, after_id=after_id(q.after), limit=q.limit + 1
            )
    except op_store.OperationNotFound as exc:
        raise ApiError(str(exc), status=404) from None
    results, next_cursor = cut(rows, q.limit, lambda r: str(r.id))
    page = Page[OperationResultOut](
        items=[OperationResultOut.model_validate(r) for r in results], next=next_cursor
    )
    head = _status(status)
    return answer(OperationDetail(operation=head.operation, progress=head.progress, results=page))
