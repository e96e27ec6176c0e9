"""Bulk operations through the HTTP API (real HTTP on loopback, the operation worker running,
the emulator's hosts, SQLite and PostgreSQL): a preview (dry run) plans and stores nothing; an
operation runs to the end with its progress and results readable, cursor-paged; it needs a write
token and records who asked; bad input is a clear 400/404 and stores nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from repo_updater.core.domain import HostKind, HostPullState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.service_layer.api_tokens import Scope
from repo_updater.store.write_budgets import pause_host
from tests.support.api import ApiClient, api_client, make_token
from tests.support.metrics import samples, value
from tests.support.operations import OWNERS, tracked

DEADLINE = 60.0


@pytest.fixture
async def client(store_url: str, emu: RunningEmulator) -> AsyncIterator[tuple[ApiClient, int]]:
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
            token = await make_token(app.api_engine, Scope.WRITE, "ops-bot")
            async with api_client(app, token) as api:
                yield api, bc
        finally:
            stop.set()
            await worker


async def test_dry_run_then_close_across_hosts_with_progress_and_results(
    client: tuple[ApiClient, int], emu: RunningEmulator
) -> None:
    api, bc = client
    dry = await api.post(f"/api/batch-changes/{bc}/operations/preview", 200,
                         json={"kind": "close"})  # fmt: skip
    plans = {(p["repo"], p["number"]): p["plan"] for p in dry["plans"]}
    assert plans[("github.test/acme/app", 1)] == "close"
    assert plans[("github.test/acme/app", 2)].startswith("skip: already merged")
    assert await api.get("/api/operations") == {"items": [], "next": None}  # nothing stored

    created = await api.post(f"/api/batch-changes/{bc}/operations", 201, json={"kind": "close"})
    op_id = created["operation"]["id"]
    assert created["progress"]["total"] == 8
    assert created["operation"]["requested_by"] == "api:ops-bot"  # the token's name
    body = await until_finished(api, op_id)
    assert body["progress"] == {"total": 8, "pending": 0, "done": 4, "skipped": 4, "failed": 0,
                                "expected_finish": None, "fraction": 1.0}  # fmt: skip
    states = {(r["repo_name"], r["number"]): r["state"] for r in body["results"]["items"]}
    assert states[("gitlab.test/acme/app", 1)] == "done"
    assert states[("bitbucketServer.test/ACME/app", 2)] == "skipped"
    for kind, owner in OWNERS.items():
        assert emu.state.host(kind).repo(f"{owner}/app").pulls[1].state is HostPullState.CLOSED
    skipped = await api.get(f"/api/operations/{op_id}", params={"results": "skipped"})
    assert {r["state"] for r in skipped["results"]["items"]} == {"skipped"}
    listed = await api.items("/api/operations")
    assert [o["operation"]["kind"] for o in listed] == ["close"]

    # /metrics: the operation by state, one write per host that went through, and the write
    # budgets (a host paused by a rate limit has none left).
    app = api.app
    github = next(s for s in app.sources.values() if s.kind is HostKind.GITHUB)
    async with app.engine.begin() as conn:
        now = app.clock()
        await pause_host(conn, (github.kind, github.host_url), now + timedelta(hours=1), now)
    got = samples((await api.call("GET", "/metrics")).text)
    assert value(got, "repo_updater_operations", state="finished") == 1
    assert value(got, "repo_updater_operations", state="running") == 0
    for source in app.sources.values():
        host = source.host_url
        assert value(got, "repo_updater_host_writes_total", host=host, result="ok") == 1
        for window in ("60", "3600"):
            left = value(got, "repo_updater_write_budget_remaining", host=host,
                          window_seconds=window)  # fmt: skip
            assert left == 0 if source is github else 0 <= left <= 300, (host, window, left)


async def test_lists_are_cursor_paged(client: tuple[ApiClient, int]) -> None:
    """Operations newest first and an operation's results in order, page by page, each item
    once."""
    api, bc = client
    ids = [
        (await api.post(f"/api/batch-changes/{bc}/operations", 201,
                        json={"kind": "comment", "body": f"note {i}"}))["operation"]["id"]
        for i in range(3)
    ]  # fmt: skip
    first = await api.get("/api/operations", params={"limit": 2})
    assert [o["operation"]["id"] for o in first["items"]] == ids[:0:-1] and first["next"]
    rest = await api.get("/api/operations", params={"limit": 2, "after": first["next"]})
    assert [o["operation"]["id"] for o in rest["items"]] == ids[:1] and rest["next"] is None
    assert len(await api.items("/api/operations", batch_change=bc, limit=1)) == 3
    seen: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"after": after} if after else {})}
        page = (await api.get(f"/api/operations/{ids[0]}", params=params))["results"]
        seen += [r["id"] for r in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert len(seen) == 8 and seen == sorted(set(seen))


async def test_writes_need_a_write_token(client: tuple[ApiClient, int]) -> None:
    api, bc = client
    reader = await make_token(api.app.api_engine, Scope.READ, "reader")
    for path in (
        f"/api/batch-changes/{bc}/operations",
        f"/api/batch-changes/{bc}/operations/preview",
    ):
        anonymous = await api.call(
            "POST", path, json={"kind": "close"}, headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401, anonymous.text
        read_only = await api.call("POST", path, json={"kind": "close"},
                                   headers={"Authorization": f"Bearer {reader}"})  # fmt: skip
        assert read_only.status_code == 403, read_only.text
    assert await api.get("/api/operations") == {"items": [], "next": None}


async def until_finished(api: ApiClient, op_id: int) -> Any:
    start = time.monotonic()
    while True:
        body = await api.get(f"/api/operations/{op_id}")
        if body["operation"]["state"] == "finished":
            return body
        assert time.monotonic() - start < DEADLINE, body
        await asyncio.sleep(0.1)


BAD_REQUESTS: list[tuple[dict[str, Any], int, str]] = [
    ({"kind": "explode"}, 400, "field 'kind': Input should be 'close'"),
    ({"kind": "comment"}, 400, "non-empty body"),
    ({"kind": "close", "colour": "red"}, 400, "field 'colour': is not a known field"),
    ({"kind": "close", "state": "SHINY"}, 400, "field 'state"),
    ({"kind": "close", "changesets": [0]}, 400, "field 'changesets[0]'"),
    ({"kind": "close", "changesets": []}, 400, "field 'changesets'"),
    ({"kind": "close", "changesets": [999]}, 404, "not tracked by batch change"),
    ({"kind": "merge", "merge_method": "octopus"}, 400, "field 'merge_method'"),
    ({"kind": "close", "merge_method": "squash"}, 400, "only applies to merge"),
    ({"kind": "close", "force": "yes"}, 400, "field 'force'"),
    ({"kind": "comment", "body": "a\x00b"}, 400, "NUL"),
    ({"kind": "update"}, 400, "a new title, a new body, or both"),
]


async def test_bad_requests_are_refused_and_store_nothing(
    client: tuple[ApiClient, int],
) -> None:
    api, bc = client
    for path in ("operations", "operations/preview"):
        for payload, status, message in BAD_REQUESTS:
            response = await api.call("POST", f"/api/batch-changes/{bc}/{path}", json=payload)
            assert response.status_code == status, (payload, response.text)
            assert message in response.json()["error"], (payload, response.text)
    assert await api.get("/api/operations") == {"items": [], "next": None}


async def test_unknown_ids_are_404(client: tuple[ApiClient, int]) -> None:
    api, _ = client
    missing = await api.call("POST", "/api/batch-changes/999/operations", json={"kind": "close"})
    assert missing.status_code == 404 and "batch change" in missing.json()["error"]
    assert (await api.call("GET", "/api/operations/42")).status_code == 404
    bad = await api.call("GET", "/api/operations/1", params={"results": "bogus"})
    assert bad.status_code == 400 and "results" in bad.json()["error"]
