"""Bulk operations on a batch change's changesets.

  POST /api/batch-changes/{id}/operations   {"kind": "close"|"reopen"|"merge"|"comment"|
        "ready"|"draft"|"update", "state"?: "OPEN" | ["OPEN", ...], "changesets"?: [id, ...],
        "merge_method"?: "merge"|"squash"|"rebase", "force"?: bool, "body"?: str,
        "title"?: str, "dry_run"?: bool}
        -> 201 the operation with its progress (202 semantics: the workers run it), or, with
           "dry_run": 200 {"plans": [{changeset, repo, number, state, plan, calls}]}
  GET  /api/operations?batch_change=&after=&limit=      newest first
  GET  /api/operations/{id}?results=STATE&after=&limit= the operation, its progress (counts,
        expected finish) and its changesets' results, paged by result id

Bad input answers 400 ``{"error": ...}`` and stores nothing; unknown ids 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from repo_updater.core.domain import MAX_INT, ExternalState
from repo_updater.core.operations import (
    InvalidOperation,
    OperationArgs,
    OperationKind,
    ResultState,
)
from repo_updater.entrypoints.api.common import (
    BadRequest,
    error,
    json_body,
    ok,
    path_id,
    query_int,
    text,
    the_app,
)
from repo_updater.service_layer import operations
from repo_updater.store import operations as op_store

routes = web.RouteTableDef()

MAX_IDS = 10_000
_FIELDS = {"kind", "state", "changesets", "merge_method", "force", "body", "title", "dry_run"}


def _states(value: Any) -> list[ExternalState]:
    values = [value] if isinstance(value, str) else value
    names = ", ".join(ExternalState.__members__)
    if not isinstance(values, list) or not all(v in ExternalState.__members__ for v in values):
        raise BadRequest(f"'state' must be one of {names}, or a list of them")
    return [ExternalState(v) for v in values]


def _ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IDS:
        raise BadRequest(f"'changesets' must be a list of 1 to {MAX_IDS} changeset ids")
    for v in value:
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_INT:
            raise BadRequest(f"'changesets' must hold integers between 1 and {MAX_INT}")
    return list(value)


def _request(body: dict[str, Any]) -> tuple[OperationKind, OperationArgs]:
    unknown = set(body) - _FIELDS
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    name = body.get("kind")
    if not isinstance(name, str) or name not in OperationKind.__members__.values():
        raise BadRequest(f"'kind' must be one of {', '.join(k.value for k in OperationKind)}")
    for field in ("body", "title"):
        if isinstance(body.get(field), str):
            text(body[field], f"'{field}'")
    raw: dict[str, Any] = {
        k: body[k] for k in ("merge_method", "force", "body", "title") if k in body
    }
    try:
        kind = OperationKind(name)
        return kind, OperationArgs.from_json(raw).validate(kind)
    except InvalidOperation as exc:
        raise BadRequest(str(exc)) from None


@routes.post("/api/batch-changes/{id}/operations")
async def create_operation(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_id(request)
    body = await json_body(request)
    kind, args = _request(body)
    states = _states(body["state"]) if "state" in body else []
    ids = _ids(body["changesets"]) if "changesets" in body else []
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("'dry_run' must be true or false")
    try:
        async with app.engine.begin() as conn:
            if dry_run:
                planned = await operations.preview(
                    conn, bc_id, kind, args, states=states, changeset_ids=ids
                )
                return ok({"plans": [_plan(p) for p in planned]})
            op_id = await operations.enqueue(
                conn, bc_id, kind, args, states=states, changeset_ids=ids,
                requested_by="api", now=app.clock(),
            )  # fmt: skip
            status = await operations.status(
                conn, op_id, app.operation_worker.limits_for, app.clock()
            )
    except op_store.ChangesetNotInBatchChange as exc:
        return error(str(exc), 404)
    app.operation_worker.wake()
    return ok(_status(status), 201)


def _plan(planned: operations.Planned) -> dict[str, Any]:
    t = planned.target
    return {
        "changeset": t.changeset_id,
        "repo": t.repo_name,
        "number": t.number,
        "state": t.facts.external_state,
        "plan": planned.plan.describe(),
        "calls": [c.describe() for c in planned.plan.calls],
    }


def _status(status: operations.OperationStatus) -> dict[str, Any]:
    return {"operation": status.operation, "progress": {
        **{k: getattr(status.progress, k) for k in
           ("total", "pending", "done", "skipped", "failed", "expected_finish")},
        "fraction": round(status.progress.fraction, 4),
    }}  # fmt: skip


@routes.get("/api/operations")
async def list_operations(request: web.Request) -> web.Response:
    app = the_app(request)
    bc = query_int(request, "batch_change", lo=1)
    after = query_int(request, "after", 0) or 0
    limit = query_int(request, "limit", 100, lo=1, hi=1000) or 100
    async with app.engine.connect() as conn:
        views = await op_store.list_operations(
            conn, batch_change_id=bc, after_id=after, limit=limit
        )
        statuses = await operations.statuses(
            conn, views, app.operation_worker.limits_for, app.clock()
        )
    return ok({"operations": [_status(s) for s in statuses]})


@routes.get("/api/operations/{id}")
async def get_operation(request: web.Request) -> web.Response:
    app = the_app(request)
    op_id = path_id(request)
    state = request.query.get("results")
    if state is not None and state not in ResultState.__members__.values():
        raise BadRequest(f"'results' must be one of {', '.join(s.value for s in ResultState)}")
    after = query_int(request, "after", 0) or 0
    limit = query_int(request, "limit", 100, lo=1, hi=1000) or 100
    try:
        async with app.engine.connect() as conn:
            status = await operations.status(
                conn, op_id, app.operation_worker.limits_for, app.clock()
            )
            results = await op_store.list_results(
                conn,
                op_id,
                state=None if state is None else ResultState(state),
                after_id=after,
                limit=limit,
            )
    except op_store.OperationNotFound as exc:
        return error(str(exc), 404)
    return ok({**_status(status), "results": results})
