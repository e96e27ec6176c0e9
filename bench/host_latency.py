"""Listing from a slow code host (issue 12, item 6 and the "300 ms per page" row), and the HTTP
client / JSON parser measurements of item 7.

    .venv/bin/python bench/host_latency.py                      # 10k repos (100 pages), ~2 min
    .venv/bin/python bench/host_latency.py --repos 100000 --reps 2 --skip-sequential-sync

The GitHub emulator runs in its own process (one org of N repos, 100 per page, every request
delayed by its ``latency`` fault, 300 ms by default). In this process, each measured ``--reps``
times (the one-page-at-a-time ones ``--seq-reps`` times), reported as min and median:

- **listing, sequential**: ``GitHubSource.list_repos`` with ``list_concurrency=1`` (as before
  issue 12: one page at a time), cold (no ETag cache);
- **listing, concurrent**: the same with ``list_concurrency=C`` (default 8);
- **floor, measured**: the same pages fetched with a bare ``aiohttp`` client, page 1 then the
  rest at most C at once, bodies not even parsed; **floor, computed**: pages x latency / C;
- **full sync** (store included, SQLite; ``--backends sqlite,postgresql`` for both): a first
  sync into a fresh database and an unchanged re-sync (the ETag cache warm: every page a 304,
  still 300 ms each), concurrent, and the first sync sequential unless
  ``--skip-sequential-sync``;
- **item 7**, without latency: the whole listing fetched by a bare ``httpx.AsyncClient`` with
  its own transport (httpcore), with ``AiohttpTransport`` (what ``HostClient`` now uses), and by
  a bare ``aiohttp.ClientSession`` (one at a time and C at once); ``GitHubSource.list_repos``
  as it is; and every page body parsed by ``json.loads`` and by ``orjson.loads``.

Results go to ``bench/results/host_latency.md`` (``--out``). Only 127.0.0.1 is used; the
emulator process and the databases are cleaned up, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_FILE = HERE / "results" / "host_latency.md"
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
ORG = "org0"
PER_PAGE = 100
GOAL_SECONDS_100K = 45.0


# --- the emulator, in its own process ------------------------------------------------------------


async def emulator_main(repos: int) -> None:
    from repo_updater.core.domain import HostKind
    from repo_updater.emulator.server import running_emulator
    from repo_updater.emulator.state import EmulatorState

    state = EmulatorState()
    state.seed(HostKind.GITHUB, orgs=1, repos_per_org=repos, org_prefix="org")
    async with running_emulator(state, host="127.0.0.1", port=0) as emu:
        print(json.dumps({"port": emu.port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


@contextlib.contextmanager
def emulator(repos: int) -> Iterator[str]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    proc = subprocess.Popen(
        [sys.executable, __file__, "_emulator", str(repos)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"emulator exited with {proc.wait()} before listening")
        yield f"http://127.0.0.1:{json.loads(line)['port']}"
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


async def set_latency(root: str, ms: int) -> None:
    from repo_updater.emulator.admin_client import EmulatorAdmin

    async with EmulatorAdmin(root) as admin:
        await admin.set_faults("github", latency_ms=ms)
        await admin.reset_stats("github")


async def max_in_flight(root: str) -> int:
    from repo_updater.emulator.admin_client import EmulatorAdmin

    async with EmulatorAdmin(root) as admin:
        stats = await admin.stats("github")
        await admin.reset_stats("github")
    return int(stats["max_in_flight"])


# --- measurements --------------------------------------------------------------------------------


def page_url(root: str, page: int) -> str:
    return (
        f"{root}/github/orgs/{ORG}/repos?sort=created&direction=asc&per_page={PER_PAGE}&page={page}"
    )


async def timed(fn: Callable[[], Awaitable[Any]], reps: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(reps):
        start = time.perf_counter()
        out = await fn()
        times.append(time.perf_counter() - start)
    return times, out


async def list_with_source(root: str, concurrency: int) -> int:
    from repo_updater.core.selection import Selection
    from repo_updater.sources.github import GitHubSource

    source = GitHubSource(
        base_url=f"{root}/github",
        token=None,
        selection=Selection(owners=(ORG,)),
        list_concurrency=concurrency,
    )
    try:
        return sum([len(page) async for page in source.list_repos()])
    finally:
        await source.aclose()


async def gather_bounded(fetch: Callable[[int], Awaitable[bytes]], pages: int, c: int) -> int:
    """Page 1, then pages 2..N at most ``c`` at once: what any client must at least wait."""
    limit = asyncio.Semaphore(c)

    async def one(n: int) -> int:
        async with limit:
            return len(await fetch(n))

    first = await one(1)
    rest = await asyncio.gather(*(one(n) for n in range(2, pages + 1)))
    return first + sum(rest)


async def httpx_fetch_all(root: str, pages: int, c: int, *, over_aiohttp: bool = False) -> int:
    """A bare ``httpx.AsyncClient``: its own transport (httpcore), or ``over_aiohttp``
    (``sources.transport.AiohttpTransport``, what ``HostClient`` uses)."""
    import httpx

    from repo_updater.sources.transport import AiohttpTransport

    transport = AiohttpTransport() if over_aiohttp else httpx.AsyncHTTPTransport()
    async with httpx.AsyncClient(trust_env=False, timeout=120, transport=transport) as client:

        async def fetch(n: int) -> bytes:
            response = await client.get(page_url(root, n))
            response.raise_for_status()
            return response.content

        return await gather_bounded(fetch, pages, c)


async def aiohttp_fetch_all(root: str, pages: int, c: int) -> int:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def fetch(n: int) -> bytes:
            async with session.get(page_url(root, n)) as response:
                response.raise_for_status()
                return await response.read()

        return await gather_bounded(fetch, pages, c)


async def page_bodies(root: str, pages: int) -> list[bytes]:
    import httpx

    async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
        return [(await client.get(page_url(root, n))).content for n in range(1, pages + 1)]


def parse_all(loads: Callable[[bytes], Any], bodies: Sequence[bytes], reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for body in bodies:
            loads(body)
        times.append(time.perf_counter() - start)
    return times


@contextlib.asynccontextmanager
async def database(backend: str, pg_admin: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    import asyncpg

    name = f"ru_bench_{uuid.uuid4().hex[:10]}"
    dsn = pg_admin.replace("postgresql+asyncpg://", "postgresql://")

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def full_sync(root: str, url: str, concurrency: int, resync: bool) -> dict[str, float]:
    from repo_updater.bootstrap import open_app
    from repo_updater.config import parse_config

    svc = {
        "name": "bench",
        "kind": "github",
        "url": f"{root}/github",
        "orgs": [ORG],
        "list_concurrency": concurrency,
    }
    config = parse_config({"database": url, "external_services": [svc]}, {})
    out: dict[str, float] = {}
    async with open_app(config, env={}) as app:
        start = time.perf_counter()
        first = await app.repo_sync_worker.sync_service("bench")
        out["first"] = time.perf_counter() - start
        if not first.complete:
            raise RuntimeError(f"first sync incomplete: {first.summary()}")
        if resync:
            start = time.perf_counter()
            again = await app.repo_sync_worker.sync_service("bench")
            out["resync"] = time.perf_counter() - start
            if not again.complete or again.rows_written:
                raise RuntimeError(f"re-sync incomplete or wrote rows: {again.summary()}")
    return out


# --- report --------------------------------------------------------------------------------------


def mm(times: Sequence[float]) -> str:
    return f"{min(times):.2f} / {statistics.median(times):.2f}"


def ms(times: Sequence[float]) -> str:
    return f"{min(times) * 1000:.0f} / {statistics.median(times) * 1000:.0f}"


async def run(args: argparse.Namespace, root: str) -> list[str]:
    pages = -(-args.repos // PER_PAGE)
    c, lat = args.concurrency, args.latency_ms
    floor = pages * lat / 1000 / c
    lines = [
        f"Listing {args.repos:,} repos ({pages:,} pages of {PER_PAGE}) with "
        f"{lat} ms per request; concurrency C = {c}. Seconds, min / median.",
        "",
        "| what | runs | seconds | vs computed floor | vs measured floor |",
        "|---|---|---|---|---|",
    ]
    await set_latency(root, lat)
    print(f"  floor (bare aiohttp, C={c}) x{args.reps}", flush=True)
    floor_times, _ = await timed(lambda: aiohttp_fetch_all(root, pages, c), args.reps)
    measured = min(floor_times)
    await max_in_flight(root)
    rows: list[tuple[str, int, list[float]]] = []
    if args.seq_reps:
        print(f"  sequential listing x{args.seq_reps}", flush=True)
        seq, n = await timed(lambda: list_with_source(root, 1), args.seq_reps)
        assert n == args.repos, n
        rows.append(("listing, one page at a time (before)", args.seq_reps, seq))
    print(f"  concurrent listing x{args.reps}", flush=True)
    con, n = await timed(lambda: list_with_source(root, c), args.reps)
    assert n == args.repos, n
    peak = await max_in_flight(root)
    rows.append((f"listing, C = {c} (after)", args.reps, con))
    rows.append((f"floor, measured: bare aiohttp, C = {c}", args.reps, floor_times))
    for what, runs, times in rows:
        lines.append(
            f"| {what} | {runs} | {mm(times)} | {min(times) / floor:.2f}x | "
            f"{min(times) / measured:.2f}x |"
        )
    lines.append(f"| floor, computed: {pages:,} x {lat} ms / {c} | - | {floor:.2f} | 1.00x | - |")
    lines += [
        "",
        f"Most requests in flight at the emulator during the concurrent listings: {peak}.",
    ]
    if args.seq_reps:
        lines.append(f"Speed-up of the listing: {min(seq) / min(con):.1f}x.")
    if args.repos == 100_000:
        verdict = "PASS" if min(con) <= GOAL_SECONDS_100K else "FAIL"
        lines.append(f"Goal (100k, 300 ms/page, <= {GOAL_SECONDS_100K:.0f} s): {verdict}.")

    lines += ["", "Full sync, store included (first sync into a fresh database; unchanged",
              "re-sync with the ETag cache warm: every page a 304, each still delayed):", "",
              "| backend | mode | first sync s | unchanged re-sync s |",
              "|---|---|---|---|"]  # fmt: skip
    for backend in args.backends.split(","):
        modes = [c] if args.skip_sequential_sync else [1, c]
        for conc in modes:
            print(f"  full sync, {backend}, C={conc}", flush=True)
            async with database(backend, args.pg) as url:
                out = await full_sync(root, url, conc, resync=True)
            lines.append(f"| {backend} | C = {conc} | {out['first']:.2f} | {out['resync']:.2f} |")

    # Item 7: client stacks and parsers, no latency.
    await set_latency(root, 0)
    r = args.micro_reps
    print(f"  item 7: httpx / aiohttp / json / orjson x{r}", flush=True)
    await httpx_fetch_all(root, pages, c)  # warm the emulator's JSON cache
    lines += ["", f"Item 7, no latency, all {pages:,} pages, {r} runs, milliseconds min / median:",
              "", "| what | one at a time | C at once |", "|---|---|---|"]  # fmt: skip
    over_aiohttp = functools.partial(httpx_fetch_all, over_aiohttp=True)
    for name, fetch_all in (("httpx.AsyncClient, httpcore transport (before)", httpx_fetch_all),
                            ("httpx.AsyncClient over AiohttpTransport (after)", over_aiohttp),
                            ("aiohttp.ClientSession alone", aiohttp_fetch_all)):  # fmt: skip
        one, _ = await timed(lambda f=fetch_all: f(root, pages, 1), r)  # type: ignore[misc]
        many, _ = await timed(lambda f=fetch_all: f(root, pages, c), r)  # type: ignore[misc]
        lines.append(f"| fetch, {name} | {ms(one)} | {ms(many)} |")
    src_one, _ = await timed(lambda: list_with_source(root, 1), r)
    src_many, _ = await timed(lambda: list_with_source(root, c), r)
    lines.append(f"| GitHubSource.list_repos (HostClient, parse, build repos) | {ms(src_one)} | "
                 f"{ms(src_many)} |")  # fmt: skip
    bodies = await page_bodies(root, pages)
    import orjson

    size = sum(map(len, bodies))
    lines += ["", f"| parse all {pages:,} bodies ({size / 1e6:.1f} MB) | ms min / median |",
              "|---|---|",
              f"| json.loads | {ms(parse_all(json.loads, bodies, r))} |",
              f"| orjson.loads | {ms(parse_all(orjson.loads, bodies, r))} |"]  # fmt: skip
    return lines


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seq-reps", type=int, default=1)
    parser.add_argument("--micro-reps", type=int, default=5)
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--skip-sequential-sync", action="store_true")
    parser.add_argument("--pg", default=os.environ.get("REPO_UPDATER_BENCH_PG", PG_ADMIN_DEFAULT))
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with emulator(args.repos) as root:
        print(f"emulator: {args.repos:,} repos at {root}", flush=True)
        lines = asyncio.run(run(args, root))
    command = "python bench/host_latency.py " + " ".join(shlex.quote(a) for a in argv)
    header = [
        "# Listing from a slow host (issue 12: items 6 and 7)",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; run took {time.perf_counter() - started:.0f} s",
        "- emulator (GitHub, one org) in its own process on 127.0.0.1, `latency` fault on "
        "every request; the client in this process.",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_emulator":
        asyncio.run(emulator_main(int(sys.argv[2])))
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
