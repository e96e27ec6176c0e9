"""Helpers for batch-spec tests: a spec as text, an app on the emulator with its repos synced,
applying a spec through the durable operation, and counting what reached the hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from repo_updater.batch_spec import parse_spec
from repo_updater.bootstrap import App, open_app
from repo_updater.core.domain import HostKind
from repo_updater.core.specs import Spec
from repo_updater.emulator.server import RunningEmulator
from repo_updater.service_layer import spec_apply
from repo_updater.service_layer.spec_apply import Enqueued
from repo_updater.store.operations import OperationView
from tests.support.operations import FAST, config, run_until_finished


def spec_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "upgrade-ci",
        "description": "checkout v4",
        "on": {"repos": ["*/acme/*"]},
        "changes": [
            {
                "path": ".github/workflows/ci.yml",
                "replace": {"regex": "actions/checkout@v3", "replacement": "actions/checkout@v4"},
            }
        ],
        "changeset": {
            "title": "Upgrade checkout",
            "body": "Automated.",
            "branch": "batch/upgrade-ci",
            "commit_message": "ci: checkout v4",
            "published": "draft",
        },
    }
    for key, value in changes.items():
        if key in ("title", "body", "branch", "commit_message", "published", "on_removed"):
            data["changeset"][key] = value
        else:
            data[key] = value
    return data


def make_spec(**changes: Any) -> Spec:
    return parse_spec(spec_data(**changes))


@asynccontextmanager
async def synced_app(
    store_url: str, emu: RunningEmulator, **settings: object
) -> AsyncIterator[App]:
    async with open_app(config(store_url, emu, **settings), retry=FAST) as app:
        for name in app.sources:
            assert (await app.repo_sync_worker.sync_service(name)).complete
        yield app


def writers(app: App) -> spec_apply.FileWriters:
    from repo_updater.entrypoints.cli.batch_specs import file_writers

    return file_writers(app)


async def apply(app: App, spec: Spec) -> tuple[Enqueued, OperationView]:
    """Enqueue the spec and run the app's operation worker until the operation ends."""
    hosts = writers(app)
    async with app.engine.begin() as conn:
        queued = await spec_apply.enqueue(
            conn, spec, requested_by="test", now=app.clock(), hosts=lambda h: h in hosts
        )
    return queued, await run_until_finished(app, queued.operation_id)


def write_count(emu: RunningEmulator, kind: HostKind) -> int:
    return len(emu.state.host(kind).writes.log)
