"""Webhooks end to end: the emulator's signed deliveries reach the changesets without a repo
sync; the receiver refuses what it must and stores each delivery once; a delivery answered
2xx survives a crash; single-repo sync by API and CLI. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import yaml

from repo_updater.core.domain import HostKind
from repo_updater.emulator.admin_client import EmulatorAdmin
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.api import running_api
from repo_updater.entrypoints.cli import main
from repo_updater.store import changeset_queries as queries
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store
from repo_updater.store import sync_history
from repo_updater.store import webhooks as hook_store
from repo_updater.store.schema import webhook_deliveries
from tests.support.api import api_client
from tests.support.metrics import samples, value
from tests.support.webhooks import (
    ENV,
    SECRET,
    delivery,
    eventually,
    register_hooks,
    seed,
    service_name,
    serving,
    states,
    synced_app,
)

GH, GL, GT, BB = HostKind.GITHUB, HostKind.GITLAB, HostKind.GITEA, HostKind.BITBUCKET_SERVER
NAMES = {GH: "acme/repo-0", GL: "acme/repo-0", GT: "acme/repo-0", BB: "ACME/repo-0"}


def store_name(kind: HostKind, name: str) -> str:
    return f"{kind.value}.test/{name}"


async def syncs(app: object) -> int:
    async with app.engine.connect() as conn:  # type: ignore[attr-defined]
        total = 0
        for svc in await service_store.list_services(conn):
            total += len(await sync_history.recent_syncs(conn, svc.id, limit=50))
        return total


async def test_emulator_deliveries_flip_changesets_without_a_repo_sync(
    store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    seed(emu)
    async with synced_app(store_url, emu) as app, serving(app) as url:
        await register_hooks(admin, url)
        before = await syncs(app)
        for kind, name in NAMES.items():
            await admin.archive(kind, name)

        async def all_readonly() -> bool:
            got = [await states(app, store_name(k, n)) for k, n in NAMES.items()]
            return all(s == ["READONLY", "READONLY"] for s in got)

        await eventually(all_readonly, "every host's archive to make its changesets READONLY")
        for kind, name in NAMES.items():
            await admin.unarchive(kind, name)

        async def all_open() -> bool:
            got = [await states(app, store_name(k, n)) for k, n in NAMES.items()]
            return all(s == ["OPEN", "OPEN"] for s in got)

        await eventually(all_open, "every unarchive to bring them back")
        # A pull request closed on the host, a rename and a deletion.
        await admin.set_pull(GH, "acme/repo-1", 1, state="CLOSED")
        await admin.set_pull(GT, "acme/repo-1", 2, state="MERGED")
        await admin.rename(GL, "acme/repo-1", "renamed")
        await admin.delete(GH, "acme/repo-0")

        async def rest_arrived() -> bool:
            async with app.engine.connect() as conn:
                gone = await repo_store.get_repo_by_name(conn, store_name(GH, "acme/repo-0"))
                moved = await repo_store.get_repo_by_name(conn, store_name(GL, "acme/renamed"))
            return (
                await states(app, store_name(GH, "acme/repo-1")) == ["CLOSED", "OPEN"]
                and await states(app, store_name(GT, "acme/repo-1")) == ["OPEN", "MERGED"]
                and gone is None
                and moved is not None
            )

        await eventually(rest_arrived, "the pull request changes, the rename and the deletion")
        assert await syncs(app) == before  # no repo sync: the webhooks did it all
        async with app.engine.connect() as conn:
            services = await service_store.list_services(conn)
            rows = await queries.page_changesets(conn, queries.ChangesetFilter(), limit=100)
        assert all(s.webhook_last_delivery_at and s.webhook_verifies for s in services)
        flipped = [v for v, _ in rows if v.repo_name.lower().endswith("acme/repo-0")]
        changed = [v for v, _ in rows if v.external_state and v.external_state.value in
                   ("CLOSED", "MERGED")]  # fmt: skip
        assert len(flipped) == 8 and len(changed) == 2
        assert {v.synced_by for v in flipped + changed} == {"webhook"}
        # The archive's request or, once synced after it, the unarchive's.
        assert all((v.last_sync_reason or "").startswith("webhook:repo_") for v in flipped)
        async with api_client(app) as client:
            listed = await client.get("/api/services")
            assert all(s["webhook_verifies"] for s in listed["items"])
            closed = [c for c in await client.items("/api/changesets") if c["external_state"]
                      == "CLOSED"]  # fmt: skip
            assert closed and closed[0]["synced_by"] == "webhook"


async def test_duplicated_and_dropped_deliveries(
    store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    seed(emu, repos=1, pulls=1)
    async with synced_app(store_url, emu) as app, serving(app) as url:
        await register_hooks(admin, url)
        await admin.set_webhook_faults(GH, duplicate_next=1)
        await admin.archive(GH, "acme/repo-0")
        await emu.state.webhooks.drain()
        sent = await admin.webhook_deliveries(GH)
        assert [(d["event"], d["action"], d["duplicated"], d["status"]) for d in sent] == [
            ("repository", "archived", True, 202)
        ]
        async with app.engine.connect() as conn:
            assert (await hook_store.counts(conn)).stored == 1  # the copy stored nothing
        got = samples(app.metrics.exposition().decode())
        assert value(got, "repo_updater_webhook_deliveries_total",
                     service=service_name(GH), outcome="duplicate") == 1  # fmt: skip

        async def flipped() -> bool:
            return await states(app, store_name(GH, "acme/repo-0")) == ["READONLY"]

        await eventually(flipped, "the flip")
        await admin.set_webhook_faults(GH, drop_next=1)
        await admin.unarchive(GH, "acme/repo-0")
        await emu.state.webhooks.drain()
        assert (await admin.webhook_deliveries(GH))[-1]["dropped"] is True
        # Nothing arrived: polling repairs it (a repo sync now).
        assert await states(app, store_name(GH, "acme/repo-0")) == ["READONLY"]
        assert (await app.repo_sync_worker.sync_service(service_name(GH))).complete
        assert await states(app, store_name(GH, "acme/repo-0")) == ["OPEN"]


async def test_receiver_refuses_bad_deliveries_and_stores_each_once(
    store_url: str, emu: RunningEmulator
) -> None:
    seed(emu, repos=1, pulls=1)
    async with synced_app(store_url, emu) as app, running_api(app) as url:
        async with httpx.AsyncClient(base_url=url) as http:

            async def post(path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
                response = await http.post(path, headers=headers, content=body)
                assert SECRET not in response.text
                assert response.headers["content-type"].startswith("application/json")
                return response

            repo = emu.state.host(GH).repo("acme/repo-0")
            payload = {"action": "archived",
                       "repository": {"id": repo.id, "full_name": "acme/repo-0"}}  # fmt: skip
            headers, body = delivery(GH, "repository", payload, did="abc")
            gh = f"/webhooks/{service_name(GH)}"
            bad = dict(headers, **{"X-Hub-Signature-256": "sha256=" + "0" * 64})
            assert (await post(gh, bad, body)).status_code == 401
            unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
            assert (await post(gh, unsigned, body)).status_code == 401
            assert (await post("/webhooks/nope", headers, body)).status_code == 404
            assert (await post("/webhooks/..%2F", headers, body)).status_code in (404, 400)
            big = b"{" + b" " * (1024 * 1024) + b"}"
            assert (await post(gh, delivery(GH, "ping", {})[0], big)).status_code == 413
            for event, raw in (("repository", b"{not json"), ("repository", b'{"action": 1}'),
                               ("pull_request", b'{"pull_request": {"number": "x"}}')):  # fmt: skip
                h, _ = delivery(GH, event, {})
                from repo_updater.core.webhooks import sign

                h.update(sign(GH, SECRET, raw))
                response = await post(gh, h, raw)
                assert response.status_code == 400, (event, response.text)
            async with app.engine.connect() as conn:
                assert (await hook_store.counts(conn)).stored == 0  # nothing refused is kept
                svc = {s.name: s for s in await service_store.list_services(conn)}
            assert svc[service_name(GH)].webhook_verifies is False
            assert "bad_signature" in (svc[service_name(GH)].webhook_last_rejection or "")
            m = samples(app.metrics.exposition().decode())
            total = "repo_updater_webhook_deliveries_total"
            assert value(m, total, service=service_name(GH), outcome="bad_signature") == 2
            assert value(m, total, service="", outcome="unknown_service") >= 1
            assert value(m, total, service=service_name(GH), outcome="too_large") == 1
            assert value(m, total, service=service_name(GH), outcome="malformed") == 3

            # Each host's own format is taken; a redelivery of an id stores nothing.
            first = await post(gh, headers, body)
            assert first.status_code == 202 and first.json()["outcome"] == "stored"
            again = await post(gh, headers, body)
            assert again.status_code == 202 and again.json()["outcome"] == "duplicate"
            ping = await post(gh, *delivery(GH, "ping", {"zen": "hi"}, did="p"))
            assert ping.json()["outcome"] == "ping"
            for kind, event, p in (
                (GL, "Merge Request Hook", {"object_kind": "merge_request",
                 "object_attributes": {"iid": 1}, "project": {"id": 1,
                 "path_with_namespace": "acme/repo-0"}}),
                (GT, "pull_request", {"pull_request": {"number": 1}, "repository": {
                 "id": 1, "full_name": "acme/repo-0"}}),
                (BB, "pr:merged", {"pullRequest": {"id": 1, "toRef": {"repository": {
                 "id": 1, "slug": "repo-0", "project": {"key": "ACME"}}}}}),
            ):  # fmt: skip
                response = await post(f"/webhooks/{service_name(kind)}", *delivery(kind, event, p))
                assert response.status_code == 202 and response.json()["outcome"] == "stored"
            async with app.engine.connect() as conn:
                counts = await hook_store.counts(conn)
                svc = {s.name: s for s in await service_store.list_services(conn)}
            assert counts.stored == counts.pending == 4
            assert svc[service_name(GH)].webhook_verifies is True
            # The host archived the repo; the stored delivery says so. No worker ran yet.
            emu.state.host(GH).set_archived("acme/repo-0", True)
            assert await states(app, store_name(GH, "acme/repo-0")) == ["OPEN"]

    # A crash after the 2xx: a new process (fresh worker) finds the stored deliveries.
    async with synced_app(store_url, emu, worker_id="w2", sync=False) as fresh:
        # One is claimed by a worker that died: its lease runs out.
        async with fresh.engine.begin() as conn:
            dead = await hook_store.claim_deliveries(conn, "dead", fresh.clock(), timedelta(0), 1)
        assert len(dead) == 1
        done = await fresh.webhook_worker.run_once()
        assert done.processed == 4 and done.repo_syncs == 1
        assert done.changeset_syncs_requested == 4  # the flip's and three pull requests'
        assert await states(fresh, store_name(GH, "acme/repo-0")) == ["READONLY"]
        async with fresh.engine.connect() as conn:
            counts = await hook_store.counts(conn)
        assert counts.pending == 0 and counts.failed == 0


async def test_single_repo_sync_by_api_and_cli(
    store_url: str, emu: RunningEmulator, tmp_path: Path
) -> None:
    seed(emu, repos=2, pulls=1)
    async with synced_app(store_url, emu) as app:
        async with app.engine.connect() as conn:
            repo = await repo_store.get_repo_by_name(conn, store_name(GH, "acme/repo-0"))
        assert repo is not None
        emu.state.host(GH).set_archived("acme/repo-0", True)
        async with api_client(app) as client:
            done = await client.post(f"/api/repos/{repo.id}/sync", 200)
            assert done["repo"]["archived"] and done["archived_flipped"]
            assert done["changeset_syncs_requested"] == 1
            assert (await client.call("POST", "/api/repos/999999/sync")).status_code == 404
        assert await states(app, store_name(GH, "acme/repo-0")) == ["READONLY"]
        assert await syncs(app) == len(app.sources)  # the first syncs only

    emu.state.host(GL).set_archived("acme/repo-1", True)
    config = tmp_path / "c.yaml"
    from tests.support.webhooks import config_dict

    config.write_text(yaml.safe_dump(config_dict(store_url, emu)))
    args = ["repos", "sync", store_name(GL, "acme/repo-1"), "--config", str(config)]
    import os

    os.environ.update(ENV)
    try:
        code = await asyncio.to_thread(main, args)
        assert code == 0
        missing = await asyncio.to_thread(main, ["repos", "sync", "nope/x", "--config",
                                                 str(config)])  # fmt: skip
        assert missing != 0
    finally:
        for key in ENV:
            os.environ.pop(key, None)
    async with synced_app(store_url, emu, sync=False) as app:
        assert await states(app, store_name(GL, "acme/repo-1")) == ["READONLY"]


async def test_a_host_failure_parks_the_delivery_for_a_retry(
    store_url: str, emu: RunningEmulator
) -> None:
    seed(emu, repos=1, pulls=1)
    async with synced_app(store_url, emu) as app, running_api(app) as url:
        repo = emu.state.host(GH).repo("acme/repo-0")
        payload = {"action": "archived", "repository": {"id": repo.id, "full_name": repo.full_name}}
        async with httpx.AsyncClient(base_url=url) as http:
            headers, body = delivery(GH, "repository", payload, did="retry-me")
            response = await http.post(f"/webhooks/{service_name(GH)}", headers=headers,
                                       content=body)  # fmt: skip
            assert response.status_code == 202
        emu.state.host(GH).set_archived("acme/repo-0", True)
        emu.state.host(GH).faults.errors_next = 10  # the host is down for a while
        emu.state.host(GH).faults.path_contains = "/repositories/"
        first = await app.webhook_worker.run_once()
        assert (first.processed, first.retried) == (0, 1)
        assert await states(app, store_name(GH, "acme/repo-0")) == ["OPEN"]
        emu.state.host(GH).faults.errors_next = 0
        async with app.engine.begin() as conn:  # its retry time has come
            await conn.execute(webhook_deliveries.update().values(claimed_until=app.clock()))
            assert (await hook_store.counts(conn)).pending == 1
        second = await app.webhook_worker.run_once()
        assert (second.processed, second.retried) == (1, 0)
        assert await states(app, store_name(GH, "acme/repo-0")) == ["READONLY"]
