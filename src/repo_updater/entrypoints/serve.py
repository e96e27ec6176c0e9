"""``serve``: run what ``bootstrap`` built (the repo-sync worker, the changeset syncer, the
permissions syncer, the operation worker, the webhook worker, the events retention and the HTTP
API) until a stop event is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta

from repo_updater.bootstrap import App
from repo_updater.service_layer import retention as events_retention

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 2.0  # seconds for the loops to end their rounds on their own
SHUTDOWN_TIMEOUT = 15.0  # seconds for the loops to hand back their claims and end


async def serve(
    app: App,
    stop: asyncio.Event,
    *,
    api: bool = True,
    on_ready: Callable[[str | None], None] | None = None,
) -> None:
    """Run the repo sync loop, the changeset and permissions syncers, the operation worker and
    the HTTP API until ``stop`` is set.
    ``on_ready`` gets the API's bound URL (None without the API) once it listens."""
    from repo_updater.entrypoints.api import running_api

    async with contextlib.AsyncExitStack() as stack:
        url = None
        if api:
            url = await stack.enter_async_context(
                running_api(app, host=app.config.api.host, port=app.config.api.port)
            )
            log.info("API listening on %s", url)
        if on_ready is not None:
            on_ready(url)
        intervals = [app.config.interval_for(s) for s in app.config.external_services]
        tick = min([1.0, *(i / 2 for i in intervals)])
        retention = timedelta(days=app.config.events_retention_days)
        tasks = [
            asyncio.create_task(app.repo_sync_worker.run(stop, tick=tick), name="repo-sync"),
            asyncio.create_task(app.changeset_syncer.run(stop), name="changeset-sync"),
            asyncio.create_task(
                events_retention.run(app.engine, app.clock, retention, stop, health=app.health),
                name="events-retention",
            ),
            asyncio.create_task(app.operation_worker.run(stop), name="operations"),
            asyncio.create_task(app.webhook_worker.run(stop), name="webhooks"),
        ]
        if app.config.permissions.enabled:
            tasks.append(
                asyncio.create_task(app.permissions_syncer.run(stop), name="permissions-sync")
            )
        try:
            await stop.wait()
        finally:
            # First let the loops see ``stop``: an idle loop ends at once and a busy one ends
            # its round, so no transaction is cancelled half-way (on SQLite, a statement
            # cancelled mid-flight can keep the write lock for the whole busy timeout, and every
            # other loop's hand-back then waits for it). Then cancel what is still running:
            # cancelled mid-round, the loops hand back their claims (the repo sync's service
            # claim, the changeset round's claims, the operation groups' claims) before they end.
            stop.set()
            _, running = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in running:
                task.cancel()
            _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT)
            if late:  # their claims, if any, run out with their leases
                names = ", ".join(sorted(t.get_name() for t in late))
                log.warning("%s did not stop within %.0fs; leaving them", names, SHUTDOWN_TIMEOUT)
