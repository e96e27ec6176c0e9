"""The dashboard: one HTML page, refreshed by the browser. Bounded: it shows at most
``SHOWN`` rows per table (what needs attention first) and the total counts; the API pages
through the rest."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.store import changeset_queries as queries
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store
from repo_updater.store.counts import store_counts

routes = web.RouteTableDef()

SHOWN = 200


@routes.get("/")
@endpoint(Access.READ, "The dashboard", content_type="text/html")
async def dashboard(request: web.Request) -> web.Response:
    app = the_app(request)
    async with app.api_engine.connect() as conn:
        svcs = await service_store.list_services(conn, limit=SHOWN)
        archived = await repo_store.list_repos(conn, archived=True, limit=SHOWN)
        rows = await queries.page_changesets(
            conn, queries.ChangesetFilter(), order=queries.ChangesetOrder.ATTENTION, limit=SHOWN
        )
        counts = await store_counts(conn)
    css = [view for view, _ in rows]
    esc = html.escape

    def table(head: list[str], rows: list[list[Any]]) -> str:
        th = "".join(f"<th>{esc(h)}</th>" for h in head)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc('' if c is None else str(c))}</td>" for c in r) + "</tr>"
            for r in rows
        )
        return f"<table><tr>{th}</tr>{body}</table>"

    def shown(n: int, total: int) -> str:
        return f"<p>showing {n} of {total:,}</p>" if total > n else ""

    total_cs = sum(counts.changesets.values())
    by_state = ", ".join(f"{esc(k)} {v:,}" for k, v in sorted(counts.changesets.items()))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>repo-updater</title>
<meta http-equiv="refresh" content="2"><style>body{{font-family:sans-serif}}
td,th{{padding:2px 8px;text-align:left}}</style></head><body><h1>repo-updater</h1>
<h2>Services</h2>{
        table(
            ["name", "kind", "repos", "last sync", "error"],
            [[s.name, s.kind, s.repo_count, s.last_sync_at, s.last_sync_error] for s in svcs],
        )
    }
<h2>Archived repositories</h2>{table(["name"], [[r.name] for r in archived])}{
        shown(len(archived), counts.repos["archived"])
    }
<h2>Changesets</h2><p>{total_cs:,} in all: {by_state or "none"}</p>{
        table(
            ["id", "repo", "#", "state", "review", "checks", "title", "synced", "error"],
            [
                [c.id, c.repo_name, c.number, c.external_state, c.review_state, c.check_state,
                 c.title, c.last_synced_at, c.sync_error]
                for c in css
            ],
        )
    }{shown(len(css), total_cs)}
</body></html>"""  # fmt: skip
    return web.Response(text=page, content_type="text/html")
