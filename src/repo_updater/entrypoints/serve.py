"""``serve``: run what ``bootstrap`` built (the repo-sync worker, the changeset syncer, the
operation worker and the HTTP API) until a stop event is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from repo_updater.bootstrap import App

log = logging.getLogger(__name__)


async def serve(
    app: App,
    stop: asyncio.Event,
    *,
    api: bool = True,
    on_ready: Callable[[str | None], None] | None = None,
) -> None:
    """Run the repo sync loop, the changeset syncer, the operation worker and the HTTP API
    until ``stop`` is set.
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
        tasks = [
            asyncio.create_task(app.repo_sync_worker.run(stop, tick=tick), name="repo-sync"),
            asyncio.create_task(app.changeset_syncer.run(stop), name="changeset-sync"),
            asyncio.create_task(app.operation_worker.run(stop), name="operations"),
        ]
        try:
            await stop.wait()
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
