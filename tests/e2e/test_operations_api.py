"""Bulk operations through the HTTP API (real HTTP on loopback, the operation worker running,
the emulator's hosts, SQLite and PostgreSQL): a dry run plans and stores nothing; an operation
runs to the end with its progress and results readable; bad input is a clear 400/404 and
stores nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from repo_updater.core.domain import HostPullState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.api import running_api
from tests.support.operations import OWNERS, tracked

DEADLINE = 60.0


@pytest.fixture
async def client(
    store_url: str, emu: RunningEmulator
) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    for kind, owner in OWNERS.items():
        host = emu.state.host(kind)
        repo = host.add_repo(owner, "app")
        host.add_pull(repo.full_name, title="one", head_ref="one")
        host.add_pull(repo.full_name, title="two", head_ref="two")
        host.set_pull_state(repo.full_name, 2, HostPullState.MERGED)
    async with tracked(store_url, emu) as (app, bc):
        stop = asyncio.Event()
        worker = asyncio.create_task(app.operation_worker.run(stop))
        try:
            async with running_api(app) as url, httpx.AsyncClient(base_url=url) as http:
                yield http, bc
        finally:
            stop.set()
            await worker


async def test_dry_run_then_close_across_hosts_with_progress_and_results(
    client: tuple[httpx.AsyncClient, int], emu: RunningEmulator
) -> None:
    http, bc = client
    dry = await http.post(f"/api/batch-changes/{bc}/operations",
                          json={"kind": "close", "dry_run": True})  # fmt: skip
    assert dry.status_code == 200, dry.text
    plans = {(p["repo"], p["number"]): p["plan"] for p in dry.json()["plans"]}
    assert plans[("github.test/acme/app", 1)] == "close"
    assert plans[("github.test/acme/app", 2)].startswith("skip: already merged")
    assert (await http.get("/api/operations")).json() == {"operations": []}  # nothing stored

    created = await http.post(f"/api/batch-changes/{bc}/operations", json={"kind": "close"})
    assert created.status_code == 201, created.text
    op_id = created.json()["operation"]["id"]
    assert created.json()["progress"]["total"] == 8
    body = await until_finished(http, op_id)
    assert body["progress"] == {"total": 8, "pending": 0, "done": 4, "skipped": 4, "failed": 0,
                                "expected_finish": None, "fraction": 1.0}  # fmt: skip
    states = {(r["repo_name"], r["number"]): r["state"] for r in body["results"]}
    assert states[("gitlab.test/acme/app", 1)] == "done"
    assert states[("bitbucketServer.test/ACME/app", 2)] == "skipped"
    for kind, owner in OWNERS.items():
        assert emu.state.host(kind).repo(f"{owner}/app").pulls[1].state is HostPullState.CLOSED
    skipped = await http.get(f"/api/operations/{op_id}", params={"results": "skipped"})
    assert {r["state"] for r in skipped.json()["results"]} == {"skipped"}
    listed = (await http.get("/api/operations")).json()["operations"]
    assert [o["operation"]["kind"] for o in listed] == ["close"]


async def until_finished(http: httpx.AsyncClient, op_id: int) -> Any:
    start = time.monotonic()
    while True:
        response = await http.get(f"/api/operations/{op_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["operation"]["state"] == "finished":
            return body
        assert time.monotonic() - start < DEADLINE, body
        await asyncio.sleep(0.1)


BAD_REQUESTS: list[tuple[dict[str, Any], int, str]] = [
    ({"kind": "explode"}, 400, "'kind' must be one of"),
    ({"kind": "comment"}, 400, "non-empty body"),
    ({"kind": "close", "colour": "red"}, 400, "unknown field(s): colour"),
    ({"kind": "close", "state": "SHINY"}, 400, "'state' must be one of"),
    ({"kind": "close", "changesets": [0]}, 400, "integers between 1"),
    ({"kind": "close", "changesets": [999]}, 404, "not tracked by batch change"),
    ({"kind": "merge", "merge_method": "octopus"}, 400, "merge_method must be one of"),
    ({"kind": "close", "dry_run": "yes"}, 400, "'dry_run' must be true or false"),
    ({"kind": "comment", "body": "a\x00b"}, 400, "NUL"),
]


async def test_bad_requests_are_refused_and_store_nothing(
    client: tuple[httpx.AsyncClient, int],
) -> None:
    http, bc = client
    for payload, status, message in BAD_REQUESTS:
        response = await http.post(f"/api/batch-changes/{bc}/operations", json=payload)
        assert response.status_code == status, (payload, response.text)
        assert message in response.json()["error"], payload
    assert (await http.get("/api/operations")).json() == {"operations": []}


async def test_unknown_ids_are_404(client: tuple[httpx.AsyncClient, int]) -> None:
    http, _ = client
    missing = await http.post("/api/batch-changes/999/operations", json={"kind": "close"})
    assert missing.status_code == 404 and "batch change" in missing.json()["error"]
    assert (await http.get("/api/operations/42")).status_code == 404
    bad = await http.get("/api/operations/1", params={"results": "bogus"})
    assert bad.status_code == 400
