"""Benchmark: how fast archived flips reach changesets, and what syncing changesets costs.

Two measurements per store backend (SQLite file, throw-away PostgreSQL database), both against
the built-in code-host emulator on 127.0.0.1 (same process and event loop as the app):

1. **Archive -> READONLY latency.** A GitHub repo with 100 open pull requests, all tracked in a
   batch change, plus other repos with tracked pull requests. The app runs ``serve`` (repo sync
   loop + changeset syncer) with the DEFAULT intervals. The repo is archived in the emulator at
   a random moment of the repo-sync interval; we measure the wall time until all 100 are
   ``READONLY`` in the store, split into (a) archive -> the repo sync noticed the flip (the
   ``RepoArchived`` event's ``created_at``), (b) that -> all 100 ``READONLY``, and (c) that ->
   all 100 re-synced from the host (the durable sync requests consumed by the woken changeset
   syncer). Then the same for unarchive -> back to ``OPEN``.
2. **API requests per changeset** for 10,000 changesets on GitHub (100 repos x 100 PRs): track
   them all, run ``changeset_syncer.run_once()`` until a round claims nothing, and count HTTP
   requests (the app's ``RequestCounter`` and the emulator's ``request_count``). Goal: at most
   0.05 per changeset. Then a forced re-sync of all of them (``request_sync``).

Usage::

    .venv/bin/python bench/changeset_sync.py [--backends sqlite,postgresql] [--reps 5]

Writes ``bench/results/changeset_sync.md`` (``--output``). Stops by itself; cleans up its
temporary files and databases on failure too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import sqlalchemy as sa

from repo_updater.bootstrap import App, open_app
from repo_updater.config import Config, parse_config
from repo_updater.core.domain import ExternalState, HostKind
from repo_updater.emulator.github_graphql import GraphQLEndpoint
from repo_updater.emulator.server import RunningEmulator, running_emulator
from repo_updater.emulator.state import EmulatorState
from repo_updater.entrypoints.serve import serve
from repo_updater.service_layer import changeset_syncer as syncer_module
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store
from repo_updater.store.changeset_claims import claim_work
from repo_updater.store.schema import changeset_sync_requests, changesets, events

PG_ADMIN_URL = os.environ.get(
    "REPO_UPDATER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
GOAL_REQUESTS_PER_CHANGESET = 0.05
GOAL_B_SECONDS = 1.0  # (b): flip noticed -> all READONLY, "well under a second"
SERVICE = "bench-github"
OWNER = "bench"
TARGET = f"{OWNER}/archive-me"
TARGET_PRS = 100
OTHER_REPOS = 20
OTHER_PRS = 2
POLL = 0.02  # seconds between store polls

T = TypeVar("T")

log = logging.getLogger("bench.changeset_sync")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- databases ----------------------------------------------------------------------------------


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    """A fresh, empty database for one measurement; removed afterwards (also on failure)."""
    if backend == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            remove_sqlite(path)
        return
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r} (sqlite or postgresql)")
    name = f"ru_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def pg_version() -> str:
    try:
        conn = await asyncpg.connect(PG_ADMIN_URL)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"unavailable ({exc})"
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def bench_config(emulator: RunningEmulator, db_url: str, owner: str) -> Config:
    """Default intervals: neither ``repo_sync_interval`` nor ``changeset_poll_interval`` set."""
    return parse_config(
        {
            "database": db_url,
            "external_services": [
                {
                    "name": SERVICE,
                    "kind": "github",
                    "url": emulator.base_url(HostKind.GITHUB),
                    "orgs": [owner],
                }
            ],
        },
        {},
    )


# --- small helpers ------------------------------------------------------------------------------


async def wait_until(check: Callable[[], Awaitable[T | None]], limit: float, what: str) -> T:
    """Poll ``check`` every ``POLL`` seconds until it returns something, or fail."""
    deadline = time.monotonic() + limit
    while True:
        value = await check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {limit:.0f}s")
        await asyncio.sleep(POLL)


def fmt_stats(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    if not values:
        return "-"
    lo, med, hi = min(values), statistics.median(values), max(values)
    return f"{lo:.{digits}f} / {med:.{digits}f} / {hi:.{digits}f} {unit}"


# --- measurement 1: archive -> READONLY ---------------------------------------------------------


@dataclass(slots=True)
class Flip:
    """One archive or unarchive and how long it took to reach the store."""

    kind: str  # "archive" or "unarchive"
    until_next_sync: float  # seconds from the flip to the service's scheduled next sync
    total: float  # flip -> all 100 in the expected state
    noticed: float  # (a) flip -> RepoArchived/RepoUnarchived event created_at
    applied: float  # (b) event -> all 100 in the expected state
    resynced: float  # (c) event -> all 100 re-synced from the host, requests consumed


@dataclass(slots=True)
class LatencyResult:
    backend: str
    repo_sync_interval: float
    changeset_poll_interval: float
    tracked: int
    initial_sync: float  # track -> all tracked synced OPEN
    flips: list[Flip] = field(default_factory=list)
    requests_by_kind: dict[str, int] = field(default_factory=dict)

    def of(self, kind: str) -> list[Flip]:
        return [f for f in self.flips if f.kind == kind]


def seed_latency(state: EmulatorState) -> None:
    gh = state.host(HostKind.GITHUB)
    gh.add_repo(OWNER, TARGET.split("/", 1)[1])
    for i in range(TARGET_PRS):
        gh.add_pull(TARGET, title=f"Upgrade CI ({i})")
    for r in range(OTHER_REPOS):
        repo = gh.add_repo(OWNER, f"service-{r}")
        for i in range(OTHER_PRS):
            gh.add_pull(repo.full_name, title=f"Upgrade CI on {repo.name} ({i})")
    gh.add_repo("elsewhere", "not-selected")


async def target_views(app: App, repo_id: int) -> list[cs_store.ChangesetView]:
    async with app.engine.connect() as conn:
        return await cs_store.list_changesets(conn, repo_id=repo_id)


async def pending_for(app: App, ids: Sequence[int]) -> int:
    q = changeset_sync_requests
    async with app.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(q).where(q.c.changeset_id.in_(ids))
                )
            ).scalar_one()
        )


async def flip_and_measure(
    app: App,
    state: EmulatorState,
    repo_id: int,
    archived: bool,
    limit: float,
) -> Flip:
    kind = "archive" if archived else "unarchive"
    event_kind = "RepoArchived" if archived else "RepoUnarchived"
    want = ExternalState.READONLY if archived else ExternalState.OPEN
    async with app.engine.connect() as conn:
        last_event = int(
            (
                await conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0)))
            ).scalar_one()
        )
        services = await service_store.list_services(conn)
    next_sync = services[0].next_sync_at

    flipped_wall = utcnow()
    start = time.monotonic()
    state.host(HostKind.GITHUB).set_archived(TARGET, archived)
    until_next_sync = (next_sync - flipped_wall).total_seconds() if next_sync else float("nan")

    async def all_in_state() -> float | None:
        views = await target_views(app, repo_id)
        if len(views) == TARGET_PRS and all(v.external_state is want for v in views):
            return time.monotonic()
        return None

    done = await wait_until(all_in_state, limit, f"{kind}: all {TARGET_PRS} {want.value}")
    total = done - start
    async with app.engine.connect() as conn:
        evs = [
            e
            for e in await event_store.list_events(conn, kind=event_kind, after_id=last_event)
            if e.repo_id == repo_id
        ]
    if not evs:
        raise RuntimeError(f"{kind}: states changed but no {event_kind} event was written")
    event_at = evs[0].created_at
    noticed = (event_at - flipped_wall).total_seconds()
    ids = [v.id for v in await target_views(app, repo_id)]

    async def resynced() -> float | None:
        views = await target_views(app, repo_id)
        fresh = all(v.last_synced_at is not None and v.last_synced_at >= event_at for v in views)
        if fresh and await pending_for(app, ids) == 0:
            return time.monotonic()
        return None

    resynced_at = await wait_until(resynced, 60, f"{kind}: re-sync of all {TARGET_PRS}")
    return Flip(
        kind=kind,
        until_next_sync=until_next_sync,
        total=total,
        noticed=noticed,
        applied=total - noticed,
        resynced=(resynced_at - start) - noticed,
    )


async def measure_latency(
    backend: str, workdir: Path, reps: int, rng: random.Random
) -> LatencyResult:
    state = EmulatorState()
    seed_latency(state)
    async with (
        running_emulator(state, host="127.0.0.1", port=0) as emulator,
        database(backend, workdir) as db_url,
    ):
        config = bench_config(emulator, db_url, OWNER)
        interval = config.repo_sync_interval
        async with open_app(config, {}) as app:
            stop = asyncio.Event()
            server = asyncio.create_task(serve(app, stop, api=False), name="bench-serve")
            try:

                async def first_sync() -> bool | None:
                    async with app.engine.connect() as conn:
                        ok = all(s.last_sync_at for s in await service_store.list_services(conn))
                    return True if ok else None

                await wait_until(first_sync, 60, "the first repo sync")
                async with app.engine.begin() as conn:
                    bc_id = await cs_store.create_batch_change(
                        conn, "bench-archive", "archive latency benchmark", app.clock()
                    )
                    tracked = 0
                    target_id = 0
                    for repo in await repo_store.list_repos(conn):
                        if repo.external_name == TARGET:
                            target_id = repo.id
                        host_repo = state.host(HostKind.GITHUB).repo(repo.external_name)
                        for number in host_repo.pulls:
                            await cs_store.track_changeset(
                                conn, bc_id, repo.id, number, app.clock()
                            )
                            tracked += 1
                if not target_id:
                    raise RuntimeError(f"{TARGET} was not synced into the store")
                start = time.monotonic()
                app.changeset_syncer.wake()

                async def all_open() -> bool | None:
                    async with app.engine.connect() as conn:
                        views = await cs_store.list_changesets(conn)
                    ok = len(views) == tracked and all(
                        v.external_state is ExternalState.OPEN for v in views
                    )
                    return True if ok else None

                await wait_until(all_open, 120, "the first sync of the tracked changesets")
                result = LatencyResult(
                    backend=backend,
                    repo_sync_interval=interval,
                    changeset_poll_interval=config.changeset_poll_interval,
                    tracked=tracked,
                    initial_sync=time.monotonic() - start,
                )
                limit = 2 * interval + 60
                for rep in range(reps):
                    for archived in (True, False):
                        # Land the flip at a random moment of the repo-sync interval.
                        await asyncio.sleep(rng.uniform(0, interval))
                        flip = await flip_and_measure(app, state, target_id, archived, limit)
                        result.flips.append(flip)
                        print(
                            f"  [{backend}] rep {rep + 1}/{reps} {flip.kind:<9} "
                            f"next sync in {flip.until_next_sync:5.1f}s -> total {flip.total:6.2f}s"
                            f" (a) {flip.noticed:6.2f}s (b) {flip.applied:6.3f}s"
                            f" (c) {flip.resynced:6.3f}s",
                            flush=True,
                        )
                result.requests_by_kind = dict(app.counter.by_kind)
                return result
            finally:
                stop.set()
                await server


# --- measurement 2: requests per changeset ------------------------------------------------------


@dataclass(slots=True)
class SyncRun:
    changesets: int
    rounds: int
    requests: int  # app-side RequestCounter delta
    emulator_requests: int  # emulator-side request_count delta
    by_kind: dict[str, int]
    seconds: float
    split: dict[str, float] = field(default_factory=dict)  # where the wall time went

    @property
    def per_changeset(self) -> float:
        return self.requests / self.changesets if self.changesets else float("nan")

    @property
    def rate(self) -> float:
        return self.changesets / self.seconds if self.seconds else float("nan")


@dataclass(slots=True)
class ScaleResult:
    backend: str
    repos: int
    prs_per_repo: int
    batch_size: int  # changesets claimed per round (config.changeset_batch_size)
    graphql_batch: int  # pull requests per GraphQL query (GitHubSource.batch_size)
    repo_sync_seconds: float
    repo_sync_requests: int
    track_seconds: float
    first: SyncRun
    forced: SyncRun
    analyzed: SyncRun  # forced re-sync again, after ANALYZE
    idle_claim_stale_ms: float  # one claim_work with nothing due, before ANALYZE (median of 5)
    idle_claim_fresh_ms: float  # the same after ANALYZE
    request_seconds: float  # time to write the forced sync requests


@contextlib.contextmanager
def timed(owner: Any, name: str, acc: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time spent in the coroutine function ``owner.name`` to ``acc[key]`` (the
    emulator shares the event loop and its handlers run without awaiting, so this is its CPU
    time); restored on exit."""
    original = getattr(owner, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            acc[key] = acc.get(key, 0.0) + time.perf_counter() - t0

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.asynccontextmanager
async def _timers(split: dict[str, float]) -> AsyncIterator[None]:
    with (
        timed(GraphQLEndpoint, "handle", split, "emulator"),
        timed(syncer_module, "claim_work", split, "claim"),
        timed(syncer_module, "complete_syncs", split, "write"),
    ):
        yield


async def drain(app: App, state: EmulatorState, split: dict[str, float]) -> SyncRun:
    """Run the changeset syncer until a round claims nothing; count requests. ``split`` is the
    accumulator of the ``timed`` wrappers installed by ``measure_scale``: it is reset here and
    then holds the time spent in the emulator's GraphQL handler, claiming and writing."""
    host = state.host(HostKind.GITHUB)
    before, before_emu = app.counter.count, host.request_count
    kinds_before = dict(app.counter.by_kind)
    synced = rounds = 0
    split.clear()
    start = time.monotonic()
    while True:
        r = await app.changeset_syncer.run_once()
        if r.claimed == 0:
            break
        if r.failed or r.released:
            raise RuntimeError(f"sync round had failures: {r}")
        rounds += 1
        synced += r.synced
    seconds = time.monotonic() - start
    taken = dict(split)
    taken["other"] = seconds - sum(taken.values())
    by_kind = {
        k: v - kinds_before.get(k, 0)
        for k, v in app.counter.by_kind.items()
        if v - kinds_before.get(k, 0)
    }
    return SyncRun(
        changesets=synced,
        rounds=rounds,
        requests=app.counter.count - before,
        emulator_requests=host.request_count - before_emu,
        by_kind=by_kind,
        seconds=seconds,
        split=taken,
    )


async def measure_scale(backend: str, workdir: Path, n_repos: int, n_prs: int) -> ScaleResult:
    state = EmulatorState()
    state.seed(
        HostKind.GITHUB, orgs=1, repos_per_org=n_repos, pulls_per_repo=n_prs, org_prefix="scale"
    )
    owner = "scale0"
    split: dict[str, float] = {}
    # Installed before the emulator starts: its routes bind the handler when it is built.
    async with (
        _timers(split),
        running_emulator(state, host="127.0.0.1", port=0) as emulator,
        database(backend, workdir) as db_url,
    ):
        config = bench_config(emulator, db_url, owner)
        async with open_app(config, {}) as app:
            start = time.monotonic()
            sync = await app.repo_sync_worker.sync_service(SERVICE)
            if not sync.complete or sync.added != n_repos:
                raise RuntimeError(f"repo sync incomplete: {sync.summary()}")
            repo_sync_seconds = time.monotonic() - start
            repo_sync_requests = app.counter.count

            start = time.monotonic()
            async with app.engine.begin() as conn:
                bc_id = await cs_store.create_batch_change(
                    conn, "bench-scale", "10k changesets", app.clock()
                )
                repos = await repo_store.list_repos(conn)
            ids: list[int] = []
            for repo in repos:
                async with app.engine.begin() as conn:
                    for number in range(1, n_prs + 1):
                        ids.append(
                            await cs_store.track_changeset(
                                conn, bc_id, repo.id, number, app.clock()
                            )
                        )
            track_seconds = time.monotonic() - start
            total = n_repos * n_prs
            if len(ids) != total:
                raise RuntimeError(f"tracked {len(ids)} changesets, expected {total}")

            first = await drain(app, state, split)
            await check_all_synced(app, total)
            idle_stale = await idle_claim_ms(app)

            start = time.monotonic()
            async with app.engine.begin() as conn:
                requested = await cs_store.request_sync(conn, ids, "bench-forced", app.clock())
            request_seconds = time.monotonic() - start
            if requested != total:
                raise RuntimeError(f"requested {requested} syncs, expected {total}")
            forced = await drain(app, state, split)
            await check_all_synced(app, total)

            # Fresh planner statistics (what autovacuum would give a long-running database):
            # right after a bulk import they are stale and PostgreSQL misplans the claim query.
            async with app.engine.begin() as conn:
                await conn.exec_driver_sql("ANALYZE")
                await cs_store.request_sync(conn, ids, "bench-forced-analyzed", app.clock())
            analyzed = await drain(app, state, split)
            await check_all_synced(app, total)
            idle_fresh = await idle_claim_ms(app)
            source = app.sources[SERVICE]
            return ScaleResult(
                backend=backend,
                repos=n_repos,
                prs_per_repo=n_prs,
                batch_size=config.changeset_batch_size,
                graphql_batch=int(getattr(source, "batch_size", 0)),
                repo_sync_seconds=repo_sync_seconds,
                repo_sync_requests=repo_sync_requests,
                track_seconds=track_seconds,
                first=first,
                forced=forced,
                analyzed=analyzed,
                idle_claim_stale_ms=idle_stale,
                idle_claim_fresh_ms=idle_fresh,
                request_seconds=request_seconds,
            )


async def idle_claim_ms(app: App) -> float:
    """What one poll of an idle changeset syncer costs: ``claim_work`` with nothing due
    (median of 5, rolled back)."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        async with app.engine.connect() as conn:
            claimed = await claim_work(conn, "bench-idle", app.clock(), timedelta(minutes=5), 200)
            await conn.rollback()
        if claimed:
            raise RuntimeError(f"idle claim found {len(claimed)} changesets due")
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def check_all_synced(app: App, total: int) -> None:
    c, q = changesets, changeset_sync_requests
    async with app.engine.connect() as conn:
        synced = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(c)
                .where(c.c.last_synced_at.is_not(None), c.c.external_state == "OPEN")
            )
        ).scalar_one()
        pending = (await conn.execute(sa.select(sa.func.count()).select_from(q))).scalar_one()
    if synced != total or pending:
        raise RuntimeError(f"{synced}/{total} changesets synced OPEN, {pending} requests pending")


# --- report -------------------------------------------------------------------------------------


def latency_table(results: Sequence[LatencyResult]) -> list[str]:
    lines = [
        "| backend | flip | n | total min / median / max | (a) flip -> repo sync noticed "
        "| (b) noticed -> all 100 in store | (c) noticed -> all 100 re-synced |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for kind, label in (("archive", "archive -> READONLY"), ("unarchive", "unarchive -> OPEN")):
            flips = r.of(kind)
            lines.append(
                f"| {r.backend} | {label} | {len(flips)} "
                f"| {fmt_stats([f.total for f in flips])} "
                f"| {fmt_stats([f.noticed for f in flips])} "
                f"| {fmt_stats([f.applied * 1000 for f in flips], 'ms', 0)} "
                f"| {fmt_stats([f.resynced * 1000 for f in flips], 'ms', 0)} |"
            )
    return lines


def scale_table(results: Sequence[ScaleResult]) -> list[str]:
    lines = [
        "| backend | run | changesets | rounds | HTTP requests (app / emulator) "
        "| requests per changeset | goal <= 0.05 | time | changesets/s "
        "| time split: emulator / claim / write / other |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for label, run in (
            ("first sync", r.first),
            ("forced re-sync", r.forced),
            ("forced re-sync after ANALYZE", r.analyzed),
        ):
            ok = "PASS" if run.per_changeset <= GOAL_REQUESTS_PER_CHANGESET else "FAIL"
            lines.append(
                f"| {r.backend} | {label} | {run.changesets} | {run.rounds} "
                f"| {run.requests} / {run.emulator_requests} | {run.per_changeset:.4f} | {ok} "
                f"| {run.seconds:.1f} s | {run.rate:.0f} | {split_text(run.split)} |"
            )
    return lines


def split_text(split: dict[str, float]) -> str:
    keys = ("emulator", "claim", "write", "other")
    return " / ".join(f"{split.get(k, 0.0):.1f}" for k in keys) + " s"


def verdicts(lat: Sequence[LatencyResult], scale: Sequence[ScaleResult]) -> list[str]:
    out = []
    for r in scale:
        worst = max(run.per_changeset for run in (r.first, r.forced, r.analyzed))
        ok = worst <= GOAL_REQUESTS_PER_CHANGESET
        out.append(
            f"- {r.backend}: requests per changeset {worst:.4f} (worst of the three runs) "
            f"{'<=' if ok else '>'} {GOAL_REQUESTS_PER_CHANGESET}: **{'PASS' if ok else 'FAIL'}**"
        )
    for lr in lat:
        worst_b = max((f.applied for f in lr.flips), default=float("nan"))
        ok = worst_b < GOAL_B_SECONDS
        out.append(
            f"- {lr.backend}: (b) flip noticed -> all {TARGET_PRS} in the store, worst "
            f"{worst_b * 1000:.0f} ms {'<' if ok else '>='} {GOAL_B_SECONDS * 1000:.0f} ms: "
            f"**{'PASS' if ok else 'FAIL'}**"
        )
    return out


def machine_lines(pg: str) -> list[str]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- date: {utcnow().strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs (nproc), {cpu}",
        f"- python: {platform.python_version()} ({sys.executable})",
        f"- PostgreSQL: {pg} on 127.0.0.1:5432; SQLite {_sqlite_version()}, "
        f"SQLAlchemy {sa.__version__}",
        f"- load average at the end: {load} (other engineers' jobs share this machine)",
    ]


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def render(
    command: str,
    lat: Sequence[LatencyResult],
    scale: Sequence[ScaleResult],
    pg: str,
    reps: int,
    seed: int,
) -> str:
    lines = ["# Changeset sync benchmark", "", "Produced by `bench/changeset_sync.py`.", ""]
    lines += ["## Machine", "", *machine_lines(pg), "", "## Command", "", f"    {command}", ""]
    lines += ["## Verdict", "", *verdicts(lat, scale), ""]
    if lat:
        r0 = lat[0]
        lines += [
            "## 1. Archive -> READONLY latency",
            "",
            f"Default intervals (from `Config` in `src/repo_updater/config.py`): "
            f"`repo_sync_interval` = {r0.repo_sync_interval:g} s, "
            f"`changeset_poll_interval` = {r0.changeset_poll_interval:g} s; the repo sync loop "
            "checks for due services every 1 s (`App.run_repo_sync_loop(tick=1.0)`).",
            f"GitHub emulator: `{TARGET}` with {TARGET_PRS} open PRs, {OTHER_REPOS} other repos "
            f"with {OTHER_PRS} PRs each, all {r0.tracked} tracked in one batch change; "
            f"`serve(api=False)`. {reps} archive + {reps} unarchive flips, each at a uniformly "
            f"random moment of the repo-sync interval (seed {seed}). Store polled every "
            f"{POLL * 1000:.0f} ms.",
            "",
            "- total: flip in the emulator -> all 100 in the expected state in the store",
            "- (a): flip -> `created_at` of the `RepoArchived`/`RepoUnarchived` event (the repo "
            "sync that saw it; `created_at` is taken just before that page's transaction)",
            "- (b): event -> all 100 `READONLY`/`OPEN` in the store",
            "- (c): event -> all 100 re-synced from the host and their sync requests consumed "
            "(the durable request rows + wake-up of the changeset syncer)",
            "",
            *latency_table(lat),
            "",
            "Initial sync of the tracked changesets (track -> all OPEN): "
            + ", ".join(f"{r.backend} {r.initial_sync:.2f} s" for r in lat),
            "",
            "Per flip (seconds until the next scheduled repo sync at the moment of the flip, "
            "total, (a), (b), (c)):",
            "",
        ]
        for r in lat:
            for f in r.flips:
                lines.append(
                    f"- {r.backend} {f.kind}: next sync in {f.until_next_sync:.1f}, total "
                    f"{f.total:.2f}, (a) {f.noticed:.2f}, (b) {f.applied * 1000:.0f} ms, "
                    f"(c) {f.resynced * 1000:.0f} ms"
                )
        lines.append("")
    if scale:
        s0 = scale[0]
        n = s0.repos * s0.prs_per_repo
        lines += [
            f"## 2. API requests per changeset ({n} changesets on GitHub)",
            "",
            f"GitHub emulator: {s0.repos} repos x {s0.prs_per_repo} open PRs, all tracked in one "
            f"batch change. `changeset_syncer.run_once()` until a round claims nothing; "
            f"`changeset_batch_size` = {s0.batch_size} changesets per round (default), "
            f"GitHubSource loads {s0.graphql_batch} pull requests per GraphQL query. Requests "
            "counted by the app's `RequestCounter` and by the emulator's `request_count` (only "
            "the changeset sync phase; the repo listing is reported separately).",
            "",
            *scale_table(scale),
            "",
        ]
        for sr in scale:
            lines.append(
                f"- {sr.backend}: repo sync {sr.repo_sync_seconds:.2f} s / "
                f"{sr.repo_sync_requests} requests; tracking {n} changesets "
                f"(`track_changeset`, one transaction per repo) {sr.track_seconds:.1f} s; "
                f"writing {n} forced sync requests (`request_sync`) {sr.request_seconds:.2f} s; "
                f"requests by kind: first {sr.first.by_kind}, forced {sr.forced.by_kind}, "
                f"after ANALYZE {sr.analyzed.by_kind}; one idle poll (`claim_work` with "
                f"nothing due, {n} tracked): {sr.idle_claim_stale_ms:.1f} ms before ANALYZE, "
                f"{sr.idle_claim_fresh_ms:.1f} ms after"
            )
        lines.append("")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> str | None:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgresql"):
            print(f"error: unknown backend {b!r} (sqlite, postgresql)", file=sys.stderr)
            return None
    rng = random.Random(args.seed)
    pg = await pg_version() if "postgresql" in backends else "not used"
    lat: list[LatencyResult] = []
    scale: list[ScaleResult] = []
    with tempfile.TemporaryDirectory(prefix="ru-bench-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            if not args.skip_scale:
                print(
                    f"[{backend}] {args.repos * args.prs} changesets: first sync + forced re-sync",
                    flush=True,
                )
                s = await measure_scale(backend, workdir, args.repos, args.prs)
                scale.append(s)
                print("\n".join(scale_table([s])), flush=True)
            if args.reps > 0:
                print(
                    f"[{backend}] archive latency, {args.reps} reps (default intervals)", flush=True
                )
                lat.append(await measure_latency(backend, workdir, args.reps, rng))
                print("\n".join(latency_table(lat[-1:])), flush=True)
    command = ".venv/bin/python bench/changeset_sync.py " + " ".join(
        shlex.quote(a) for a in args.argv
    )
    report = render(command.strip(), lat, scale, pg, args.reps, args.seed)
    print()
    print(report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated")
    p.add_argument("--reps", type=int, default=5, help="archive/unarchive repetitions (0: skip)")
    p.add_argument("--repos", type=int, default=100, help="repos for the requests measurement")
    p.add_argument("--prs", type=int, default=100, help="open PRs per repo for it")
    p.add_argument("--skip-scale", action="store_true", help="skip the requests measurement")
    p.add_argument("--seed", type=int, default=1, help="seed of the random flip moments")
    p.add_argument(
        "--output",
        default=str(Path(__file__).resolve().parent / "results" / "changeset_sync.md"),
    )
    p.add_argument("--verbose", action="store_true", help="log the app's INFO messages")
    args = p.parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    report = asyncio.run(run(args))
    if report is None:
        return 2
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
