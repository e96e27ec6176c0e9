"""Batch changes: list, create, close, and track pull requests in one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from repo_updater.core.domain import MAX_BATCH_CHANGE_NAME, MAX_INT
from repo_updater.entrypoints.api.common import (
    BadRequest,
    error,
    json_body,
    ok,
    path_id,
    text,
    the_app,
)
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store

routes = web.RouteTableDef()

MAX_BULK = 10_000


@routes.get("/api/batch-changes")
async def batch_changes(request: web.Request) -> web.Response:
    app = the_app(request)
    async with app.engine.connect() as conn:
        return ok(await cs_store.list_batch_changes(conn))


@routes.post("/api/batch-changes")
async def create_batch_change(request: web.Request) -> web.Response:
    app = the_app(request)
    body = await json_body(request)
    name, description = body.get("name"), body.get("description", "")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("'name' must be a non-empty string")
    if len(name.strip()) > MAX_BATCH_CHANGE_NAME:
        raise BadRequest(f"'name' must be at most {MAX_BATCH_CHANGE_NAME} characters")
    if not isinstance(description, str):
        raise BadRequest("'description' must be a string")
    text(name, "'name'")
    text(description, "'description'")
    async with app.engine.begin() as conn:
        new_id = await cs_store.create_batch_change(conn, name.strip(), description, app.clock())
    return ok({"id": new_id, "name": name.strip()}, 201)


@routes.post("/api/batch-changes/{id}/close")
async def close_batch_change(request: web.Request) -> web.Response:
    app = the_app(request)
    bc_id = path_id(request)
    async with app.engine.begin() as conn:
        await cs_store.close_batch_change(conn, bc_id, app.clock())
    return ok({"id": bc_id, "state": "CLOSED"})


def _pull_ref(item: Any, where: str) -> tuple[str, int]:
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object with 'repo' and 'number'")
    repo_name, number = item.get("repo"), item.get("number")
    if not isinstance(repo_name, str) or not repo_name:
        raise BadRequest(f"{where}'repo' must be a repository name, as listed by GET /api/repos")
    text(repo_name, f"{where}'repo'")
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_INT:
        raise BadRequest(f"{where}'number' must be an integer between 1 and {MAX_INT}")
    return repo_name, number


@routes.post("/api/batch-changes/{id}/changesets")
async def track_changeset(request: web.Request) -> web.Response:
    """Track one pull request (``{"repo", "number"}``) or many at once
    (``{"changesets": [{"repo", "number"}, ...]}``, up to 10,000; all or nothing)."""
    app = the_app(request)
    bc_id = path_id(request)
    body = await json_body(request)
    bulk = "changesets" in body
    if bulk:
        items = body["changesets"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BULK:
            raise BadRequest(f"'changesets' must be a list of 1 to {MAX_BULK} objects")
        refs = [_pull_ref(item, f"changesets[{i}].") for i, item in enumerate(items)]
    else:
        refs = [_pull_ref(body, "")]
    async with app.engine.begin() as conn:
        ids_by_name = await repo_store.repo_ids_by_name(conn, [name for name, _ in refs])
        unknown = [name for name, _ in refs if name not in ids_by_name]
        if unknown:
            return error(f"no repository named {unknown[0]!r}", 404)
        pairs = [(ids_by_name[name], number) for name, number in refs]
        cs_ids = await cs_store.track_changesets(conn, bc_id, pairs, app.clock())
    app.changeset_syncer.wake()
    tracked = [
        {"id": cs_id, "repo": name, "number": number}
        for cs_id, (name, number) in zip(cs_ids, refs, strict=True)
    ]
    return ok({"changesets": tracked} if bulk else tracked[0], 201)
