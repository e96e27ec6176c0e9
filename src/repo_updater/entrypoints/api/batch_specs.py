"""Batch specs over HTTP (the CLI's ``batch-changes apply``; docs/specs.md):

  POST /api/batch-specs/preview  {"spec": {...}}  -> 200 per matched repository the unified
        diff of what would change, or why it is skipped; nothing is written
  POST /api/batch-specs          {"spec": {...}}  -> 201 the apply_spec operation with its
        progress (the operation workers run it; follow it with GET /api/operations/{id})

The spec is the YAML spec's content as a JSON object. A bad spec answers 400 naming the field
and stores nothing; a closed batch change of the spec's name answers 409.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from repo_updater.batch_spec import SpecError, parse_spec
from repo_updater.core.specs import Spec
from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import MAX_BODY, Access, endpoint
from repo_updater.entrypoints.api.inputs import ApiError, BadRequest, BodyModel, json_body
from repo_updater.entrypoints.api.models import OperationStatusOut, Out, answer
from repo_updater.entrypoints.api.operations import _status
from repo_updater.entrypoints.api.security import requester
from repo_updater.service_layer import operations, spec_apply
from repo_updater.store.changesets import BatchChangeClosed

routes = web.RouteTableDef()


class SpecBody(BodyModel):
    spec: dict[str, Any] = Field(description="the batch spec (docs/specs.md) as a JSON object")

    def parsed(self) -> Spec:
        try:
            return parse_spec(self.spec)
        except SpecError as exc:
            raise BadRequest(str(exc)) from None


class RepoPreviewOut(Out):
    repo: str
    action: str = Field(description="change, skip, close or detach")
    reason: str = Field(description="why skipped (archived, fork, no file matches, ...)")
    diff: str = Field(description="unified diff of the change (action change)")


class SpecPreviewOut(Out):
    repos: list[RepoPreviewOut]


@routes.post("/api/batch-specs/preview")
@endpoint(
    Access.WRITE,
    "What applying a batch spec would change, per repository",
    body=SpecBody,
    response=SpecPreviewOut,
    max_body=MAX_BODY,
    description="Reads the files from the code hosts; writes nothing.",
)
async def preview_spec(request: web.Request) -> web.Response:
    app = the_app(request)
    spec = (await json_body(request, SpecBody)).parsed()
    writers = spec_apply.file_writers(app.sources.values())
    async with app.api_engine.connect() as conn:
        previews = await spec_apply.preview(conn, spec, writers, now=app.clock())
    items = [
        RepoPreviewOut(repo=p.repo_name, action=p.action, reason=p.reason, diff=p.diff)
        for p in previews
    ]
    return answer(SpecPreviewOut(repos=items))


@routes.post("/api/batch-specs")
@endpoint(
    Access.WRITE,
    "Apply a batch spec: open, update and close changesets",
    body=SpecBody,
    response=OperationStatusOut,
    status=201,
    errors=(409,),
    max_body=MAX_BODY,
    description="Stores the spec and an apply_spec operation for the operation "
    "workers; follow it with GET /api/operations/{id}.",
)
async def apply_spec(request: web.Request) -> web.Response:
    app = the_app(request)
    spec = (await json_body(request, SpecBody)).parsed()
    writers = spec_apply.file_writers(app.sources.values())
    try:
        async with app.api_engine.begin() as conn:
            queued = await spec_apply.enqueue(
                conn,
                spec,
                requested_by=requester(request),
                now=app.clock(),
                hosts=lambda host: host in writers,
            )
            status = await operations.status(
                conn, queued.operation_id, app.operation_worker.limits_for, app.clock()
            )
    except BatchChangeClosed as exc:
        raise ApiError(str(exc), status=409) from None
    app.operation_worker.wake()
    return answer(_status(status), 201)
