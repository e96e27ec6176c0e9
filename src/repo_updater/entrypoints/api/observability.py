"""Health and Prometheus metrics."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web

from repo_updater.bootstrap import App
from repo_updater.core.errors import describe
from repo_updater.entrypoints.api.common import error, the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.models import Health, answer
from repo_updater.store.counts import store_counts
from repo_updater.store.permissions import PermissionCounts, permission_counts

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
        perms = await permission_counts(conn, app.clock())
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
    ]
    lines += _permission_lines(app, perms)
    lines.append("# TYPE repo_updater_service_last_sync_timestamp_seconds gauge")
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


def _permission_lines(app: App, perms: PermissionCounts) -> list[str]:
    """The permissions syncer: its queue (syncs due now), what is scheduled, what fails, the
    grants stored, this process's syncs, and the last full refresh (every private repo's
    permissions were synced since then; absent while a private repo was never synced)."""
    stats = app.permissions_syncer.stats
    lines = [
        "# TYPE repo_updater_permission_sync_requests_pending gauge",
        f"repo_updater_permission_sync_requests_pending {perms.due}",
        "# TYPE repo_updater_permission_syncs_scheduled gauge",
        f"repo_updater_permission_syncs_scheduled {perms.scheduled}",
        "# TYPE repo_updater_permission_syncs_failing gauge",
        f"repo_updater_permission_syncs_failing {perms.failing}",
        "# TYPE repo_updater_repo_permissions gauge",
        f"repo_updater_repo_permissions {perms.grants}",
        "# TYPE repo_updater_permission_syncs_total counter",
        f'repo_updater_permission_syncs_total{{outcome="synced"}} {stats.synced}',
        f'repo_updater_permission_syncs_total{{outcome="failed"}} {stats.failed}',
    ]
    if perms.oldest_sync is not None:
        lines += [
            "# TYPE repo_updater_permission_last_full_refresh_timestamp_seconds gauge",
            "repo_updater_permission_last_full_refresh_timestamp_seconds "
            f"{perms.oldest_sync.timestamp()}",
        ]
    return lines


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
