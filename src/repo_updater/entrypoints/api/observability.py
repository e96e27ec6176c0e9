"""Health and Prometheus metrics."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from repo_updater.core.errors import describe
from repo_updater.entrypoints.api.common import error, the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.models import Health, answer
from repo_updater.store.counts import store_counts

routes = web.RouteTableDef()

HEALTH_TIMEOUT = 5.0  # seconds for the store to answer a health check


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@routes.get("/metrics")
@endpoint(Access.READ, "Prometheus metrics", content_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    app = the_app(request)
    async with app.api_engine.connect() as conn:
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


@routes.get("/healthz")
@endpoint(Access.PUBLIC, "Readiness: 503 while the store is unreachable", response=Health)
async def healthz(request: web.Request) -> web.Response:
    """Readiness: the store answers a trivial query within ``HEALTH_TIMEOUT`` (503 JSON
    with the cause otherwise; the loops' own view of an outage is kept in step)."""
    app = the_app(request)
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT), app.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        cause = describe(exc) if not isinstance(exc, TimeoutError) else "no answer in time"
        app.health.store_failed(cause)
        return error(f"store unavailable: {cause}", 503)
    app.health.store_reached()
    return answer(Health(ok=True))
