"""What every API route module shares: the app key, JSON answers, input parsing that answers a
clear 400, and the middleware that maps our exceptions onto status codes."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from repo_updater.bootstrap import App
from repo_updater.core.domain import MAX_INT
from repo_updater.core.errors import describe
from repo_updater.entrypoints.render import json_default
from repo_updater.store import changesets as cs_store
from repo_updater.store.db import is_unavailable

APP_KEY = web.AppKey("repo_updater_app", App)


class BadRequest(Exception):
    pass


def the_app(request: web.Request) -> App:
    return request.app[APP_KEY]


def ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=json_default), status=status, content_type="application/json"
    )


def error(message: str, status: int) -> web.Response:
    return web.Response(
        text=json.dumps({"error": message}), status=status, content_type="application/json"
    )


def query_int(
    request: web.Request, name: str, default: int | None = None, *, lo: int = 0, hi: int = MAX_INT
) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def text(value: str, what: str) -> str:
    """Reject NUL characters, which PostgreSQL cannot store or compare (a 500 otherwise)."""
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL characters")
    return value


def query_str(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    return None if raw is None else text(raw, f"query parameter {name!r}")


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter {name!r} must be true or false")


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def path_id(request: web.Request) -> int:
    try:
        value = int(request.match_info["id"])
    except ValueError:
        raise BadRequest("id must be an integer") from None
    if not 1 <= value <= MAX_INT:
        raise BadRequest(f"id must be between 1 and {MAX_INT}")
    return value


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except BadRequest as exc:
        return error(str(exc), 400)
    except (cs_store.BatchChangeNotFound, cs_store.RepoNotFound) as exc:
        return error(str(exc), 404)
    except (cs_store.BatchChangeExists, cs_store.BatchChangeClosed) as exc:
        return error(str(exc), 409)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        # The store is unreachable: a JSON 503 the client may retry, not a 500.
        the_app(request).health.store_failed(describe(exc))
        response = error(f"store unavailable: {describe(exc)}", 503)
        response.headers["Retry-After"] = "5"
        return response
