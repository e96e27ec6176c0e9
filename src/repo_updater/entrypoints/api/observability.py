"""Health and Prometheus metrics (``repo_updater.metrics``)."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from repo_updater import metrics as metrics_module
from repo_updater.core.errors import describe
from repo_updater.entrypoints.api.common import error, the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.models import Health, answer
from repo_updater.store.counts import store_counts
from repo_updater.store.permissions import permission_counts
from repo_updater.store.write_budgets import list_budgets

routes = web.RouteTableDef()

HEALTH_TIMEOUT = 5.0  # seconds for the store to answer a health check


@routes.get("/metrics")
@endpoint(Access.READ, "Prometheus metrics (text exposition format)", content_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    """The app's registry (``repo_updater.metrics``), with the store's counts read now."""
    app = the_app(request)
    now = app.clock()
    async with app.api_engine.connect() as conn:
        counts = await store_counts(conn)
        permissions = await permission_counts(conn, now)
        budgets = await list_budgets(conn)
    app.metrics.set_store_counts(counts)
    app.metrics.set_permission_counts(permissions)
    worker = app.operation_worker
    app.metrics.set_write_budgets(worker.hosts, worker.limits_for, budgets, now)
    return web.Response(
        body=app.metrics.exposition(), headers={"Content-Type": metrics_module.CONTENT_TYPE}
    )


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
