"""Permissions-sync benchmark: N private GitHub repos with 20 collaborators each.

    .venv/bin/python bench/permissions.py [--sizes 1000,10000] [--backends sqlite,postgresql]
                                          [--runs 3]

Per size N the code-host emulator runs in its own subprocess (10 orgs of N/10 private repos,
20 collaborators each, levels read/write/admin in turn), so its memory is not counted. Per
(backend, N, run), on a throw-away database, one child process:

1. syncs the repos once (``RepoSyncer``: this writes the N permission-sync requests; not timed
   as part of the figures);
2. **floor**: fetches every repo's ``GET /repos/{o}/{r}/collaborators?affiliation=all&per_page=100``
   with a bare httpx client at the source's concurrency (8 in flight) and parses the JSON: the
   host traffic the syncer cannot avoid, measured in the same process right before it;
3. **first permissions sync**: ``PermissionsSyncer.sync_until_idle()``; time, requests per repo
   (the app's request counter and the emulator's own count), grants and events written;
4. **unchanged re-sync**: the clock moved 25 h on, every repo is due for its refresh; time, and
   the rows written: ``PermissionRound.rows_written`` and ``events``, and the tables checked
   (``repo_permissions`` count and newest ``granted_at`` / ``updated_at`` unchanged, events count
   unchanged: an insert, update or delete would show). Each repo's schedule row is updated (its
   next refresh): bookkeeping, reported on its own;
5. memory: peak RSS of the child during 3-4 (VmHWM reset before 3) and before 3.

Figures are min and median over the runs; time as a ratio to the floor of the same run, memory
as the ratio of the largest N to the smallest (flat: <= 1.25). Only 127.0.0.1 is used; every
subprocess and database is cleaned up, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

ORGS = 10
COLLABORATORS = 20
CONCURRENCY = 8  # the sources' default requests in flight
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "permissions.md"
GOAL_RSS_RATIO = 1.25
MB = "{:.0f}"


class BenchError(Exception):
    pass


def proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- child: the emulator -----------------------------------------------------------------------


async def emulator_main(orgs: int, per_org: int) -> None:
    from repo_updater.core.domain import HostKind
    from repo_updater.emulator.server import running_emulator
    from repo_updater.emulator.state import EmulatorState

    state = EmulatorState()
    state.seed(
        HostKind.GITHUB, orgs=orgs, repos_per_org=per_org, org_prefix="org",
        private=True, collaborators_per_repo=COLLABORATORS,
    )  # fmt: skip
    async with running_emulator(state, host="127.0.0.1", port=0) as emu:
        print(json.dumps({"port": emu.port}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- child: one measurement ----------------------------------------------------------------------


async def emulator_requests(base: str) -> int:
    import httpx

    async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
        response = await client.get(f"{base}/_admin/github/stats")
        return int(response.json()["request_count"])


async def floor_fetch(base: str, names: Sequence[str]) -> float:
    """Every repo's collaborators page with a bare client, ``CONCURRENCY`` in flight."""
    import httpx

    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=f"{base}/github", trust_env=False, timeout=60) as c:

        async def one(name: str) -> int:
            async with limit:
                r = await c.get(f"/repos/{name}/collaborators?affiliation=all&per_page=100")
                r.raise_for_status()
                return len(json.loads(r.content))

        start = time.perf_counter()
        counts = await asyncio.gather(*(one(n) for n in names))
        seconds = time.perf_counter() - start
    if set(counts) != {COLLABORATORS}:
        raise BenchError(f"floor fetch saw {set(counts)} collaborators per repo")
    return seconds


async def table_state(engine: Any) -> tuple[Any, ...]:
    """What any write to the grants or the events would change."""
    import sqlalchemy as sa

    from repo_updater.store.schema import events, repo_permissions

    p = repo_permissions
    async with engine.connect() as conn:
        grants = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.max(p.c.granted_at), sa.func.max(p.c.updated_at))
            )
        ).one()
        n_events = (await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar()
    return (*tuple(grants), n_events)


async def sync_main(url: str, port: int, orgs: int) -> dict[str, Any]:
    from repo_updater.bootstrap import open_app
    from repo_updater.config import parse_config
    from repo_updater.store import repos as repo_store

    base = f"http://127.0.0.1:{port}"
    offset = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + offset[0]

    config = parse_config(
        {
            "database": url,
            "repo_sync_interval": 3600,
            "external_services": [
                {"name": "bench", "kind": "github", "url": f"{base}/github",
                 "orgs": [f"org{i}" for i in range(orgs)], "name_prefix": "bench"}
            ],
        },
        {},
    )  # fmt: skip
    out: dict[str, Any] = {}
    async with open_app(config, {}, clock=clock) as app:
        listed = await app.repo_sync_worker.sync_service("bench")
        if not listed.complete:
            raise BenchError(f"repo sync incomplete: {listed.error}")
        async with app.engine.connect() as conn:
            names = [r.external_name for r in await repo_store.list_repos(conn)]
        out["floor_seconds"] = await floor_fetch(base, names)
        out["rss_before_mb"] = proc_status_mb("VmRSS")
        out["hwm_reset"] = reset_peak_rss()
        syncer = app.permissions_syncer
        for label, advance in (("first", timedelta(0)), ("resync", timedelta(hours=25))):
            offset[0] += advance
            before_state = await table_state(app.engine)
            host_before = await emulator_requests(base)
            app.counter.by_kind.pop("load_permissions", None)
            start = time.perf_counter()
            result = await syncer.sync_until_idle()
            seconds = time.perf_counter() - start
            out[label] = {
                "seconds": seconds,
                "synced": result.synced,
                "failed": result.failed,
                "rows_written": result.rows_written,
                "events": result.events,
                "requests": app.counter.by_kind.get("load_permissions", 0),
                "host_requests": await emulator_requests(base) - host_before,
                "tables_unchanged": await table_state(app.engine) == before_state,
            }
        out["peak_mb"] = proc_status_mb("VmHWM")
        out["ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["repos"] = len(names)
    return out


# --- parent --------------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[str]) -> None:
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


@contextlib.contextmanager
def emulator(n: int) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "_emulator", str(ORGS), str(n // ORGS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env(),
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise BenchError(f"emulator exited with {proc.wait()} before listening")
        yield int(json.loads(line)["port"])
    finally:
        stop_process(proc)


def run_child(url: str, port: int, timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "_sync", url, str(port), str(ORGS), out.name],
            stdin=subprocess.DEVNULL, text=True, env=child_env(), start_new_session=True,
        )  # fmt: skip
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"sync child did not finish in {timeout:g} s") from None
        finally:
            stop_process(proc)
        if rc != 0:
            raise BenchError(f"sync child failed with exit code {rc}")
        data: dict[str, Any] = json.loads(out.read())
        return data


async def pg_admin(admin_url: str, sql: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        return str(await conn.fetchval(sql) or "")
    finally:
        await conn.close()


@contextlib.contextmanager
def database(backend: str, pg_admin_url: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ru_bench_") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"ru_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Case:
    backend: str
    n: int
    runs: list[dict[str, Any]] = field(default_factory=list)

    def values(self, *path: str) -> list[float]:
        out = []
        for run in self.runs:
            value: Any = run
            for key in path:
                value = value[key]
            out.append(float(value))
        return out

    def problems(self) -> list[str]:
        out = []
        for i, run in enumerate(self.runs):
            for label in ("first", "resync"):
                r = run[label]
                if r["synced"] != self.n or r["failed"]:
                    out.append(f"run {i} {label}: synced {r['synced']} of {self.n}")
            re = run["resync"]
            if re["rows_written"] or re["events"] or not re["tables_unchanged"]:
                out.append(f"run {i}: the unchanged re-sync wrote rows: {re}")
        return out


def stat(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"


def ratio(case: Case, label: str) -> str:
    ratios = [r[label]["seconds"] / r["floor_seconds"] for r in case.runs]
    return f"x{min(ratios):.2f} / x{statistics.median(ratios):.2f}"


def table(cases: Sequence[Case]) -> list[str]:
    lines = [
        "| backend | N | floor s | first sync s | vs floor | repos/s (median) | requests per "
        "repo (app / host) | grants, events written | unchanged re-sync s | vs floor | rows "
        "written (grants / events / schedule rows) | peak RSS MB | RSS before MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        first, re = c.runs[0]["first"], c.runs[0]["resync"]
        rate = c.n / statistics.median(c.values("first", "seconds"))
        lines.append(
            f"| {c.backend} | {c.n:,} | {stat(c.values('floor_seconds'))} "
            f"| {stat(c.values('first', 'seconds'))} | {ratio(c, 'first')} | {rate:,.0f} "
            f"| {first['requests'] / c.n:.2f} / {first['host_requests'] / c.n:.2f} "
            f"| {first['rows_written']:,}, {first['events']:,} "
            f"| {stat(c.values('resync', 'seconds'))} | {ratio(c, 'resync')} "
            f"| {re['rows_written']} / {re['events']} / {re['synced']:,} "
            f"| {stat(c.values('peak_mb'), MB)} | {stat(c.values('rss_before_mb'), MB)} |"
        )
    return lines


def verdicts(cases: Sequence[Case]) -> list[str]:
    out = []
    for backend in dict.fromkeys(c.backend for c in cases):
        mine = sorted((c for c in cases if c.backend == backend), key=lambda c: c.n)
        for c in mine:
            ok = not c.problems()
            out.append(
                f"- {backend} N={c.n:,}: every repo synced, and the unchanged re-sync wrote no "
                f"grant and no event: **{'PASS' if ok else 'FAIL'}**"
                + ("" if ok else f" ({'; '.join(c.problems())})")
            )
            per_repo = c.runs[0]["first"]["host_requests"] / c.n
            out.append(
                f"- {backend} N={c.n:,}: requests per repo {per_repo:.2f} against a floor of 1 "
                f"(one page of up to 100 collaborators): x{per_repo:.2f}"
            )
        if len(mine) > 1:
            small, large = mine[0], mine[-1]
            a = statistics.median(small.values("peak_mb"))
            b = statistics.median(large.values("peak_mb"))
            flat = b <= GOAL_RSS_RATIO * a
            per_repo_bytes = (b - a) * 1024 * 1024 / (large.n - small.n)
            growth = [
                statistics.median(c.values("peak_mb"))
                - statistics.median(c.values("rss_before_mb"))
                for c in (small, large)
            ]
            out.append(
                f"- {backend}: the permission syncs' own memory (peak RSS over both syncs less the "
                f"RSS before them), {small.n:,} -> {large.n:,} repos: {growth[0]:.0f} -> "
                f"{growth[1]:.0f} MB"
            )
            out.append(
                f"- {backend}: median peak RSS of the syncing process, {small.n:,} -> "
                f"{large.n:,} repos: {a:.0f} -> {b:.0f} MB (x{b / a:.2f}, "
                f"{per_repo_bytes:.0f} bytes per extra repo): "
                f"**{'PASS' if flat else 'FAIL'}** (flat: <= x{GOAL_RSS_RATIO})"
            )
    return out


def write_results(cases: Sequence[Case], command: str, pg_version: str, path: Path) -> None:
    runs = len(cases[0].runs) if cases else 0
    lines = [
        "# Permissions sync benchmark results",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}",
        f"- python: {platform.python_version()}"
        + (f"; PostgreSQL: {pg_version}" if pg_version else ""),
        f"- command: `{command}`",
        f"- emulator: {ORGS} GitHub orgs of N/{ORGS} private repos, {COLLABORATORS} "
        "collaborators each, in its own process (its memory is not counted)",
        f"- {runs} runs per row, each on a fresh database in a fresh process; figures are "
        "min / median",
        "",
        *table(cases),
        "",
        "Columns: *floor*: the same collaborator pages fetched and parsed by a bare httpx "
        f"client, {CONCURRENCY} in flight (the sources' concurrency), in the same process just "
        "before the sync. *first sync*: `PermissionsSyncer.sync_until_idle()` on N due repos "
        "(claim, fetch, diff, write grants and events, reschedule). *vs floor*: sync time / "
        "floor time of the same run. *requests per repo*: the app's request counter and the "
        "emulator's count of requests it answered. *unchanged re-sync*: the clock moved 25 h "
        "on, every repo due for its refresh, nothing changed on the host. *rows written*: "
        "grants inserted, updated or deleted / events / schedule rows updated (each repo's "
        "next refresh: bookkeeping). The grants and events tables are also compared before and "
        "after (count, newest granted_at and updated_at, event count). *peak RSS*: VmHWM of "
        "the syncing process, reset after the repo sync, over both permission syncs; *RSS "
        "before*: its RSS just before them (imports, engine, the repo sync).",
        "",
        "## Against the goals",
        "",
        *verdicts(cases),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", default="1000,10000", help="comma-separated private repo counts")
    p.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    p.add_argument("--runs", type=int, default=3, help="runs per (backend, size)")
    p.add_argument(
        "--pg",
        default=os.environ.get("REPO_UPDATER_BENCH_PG", PG_ADMIN_DEFAULT),
        help="PostgreSQL admin URL (trust auth, CREATE DATABASE)",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    p.add_argument("--out", type=Path, default=RESULTS_FILE, help="results markdown file")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.backends = [b for b in args.backends.split(",") if b]
    if any(n < ORGS or n % ORGS for n in args.sizes):
        p.error(f"each size must be a positive multiple of {ORGS}")
    if any(b not in ("sqlite", "postgresql") for b in args.backends) or args.runs < 1:
        p.error("backends: sqlite and/or postgresql; runs >= 1")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    command = shlex.join([".venv/bin/python", "bench/permissions.py", *argv])
    pg_version = ""
    if "postgresql" in args.backends:
        pg_version = asyncio.run(pg_admin(args.pg, "SHOW server_version"))
    cases: list[Case] = []
    for n in args.sizes:
        with emulator(n) as port:
            for backend in args.backends:
                case = Case(backend, n)
                for run in range(args.runs):
                    with database(backend, args.pg) as url:
                        data = run_child(url, port, args.timeout)
                    case.runs.append(data)
                    first, re = data["first"], data["resync"]
                    print(
                        f"{backend} N={n:,} run {run + 1}: floor {data['floor_seconds']:.2f} s, "
                        f"first {first['seconds']:.2f} s ({first['host_requests'] / n:.2f} "
                        f"req/repo), re-sync {re['seconds']:.2f} s writing {re['rows_written']} "
                        f"grants / {re['events']} events, peak {data['peak_mb']:.0f} MB",
                        flush=True,
                    )
                cases.append(case)
    print("\n".join(["", *table(cases), "", *verdicts(cases)]))
    write_results(cases, command, pg_version, args.out)
    print(f"\nwritten to {args.out}")
    return 1 if any(c.problems() for c in cases) else 0


def child_main(argv: Sequence[str]) -> int:
    if argv[0] == "_emulator":
        asyncio.run(emulator_main(int(argv[1]), int(argv[2])))
        return 0
    url, port, orgs, out = argv[1], int(argv[2]), int(argv[3]), argv[4]
    Path(out).write_text(json.dumps(asyncio.run(sync_main(url, port, orgs))))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_emulator", "_sync"):
        sys.exit(child_main(sys.argv[1:]))
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
