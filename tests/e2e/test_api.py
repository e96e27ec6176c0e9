"""The HTTP API and dashboard over real HTTP (``running_api`` on a free loopback port, httpx),
with the emulator and a real store (SQLite file and PostgreSQL). Good input does what it says;
bad input answers a clear ``{"error": ...}`` and changes nothing; no answer carries the token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from unittest.mock import ANY

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostKind
from repo_updater.emulator.admin_client import EmulatorAdmin
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.serve import serve
from repo_updater.sources.http import RetryPolicy
from repo_updater.store.schema import metadata
from tests.support.api import ApiClient, api_client
from tests.support.metrics import samples, value

GH = HostKind.GITHUB
PREFIX = "github.test"
SECRET = "tok-api-7d1e-SECRET-0b52"
DEADLINE = 30.0
LEGACY = f"{PREFIX}/acme/legacy"
WIDGETS = f"{PREFIX}/acme/widgets"


@pytest.fixture(autouse=True)
def _seed(emu: RunningEmulator) -> None:
    host = emu.state.host(GH)
    host.token = SECRET
    host.add_repo("acme", "widgets")
    host.add_pull("acme/widgets", title="Upgrade CI")
    host.add_repo("acme", "gadgets")
    host.add_repo("acme", "legacy", archived=True)


Api = ApiClient


@pytest.fixture
async def api(store_url: str, emu: RunningEmulator) -> AsyncIterator[Api]:
    """The API of a synced app, and a client with a write token. No background loops: the
    store changes only by request."""
    config = parse_config(
        {
            "database": store_url,
            "repo_sync_interval": 3600,
            "changeset_poll_interval": 0.2,
            # forced syncs are not coalesced here (tests/integration/test_forced_syncs.py)
            "api": {"forced_sync_min_gap": 0},
            "external_services": [
                {
                    "name": "gh",
                    "kind": "github",
                    "url": emu.base_url(GH),
                    "orgs": ["acme"],
                    "name_prefix": PREFIX,
                    "token_env": "GH_TOKEN",
                }
            ],
        },
        {"GH_TOKEN": SECRET},
    )
    retry = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=2.0)
    async with open_app(config, {"GH_TOKEN": SECRET}, retry=retry) as app:
        assert (await app.repo_sync_worker.sync_service("gh")).complete
        async with api_client(app, forbidden_text=SECRET) as client:
            yield client


@asynccontextmanager
async def loops_running(app: App) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, stop, api=False))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=DEADLINE)


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {DEADLINE}s")
        await asyncio.sleep(0.05)


async def snapshot(engine: AsyncEngine) -> dict[str, list[Any]]:
    """Every row of every table, in a stable order."""
    out = {}
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = await conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in rows]
    return out


# --- reading ----------------------------------------------------------------------------------


async def test_archived_repos_and_a_requested_service_sync(api: Api, emu: RunningEmulator) -> None:
    archived = await api.items("/api/repos", archived="true")
    assert [r["name"] for r in archived] == [LEGACY]
    assert archived[0]["archived"] is True
    live = await api.items("/api/repos", archived="false")
    assert sorted(r["name"] for r in live) == [f"{PREFIX}/acme/gadgets", WIDGETS]
    assert len(await api.items("/api/repos")) == 3
    assert [r["name"] for r in await api.items("/api/repos", name="gadg")] == [
        f"{PREFIX}/acme/gadgets"
    ]
    (svc,) = await api.items("/api/services")
    assert (svc["name"], svc["repo_count"], svc["last_sync_error"]) == ("gh", 3, None)

    async with EmulatorAdmin(emu.url) as admin:
        await admin.archive(GH, "acme/gadgets")
    # The fixture's sync scheduled the next one in an hour: only the request makes the newly
    # archived repo appear. A second request before it runs is covered by the first.
    asked = await api.post("/api/services/gh/sync", 202)
    assert (asked["requested"], asked["coalesced"]) == ("gh", False)
    again = await api.post("/api/services/gh/sync", 202)
    assert again["coalesced"] is True and again["due_at"] >= asked["due_at"]  # due: now
    (svc,) = await api.items("/api/services")
    assert svc["sync_requested_at"] == asked["due_at"]  # the second one changed nothing
    async with loops_running(api.app):

        async def archived_now() -> bool:
            rows = await api.items("/api/repos", archived="true")
            return sorted(r["name"] for r in rows) == [f"{PREFIX}/acme/gadgets", LEGACY]

        await eventually(archived_now, "the requested sync")
    events = await api.items("/api/events", kind="RepoArchived")
    assert [e["payload"]["name"] for e in events] == [f"{PREFIX}/acme/gadgets"]


async def test_dashboard_page_and_assets_are_served(api: Api) -> None:
    """What the browser tests (test_dashboard.py) load: the page with a strict CSP, and its
    script and style sheet with a validator (a second load costs a 304)."""
    page = await api.call("GET", "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/app.css", "text/css")):
        asset = await api.call("GET", path)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        again = await api.call("GET", path, headers={"If-None-Match": asset.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    first = await api.get("/api/pulse")
    assert await api.get("/api/pulse") == {**first, "at": ANY}, "nothing changed"
    await api.post("/api/batch-changes", 201, json={"name": "pulse"})
    second = await api.get("/api/pulse")
    assert second["version"] != first["version"] and second["states"] != first["states"]
    await api.app.repo_sync_worker.sync_service("gh")  # a sync that changes no state
    third = await api.get("/api/pulse")
    assert third["version"] != second["version"], "the services page shows the sync"
    assert third["states"] == second["states"], "no counts or burndown to re-read"
    assert (await api.get("/healthz")) == {"ok": True}


# --- writing ----------------------------------------------------------------------------------


async def test_track_a_changeset_and_see_it_synced(api: Api) -> None:
    created = await api.post("/api/batch-changes", 201, json={"name": "  upgrade-ci "})
    assert created["name"] == "upgrade-ci"
    bc = created["id"]
    (listed,) = await api.items("/api/batch-changes")
    assert (listed["id"], listed["name"], listed["state"]) == (bc, "upgrade-ci", "OPEN")

    tracked = await api.post(
        f"/api/batch-changes/{bc}/changesets", 201, json={"repo": WIDGETS, "number": 1}
    )
    assert (tracked["repo"], tracked["number"]) == (WIDGETS, 1)
    (cs,) = await api.items("/api/changesets", batch_change=str(bc))
    assert (cs["id"], cs["repo_name"], cs["number"]) == (tracked["id"], WIDGETS, 1)
    assert cs["external_state"] is None  # not synced yet

    async with loops_running(api.app):

        async def synced() -> Any:
            (row,) = await api.items("/api/changesets", batch_change=str(bc))
            return row if row["external_state"] == "OPEN" else None

        row = await eventually(synced, "the first sync of the tracked changeset")
        assert row["title"] == "Upgrade CI"
        assert row["last_synced_at"] is not None and row["sync_error"] is None

        open_rows = await api.items("/api/changesets", state="open")  # any case
        assert [r["id"] for r in open_rows] == [tracked["id"]]
        assert await api.items("/api/changesets", state="MERGED") == []

    (listed,) = await api.items("/api/batch-changes")
    assert listed["changeset_count"] == 1


async def test_requested_changeset_sync_picks_up_a_merge(api: Api, emu: RunningEmulator) -> None:
    bc = (await api.post("/api/batch-changes", 201, json={"name": "bc"}))["id"]
    cs = (
        await api.post(
            f"/api/batch-changes/{bc}/changesets", 201, json={"repo": WIDGETS, "number": 1}
        )
    )["id"]

    def state_is(wanted: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            rows = await api.items("/api/changesets", state=wanted)
            return [r["id"] for r in rows] == [cs]

        return check

    async with loops_running(api.app):
        await eventually(state_is("OPEN"), "the first sync")
        # Synced a moment ago, the changeset is next due in minutes: only the request makes
        # the merge show up now.
        async with EmulatorAdmin(emu.url) as admin:
            await admin.set_pull(GH, "acme/widgets", 1, state="MERGED")
        asked = await api.post(f"/api/changesets/{cs}/sync", 202)
        assert (asked["requested"], asked["coalesced"]) == (cs, False)
        await eventually(state_is("MERGED"), "MERGED after a requested sync")


# --- bad input --------------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # method, path, httpx kwargs, status, a word the error must contain
    ("POST", "/api/batch-changes", {"content": b"not json"}, 400, "JSON"),
    ("POST", "/api/batch-changes", {"json": [1, 2]}, 400, "JSON object"),
    ("POST", "/api/batch-changes", {"json": {}}, 400, "name"),
    ("POST", "/api/batch-changes", {"json": {"name": "   "}}, 400, "name"),
    ("POST", "/api/batch-changes", {"json": {"name": 7}}, 400, "name"),
    ("POST", "/api/batch-changes", {"json": {"name": "x", "description": 1}}, 400, "description"),
    ("POST", "/api/batch-changes", {"json": {"name": "existing"}}, 409, "exists"),
    ("POST", "/api/batch-changes/{bc}/changesets", {"content": b"{"}, 400, "JSON"),
    ("POST", "/api/batch-changes/{bc}/changesets", {"json": {"number": 1}}, 400, "repo"),
    ("POST", "/api/batch-changes/{bc}/changesets", {"json": {"repo": WIDGETS}}, 400, "number"),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": WIDGETS, "number": 0}},
        400,
        "number",
    ),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": WIDGETS, "number": "x"}},
        400,
        "number",
    ),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": WIDGETS, "number": 1.5}},
        400,
        "number",
    ),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": WIDGETS, "number": True}},
        400,
        "number",
    ),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": "github.test/acme/nope", "number": 1}},
        404,
        "acme/nope",
    ),
    (
        "POST",
        "/api/batch-changes/999/changesets",
        {"json": {"repo": WIDGETS, "number": 1}},
        404,
        "999",
    ),
    (
        "POST",
        "/api/batch-changes/{closed}/changesets",
        {"json": {"repo": WIDGETS, "number": 1}},
        409,
        "closed",
    ),
    (
        "POST",
        "/api/batch-changes/abc/changesets",
        {"json": {"repo": WIDGETS, "number": 1}},
        400,
        "id",
    ),
    ("POST", "/api/batch-changes/999/close", {}, 404, "999"),
    ("POST", "/api/batch-changes/abc/close", {}, 400, "id"),
    ("POST", "/api/changesets/999/sync", {}, 404, "999"),
    ("POST", "/api/changesets/abc/sync", {}, 400, "id"),
    ("POST", "/api/services/nope/sync", {}, 404, "nope"),
    ("GET", "/api/repos?archived=maybe", {}, 400, "archived"),
    ("GET", "/api/repos?limit=0", {}, 400, "limit"),
    ("GET", "/api/repos?limit=x", {}, 400, "limit"),
    ("GET", "/api/repos?after=x", {}, 400, "after"),
    ("GET", "/api/changesets?state=BOGUS", {}, 400, "state"),
    ("GET", "/api/changesets?batch_change=x", {}, 400, "batch_change"),
    ("GET", "/api/events?limit=x", {}, 400, "limit"),
    # Out of the store's range: once a 500 from the database, or on SQLite no limit at all.
    ("GET", "/api/events?limit=-1", {}, 400, "limit"),
    ("GET", "/api/events?limit=0", {}, 400, "limit"),
    ("GET", "/api/repos?after=99999999999999999999", {}, 400, "after"),
    ("GET", "/api/events?after=99999999999999999999", {}, 400, "after"),
    ("GET", "/api/changesets?batch_change=99999999999999999999", {}, 400, "batch_change"),
    ("POST", "/api/changesets/99999999999999999999/sync", {}, 400, "id"),
    ("POST", "/api/batch-changes/99999999999999999999/close", {}, 400, "id"),
    (
        "POST",
        "/api/batch-changes/99999999999999999999/changesets",
        {"json": {"repo": WIDGETS, "number": 1}},
        400,
        "id",
    ),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": WIDGETS, "number": 2**31}},
        400,
        "number",
    ),
    ("POST", "/api/batch-changes", {"json": {"name": "x" * 201}}, 400, "name"),
    # NUL characters: PostgreSQL cannot store or compare them.
    ("POST", "/api/batch-changes", {"json": {"name": "a\x00b"}}, 400, "NUL"),
    ("POST", "/api/batch-changes", {"json": {"name": "a", "description": "\x00"}}, 400, "NUL"),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": "a\x00b", "number": 1}},
        400,
        "NUL",
    ),
    ("GET", "/api/repos?name=%00", {}, 400, "NUL"),
    ("GET", "/api/events?kind=%00", {}, 400, "NUL"),
    # Issue 7, item 6: once 500s with a traceback.
    ("POST", "/api/batch-changes", {"content": b'{"name": "a\\ud800"}'}, 400, "JSON"),
    ("POST", "/api/batch-changes", {"content": b'{"name": "\\udc00x"}'}, 400, "JSON"),
    ("POST", "/api/batch-changes", {"content": b"[" * 100_000 + b"]" * 100_000}, 413, "larger"),
    (
        "POST",
        "/api/batch-changes",
        {"content": b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"},
        400,
        "JSON",
    ),
    ("POST", "/api/batch-changes", {"content": b'{"name": "\xff"}'}, 400, "JSON"),
    ("POST", "/api/services/a%00b/sync", {}, 400, "name"),
    ("GET", "/api/changesets/%00", {}, 400, "id"),
    ("GET", "/api/batch-changes/%D9%A3", {}, 400, "id"),
    ("GET", "/api/batch-changes/1_0", {}, 400, "id"),
    ("GET", "/api/batch-changes/%201", {}, 400, "id"),
    ("POST", "/api/changesets/%D9%A3/sync", {}, 400, "id"),
    ("POST", "/api/changesets/1_0/sync", {}, 400, "id"),
    ("GET", "/api/changesets?batch_change=%D9%A3", {}, 400, "batch_change"),
    ("GET", "/api/repos?limit=1_0", {}, 400, "limit"),
    ("GET", "/api/repos?limit=%201", {}, 400, "limit"),
    ("GET", "/api/repos?after=%D9%A3", {}, 400, "after"),
    # Unknown and repeated parameters, unknown fields, oversized fields and bodies.
    ("GET", "/api/repos?colour=red", {}, 400, "colour"),
    ("GET", "/api/repos?limit=1&limit=2", {}, 400, "limit"),
    ("GET", "/api/repos?limit=1001", {}, 400, "limit"),
    ("GET", "/api/repos?name=" + "x" * 501, {}, 400, "name"),
    ("POST", "/api/batch-changes", {"json": {"name": "x", "colour": "red"}}, 400, "colour"),
    (
        "POST",
        "/api/batch-changes",
        {"json": {"name": "x", "description": "d" * 10_001}},
        400,
        "description",
    ),
    (
        "POST",
        "/api/batch-changes",
        {"json": {"name": "x", "description": "d" * 70_000}},
        413,
        "larger",
    ),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": "r" * 501, "number": 1}},
        400,
        "repo",
    ),
    (
        "POST",
        "/api/batch-changes/{bc}/changesets",
        {"json": {"repo": WIDGETS, "number": 1, "changesets": [{"repo": WIDGETS, "number": 1}]}},
        400,
        "not both",
    ),
    ("POST", "/api/batch-changes/{bc}/close", {"json": {"force": True}}, 400, "force"),
    ("POST", "/api/changesets/1/sync", {"json": [1]}, 400, "JSON object"),
    # Not routes: JSON all the same.
    ("GET", "/api/nope", {}, 404, "no such resource"),
    ("DELETE", "/api/batch-changes", {}, 405, "not allowed"),
    ("GET", "/api/batch-changes/{bc}/close", {}, 405, "POST"),
]


async def test_bad_input_answers_a_clear_error_and_changes_nothing(api: Api) -> None:
    bc = (await api.post("/api/batch-changes", 201, json={"name": "existing"}))["id"]
    closed = (await api.post("/api/batch-changes", 201, json={"name": "done"}))["id"]
    await api.post(f"/api/batch-changes/{closed}/close", 200)
    before = await snapshot(api.app.engine)
    assert len(before["repos"]) == 3 and len(before["batch_changes"]) == 2

    failures = []
    for method, path, kw, status, word in BAD_REQUESTS:
        url = path.format(bc=bc, closed=closed)
        response = await api.call(method, url, **kw)
        try:
            body = response.json()
        except ValueError:
            body = None
        ok = (
            response.status_code == status
            and response.headers.get("content-type", "").startswith("application/json")
            and isinstance(body, dict)
            and list(body) == ["error"]
            and isinstance(body["error"], str)
            and word.lower() in body["error"].lower()
        )
        if not ok:
            failures.append(f"{method} {url} {kw}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)
    assert await snapshot(api.app.engine) == before


async def test_metrics_count_repos_changesets_requests_and_syncs(
    api: Api, emu: RunningEmulator
) -> None:
    response = await api.call("GET", "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    # Live repos split by the archived flag, removed ones apart: no sample counts another's.
    assert value(got, "repo_updater_repos", archived="false") == 2
    assert value(got, "repo_updater_repos", archived="true") == 1
    assert value(got, "repo_updater_repos_deleted") == 0
    assert value(got, "repo_updater_service_last_sync_failed", service="gh") == 0
    assert value(got, "repo_updater_changeset_sync_requests_pending") == 0
    # The fixture's sync: one duration observed, complete; the requests it sent, by kind.
    assert value(got, "repo_updater_repo_sync_duration_seconds_count", service="gh",
                 outcome="complete") == 1  # fmt: skip
    host = api.app.sources["gh"].host_url
    listed = value(got, "repo_updater_code_host_requests_total", host=host, kind="list_repos")
    assert listed >= 1
    assert value(got, "repo_updater_rate_limit_remaining", host=host) > 0
    # The reconciler's and the permissions syncer's figures are on the same registry: no bulk
    # operation yet; GitHub's default write budget (80/min, 500/h) untouched, so each bucket
    # holds its full burst (a tenth); no private repo, so no grants and no full refresh yet.
    for state in ("running", "finished"):
        assert value(got, "repo_updater_operations", state=state) == 0
    assert value(got, "repo_updater_write_budget_remaining", host=host, window_seconds="60") == 8
    assert value(got, "repo_updater_write_budget_remaining", host=host,
                 window_seconds="3600") == 50  # fmt: skip
    assert value(got, "repo_updater_repo_permissions") == 0
    assert value(got, "repo_updater_permission_syncs_failing") == 0
    assert not any(n.startswith("repo_updater_permission_last_full") for n, _ in got)
    # No hand-written exposition: every family comes with its HELP and TYPE.
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert f"# HELP {name} " in response.text, name

    bc = await api.post("/api/batch-changes", 201, json={"name": "metrics"})
    await api.post(
        f"/api/batch-changes/{bc['id']}/changesets", 201,
        json={"repo": f"{PREFIX}/acme/widgets", "number": 1},
    )  # fmt: skip
    got = samples((await api.call("GET", "/metrics")).text)
    assert value(got, "repo_updater_changesets", external_state="UNSYNCED") == 1
    assert value(got, "repo_updater_changeset_sync_requests_pending") == 1
    # Public repos need no permissions sync: anyone can read them.
    assert value(got, "repo_updater_permission_sync_requests_pending") == 0

    # A failing sync: counted by its reason, and as an incomplete sync's duration.
    await api.app.repo_sync_worker.sync_service("gh")  # a good one first: 2 complete syncs
    async with EmulatorAdmin(emu.url) as admin:
        await admin.set_faults(GH, errors_next=100)
        result = await api.app.repo_sync_worker.sync_service("gh")
        await admin.clear_faults(GH)
    assert not result.complete
    got = samples((await api.call("GET", "/metrics")).text)
    assert value(got, "repo_updater_sync_errors_total", sync="repo_sync", reason="host_error") == 1
    assert value(got, "repo_updater_repo_sync_duration_seconds_count", service="gh",
                 outcome="incomplete") == 1  # fmt: skip
    assert value(got, "repo_updater_service_last_sync_failed", service="gh") == 1


async def test_bulk_tracking_is_all_or_nothing(api: Api) -> None:
    bc = await api.post("/api/batch-changes", 201, json={"name": "bulk"})
    url = f"/api/batch-changes/{bc['id']}/changesets"
    widgets, gadgets = f"{PREFIX}/acme/widgets", f"{PREFIX}/acme/gadgets"
    before = await snapshot(api.app.engine)
    one = {"repo": widgets, "number": 1}
    for body, status, word in (
        ({"changesets": []}, 400, "at least 1 item"),
        ({"changesets": [one, {"repo": widgets}]}, 400, "changesets[1]"),
        ({"changesets": [one, {"repo": "nope", "number": 2}]}, 404, "nope"),
    ):
        response = await api.call("POST", url, json=body)
        assert response.status_code == status and word in response.json()["error"]
    assert await snapshot(api.app.engine) == before

    body = {"changesets": [{"repo": widgets, "number": 1}, {"repo": gadgets, "number": 7}]}
    tracked = (await api.post(url, 201, json=body))["changesets"]
    assert [(t["repo"], t["number"]) for t in tracked] == [(widgets, 1), (gadgets, 7)]
    listed = await api.items("/api/changesets", batch_change=bc["id"])
    assert sorted(c["id"] for c in listed) == sorted(t["id"] for t in tracked)
