"""Every 4xx and 5xx answer is JSON ``{"error": "..."}``: aiohttp's own HTML errors (404, 405,
413, ...) included. A database that is down or a pool that is exhausted answers 503 with
``Retry-After``; anything unexpected is logged once with its traceback and answers 500 with no
internals.

Other modules map their exceptions onto statuses by adding to ``STATUS_OF`` (checked in order,
so put narrower types first).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from repo_updater.core.errors import describe
from repo_updater.entrypoints.api.inputs import ApiError
from repo_updater.service_layer.health import Health
from repo_updater.store import changesets as cs_store
from repo_updater.store.db import is_unavailable

log = logging.getLogger(__name__)

# The process's view of the store's health: a 503 here makes /healthz fail readiness too.
HEALTH_KEY = web.AppKey("repo_updater_health", Health)

STATUS_OF: list[tuple[type[Exception], int]] = [
    (cs_store.BatchChangeNotFound, 404),
    (cs_store.RepoNotFound, 404),
    (cs_store.BatchChangeExists, 409),
    (cs_store.BatchChangeClosed, 409),
    (cs_store.ChangesetNotSynced, 409),
]


def error(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": message})
    return web.Response(text=body, status=status, content_type="application/json", headers=headers)


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {}
    if exc.status == 404:
        message = f"no such resource: {request.method} {request.path}"
    elif exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"method {request.method} is not allowed here; allowed: {allowed}"
        headers["Allow"] = allowed
    else:
        text = exc.text or exc.reason
        message = text.split(": ", 1)[1] if text[:3].isdigit() and ": " in text else text
    return error(message, exc.status, headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        return _from_http_exception(request, exc)
    except ApiError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error(str(exc), exc.status, headers)
    except Exception as exc:
        for kind, status in STATUS_OF:
            if isinstance(exc, kind):
                return error(str(exc), status)
        if is_unavailable(exc):
            log.warning("API %s %s: database unavailable: %s", request.method, request.path,
                        type(exc).__name__)  # fmt: skip
            request.app[HEALTH_KEY].store_failed(describe(exc))  # readiness follows
            return error(f"store unavailable: {describe(exc)}", 503, {"Retry-After": "5"})
        log.exception("API %s %s failed", request.method, request.path)
        return error("internal error; the server logged the details", 500)
