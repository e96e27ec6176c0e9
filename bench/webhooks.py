"""Webhooks: flip -> changesets in the store, deliveries/s accepted, and convergence with
dropped deliveries (issue 8).

    .venv/bin/python bench/webhooks.py [--backends sqlite,postgresql] [--flips 100]
        [--repos 10] [--prs 100] [--deliveries 3000] [--runs 3] [--out bench/results/webhooks.md]

Per backend, on a throw-away database, with the emulator in this process on 127.0.0.1:

1. **Flip latency** (webhooks on, default poll intervals: ``repo_sync_interval`` 60 s,
   ``changeset_poll_interval`` 5 s): ``--repos`` GitHub repos with ``--prs`` open pull
   requests each, all tracked and synced; ``serve`` runs (API, every worker); the emulator
   has the service's webhook registered. ``--flips`` times: a random repo is archived or
   unarchived on the host (``set_archived``), and the time until every one of its changesets
   is READONLY (or OPEN) in the store is measured (the store is polled every 10 ms).
2. **Deliveries accepted per second**: ``--deliveries`` signed ``pull_request`` deliveries
   (distinct ids) POSTed by 64 concurrent clients to ``/webhooks/{service}`` while ``serve``
   runs (the worker processes them meanwhile); counted: 2xx answers and rows stored (must be
   equal to the count sent). Floor: a bare aiohttp handler that reads the body and answers 202,
   same client, same run. ``--runs`` rounds; min and median.
3. **Dropped deliveries**: the flips of 1 again with the emulator dropping 10 % of deliveries
   at random and a **2 s** ``repo_sync_interval`` (polling is the safety net: with the default
   60 s a dropped flip would take up to a minute); every flip must converge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import sqlalchemy as sa
from aiohttp import web

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core import webhooks as wh
from repo_updater.core.domain import HostKind
from repo_updater.emulator.server import RunningEmulator, running_emulator
from repo_updater.entrypoints.serve import serve
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import changesets, repos, webhook_deliveries

GH = HostKind.GITHUB
SECRET = "bench-webhook-secret"
ENV = {"BENCH_HOOK_SECRET": SECRET}
PG_ADMIN = os.environ.get("REPO_UPDATER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CLIENTS = 64
FLIP_LIMIT = 120.0  # seconds a flip may take before the benchmark gives up


@contextlib.asynccontextmanager
async def throwaway_db(backend: str, tmp: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.db"
        return
    name = f"ru_bench_hooks_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql://", "postgres://", 1)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def config(db: str, emu: RunningEmulator, interval: float) -> Any:
    service = {"name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["bench"],
               "name_prefix": "gh.bench", "webhook_secret_env": "BENCH_HOOK_SECRET"}  # fmt: skip
    data = {"database": db, "repo_sync_interval": interval, "api": {"port": 0},
            "external_services": [service]}  # fmt: skip
    return parse_config(data, ENV)


@contextlib.asynccontextmanager
async def running(db: str, emu: RunningEmulator, interval: float) -> AsyncIterator[tuple[App, str]]:
    retry = RetryPolicy(attempts=3, backoff=0.05, max_rate_limit_wait=2.0)
    async with open_app(config(db, emu, interval), ENV, retry=retry) as app:
        assert (await app.repo_sync_worker.sync_service("gh")).complete
        async with app.engine.begin() as conn:
            bc = await cs_store.create_batch_change(conn, "bench", "", app.clock())
            for repo in await repo_store.list_repos(conn):
                pulls = list(emu.state.host(GH).repo(repo.external_name).pulls)
                await cs_store.track_changesets(conn, bc, [(repo.id, n) for n in pulls],
                                                app.clock())  # fmt: skip
        while (await app.changeset_syncer.run_once()).claimed:
            pass
        stop = asyncio.Event()
        ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(app, stop, on_ready=ready.set_result))
        url = await ready
        assert url is not None
        emu.state.webhooks.clear_hooks(GH)
        emu.state.webhooks.add_hook(GH, f"{url}/webhooks/gh", SECRET)
        try:
            yield app, url
        finally:
            stop.set()
            await task


async def states_of(app: App, repo_external_id: str) -> dict[str, int]:
    c, r = changesets, repos
    stmt = (
        sa.select(c.c.external_state, sa.func.count())
        .select_from(c.join(r, r.c.id == c.c.repo_id))
        .where(r.c.external_id == repo_external_id)
        .group_by(c.c.external_state)
    )
    async with app.engine.connect() as conn:
        return {str(s): int(n) for s, n in await conn.execute(stmt)}


@dataclass
class Flips:
    latencies: list[float] = field(default_factory=list)
    dropped: int = 0
    by_poll: int = 0  # converged later than a webhook would (dropped delivery)


async def flips(app: App, emu: RunningEmulator, count: int, prs: int, seed: int) -> Flips:
    host = emu.state.host(GH)
    rng = random.Random(seed)
    names = sorted(r.full_name for r in host.repos.values())
    out = Flips()
    for _ in range(count):
        name = rng.choice(names)
        repo = host.repo(name)
        archive = not repo.archived
        want = "READONLY" if archive else "OPEN"
        before = len([d for d in emu.state.webhooks.deliveries(GH) if d.dropped])
        started = time.monotonic()
        host.set_archived(name, archive)
        while (await states_of(app, str(repo.id))).get(want, 0) != prs:
            if time.monotonic() - started > FLIP_LIMIT:
                raise TimeoutError(f"{name}: not {want} within {FLIP_LIMIT}s")
            await asyncio.sleep(0.01)
        out.latencies.append(time.monotonic() - started)
        after = len([d for d in emu.state.webhooks.deliveries(GH) if d.dropped])
        out.dropped += after - before
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def post_all(url: str, bodies: list[tuple[dict[str, str], bytes]]) -> tuple[float, int]:
    """POST every delivery with ``CLIENTS`` concurrent senders; (seconds, 2xx answers)."""
    queue = list(reversed(bodies))
    ok = 0
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            nonlocal ok
            while queue:
                headers, body = queue.pop()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok += 200 <= response.status < 300

        started = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(CLIENTS)))
        return time.monotonic() - started, ok


def deliveries(n: int, repo_ids: list[int], run: str) -> list[tuple[dict[str, str], bytes]]:
    out = []
    for i in range(n):
        rid = repo_ids[i % len(repo_ids)]
        payload = {"action": "synchronize", "pull_request": {"number": 1 + i % 100},
                   "repository": {"id": rid, "full_name": f"bench/repo-{rid}"}}  # fmt: skip
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "pull_request",
                   "X-GitHub-Delivery": f"{run}-{i}", **wh.sign(GH, SECRET, body)}  # fmt: skip
        out.append((headers, body))
    return out


@contextlib.asynccontextmanager
async def bare_server() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"outcome": "stored"}, status=202)

    app = web.Application(client_max_size=wh.MAX_DELIVERY_BYTES)
    app.router.add_post("/webhooks/{service}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Throughput:
    ours: list[float] = field(default_factory=list)  # deliveries/s
    floor: list[float] = field(default_factory=list)
    lost: int = 0  # sent - stored, over every run
    refused: int = 0  # non-2xx answers


async def throughput(app: App, url: str, n: int, runs: int, repo_ids: list[int]) -> Throughput:
    out = Throughput()
    async with bare_server() as floor_url:
        for run in range(runs):
            tag = uuid.uuid4().hex[:8]
            batch = deliveries(n, repo_ids, tag)
            async with app.engine.connect() as conn:
                before = (await conn.execute(sa.select(sa.func.count()).select_from(
                    webhook_deliveries))).scalar_one()  # fmt: skip
            seconds, ok = await post_all(f"{url}/webhooks/gh", batch)
            async with app.engine.connect() as conn:
                after = (await conn.execute(sa.select(sa.func.count()).select_from(
                    webhook_deliveries))).scalar_one()  # fmt: skip
            out.ours.append(n / seconds)
            out.lost += n - (after - before)
            out.refused += n - ok
            seconds, _ = await post_all(f"{floor_url}/webhooks/gh", batch)
            out.floor.append(n / seconds)
            print(f"    run {run + 1}: {out.ours[-1]:.0f}/s (floor {out.floor[-1]:.0f}/s)",
                  flush=True)  # fmt: skip
    return out


@dataclass
class BackendResult:
    backend: str
    flips: Flips
    throughput: Throughput
    dropped: Flips


async def one_backend(backend: str, args: argparse.Namespace, tmp: Path) -> BackendResult:
    async with running_emulator() as emu:
        host = emu.state.host(GH)
        for i in range(args.repos):
            repo = host.add_repo("bench", f"repo-{i}")
            for k in range(args.prs):
                host.add_pull(repo.full_name, title=f"change {k}")
        print(f"{backend}: flips with webhooks, default intervals", flush=True)
        async with throwaway_db(backend, tmp) as db, running(db, emu, 60.0) as (app, url):
            flipped = await flips(app, emu, args.flips, args.prs, args.seed)
            print(f"    p50 {pct(flipped.latencies, 0.5) * 1000:.0f} ms, max "
                  f"{max(flipped.latencies) * 1000:.0f} ms", flush=True)  # fmt: skip
            print(f"{backend}: deliveries accepted per second", flush=True)
            ids = sorted(host.repos)
            speed = await throughput(app, url, args.deliveries, args.runs, ids)
        print(f"{backend}: flips with 10% of deliveries dropped, 2 s repo sync", flush=True)
        await emu.state.webhooks.drain()
        emu.state.webhooks.set_faults(GH, dataclasses_replace_drop(emu, 0.1))
        async with throwaway_db(backend, tmp) as db, running(db, emu, 2.0) as (app, _):
            dropped = await flips(app, emu, args.flips, args.prs, args.seed + 1)
        return BackendResult(backend, flipped, speed, dropped)


def dataclasses_replace_drop(emu: RunningEmulator, rate: float) -> Any:
    import dataclasses

    return dataclasses.replace(emu.state.webhooks.faults(GH), drop_rate=rate)


def ms(v: float) -> str:
    return f"{v * 1000:.0f} ms"


def report(results: list[BackendResult], args: argparse.Namespace, started: datetime) -> str:
    lines = [
        "# Webhooks (issue 8)",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC: `.venv/bin/python bench/webhooks.py "
        f"--backends {args.backends} --flips {args.flips} --repos {args.repos} --prs "
        f"{args.prs} --deliveries {args.deliveries} --runs {args.runs}`; "
        f"{os.cpu_count()} CPUs. The emulator, the app (`serve`: API and every worker) and the "
        "load all run in one process and event loop.",
        "",
        f"## 1. Flip on the host -> all {args.prs} changesets READONLY/OPEN in the store",
        "",
        "Webhooks on, default intervals (repo sync 60 s, changeset poll 5 s). Goal: p99 < 1 s.",
        "",
        "| backend | flips | p50 | p99 | max | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = r.flips.latencies
        goal = "PASS" if pct(lat, 0.99) < 1.0 else "FAIL"
        lines.append(f"| {r.backend} | {len(lat)} | {ms(pct(lat, 0.5))} | {ms(pct(lat, 0.99))} "
                     f"| {ms(max(lat))} | {goal} |")  # fmt: skip
    lines += [
        "",
        f"## 2. Deliveries accepted per second ({args.deliveries} signed `pull_request` "
        f"deliveries, {CLIENTS} concurrent clients, {args.runs} runs)",
        "",
        "Floor: a bare aiohttp handler (read the body, answer 202) with the same client in the "
        "same run. Stored = sent is checked by counting `webhook_deliveries` rows. Aim: 1,000/s.",
        "",
        "| backend | ours min / median | floor min / median | ours / floor (median) | "
        "lost (sent - stored) | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r.throughput
        om, fm = statistics.median(t.ours), statistics.median(t.floor)
        lines.append(f"| {r.backend} | {min(t.ours):.0f} / {om:.0f} | {min(t.floor):.0f} / "
                     f"{fm:.0f} | {om / fm:.2f} | {t.lost} | {t.refused} |")  # fmt: skip
    lines += [
        "",
        "## 3. The flips of 1 with 10 % of deliveries dropped (repo sync every 2 s)",
        "",
        "A dropped delivery leaves the flip to polling: the next repo sync sees it. The shorter "
        "interval is only here (with the default 60 s, such a flip converges within a minute).",
        "",
        "| backend | flips converged | deliveries dropped | p50 | p99 | max |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = r.dropped.latencies
        lines.append(f"| {r.backend} | {len(lat)} / {args.flips} | {r.dropped.dropped} | "
                     f"{ms(pct(lat, 0.5))} | {ms(pct(lat, 0.99))} | {ms(max(lat))} |")  # fmt: skip
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> str:
    started = datetime.now(UTC)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            results.append(await one_backend(backend, args, Path(tmp)))
    return report(results, args, started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--flips", type=int, default=100)
    parser.add_argument("--repos", type=int, default=10)
    parser.add_argument("--prs", type=int, default=100)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", default="bench/results/webhooks.md")
    args = parser.parse_args()
    text = asyncio.run(main_async(args))
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
