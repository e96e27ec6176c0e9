"""HTTP API (JSON) and a small read-only dashboard.

Routes:
  GET  /                               dashboard (HTML)
  GET  /api/services                   services with repo counts and last sync status
  POST /api/services/{name}/sync       sync that service now
  GET  /api/repos?archived=&name=&after=&limit=
  GET  /api/events?kind=&after=&limit=
  GET  /api/batch-changes
  POST /api/batch-changes              {"name": str, "description": str?}
  POST /api/batch-changes/{id}/close
  POST /api/batch-changes/{id}/changesets   {"repo": store name, "number": int}  (track a PR)
                                       or {"changesets": [{"repo", "number"}, ...]} (bulk)
  GET  /api/changesets?batch_change=&state=
  POST /api/changesets/{id}/sync       request an immediate sync
  GET  /healthz
  GET  /metrics                        Prometheus text format

Bad input answers 400 with ``{"error": "..."}`` and changes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import html
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from repo_updater.app import App
from repo_updater.domain import ExternalState
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from repo_updater.store import services as service_store
from repo_updater.store.metrics import store_counts

APP_KEY = web.AppKey("repo_updater_app", App)


class BadRequest(Exception):
    pass


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, default=_default), status=status, content_type="application/json"
    )


def error(message: str, status: int) -> web.Response:
    return web.Response(
        text=json.dumps({"error": message}), status=status, content_type="application/json"
    )


# Ids, pull request numbers and offsets are 32-bit integers in the store (PostgreSQL
# ``integer``); anything larger would fail in SQL (a 500) instead of answering 400.
MAX_INT = 2**31 - 1
MAX_NAME = 200  # batch_changes.name


def _int(
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


def _text(value: str, what: str) -> str:
    """Reject NUL characters, which PostgreSQL cannot store or compare (a 500 otherwise)."""
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL characters")
    return value


def _str(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    return None if raw is None else _text(raw, f"query parameter {name!r}")


def _bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"query parameter {name!r} must be true or false")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise BadRequest("request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def _path_id(request: web.Request) -> int:
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


async def services(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    async with app.engine.connect() as conn:
        return ok(await service_store.list_services(conn))


async def sync_service(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    name = request.match_info["name"]
    async with app.engine.begin() as conn:
        if not await service_store.request_service_sync(conn, name, app.clock()):
            return error(f"no external service named {name!r}", 404)
    return ok({"requested": name}, 202)


async def repos(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    limit = _int(request, "limit", 1000, lo=1, hi=10000)
    async with app.engine.connect() as conn:
        rows = await repo_store.list_repos(
            conn,
            archived=_bool(request, "archived"),
            name_contains=_str(request, "name"),
            after_id=_int(request, "after", 0) or 0,
            limit=limit,
        )
    return ok(rows)


async def events(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    limit = _int(request, "limit", 1000, lo=1, hi=10000) or 1000
    async with app.engine.connect() as conn:
        rows = await repo_store.list_events(
            conn,
            kind=_str(request, "kind"),
            after_id=_int(request, "after", 0) or 0,
            limit=limit,
        )
    return ok(rows)


async def batch_changes(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    async with app.engine.connect() as conn:
        return ok(await cs_store.list_batch_changes(conn))


async def create_batch_change(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    body = await _body(request)
    name, description = body.get("name"), body.get("description", "")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("'name' must be a non-empty string")
    if len(name.strip()) > MAX_NAME:
        raise BadRequest(f"'name' must be at most {MAX_NAME} characters")
    if not isinstance(description, str):
        raise BadRequest("'description' must be a string")
    _text(name, "'name'")
    _text(description, "'description'")
    async with app.engine.begin() as conn:
        new_id = await cs_store.create_batch_change(conn, name.strip(), description, app.clock())
    return ok({"id": new_id, "name": name.strip()}, 201)


async def close_batch_change(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    bc_id = _path_id(request)
    async with app.engine.begin() as conn:
        await cs_store.close_batch_change(conn, bc_id, app.clock())
    return ok({"id": bc_id, "state": "CLOSED"})


MAX_BULK = 10_000


def _pull_ref(item: Any, where: str) -> tuple[str, int]:
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object with 'repo' and 'number'")
    repo_name, number = item.get("repo"), item.get("number")
    if not isinstance(repo_name, str) or not repo_name:
        raise BadRequest(f"{where}'repo' must be a repository name, as listed by GET /api/repos")
    _text(repo_name, f"{where}'repo'")
    if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_INT:
        raise BadRequest(f"{where}'number' must be an integer between 1 and {MAX_INT}")
    return repo_name, number


async def track_changeset(request: web.Request) -> web.Response:
    """Track one pull request (``{"repo", "number"}``) or many at once
    (``{"changesets": [{"repo", "number"}, ...]}``, up to 10,000; all or nothing)."""
    app = request.app[APP_KEY]
    bc_id = _path_id(request)
    body = await _body(request)
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


async def changesets(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    state = request.query.get("state")
    if state is not None and state not in ExternalState.__members__:
        raise BadRequest(f"state must be one of {', '.join(ExternalState.__members__)}")
    async with app.engine.connect() as conn:
        rows = await cs_store.list_changesets(
            conn,
            batch_change_id=_int(request, "batch_change"),
            state=ExternalState(state) if state else None,
        )
    return ok(rows)


async def sync_changeset(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    cs_id = _path_id(request)
    async with app.engine.begin() as conn:
        count = await cs_store.request_sync(conn, [cs_id], "api", app.clock())
    if count == 0:
        return error(f"no changeset with id {cs_id}", 404)
    app.changeset_syncer.wake()
    return ok({"requested": cs_id}, 202)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def metrics(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    async with app.engine.connect() as conn:
        counts = await store_counts(conn)
    lines = ["# TYPE repo_updater_repos gauge"]
    lines += [f'repo_updater_repos{{state="{k}"}} {v}' for k, v in counts.repos.items()]
    lines.append("# TYPE repo_updater_changesets gauge")
    lines += [
        f'repo_updater_changesets{{external_state="{_label(k)}"}} {v}'
        for k, v in sorted(counts.changesets.items())
    ]
    lines += [
        "# TYPE repo_updater_changeset_sync_requests_pending gauge",
        f"repo_updater_changeset_sync_requests_pending {counts.changeset_sync_requests}",
        "# TYPE repo_updater_permission_sync_requests_pending gauge",
        f"repo_updater_permission_sync_requests_pending {counts.permission_sync_requests}",
        "# TYPE repo_updater_service_last_sync_timestamp_seconds gauge",
    ]
    for name, at, _ in counts.services:
        if at is not None:
            lines.append(
                f'repo_updater_service_last_sync_timestamp_seconds{{service="{_label(name)}"}} {at}'
            )
    lines.append("# TYPE repo_updater_service_last_sync_failed gauge")
    lines += [
        f'repo_updater_service_last_sync_failed{{service="{_label(name)}"}} {int(failed)}'
        for name, _, failed in counts.services
    ]
    lines.append("# TYPE repo_updater_code_host_requests_total counter")
    lines.append(f"repo_updater_code_host_requests_total {app.counter.count}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def healthz(request: web.Request) -> web.Response:
    return ok({"ok": True})


async def dashboard(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    async with app.engine.connect() as conn:
        svcs = await service_store.list_services(conn)
        archived = await repo_store.list_repos(conn, archived=True, limit=200)
        css = await cs_store.list_changesets(conn)
    esc = html.escape

    def table(head: list[str], rows: list[list[Any]]) -> str:
        th = "".join(f"<th>{esc(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc('' if c is None else str(c))}</td>" for c in r) + "</tr>"
            for r in rows
        )
        return f"<table><tr>{th}</tr>{body}</table>"

    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>repo-updater</title>
<meta http-equiv="refresh" content="2"><style>body{{font-family:sans-serif}}
td,th{{padding:2px 8px;text-align:left}}</style></head><body><h1>repo-updater</h1>
<h2>Services</h2>{
        table(
            ["name", "kind", "repos", "last sync", "error"],
            [[s.name, s.kind, s.repo_count, s.last_sync_at, s.last_sync_error] for s in svcs],
        )
    }
<h2>Archived repositories</h2>{table(["name"], [[r.name] for r in archived])}
<h2>Changesets</h2>{
        table(
            ["id", "repo", "#", "state", "review", "checks", "title", "synced"],
            [
                [
                    c.id,
                    c.repo_name,
                    c.number,
                    c.external_state,
                    c.review_state,
                    c.check_state,
                    c.title,
                    c.last_synced_at,
                ]
                for c in css
            ],
        )
    }
</body></html>"""
    return web.Response(text=page, content_type="text/html")


def build_api(app: App) -> web.Application:
    web_app = web.Application(middlewares=[errors_middleware])
    web_app[APP_KEY] = app
    web_app.add_routes(
        [
            web.get("/", dashboard),
            web.get("/healthz", healthz),
            web.get("/metrics", metrics),
            web.get("/api/services", services),
            web.post("/api/services/{name}/sync", sync_service),
            web.get("/api/repos", repos),
            web.get("/api/events", events),
            web.get("/api/batch-changes", batch_changes),
            web.post("/api/batch-changes", create_batch_change),
            web.post("/api/batch-changes/{id}/close", close_batch_change),
            web.post("/api/batch-changes/{id}/changesets", track_changeset),
            web.get("/api/changesets", changesets),
            web.post("/api/changesets/{id}/sync", sync_changeset),
        ]
    )
    return web_app


@contextlib.asynccontextmanager
async def running_api(app: App, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    runner = web.AppRunner(build_api(app), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = int(runner.addresses[0][1])
    try:
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
