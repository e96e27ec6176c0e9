"""Resources by id and name, cursor paging, filters, the stats and burndown of a batch change
after an archive flip, and errors that are always JSON (a broken database answers 500 without
internals, an unreachable one 503), over real HTTP on a real store."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import ChangesetSnapshot, HostPullState
from repo_updater.service_layer import repo_changes
from repo_updater.store.changeset_claims import SyncOutcome, claim_work, complete_syncs
from repo_updater.store.db import create_engine
from tests.support.api import ApiClient, api_client
from tests.support.fakes import T0, FakeClock, insert_repo

H = timedelta(hours=1)
LEASE = timedelta(minutes=5)


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def api(store_url: str, clock: FakeClock) -> AsyncIterator[ApiClient]:
    config = parse_config({"database": store_url}, {})
    async with open_app(config, {}, clock=clock) as app, api_client(app) as client:
        yield client


async def repos(app: App, *names: str, archived: bool = False) -> list[int]:
    async with app.engine.begin() as conn:
        return [await insert_repo(conn, n, archived=archived, now=T0) for n in names]


async def sync_all(app: App, states: dict[int, HostPullState], error: str | None = None) -> None:
    """A sync round at the app's clock: the host reports ``states`` by PR number."""
    now = app.clock()
    async with app.engine.begin() as conn:
        claimed = await claim_work(conn, "w", now, LEASE, 1000)
        outcomes = [
            SyncOutcome(c, error=error)
            if error
            else SyncOutcome(c, ChangesetSnapshot(c.changeset_id, c.number, states[c.number]))
            for c in claimed
        ]
        await complete_syncs(conn, outcomes, now)


async def test_one_by_id_and_by_name(api: ApiClient) -> None:
    await repos(api.app, "acme/widgets")
    bc = await api.post("/api/batch-changes", 201, json={"name": "node-22", "description": "d"})
    assert (bc["name"], bc["state"], bc["changeset_count"]) == ("node-22", "OPEN", 0)
    assert await api.get(f"/api/batch-changes/{bc['id']}") == bc
    by_name = await api.get("/api/batch-changes", params={"name": "node-22"})
    assert by_name == {"items": [bc], "next": None}
    assert (await api.get("/api/batch-changes", params={"name": "node"}))["items"] == []

    tracked = await api.post(
        f"/api/batch-changes/{bc['id']}/changesets", 201,
        json={"repo": "github.example/acme/widgets", "number": 7},
    )  # fmt: skip
    cs = await api.get(f"/api/changesets/{tracked['id']}")
    assert (cs["number"], cs["external_state"], cs["state_history"]) == (7, None, [])
    assert cs["batch_change_ids"] == [bc["id"]]
    api.app.clock.advance(H)  # type: ignore[attr-defined]
    await sync_all(api.app, {7: HostPullState.OPEN})
    cs = await api.get(f"/api/changesets/{tracked['id']}")
    assert cs["external_state"] == "OPEN"
    assert [h["external_state"] for h in cs["state_history"]] == ["OPEN"]

    closed = await api.post(f"/api/batch-changes/{bc['id']}/close", 200)
    assert (closed["state"], closed["changeset_count"]) == ("CLOSED", 1)
    for path in ("/api/batch-changes/999", "/api/changesets/999", "/api/batch-changes/999/stats"):
        response = await api.call("GET", path)
        assert response.status_code == 404 and "999" in response.json()["error"]


async def test_every_list_pages_with_a_cursor(api: ApiClient) -> None:
    await repos(api.app, *(f"acme/r{i}" for i in range(7)))
    for i in range(7):
        await api.post("/api/batch-changes", 201, json={"name": f"bc-{i}"})
    for path in ("/api/repos", "/api/batch-changes"):
        pages, after = [], None
        while True:
            page = await api.get(path, params={"limit": 3, **({"after": after} if after else {})})
            pages.append([item["id"] for item in page["items"]])
            after = page["next"]
            if after is None:
                break
        assert [len(p) for p in pages] == [3, 3, 1], path
        flat = [i for p in pages for i in p]
        assert flat == sorted(flat) and len(set(flat)) == 7
    assert len(await api.items("/api/services")) == 0
    assert (await api.get("/api/events"))["next"] is None


async def test_changesets_filter_and_order_by_what_needs_attention(api: ApiClient) -> None:
    ids = await repos(api.app, "acme/a", "acme/b", "acme/c")
    bc = await api.post("/api/batch-changes", 201, json={"name": "bc"})
    body = {"changesets": [{"repo": f"github.example/acme/{r}", "number": n}
                           for r in "abc" for n in (1, 2)]}  # fmt: skip
    tracked = (await api.post(f"/api/batch-changes/{bc['id']}/changesets", 201, json=body))[
        "changesets"
    ]
    cs = [t["id"] for t in tracked]  # a#1 a#2 b#1 b#2 c#1 c#2
    await sync_all(api.app, {1: HostPullState.OPEN, 2: HostPullState.MERGED})
    async with api.app.engine.begin() as conn:
        await repo_changes.set_archived(
            conn, ids[1], True, why="test", external_service_id=None, now=T0
        )
    api.app.clock.advance(timedelta(hours=9))  # type: ignore[attr-defined]
    async with api.app.engine.begin() as conn:  # c#1's next sync fails
        claimed = await claim_work(conn, "w", api.app.clock(), LEASE, 1000)
        outcomes = [SyncOutcome(c, error="HTTP 502") if c.changeset_id == cs[4] else
                    SyncOutcome(c, ChangesetSnapshot(c.changeset_id, c.number,
                                                     HostPullState.OPEN if c.number == 1
                                                     else HostPullState.MERGED))
                    for c in claimed]  # fmt: skip
        await complete_syncs(conn, outcomes, api.app.clock())

    async def ids_of(**params: object) -> list[int]:
        return [c["id"] for c in await api.items("/api/changesets", **params)]

    assert await ids_of(state="readonly") == [cs[2]]
    assert await ids_of(state="Merged") == [cs[1], cs[3], cs[5]]
    assert await ids_of(errored="true") == [cs[4]]
    assert await ids_of(batch_change=bc["id"], errored="false", state="OPEN") == [cs[0]]
    # Errors first, then READONLY, then the rest; the cursor carries the order across pages.
    attention = [cs[4], cs[2], cs[0], cs[1], cs[3], cs[5]]
    assert await ids_of(order="attention", limit=2) == attention
    page = await api.get("/api/changesets", params={"order": "attention", "limit": 2})
    wrong = await api.call("GET", "/api/changesets", params={"after": page["next"]})
    assert wrong.status_code == 400 and "another order" in wrong.json()["error"]


async def test_stats_and_burndown_after_an_archive_flip(api: ApiClient, clock: FakeClock) -> None:
    widgets, gadgets = await repos(api.app, "acme/widgets", "acme/gadgets")
    bc = await api.post("/api/batch-changes", 201, json={"name": "bc"})  # at T0
    refs = [("widgets", 1), ("widgets", 2), ("gadgets", 1)]
    body = {"changesets": [{"repo": f"github.example/acme/{r}", "number": n} for r, n in refs]}
    await api.post(f"/api/batch-changes/{bc['id']}/changesets", 201, json=body)
    clock.advance(H)
    await sync_all(api.app, {1: HostPullState.OPEN, 2: HostPullState.DRAFT})
    clock.advance(H)  # T0+2h: widgets is archived (found by a repo sync, a webhook, ...)
    async with api.app.engine.begin() as conn:
        await repo_changes.set_archived(
            conn, widgets, True, why="test", external_service_id=None, now=clock()
        )
    clock.advance(H)

    stats = await api.get(f"/api/batch-changes/{bc['id']}/stats", params={"points": 4})
    assert (stats["total"], stats["errored"]) == (3, 0)
    assert stats["by_state"] == {"READONLY": 2, "OPEN": 1}
    assert stats["by_review_state"] == {"UNKNOWN": 1} or stats["by_review_state"]
    points = stats["burndown"]["points"]
    assert [p["at"] for p in points] == [
        (T0 + i * H).isoformat().replace("+00:00", "Z") for i in range(4)
    ]
    bands = stats["burndown"]["states"]
    assert "READONLY" in bands and bands.index("READONLY") != bands.index("OPEN")

    def nonzero(point: dict[str, object]) -> dict[str, object]:
        counts = point["counts"]
        assert isinstance(counts, dict) and set(counts) == set(bands)
        return {k: v for k, v in counts.items() if v}

    assert [nonzero(p) for p in points] == [
        {"UNSYNCED": 3},
        {"OPEN": 2, "DRAFT": 1},
        {"READONLY": 2, "OPEN": 1},
        {"READONLY": 2, "OPEN": 1},
    ]
    # Unarchived: back to what the host said, in the series too.
    async with api.app.engine.begin() as conn:
        await repo_changes.set_archived(
            conn, widgets, False, why="test", external_service_id=None, now=clock()
        )
    clock.advance(H)
    stats = await api.get(f"/api/batch-changes/{bc['id']}/stats", params={"points": 5})
    assert [nonzero(p) for p in stats["burndown"]["points"]][2:] == [
        {"READONLY": 2, "OPEN": 1},
        {"OPEN": 2, "DRAFT": 1},
        {"OPEN": 2, "DRAFT": 1},
    ]
    since = (T0 + 2 * H).isoformat()
    stats = await api.get(
        f"/api/batch-changes/{bc['id']}/stats", params={"points": 2, "since": since}
    )
    assert [nonzero(p) for p in stats["burndown"]["points"]] == [
        {"READONLY": 2, "OPEN": 1},
        {"OPEN": 2, "DRAFT": 1},
    ]
    assert gadgets  # on an unarchived repo throughout


async def test_a_broken_database_is_a_500_without_internals_logged_once(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with api.app.engine.begin() as conn:
        await conn.execute(sa.text("ALTER TABLE batch_changes RENAME TO batch_changes_gone"))
    try:
        with caplog.at_level(logging.ERROR, logger="repo_updater.entrypoints.api.errors"):
            response = await api.call("GET", "/api/batch-changes")
        assert response.status_code == 500
        assert response.json() == {"error": "internal error; the server logged the details"}
        (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert record.exc_info is not None and "GET /api/batch-changes" in record.getMessage()
    finally:
        async with api.app.engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE batch_changes_gone RENAME TO batch_changes"))


async def test_an_unreachable_database_is_a_503(api: ApiClient) -> None:
    """The API's pool pointed at a closed port: 503 with Retry-After, not a traceback."""
    dead = create_engine("postgresql://postgres@127.0.0.1:9/none", pool_timeout=2)
    app = dataclasses.replace(api.app, api_engine=dead)
    try:
        async with api_client(app, token="unused") as client:
            response = await client.call("GET", "/api/batch-changes")
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "unavailable" in response.json()["error"]
    finally:
        await dead.dispose()


async def test_bodies_over_a_mebibyte_are_a_json_413(api: ApiClient) -> None:
    bc = await api.post("/api/batch-changes", 201, json={"name": "bc"})
    big = b'{"changesets": [' + b" " * (1024 * 1024) + b"]}"
    response = await api.call("POST", f"/api/batch-changes/{bc['id']}/changesets", content=big)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert "larger" in response.json()["error"] or "exceeded" in response.json()["error"]
