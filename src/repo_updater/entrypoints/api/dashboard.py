"""The dashboard: one HTML page, refreshed by the browser."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from repo_updater.entrypoints.api.common import the_app
from repo_updater.store import changesets as cs_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store

routes = web.RouteTableDef()


@routes.get("/")
async def dashboard(request: web.Request) -> web.Response:
    app = the_app(request)
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
