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
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
import yaml
from api_common import database

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core import webhooks as wh
from repo_updater.core.domain import HostKind
from repo_updater.emulator.server import RunningEmulator, running_emulator
from repo_updater.entrypoints.serve import serve
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from repo_updater.store.db import create_engine
from repo_updater.store.schema import changesets, repos, webhook_deliveries

GH = HostKind.GITHUB
SECRET = "bench-webhook-secret"
ENV = {"BENCH_HOOK_SECRET": SECRET}
CLIENTS = 64
FLIP_LIMIT = 120.0  # seconds a flip may take before the benchmark gives up


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


async def settle(app: App, emu: RunningEmulator, limit: float = 60.0) -> None:
    """Wait until the emulator has sent every delivery and the worker has processed them, so
    that stopping ``serve`` leaves no round (and no SQLite write transaction) behind."""
    await emu.state.webhooks.drain()
    pending = sa.select(sa.func.count()).where(webhook_deliveries.c.processed_at.is_(None))
    started = time.monotonic()
    while time.monotonic() - started < limit:
        async with app.engine.connect() as conn:
            if not (await conn.execute(pending)).scalar_one():
                return
        await asyncio.sleep(0.1)


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


def load_process(url: str, n: int, repo_ids: list[int], run: str) -> tuple[float, int]:
    """The load generator, run in its own process (``ProcessPoolExecutor``)."""
    return asyncio.run(post_all(url, deliveries(n, repo_ids, run)))


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


FLOOR_SERVER = """
import asyncio, sys
from aiohttp import web

async def handler(request):
    await request.read()
    return web.json_response({"outcome": "stored"}, status=202)

async def main():
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post("/webhooks/{service}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"API on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def process(argv: list[str], env: dict[str, str], log: Path) -> AsyncIterator[str]:
    """Start ``argv``, wait for its "API on URL" line; stopped with SIGTERM on exit."""
    with log.open("wb") as errors:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=errors
        )
        assert proc.stdout is not None
        try:
            url = ""
            while not url:
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
                if not line:
                    raise RuntimeError(f"{argv[:3]} exited: see {log}")
                if "API on " in line:
                    url = line.split("API on ", 1)[1].split(";", 1)[0].strip()
            drain = asyncio.create_task(proc.stdout.read())
            yield url
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            with contextlib.suppress(Exception):
                await drain


def serve_argv(db: str, emu: RunningEmulator, tmp: Path, profile: Path | None) -> list[str]:
    service = {"name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["bench"],
               "name_prefix": "gh.bench", "webhook_secret_env": "BENCH_HOOK_SECRET"}  # fmt: skip
    cfg = tmp / f"serve-{uuid.uuid4().hex[:6]}.yaml"
    data = {"database": db, "repo_sync_interval": 60.0, "api": {"port": 0},
            "external_services": [service]}  # fmt: skip
    cfg.write_text(yaml.safe_dump(data))
    prof = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    cli = ["-m", "repo_updater.entrypoints.cli"]
    return [sys.executable, *prof, *cli, "serve", "--config", str(cfg)]


async def stored_count(db: str) -> int:
    engine = create_engine(db, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(webhook_deliveries)
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


@dataclass
class Throughput:
    ours: list[float] = field(default_factory=list)  # deliveries/s
    floor: list[float] = field(default_factory=list)
    lost: int = 0  # sent - stored, over every run
    refused: int = 0  # non-2xx answers
    deadlocks: int = 0  # "deadlock detected" in the serve processes' logs


async def throughput(
    db: str,
    emu: RunningEmulator,
    args: argparse.Namespace,
    tmp: Path,
    repo_ids: list[int],
    profile: Path | None,
) -> Throughput:
    """``serve`` in its own process on ``db``, the floor in another, the load in a third;
    the emulator (which the changeset syncs the deliveries cause call) stays here."""
    out = Throughput()
    env = {**os.environ, **ENV}
    loop = asyncio.get_running_loop()
    n = args.deliveries
    with ProcessPoolExecutor(max_workers=1) as pool:
        floor_argv = [sys.executable, "-c", FLOOR_SERVER]
        async with process(floor_argv, env, tmp / "floor.log") as floor_url:
            for run in range(args.runs):
                tag = uuid.uuid4().hex[:8]
                argv = serve_argv(db, emu, tmp, profile if run == 0 else None)
                serve_log = tmp / f"serve-{run}.log"
                async with process(argv, env, serve_log) as url:
                    before = await stored_count(db)
                    seconds, ok = await loop.run_in_executor(
                        pool, load_process, f"{url}/webhooks/gh", n, repo_ids, tag
                    )
                    after = await stored_count(db)
                out.deadlocks += serve_log.read_text(errors="replace").count("deadlock detected")
                out.ours.append(n / seconds)
                out.lost += n - (after - before)
                out.refused += n - ok
                seconds, _ = await loop.run_in_executor(
                    pool, load_process, f"{floor_url}/webhooks/gh", n, repo_ids, tag
                )
                out.floor.append(n / seconds)
                print(f"    run {run + 1}: {out.ours[-1]:.0f}/s (floor {out.floor[-1]:.0f}/s), "
                      f"stored {after - before}/{n}", flush=True)  # fmt: skip
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
        parts = set(args.parts.split(","))
        flipped, speed, dropped = Flips(), Throughput(), Flips()
        async with database(backend, tmp) as db:
            async with running(db, emu, 60.0) as (app, _):  # also the data of part 2
                if "1" in parts:
                    print(f"{backend}: flips with webhooks, default intervals", flush=True)
                    flipped = await flips(app, emu, args.flips, args.prs, args.seed)
                    print(f"    p50 {pct(flipped.latencies, 0.5) * 1000:.0f} ms, max "
                          f"{max(flipped.latencies) * 1000:.0f} ms", flush=True)  # fmt: skip
                await settle(app, emu)
            await emu.state.webhooks.drain()
            emu.state.webhooks.clear_hooks(GH)
            if "2" in parts:
                print(f"{backend}: deliveries accepted per second (serve in its own process)",
                      flush=True)  # fmt: skip
                profile = Path(f"{args.profile}.{backend}") if args.profile else None
                speed = await throughput(db, emu, args, tmp, sorted(host.repos), profile)
        if "3" in parts:
            print(f"{backend}: flips with 10% of deliveries dropped, 2 s repo sync", flush=True)
            emu.state.webhooks.set_faults(GH, dataclasses_replace_drop(emu, 0.1))
            async with database(backend, tmp) as db, running(db, emu, 2.0) as (app, _):
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
        f"{args.prs} --deliveries {args.deliveries} --runs {args.runs} --parts {args.parts}`; "
        f"{os.cpu_count()} CPUs. Parts 1 and 3: the emulator, the app (`serve`: API and every "
        "worker) and the bench in one process and event loop. Part 2: the deployment "
        "topology, `repo-updater serve --config FILE` in its own process.",
    ]
    if any(r.flips.latencies for r in results):
        lines += [
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
            lines.append(f"| {r.backend} | {len(lat)} | {ms(pct(lat, 0.5))} | "
                         f"{ms(pct(lat, 0.99))} | {ms(max(lat))} | {goal} |")  # fmt: skip
    if any(r.throughput.ours for r in results):
        lines += [
            "",
            f"## 2. Deliveries accepted per second ({args.deliveries} signed `pull_request` "
            f"deliveries, {CLIENTS} concurrent clients, {args.runs} runs)",
            "",
            "Processes: `repo-updater serve` (API and every worker, a config file naming the "
            "service and its `webhook_secret_env`; a fresh process per run) on the database of "
            "part 1 (10 repos x 100 tracked changesets); the load generator (aiohttp client) "
            "in a process of its own; the emulator (which the changeset syncs the deliveries "
            "cause call) in the bench process. Floor: a bare aiohttp handler (read the body, "
            "answer 202) in a process of its own, same client, same run. Stored = sent is "
            "checked by counting `webhook_deliveries` rows after each run. Aim: 1,000/s.",
            "",
            "| backend | ours min / median | floor min / median | ours / floor (median) | "
            "lost (sent - stored) | non-2xx | `deadlock detected` in serve's log |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results:
            t = r.throughput
            om, fm = statistics.median(t.ours), statistics.median(t.floor)
            lines.append(f"| {r.backend} | {min(t.ours):.0f} / {om:.0f} | {min(t.floor):.0f} / "
                         f"{fm:.0f} | {om / fm:.2f} | {t.lost} | {t.refused} | "
                         f"{t.deadlocks} |")  # fmt: skip
    if any(r.dropped.latencies for r in results):
        lines += [
            "",
            "## 3. The flips of 1 with 10 % of deliveries dropped (repo sync every 2 s)",
            "",
            "A dropped delivery leaves the flip to polling: the next repo sync sees it. The "
            "shorter interval is only here (with the default 60 s, such a flip converges "
            "within a minute).",
            "",
            "| backend | flips converged | deliveries dropped | p50 | p99 | max |",
            "|---|---|---|---|---|---|",
        ]
        for r in results:
            lat = r.dropped.latencies
            lines.append(f"| {r.backend} | {len(lat)} / {args.flips} | {r.dropped.dropped} | "
                         f"{ms(pct(lat, 0.5))} | {ms(pct(lat, 0.99))} | "
                         f"{ms(max(lat))} |")  # fmt: skip
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
    parser.add_argument("--profile", default="", help="cProfile the first serve of part 2 "
                        "into this file")  # fmt: skip
    parser.add_argument("--parts", default="1,2,3", help="which parts to run")
    args = parser.parse_args()
    text = asyncio.run(main_async(args))
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
