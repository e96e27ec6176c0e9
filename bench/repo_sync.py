"""Repo sync benchmark: sync N emulated GitHub repos into SQLite and PostgreSQL.

    .venv/bin/python bench/repo_sync.py [--sizes 10000,100000] [--backends sqlite,postgresql]

For each size N the code-host emulator runs in its own subprocess (10 orgs of N/10 repos, one
warm-up listing so that every measurement sees the same emulator). For each (backend, N), on a
throw-away database (a temp SQLite file, or a fresh PostgreSQL database that is dropped after):

1. child process A: first sync (repos/s), then an unchanged re-sync in the same process, the
   way ``serve`` runs it (the source's ETag page cache is warm, pages come back ``304``);
2. child process B: an unchanged re-sync in a fresh process (cold cache: every page listed,
   parsed and diffed against the store), the way a one-shot ``repo-updater sync`` runs it.

Each child reports its own peak RSS, so the emulator's memory is not counted. "Unchanged
re-sync writes no rows" is checked, not assumed: ``SyncResult.rows_written``, row counts of
every table, and per-table insert/update/delete counters (PostgreSQL: ``pg_stat_user_tables``
deltas; SQLite: counting triggers the benchmark adds to its throw-away database). The one
bookkeeping update of ``external_services`` per sync (last_sync_at, next_sync_at) is reported
on its own.

Only 127.0.0.1 is used; every subprocess and database is cleaned up, also on failure.
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
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg

ORGS = 10
SERVICE = "bench-github"
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS_FILE = Path(__file__).resolve().parent / "results" / "repo_sync.md"
GOAL_RESYNC_SECONDS = 10.0
GOAL_RSS_RATIO = 1.25  # "memory flat in N": peak RSS at the largest N <= 1.25 x the smallest
BOOKKEEPING_TABLE = "external_services"
COUNTED_TABLES = (
    "repos",
    "events",
    "external_service_repos",
    "permission_sync_requests",
    "changeset_sync_requests",
    "changesets",
    "changeset_events",
    "external_services",
)
WRITES_TABLE = "bench_writes"  # SQLite only: filled by the counting triggers

Counters = dict[str, dict[str, int]]  # table -> {"ins": n, "upd": n, "del": n}


# --- small helpers -----------------------------------------------------------------------------


def proc_status_mb(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from /proc, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False if the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def ru_maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pg_dsn(url: str) -> str:
    """asyncpg wants ``postgres://`` or ``postgresql://`` without a driver suffix."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def pg_database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def diff_counters(before: Counters, after: Counters) -> Counters:
    out: Counters = {}
    for table in sorted(set(before) | set(after)):
        b, a = before.get(table, {}), after.get(table, {})
        delta = {op: a.get(op, 0) - b.get(op, 0) for op in ("ins", "upd", "del")}
        if any(delta.values()):
            out[table] = delta
    return out


def split_bookkeeping(writes: Counters) -> tuple[int, int]:
    """(row writes outside ``external_services``, row writes to ``external_services``)."""
    other = sum(sum(v.values()) for t, v in writes.items() if t != BOOKKEEPING_TABLE)
    book = sum(writes.get(BOOKKEEPING_TABLE, {}).values())
    return other, book


# --- write counters: PostgreSQL statistics, SQLite triggers --------------------------------------


async def pg_write_counters(url: str) -> Counters:
    """Cumulative per-table insert/update/delete counts of a PostgreSQL database.

    Backends publish their statistics when they go idle or exit; wait until no other session
    is connected to the database (the caller has closed its pool), then a little longer.
    """
    conn = await asyncpg.connect(pg_dsn(url))
    try:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            others = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if others == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.7)  # exit-time stats flush runs after the activity entry goes
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await conn.fetch(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
        )
    finally:
        await conn.close()
    return {r["relname"]: {"ins": r[1], "upd": r[2], "del": r[3]} for r in rows}


def sqlite_path(url: str) -> str:
    return url.split(":///", 1)[1]


def sqlite_install_triggers(path: str) -> None:
    """Count every row inserted, updated or deleted in every table (one row per write)."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db, db:
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {WRITES_TABLE} (tbl TEXT NOT NULL, op TEXT NOT NULL)"
        )
        tables = [
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name NOT IN ('alembic_version', ?)",
                (WRITES_TABLE,),
            )
        ]
        for table in tables:
            for op, event in (("ins", "INSERT"), ("upd", "UPDATE"), ("del", "DELETE")):
                db.execute(
                    f"CREATE TRIGGER IF NOT EXISTS bench_{table}_{op} AFTER {event} ON {table} "
                    f"BEGIN INSERT INTO {WRITES_TABLE} (tbl, op) VALUES ('{table}', '{op}'); END"
                )


def sqlite_write_counters(path: str) -> Counters:
    out: Counters = {}
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        for table, op, n in db.execute(
            f"SELECT tbl, op, count(*) FROM {WRITES_TABLE} GROUP BY tbl, op"
        ):
            out.setdefault(table, {})[op] = n
    return out


async def write_counters(url: str) -> Counters:
    if url.startswith("sqlite"):
        return await asyncio.to_thread(sqlite_write_counters, sqlite_path(url))
    return await pg_write_counters(url)


# --- child: the emulator -----------------------------------------------------------------------


async def warm_up(base_url: str, orgs: int) -> int:
    """List every org once so that the emulator's per-repo JSON cache is warm."""
    import httpx

    pages = 0
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=60) as client:
        for i in range(orgs):
            url: str | None = f"{base_url}/orgs/org{i}/repos?per_page=100"
            while url is not None:
                response = await client.get(url)
                response.raise_for_status()
                pages += 1
                url = response.links.get("next", {}).get("url")
    return pages


async def emulator_main(orgs: int, per_org: int) -> None:
    """Seed, serve on a free loopback port, print it, and serve until stdin closes."""
    from repo_updater.core.domain import HostKind
    from repo_updater.emulator.server import running_emulator
    from repo_updater.emulator.state import EmulatorState

    state = EmulatorState()
    state.seed(HostKind.GITHUB, orgs=orgs, repos_per_org=per_org, org_prefix="org")
    async with running_emulator(state, host="127.0.0.1", port=0) as emu:
        pages = await warm_up(emu.base_url(HostKind.GITHUB), orgs)
        print(json.dumps({"port": emu.port, "warm_up_pages": pages}), flush=True)
        # The parent holds our stdin: EOF (parent done, or dead) ends the emulator.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --- child: one sync measurement -----------------------------------------------------------------


async def count_rows(url: str) -> dict[str, int]:
    import sqlalchemy as sa

    from repo_updater.store.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                t: int((await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one())
                for t in COUNTED_TABLES
            }
    finally:
        await engine.dispose()


def sync_summary(result: Any, seconds: float, requests: int) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "complete": result.complete,
        "error": result.error,
        "pages": result.pages,
        "listed": result.listed,
        "added": result.added,
        "modified": result.modified,
        "unmodified": result.unmodified,
        "removed": result.removed,
        "rows_written": result.rows_written,
        "requests": requests,
    }


async def verified_resync(app: Any, url: str) -> dict[str, Any]:
    """An unchanged re-sync with row counts and write counters before and after."""
    await app.engine.dispose()  # PostgreSQL: let the sessions publish their statistics
    rows_before = await count_rows(url)
    counters_before = await write_counters(url)
    requests = app.counter.count
    if not reset_peak_rss():
        raise SystemExit("cannot reset the peak RSS (/proc/self/clear_refs)")
    rss_start = proc_status_mb("VmRSS")
    start = time.perf_counter()
    result = await app.repo_sync_worker.sync_service(SERVICE)
    seconds = time.perf_counter() - start
    peak = proc_status_mb("VmHWM")
    out = sync_summary(result, seconds, app.counter.count - requests)
    await app.engine.dispose()
    rows_after = await count_rows(url)
    writes = diff_counters(counters_before, await write_counters(url))
    other, book = split_bookkeeping(writes)
    out.update(
        rss_start_mb=rss_start,
        peak_rss_mb=peak,
        rows_before=rows_before,
        rows_after=rows_after,
        row_count_changes={
            t: rows_after[t] - n for t, n in rows_before.items() if rows_after[t] != n
        },
        writes=writes,
        row_writes=other,
        bookkeeping_writes=book,
    )
    return out


async def sync_main(url: str, port: int, orgs: int, mode: str) -> dict[str, Any]:
    from repo_updater.bootstrap import open_app
    from repo_updater.config import parse_config

    config = parse_config(
        {
            "database": url,
            "external_services": [
                {
                    "name": SERVICE,
                    "kind": "github",
                    "url": f"http://127.0.0.1:{port}/github",
                    "orgs": [f"org{i}" for i in range(orgs)],
                }
            ],
        },
        {},
    )
    out: dict[str, Any] = {"mode": mode}
    async with open_app(config, env={}) as app:
        out["rss_ready_mb"] = proc_status_mb("VmRSS")  # imports, engine, migrations done
        if mode == "first":
            start = time.perf_counter()
            result = await app.repo_sync_worker.sync_service(SERVICE)
            out["first"] = sync_summary(result, time.perf_counter() - start, app.counter.count)
            out["first"]["peak_rss_mb"] = proc_status_mb("VmHWM")
            if url.startswith("sqlite"):
                await app.engine.dispose()
                await asyncio.to_thread(sqlite_install_triggers, sqlite_path(url))
        out["resync"] = await verified_resync(app, url)
    out["ru_maxrss_mb"] = ru_maxrss_mb()
    return out


# --- parent: orchestration -----------------------------------------------------------------------


class BenchError(RuntimeError):
    pass


@dataclass
class Measurement:
    backend: str
    n: int
    first: dict[str, Any] = field(default_factory=dict)
    warm: dict[str, Any] = field(default_factory=dict)  # re-sync in the first sync's process
    cold: dict[str, Any] = field(default_factory=dict)  # re-sync in a fresh process
    peak_a_mb: float = 0.0  # ru_maxrss of child A (first sync + warm re-sync)
    peak_b_mb: float = 0.0  # ru_maxrss of child B (cold re-sync only)
    ready_mb: float = 0.0  # RSS of child B before syncing (imports, engine, migrations)

    @property
    def repos_per_second(self) -> float:
        return float(self.first["listed"]) / float(self.first["seconds"])

    def problems(self) -> list[str]:
        out = []
        if not (self.first.get("complete") and self.first.get("added") == self.n):
            out.append(f"first sync added {self.first.get('added')} of {self.n}")
        for label, run in (("warm", self.warm), ("cold", self.cold)):
            if not run.get("complete") or run.get("listed") != self.n:
                out.append(f"{label} re-sync incomplete or listed {run.get('listed')}")
            if run.get("rows_written") or run.get("row_writes") or run.get("row_count_changes"):
                out.append(
                    f"{label} re-sync wrote rows: rows_written={run.get('rows_written')}, "
                    f"writes={run.get('writes')}, count changes={run.get('row_count_changes')}"
                )
            if run.get("bookkeeping_writes", 0) > 1:
                out.append(f"{label} re-sync: {run['bookkeeping_writes']} external_services writes")
        return out


def stop_process(proc: subprocess.Popen[str]) -> None:
    """End a child we started: close its stdin, SIGTERM its process group, then SIGKILL."""
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
    per_org = n // ORGS
    proc = subprocess.Popen(
        [sys.executable, __file__, "_emulator", str(ORGS), str(per_org)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until seeded and warmed up (or dead)
        if not line:
            raise BenchError(f"emulator exited with {proc.wait()} before listening")
        info = json.loads(line)
        print(f"  emulator: {ORGS}x{per_org} repos on 127.0.0.1:{info['port']}", flush=True)
        yield int(info["port"])
    finally:
        stop_process(proc)


def run_child(url: str, port: int, mode: str, timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "_sync", url, str(port), str(ORGS), mode, out.name],
            stdin=subprocess.DEVNULL,
            text=True,
            env=child_env(),
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"sync child ({mode}) did not finish in {timeout:g} s") from None
        finally:
            stop_process(proc)
        if rc != 0:
            raise BenchError(f"sync child ({mode}) failed with exit code {rc}")
        data: dict[str, Any] = json.loads(out.read())
        return data


async def pg_admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(pg_dsn(admin_url))
    try:
        await conn.execute(sql)
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
        yield pg_database_url(pg_admin_url, name)
    finally:
        asyncio.run(pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def measure(backend: str, n: int, port: int, pg_admin_url: str, timeout: float) -> Measurement:
    m = Measurement(backend=backend, n=n)
    with database(backend, pg_admin_url) as url:
        a = run_child(url, port, "first", timeout)
        m.first, m.warm, m.peak_a_mb = a["first"], a["resync"], a["ru_maxrss_mb"]
        print(
            f"  {backend} N={n}: first sync {m.first['seconds']:.1f} s "
            f"({m.repos_per_second:,.0f} repos/s); warm re-sync {m.warm['seconds']:.2f} s, "
            f"rows written {m.warm['rows_written']}",
            flush=True,
        )
        b = run_child(url, port, "resync", timeout)
        m.cold, m.peak_b_mb, m.ready_mb = b["resync"], b["ru_maxrss_mb"], b["rss_ready_mb"]
        print(
            f"  {backend} N={n}: cold re-sync {m.cold['seconds']:.2f} s, "
            f"rows written {m.cold['rows_written']}, peak RSS {m.peak_b_mb:.0f} MB",
            flush=True,
        )
    return m


# --- parent: report ------------------------------------------------------------------------------


def fmt_writes(run: dict[str, Any]) -> str:
    return f"{run['rows_written']} / {run['row_writes']} / {run['bookkeeping_writes']}"


def table(ms: Sequence[Measurement]) -> list[str]:
    head = (
        "| backend | N | first sync s | first sync repos/s | warm re-sync s | cold re-sync s "
        "| re-sync writes warm (rows_written / row writes / external_services) "
        "| same, cold | peak RSS MB: first+warm | warm re-sync | cold re-sync (idle) |"
    )
    lines = [head, "|" + "---|" * 11]
    for m in ms:
        lines.append(
            f"| {m.backend} | {m.n:,} | {m.first['seconds']:.1f} | {m.repos_per_second:,.0f} "
            f"| {m.warm['seconds']:.2f} | {m.cold['seconds']:.2f} | {fmt_writes(m.warm)} "
            f"| {fmt_writes(m.cold)} | {m.peak_a_mb:.0f} | {m.warm['peak_rss_mb']:.0f} "
            f"| {m.peak_b_mb:.0f} ({m.ready_mb:.0f}) |"
        )
    return lines


def verdicts(ms: Sequence[Measurement]) -> list[str]:
    out = []
    for backend in sorted({m.backend for m in ms}):
        mine = sorted((m for m in ms if m.backend == backend), key=lambda m: m.n)
        big = mine[-1]
        for label, run in (("warm", big.warm), ("cold", big.cold)):
            ok = run["seconds"] < GOAL_RESYNC_SECONDS
            out.append(
                f"- {backend}: unchanged {label} re-sync of {big.n:,} repos in "
                f"{run['seconds']:.2f} s: **{'PASS' if ok else 'FAIL'}** (goal < "
                f"{GOAL_RESYNC_SECONDS:.0f} s)"
            )
        if len(mine) > 1:
            small = mine[0]
            for label, lo, hi in (
                ("first sync + warm re-sync", small.peak_a_mb, big.peak_a_mb),
                ("cold re-sync", small.peak_b_mb, big.peak_b_mb),
            ):
                ratio = hi / lo
                per_repo = (hi - lo) * 1024 * 1024 / (big.n - small.n)
                ok = ratio <= GOAL_RSS_RATIO
                out.append(
                    f"- {backend}: peak RSS of the {label} process, {small.n:,} -> {big.n:,}: "
                    f"{lo:.0f} -> {hi:.0f} MB (x{ratio:.2f}, {per_repo:,.0f} bytes per extra "
                    f"repo): **{'PASS' if ok else 'FAIL'}** (flat: <= x{GOAL_RSS_RATIO})"
                )
        for m in mine:
            problems = m.problems()
            out.append(
                f"- {backend} N={m.n:,}: re-syncs wrote no rows: "
                + ("**PASS**" if not problems else "**FAIL**: " + "; ".join(problems))
            )
    return out


def write_results(ms: Sequence[Measurement], command: str, pg_version: str, path: Path) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Repo sync benchmark results",
        "",
        f"- date: {now}",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{platform.machine()}, Linux {platform.release()}",
        f"- python: {platform.python_version()}; PostgreSQL: {pg_version or 'not run'}",
        f"- command: `{command}`",
        f"- emulator: {ORGS} GitHub orgs of N/{ORGS} repos, 100 repos per page, in its own "
        "process (its memory is not counted), warmed up by one listing",
        "",
        *table(ms),
        "",
        "Columns: *first sync* lists and stores N new repos. *warm re-sync*: unchanged re-sync in "
        "the same process (ETag page cache warm: every page answers 304), as `serve` runs it. "
        "*cold re-sync*: unchanged re-sync in a fresh process (every page fetched, parsed and "
        "diffed against the store), as a one-shot `repo-updater sync` runs it. *Writes*: "
        "`SyncResult.rows_written` / row inserts+updates+deletes in every table except "
        "`external_services` (PostgreSQL `pg_stat_user_tables` deltas; SQLite counting "
        "triggers) / updates of `external_services` (the per-sync bookkeeping: last_sync_at, "
        "next_sync_at). *Peak RSS*: `ru_maxrss` of the process doing the syncs; *warm re-sync* "
        "is the peak during that re-sync alone (VmHWM reset before it); *(idle)* is the RSS "
        "of the cold process before it syncs (imports, engine, migrations).",
        "",
        "## Against the goal",
        "",
        *verdicts(ms),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


async def pg_server_version(admin_url: str) -> str:
    conn = await asyncpg.connect(pg_dsn(admin_url))
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--sizes", default="10000,100000", help="comma-separated repo counts")
    p.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    p.add_argument("--pg", default=os.environ.get("REPO_UPDATER_BENCH_PG", PG_ADMIN_DEFAULT))
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    p.add_argument("--out", type=Path, default=RESULTS_FILE, help="results markdown file")
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.backends = [b for b in args.backends.split(",") if b]
    if any(n < ORGS or n % ORGS for n in args.sizes):
        p.error(f"each size must be a positive multiple of {ORGS}")
    if any(b not in ("sqlite", "postgresql") for b in args.backends):
        p.error("backends: sqlite and/or postgresql")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_exit)
    command = shlex.join([".venv/bin/python", "bench/repo_sync.py", *argv])
    pg_version = asyncio.run(pg_server_version(args.pg)) if "postgresql" in args.backends else ""
    ms: list[Measurement] = []
    for n in args.sizes:
        print(f"N={n:,}", flush=True)
        with emulator(n) as port:
            for backend in args.backends:
                ms.append(measure(backend, n, port, args.pg, args.timeout))
    print()
    print("\n".join(table(ms)))
    print()
    print("\n".join(verdicts(ms)))
    write_results(ms, command, pg_version, args.out)
    print(f"\nwritten to {args.out}")
    return 1 if any(m.problems() for m in ms) else 0


def child_main(argv: Sequence[str]) -> int:
    if argv[0] == "_emulator":
        asyncio.run(emulator_main(int(argv[1]), int(argv[2])))
        return 0
    url, port, orgs, mode, out = argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5]
    data = asyncio.run(sync_main(url, port, orgs, mode))
    Path(out).write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_emulator", "_sync"):
        sys.exit(child_main(sys.argv[1:]))
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
