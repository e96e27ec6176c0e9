"""Who can read a repository.

  GET /api/repos/{id}/permissions?after=&limit=

A page of the repo's grants (``items``, ordered by login ignoring case; ``next``: the cursor of
the next page, as every list), with the repo (``id``, ``name``, ``private``) and its permissions
sync (``due_at``, ``reason``, ``last_synced_at``, ``failures``, ``last_error``; null before
the first request). A public repository lists no permissions: anyone can read it. Unknown or
deleted repository: 404.
"""

from __future__ import annotations

from aiohttp import web

from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.inputs import (
    ApiError,
    IdPath,
    KeyCursor,
    PageQuery,
    path_params,
    query_params,
)
from repo_updater.entrypoints.api.models import (
    PermissionOut,
    PermissionRepoOut,
    PermissionSyncOut,
    RepoPermissions,
    answer,
)
from repo_updater.entrypoints.api.paging import after_key_text, cut, key_cursor
from repo_updater.store import repo_permissions as grant_store

routes = web.RouteTableDef()


class PermissionQuery(PageQuery):
    after: KeyCursor | None = None


@routes.get("/api/repos/{id}/permissions")
@endpoint(Access.READ, "Who can read a repository", path=IdPath, query=PermissionQuery,
          response=RepoPermissions, errors=(404,))  # fmt: skip
async def repo_permissions(request: web.Request) -> web.Response:
    app = the_app(request)
    repo_id = path_params(request, IdPath).id
    q = query_params(request, PermissionQuery)
    after = after_key_text(q.after)
    async with app.api_engine.connect() as conn:
        access = await grant_store.repo_access(
            conn, repo_id=repo_id, after=after, limit=q.limit + 1
        )
    if access is None:
        raise ApiError(f"no repository with id {repo_id}", status=404)
    grants, next_cursor = cut(access.permissions, q.limit, lambda g: key_cursor(g.login.lower()))
    status = access.status
    body = RepoPermissions(
        items=[PermissionOut.model_validate(g) for g in grants],
        next=next_cursor,
        repo=PermissionRepoOut(id=access.repo_id, name=access.name, private=access.private),
        sync=None if status is None else PermissionSyncOut.model_validate(status),
    )
    return answer(body)
