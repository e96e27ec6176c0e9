"""Who can read a repository.

  GET /api/repos/{id}/permissions?after=&limit=

Answers ``{repo: {id, name, private}, sync: {due_at, reason, last_synced_at, failures,
last_error} | null, permissions: [{login, permission, access, account_id, granted_at,
updated_at}], next_after}``, ordered by login (case-insensitive); ``next_after`` is the login to
pass as ``after`` for the next page (null on the last). A public repository has no permissions
listed: anyone can read it. Unknown or deleted repository: 404.
"""

from __future__ import annotations

from aiohttp import web

from repo_updater.entrypoints.api.common import error, ok, path_id, query_int, query_str, the_app
from repo_updater.store import repo_permissions as grant_store

routes = web.RouteTableDef()

MAX_LIMIT = 10_000


@routes.get("/api/repos/{id}/permissions")
async def repo_permissions(request: web.Request) -> web.Response:
    app = the_app(request)
    repo_id = path_id(request)
    limit = query_int(request, "limit", 1000, lo=1, hi=MAX_LIMIT) or 1000
    after = query_str(request, "after")
    async with app.engine.connect() as conn:
        access = await grant_store.repo_access(conn, repo_id=repo_id, after=after, limit=limit + 1)
    if access is None:
        return error(f"no repository with id {repo_id}", 404)
    grants = access.permissions[:limit]
    more = len(access.permissions) > limit
    return ok(
        {
            "repo": {"id": access.repo_id, "name": access.name, "private": access.private},
            "sync": access.status,
            "permissions": grants,
            "next_after": grants[-1].login if more and grants else None,
        }
    )
