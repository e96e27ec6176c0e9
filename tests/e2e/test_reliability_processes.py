"""Issue 7, reliability with real processes, signals and a store outage (7.8, 7.9, 7.10):
``repo-updater sync``, ``serve`` and ``demo`` as subprocesses against the emulator on loopback,
stopped by SIGTERM mid-work; the store cut off under a running ``serve``; a slow client."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.bootstrap import open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostKind
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.api import running_api
from repo_updater.entrypoints.serve import serve
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from repo_updater.store.db import create_engine
from repo_updater.store.schema import (
    changeset_sync_requests,
    changesets,
    external_services,
    metadata,
)
from tests.conftest import BACKENDS
from tests.support.proxy import TcpProxy

GH = HostKind.GITHUB
CLI = [sys.executable, "-m", "repo_updater.entrypoints.cli"]
DEADLINE = 60.0  # generous: the machine is shared


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("REPO_UPDATER_")}
    out["PYTHONUNBUFFERED"] = "1"
    return out


def write_config(tmp_path: Path, store_url: str, emu: RunningEmulator, **extra: Any) -> Path:
    service = {"name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["acme"],
               "name_prefix": "gh.test"}  # fmt: skip
    data = {
        "database": store_url,
        "repo_sync_interval": 3600,
        "changeset_poll_interval": 0.2,
        "api": {"host": "127.0.0.1", "port": 0},
        "external_services": [service],
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def start(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI, *args, cwd=tmp_path, env=env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(proc.communicate(), timeout=DEADLINE)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def eventually(check: Callable[[], Any], what: str) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + DEADLINE
    while not await check():
        assert loop.time() < until, f"{what} did not happen within {DEADLINE:.0f}s"
        await asyncio.sleep(0.05)


async def scalar(engine: AsyncEngine, query: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(query)).scalar()


def service_claim() -> Any:
    return sa.select(external_services.c.claimed_by).where(external_services.c.name == "gh")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    yield engine
    await engine.dispose()


# --- 7.9: sync and serve on SIGTERM; sync's exit status when skipped ---------------------------


async def test_sync_exits_3_when_skipped_and_releases_its_claim_on_sigterm(
    tmp_path: Path, store_url: str, store: AsyncEngine, emu: RunningEmulator
) -> None:
    for i in range(400):
        emu.state.host(GH).add_repo("acme", f"repo-{i}")
    cfg = str(write_config(tmp_path, store_url, emu))
    code, out, err = await finish(await start(tmp_path, "sync", "--config", cfg))
    assert code == 0, out + err

    # Another worker holds the service: cron must not read "success".
    async with store.begin() as conn:
        until = datetime(2999, 1, 1, tzinfo=UTC)
        await conn.execute(
            external_services.update().values(claimed_by="other-worker", claimed_until=until)
        )
    code, out, err = await finish(await start(tmp_path, "sync", "--config", cfg))
    assert code == 3 and "skipped, another worker is syncing it" in out, out + err
    async with store.begin() as conn:
        await conn.execute(external_services.update().values(claimed_by=None, claimed_until=None))

    # SIGTERM mid-sync (each listing page takes 0.3 s): the claim is released on the way out.
    emu.state.host(GH).faults.latency_ms = 300
    proc = await start(tmp_path, "sync", "--config", cfg)

    async def claimed() -> bool:
        return await scalar(store, service_claim()) is not None

    await eventually(claimed, "the sync's claim")
    proc.send_signal(signal.SIGTERM)
    code, out, err = await finish(proc)
    assert code == 128 + signal.SIGTERM, out + err
    assert "interrupted by signal 15" in out and "Traceback" not in err, out + err
    assert await scalar(store, service_claim()) is None, "released, not left for the lease"


async def test_serve_releases_changeset_claims_on_sigterm(
    tmp_path: Path, store_url: str, store: AsyncEngine, emu: RunningEmulator
) -> None:
    host = emu.state.host(GH)
    for i in range(5):
        host.add_repo("acme", f"repo-{i}")
        host.add_pull(f"acme/repo-{i}", title="change")
    path = write_config(tmp_path, store_url, emu)
    config = parse_config(yaml.safe_load(path.read_text()), {})
    async with open_app(config) as app:
        assert (await app.repo_sync_worker.sync_service("gh")).complete
        async with app.engine.begin() as conn:
            bc = await cs_store.create_batch_change(conn, "bc", "", app.clock())
            ids = await repo_store.repo_ids_by_name(
                conn, [f"gh.test/acme/repo-{i}" for i in range(5)]
            )
            await cs_store.track_changesets(conn, bc, [(r, 1) for r in ids.values()], app.clock())

    host.faults.latency_ms = 5000  # the changeset round is in flight when SIGTERM comes
    proc = await start(tmp_path, "serve", "--config", str(path))
    claimed = sa.select(sa.func.count()).where(changesets.c.claimed_by.is_not(None))

    async def in_flight() -> bool:
        return bool(await scalar(store, claimed.select_from(changesets)))

    await eventually(in_flight, "a changeset round")
    proc.send_signal(signal.SIGTERM)
    code, out, err = await finish(proc)
    assert code == 0 and "Traceback" not in err, out + err
    assert await scalar(store, claimed.select_from(changesets)) == 0, "changeset claims released"
    q = changeset_sync_requests
    parked = sa.select(sa.func.count()).where(q.c.claimed_until.is_not(None))
    assert await scalar(store, parked) == 0, "a shutdown parks no request"
    assert await scalar(store, sa.select(sa.func.count()).select_from(q)) == 5, "still pending"
    assert await scalar(store, service_claim()) is None


async def test_demo_walkthrough_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/demo.db"
    proc = await start(
        tmp_path, "demo", "--emulator-port", "0", "--api-port", "0", "--database", db,
        "--interval", "600",  # the walkthrough would wait minutes for the next repo sync
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    while b"archiving" not in seen:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=DEADLINE)
        assert line, seen.decode()
        seen += line
    proc.send_signal(signal.SIGTERM)
    code, out, err = await finish(proc)
    assert code == 0 and "stopped" in out and "Traceback" not in err, out + err


# --- 7.8: the store becomes unreachable under serve, then comes back ---------------------------


@pytest.fixture
async def outage(
    pg_database: str,
) -> AsyncIterator[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """(store URL, cut, restore): the session's PostgreSQL database, emptied, behind a TCP
    proxy on 127.0.0.1 that is cut (every connection dropped, the port closed: connections
    are refused) and restored. (An SQLite file cannot be taken away from a running process:
    its open connections keep working; a file that cannot be opened at start is
    ``test_cli``'s one-line error.)"""
    engine = create_engine(pg_database)
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()
    url = make_url(pg_database)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy.cut, proxy.restore
    await proxy.cut()


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs PostgreSQL")
async def test_store_outage_fails_readiness_answers_503_and_logs_once(
    outage: tuple[str, Callable[[], Any], Callable[[], Any]],
    emu: RunningEmulator,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, cut, restore = outage
    emu.state.host(GH).add_repo("acme", "repo-0")
    config = parse_config(yaml.safe_load(write_config(tmp_path, url, emu).read_text()), {})
    config = config.model_copy(update={"repo_sync_interval": 0.2})
    stop = asyncio.Event()
    caplog.set_level(logging.DEBUG, logger="repo_updater")
    async with open_app(config) as app:
        ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(app, stop, on_ready=ready.set_result))
        api = await asyncio.wait_for(ready, DEADLINE)
        try:
            async with httpx.AsyncClient(base_url=str(api), timeout=DEADLINE) as client:
                assert (await client.get("/healthz")).status_code == 200
                await cut()

                async def degraded() -> bool:
                    return (await client.get("/healthz")).status_code == 503

                await eventually(degraded, "/healthz failing readiness")
                await asyncio.sleep(2.0)  # the loops fail several rounds meanwhile
                health = (await client.get("/healthz")).json()
                assert health["error"].startswith("store unavailable: "), health
                repos = await client.get("/api/repos")
                assert repos.status_code == 503 and repos.headers["Retry-After"]
                assert repos.json()["error"].startswith("store unavailable: ")

                await restore()

                async def recovered() -> bool:
                    return (await client.get("/healthz")).status_code == 200

                await eventually(recovered, "/healthz ready again")
                assert (await client.get("/api/repos")).status_code == 200
        finally:
            stop.set()
            await asyncio.wait_for(task, DEADLINE)
    ours = [r for r in caplog.records if r.name.startswith("repo_updater")]
    loud = [r for r in ours if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(":")[0] for r in loud] == ["store unavailable"], [
        r.getMessage() for r in loud
    ]
    assert not [r for r in ours if r.exc_info and r.levelno >= logging.INFO], "no tracebacks"
    assert sum("store available again" in r.getMessage() for r in ours) == 1
    failed_rounds = [r for r in ours if "failed again" in r.getMessage()]
    assert len(failed_rounds) < 40, "backed off, not a round per tick"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.skipif("postgresql" not in BACKENDS, reason="needs PostgreSQL")
async def test_serve_with_the_store_on_a_closed_port_is_one_line(
    tmp_path: Path, emu: RunningEmulator
) -> None:
    db = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    cfg = str(write_config(tmp_path, db, emu))
    code, _, err = await finish(await start(tmp_path, "serve", "--config", cfg))
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err


# --- 7.10: a client that never finishes its request head is disconnected -----------------------


async def test_api_drops_a_client_that_never_sends_a_complete_request_head(
    emu: RunningEmulator, tmp_path: Path
) -> None:
    config = parse_config(
        {"database": f"sqlite:///{tmp_path}/s.db", "api": {"header_timeout": 0.5}}, {}
    )
    async with open_app(config) as app, running_api(app) as url:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), timeout=DEADLINE) == b"", "closed by us"
        writer.close()
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{url}/healthz")).status_code == 200
