"""What every API route module shares: the app key and the app, JSON answers, and small
input helpers for routes that do not parse through declared models (``api.inputs`` is the way
for new routes: the models are also the OpenAPI document)."""

from __future__ import annotations

import json
import re
from typing import Any

import pydantic_core
from aiohttp import web

from repo_updater.bootstrap import App
from repo_updater.core.domain import MAX_INT
from repo_updater.entrypoints.api.errors import error as error
from repo_updater.entrypoints.api.inputs import BadRequest as BadRequest
from repo_updater.entrypoints.render import json_default

APP_KEY = web.AppKey("repo_updater_app", App)
_DIGITS = re.compile(r"[0-9]{1,10}")


def the_app(request: web.Request) -> App:
    return request.app[APP_KEY]


def ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=json_default), status=status, content_type="application/json"
    )


def text(value: str, what: str) -> str:
    """Reject NUL characters (PostgreSQL cannot store them) and lone surrogates."""
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} must be valid Unicode text") from None
    return value


def _int(raw: str, what: str, lo: int, hi: int) -> int:
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(f"{what} must be an integer written with the digits 0-9")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadRequest(f"{what} must be between {lo} and {hi}")
    return value


def query_int(
    request: web.Request, name: str, default: int | None = None, *, lo: int = 0, hi: int = MAX_INT
) -> int | None:
    raw = request.query.get(name)
    return default if raw is None else _int(raw, f"query parameter {name!r}", lo, hi)


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
        data = pydantic_core.from_json(await request.read())
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def path_id(request: web.Request, name: str = "id") -> int:
    return _int(request.match_info[name], f"path parameter {name!r}", 1, MAX_INT)
