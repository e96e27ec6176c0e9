"""Who can read a private repo, through the whole app: ``serve`` syncs repos and permissions
from the emulator, the API and the CLI show them, a collaborator removed on the host disappears
after the next permissions sync, and a repo made public drops its permissions."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostKind
from repo_updater.emulator.admin_client import EmulatorAdmin
from repo_updater.emulator.server import RunningEmulator, running_emulator
from repo_updater.entrypoints.api import running_api
from repo_updater.entrypoints.cli import main
from repo_updater.entrypoints.serve import serve
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import repos as repo_store
from tests.support.metrics import samples, value

GH = HostKind.GITHUB
PREFIX = "github.test"
SECRET = "tok-perm-e2e-SECRET-91"
DEADLINE = 30.0
CLI = [sys.executable, "-m", "repo_updater.entrypoints.cli"]


def config_for(store_url: str, emu: RunningEmulator) -> Any:
    return parse_config(
        {
            "database": store_url,
            "repo_sync_interval": 0.3,
            "changeset_poll_interval": 0.5,
            "permissions": {"refresh_interval": 0.3, "poll_interval": 0.1},
            "external_services": [
                {"name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["acme"],
                 "name_prefix": PREFIX, "token_env": "GH_TOKEN"}
            ],
        },
        {"GH_TOKEN": SECRET},
    )  # fmt: skip


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {DEADLINE}s")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(app: App) -> AsyncIterator[httpx.AsyncClient]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, stop, api=False))
    try:
        async with (
            running_api(app, port=0) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            yield client
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=DEADLINE)


async def test_readers_follow_the_host_and_a_public_repo_drops_them(
    store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    host = emu.state.host(GH)
    host.token = SECRET
    host.add_repo("acme", "open-source")
    await admin.add_repo(GH, "acme", "payments", private=True)
    for login, level in (("alice", "admin"), ("bob", "write"), ("carol", "read")):
        await admin.set_collaborator(GH, "acme/payments", login, level)
    retry = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=2.0)
    config = config_for(store_url, emu)
    async with open_app(config, {"GH_TOKEN": SECRET}, retry=retry) as app, serving(app) as api:

        async def readers() -> dict[str, str] | None:
            async with app.engine.connect() as conn:
                repo = await repo_store.get_repo_by_name(conn, f"{PREFIX}/acme/payments")
            if repo is None:
                return None
            body = (await api.get(f"/api/repos/{repo.id}/permissions")).json()
            if body["sync"] is None or body["sync"]["last_synced_at"] is None:
                return None
            return {p["login"]: p["permission"] for p in body["items"]} or None

        assert await eventually(readers, "the first permissions sync") == {
            "alice": "admin", "bob": "write", "carol": "read",
        }  # fmt: skip
        await admin.set_collaborator(GH, "acme/payments", "carol", None)
        await eventually(
            lambda: _without(readers, "carol"), "carol's removal after the next permissions sync"
        )
        metrics = (await api.get("/metrics")).text
        got = samples(metrics)
        assert value(got, "repo_updater_repo_permissions") == 2
        # Counted by serve's permissions syncer, wired to the app's registry by bootstrap.
        assert value(got, "repo_updater_permission_syncs_total", outcome="synced") >= 2
        assert value(got, "repo_updater_permission_last_full_refresh_timestamp_seconds") > 0

        await admin.set_visibility(GH, "acme/payments", False)

        async def public() -> bool:
            async with app.engine.connect() as conn:
                repo = await repo_store.get_repo_by_name(conn, f"{PREFIX}/acme/payments")
            assert repo is not None
            body = (await api.get(f"/api/repos/{repo.id}/permissions")).json()
            return body["repo"]["private"] is False and body["items"] == []

        await eventually(public, "the permissions of the repo made public dropped")
        events = (await api.get("/api/events", params={"kind": "PermissionRevoked"})).json()
        assert sorted(e["payload"]["login"] for e in events["items"]) == ["alice", "bob", "carol"]
        assert SECRET not in metrics


async def _without(readers: Callable[[], Awaitable[dict[str, str] | None]], login: str) -> bool:
    now = await readers()
    return now is not None and login not in now


async def test_bad_requests_get_clear_errors_and_pages_follow_logins(
    store_url: str, emu: RunningEmulator
) -> None:
    host = emu.state.host(GH)
    host.add_repo("acme", "big", private=True)
    for i in range(5):
        host.set_collaborator("acme/big", f"User{i}", "read")
    config = config_for(store_url, emu)
    async with open_app(config, {"GH_TOKEN": SECRET}) as app:
        assert (await app.repo_sync_worker.sync_service("gh")).complete
        await app.permissions_syncer.sync_until_idle()
        async with (
            running_api(app, port=0) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as api,
        ):
            for path, status in (("abc", 400), ("0", 400), ("99999", 404)):
                answer = await api.get(f"/api/repos/{path}/permissions")
                assert answer.status_code == status and list(answer.json()) == ["error"]
            (repo,) = (await api.get("/api/repos")).json()["items"]
            url = f"/api/repos/{repo['id']}/permissions"
            # "AA" decodes to a NUL: never a cursor this server gave out.
            for bad in ({"limit": "0"}, {"limit": "1001"}, {"after": "AA"}, {"after": "a+b"}):
                answer = await api.get(url, params=bad)
                assert answer.status_code == 400 and list(answer.json()) == ["error"]
            first = (await api.get(url, params={"limit": "2"})).json()
            assert [p["login"] for p in first["items"]] == ["User0", "User1"]
            assert first["repo"] == {"id": repo["id"], "name": repo["name"], "private": True}
            rest = (await api.get(url, params={"after": first["next"]})).json()
            assert [p["login"] for p in rest["items"]] == ["User2", "User3", "User4"]
            assert rest["next"] is None


def test_cli_shows_readers_and_what_an_account_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"

    async def populate() -> None:
        async with running_emulator() as emu:
            host = emu.state.host(GH)
            host.add_repo("acme", "payments", private=True)
            host.add_repo("acme", "billing", private=True)
            host.add_repo("acme", "docs")
            host.set_collaborator("acme/payments", "Alice", "admin")
            host.set_collaborator("acme/billing", "alice", "read")
            async with open_app(config_for(db, emu), {"GH_TOKEN": SECRET}) as app:
                assert (await app.repo_sync_worker.sync_service("gh")).complete
                await app.permissions_syncer.sync_until_idle()

    asyncio.run(populate())
    store = ("--database", db)
    assert main(["repos", "permissions", f"{PREFIX}/acme/payments", *store]) == 0
    out = capsys.readouterr().out
    assert f"{PREFIX}/acme/payments is private; permissions synced" in out
    assert out.splitlines()[-1].split() == ["Alice", "admin", "admin"]
    # Every list takes --output: one object for json (as the API), one grant a line else.
    assert main(["repos", "permissions", f"{PREFIX}/acme/payments", "-o", "json", *store]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["private"] is True and [g["login"] for g in whole["permissions"]] == ["Alice"]
    assert main(["repos", "permissions", f"{PREFIX}/acme/payments", "-o", "csv", *store]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["login"], r["access"]) for r in rows] == [("Alice", "admin")]
    assert main(["accounts", "repos", "alice", "--service", "gh", "-o", "ndjson", *store]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["permission"] for line in lines] == ["read", "admin"]
    assert main(["repos", "permissions", f"{PREFIX}/acme/docs", *store]) == 0
    assert "is public: anyone can read it" in capsys.readouterr().out
    assert main(["accounts", "repos", "ALICE", "--service", "gh", "--json", *store]) == 0
    readable = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["permission"]) for r in readable] == [
        (f"{PREFIX}/acme/billing", "read"),
        (f"{PREFIX}/acme/payments", "admin"),
    ]
    assert main(["accounts", "repos", "nobody", "--service", "gh", *store]) == 0
    assert "nobody can read no private repository of gh" in capsys.readouterr().out
    assert main(["accounts", "repos", "alice", "--service", "nope", *store]) == 2
    assert main(["repos", "permissions", "nope", *store]) == 2
    err = capsys.readouterr().err
    assert "no external service named 'nope'" in err and "no repository named 'nope'" in err


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "emulator.log").open("w")
    proc = subprocess.Popen(
        [*CLI, "emulator", "serve", "--port", str(port), "--seed-github", "1x2"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                if httpx.get(f"{url}/_admin", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)
        log.close()


def test_emulator_commands_change_collaborators_and_visibility(emulator_process: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, "emulator", *args, "--url", emulator_process],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    added = cli("collaborator", "add", "acme/repo-0", "alice", "--permission", "write")
    private = cli("visibility", "acme/repo-0", "private")
    assert added.returncode == 0 and "added alice (write) to acme/repo-0" in added.stdout
    assert private.returncode == 0 and "acme/repo-0 is now private" in private.stdout
    listed = cli("collaborators", "acme/repo-0")
    assert listed.stdout.splitlines() == ["acme/repo-0 (private):", f"  {'alice':<24} write"]
    missing = cli("collaborator", "remove", "acme/repo-0", "bob")
    assert missing.returncode == 2 and "not a collaborator" in missing.stderr
    assert "Traceback" not in missing.stderr
