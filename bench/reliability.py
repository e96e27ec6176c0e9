"""Reliability benchmark (issue 7): kill -9 / restart loops during syncs, on SQLite and PostgreSQL.

    .venv/bin/python bench/reliability.py [--backends sqlite,postgresql] [--runs 3]
        [--repos 3000] [--tracked 500] [--kills 12] [--latency-ms 15]

Per backend and run, on a throw-away database, against the emulator (in this process, on
127.0.0.1, every request delayed ``--latency-ms`` so that syncs take a while):

0. **baseline**: a one-shot ``repo-updater sync`` of the whole listing into a fresh database,
   uninterrupted: the floor the convergence times are compared with (same run, same load).
1. **initial sync under kills**: ``repo-updater serve`` (a real subprocess) is started, killed
   with SIGKILL at a random moment while it holds work (a service claim or changeset claims),
   and restarted, ``kills / 3`` times; then left running until the store holds the listing.
2. **churn under kills**: ``--tracked`` pull requests are tracked (durable sync requests), then
   ``kills - kills / 3`` times: the emulator changes (archive, unarchive, rename, delete, add
   repos), ``serve`` starts, is killed mid-work and restarted.
3. **convergence**: ``serve`` runs until the store matches the emulator, then gets SIGTERM.

Checked at the end of each run (all must be 0 for PASS): *rows lost* (repos the host lists that
are not live in the store), *stale rows* (live in the store, gone from the host), *duplicates*
(live rows sharing an external id or a name, ignoring case; changesets tracked twice), *wrong
names or archived flags*, *pending requests* (every changeset sync request consumed), *wrong
changeset states* (open on an archived repo must be READONLY, else OPEN), *claims left* by the
last process after its SIGTERM (a killed process's claims are not released: they expire, and
another worker takes them over). Reported: kills, kills that landed mid-work, time to converge
after the last kill (min and median of the runs, and as a ratio of the baseline).

Leases are shortened (``repo_sync_lease`` 4 s, ``changeset_lease`` 6 s) so that a killed
worker's claims run out within the run; the defaults are 120 s and 300 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
import yaml
from api_common import database
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.domain import HostKind
from repo_updater.emulator.server import RunningEmulator, running_emulator
from repo_updater.emulator.state import EmulatorState, HostState
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from repo_updater.store.db import create_engine, migrate
from repo_updater.store.schema import (
    changeset_sync_requests,
    changesets,
    external_services,
    repos,
)

GH = HostKind.GITHUB
PREFIX = "bench.emu"
CLI = [sys.executable, "-m", "repo_updater.entrypoints.cli"]
RESULTS = Path(__file__).resolve().parent / "results" / "reliability.md"
CONVERGE_TIMEOUT = 300.0


@dataclass
class RunResult:
    backend: str
    run: int
    baseline_s: float = 0.0
    kills: int = 0
    kills_mid_work: int = 0
    converge_initial_s: float = 0.0
    converge_final_s: float = 0.0
    checks: dict[str, int] = field(default_factory=dict)
    exit_on_sigterm: int | None = None
    tracebacks: int = 0

    @property
    def passed(self) -> bool:
        return not any(self.checks.values()) and self.exit_on_sigterm == 0


# --- databases ----------------------------------------------------------------------------------


def write_config(tmp: Path, db: str, emu: RunningEmulator) -> Path:
    service = {"name": "gh", "kind": "github", "url": emu.base_url(GH), "orgs": ["acme"],
               "name_prefix": PREFIX}  # fmt: skip
    data = {
        "database": db,
        "repo_sync_interval": 2,
        "changeset_poll_interval": 0.5,
        "repo_sync_lease": 4,
        "changeset_lease": 6,
        "api": {"host": "127.0.0.1", "port": 0},
        "external_services": [service],
    }
    path = tmp / f"config-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- the child process --------------------------------------------------------------------------


class Child:
    """A ``repo-updater`` subprocess with its output in a log file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.args, self.tmp = args, tmp
        self.log = tmp / f"{args[0]}-{uuid.uuid4().hex[:6]}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> Child:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_UPDATER_")}
        with self.log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *CLI, *self.args, cwd=self.tmp, env=env, stdout=out, stderr=out
            )
        return self

    async def wait(self) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), CONVERGE_TIMEOUT)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no handler runs, nothing is released
        await self.wait()

    async def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return await self.wait()

    def tracebacks(self) -> int:
        return self.log.read_text(errors="replace").count("Traceback")


# --- the emulator and what the store should hold ------------------------------------------------


def seed(host: HostState, count: int, tracked: int) -> None:
    for i in range(count):
        repo = host.add_repo("acme", f"repo-{i}")
        if i < tracked:
            host.add_pull(repo.full_name, title=f"change {i}")


def churn(host: HostState, rng: random.Random, step: int) -> None:
    """Archive, unarchive, rename, delete and add a few repos."""
    live = sorted(host.repos.values(), key=lambda r: r.id)
    archived = [r for r in live if r.archived]
    for repo in rng.sample(live, 8):
        host.set_archived(repo.full_name, True)
    for repo in rng.sample(archived, min(4, len(archived))):
        host.set_archived(repo.full_name, False)
    for k, repo in enumerate(rng.sample(live, 3)):
        if repo.full_name in host.by_full_name:
            host.rename_repo(repo.full_name, f"renamed-{step}-{k}-{repo.id}")
    for repo in rng.sample(live, 2):
        if repo.full_name in host.by_full_name:
            host.delete_repo(repo.full_name)
    for k in range(3):
        host.add_repo("acme", f"new-{step}-{k}")


def expected(host: HostState) -> dict[str, tuple[str, bool]]:
    """external id -> (store name, archived) of every repo the host lists."""
    return {str(r.id): (f"{PREFIX}/{r.full_name}", r.archived) for r in host.repos.values()}


# --- reading the store --------------------------------------------------------------------------


async def in_flight(engine: AsyncEngine, pid: int) -> bool:
    """Whether process ``pid`` holds work: a service claim or changeset claims (a killed
    process's claims linger until their leases run out; they do not count)."""
    mine = f"%:{pid}%"  # claims are "<host>:<pid>" (changesets), "<host>:<pid>/<run>" (services)
    async with engine.connect() as conn:
        services = await conn.execute(
            sa.select(sa.func.count())
            .select_from(external_services)
            .where(external_services.c.claimed_by.like(mine))
        )
        claimed = await conn.execute(
            sa.select(sa.func.count())
            .select_from(changesets)
            .where(changesets.c.claimed_by.like(mine))
        )
        return bool(services.scalar_one()) or bool(claimed.scalar_one())


async def check(
    engine: AsyncEngine, host: HostState, tracked: int, pid: int | None = None
) -> dict[str, int]:
    """What differs between the store and the host (every figure 0 when converged), and the
    claims process ``pid`` still holds (a killed process's claims are never released: they
    expire, and are not counted)."""
    want = expected(host)
    mine = f"%:{pid}%"
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                sa.select(repos.c.id, repos.c.external_id, repos.c.name, repos.c.archived).where(
                    repos.c.deleted_at.is_(None)
                )
            )
        ).all()
        pending = (
            await conn.execute(sa.select(sa.func.count()).select_from(changeset_sync_requests))
        ).scalar_one()
        cs = (
            await conn.execute(
                sa.select(changesets.c.repo_id, changesets.c.external_state, changesets.c.id)
            )
        ).all()
        claims = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(changesets)
                .where(changesets.c.claimed_by.like(mine))
            )
        ).scalar_one()
        service_claims = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(external_services)
                .where(external_services.c.claimed_by.like(mine))
            )
        ).scalar_one()
    have = {r.external_id: (r.name, r.archived) for r in live}
    archived_by_id = {r.id: r.archived for r in live}
    wrong_states = sum(
        1
        for repo_id, state, _ in cs
        if repo_id in archived_by_id
        and state != ("READONLY" if archived_by_id[repo_id] else "OPEN")
    )
    return {
        "rows lost": len(set(want) - set(have)),
        "stale rows": len(set(have) - set(want)),
        "duplicate ids": len(live) - len(have),
        "duplicate names": len(live) - len({r.name.lower() for r in live}),
        "wrong names or flags": sum(1 for k, v in have.items() if k in want and want[k] != v),
        "pending requests": int(pending),
        "wrong changeset states": wrong_states,
        "changesets doubled or lost": abs(len(cs) - tracked),
        "claims left": int(claims) + int(service_claims),
    }


async def converge(engine: AsyncEngine, host: HostState, tracked: int) -> float:
    """Seconds until the store matches the host (claims aside: the process still runs)."""
    start = time.monotonic()
    while True:
        got = await check(engine, host, tracked)
        if not any(v for k, v in got.items() if k != "claims left"):
            return time.monotonic() - start
        if time.monotonic() - start > CONVERGE_TIMEOUT:
            raise TimeoutError(f"no convergence within {CONVERGE_TIMEOUT:.0f}s: {got}")
        await asyncio.sleep(0.1)


# --- one run ------------------------------------------------------------------------------------


async def kill_during_work(
    tmp: Path, cfg: Path, engine: AsyncEngine, rng: random.Random, result: RunResult
) -> None:
    child = await Child(tmp, "serve", "--config", str(cfg)).start()
    assert child.proc is not None
    pid = child.proc.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until it holds work (or gives none in 30 s)
        if await in_flight(engine, pid):
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(rng.uniform(0.0, 0.8))  # a random moment of the work
    mid_work = await in_flight(engine, pid)
    await child.kill()
    result.kills += 1
    result.kills_mid_work += int(mid_work)
    result.tracebacks += child.tracebacks()


async def baseline(backend: str, tmp: Path, emu: RunningEmulator) -> float:
    async with database(backend, tmp) as db:
        cfg = write_config(tmp, db, emu)
        start = time.monotonic()
        code = await (await Child(tmp, "sync", "--config", str(cfg)).start()).wait()
        took = time.monotonic() - start
        if code != 0:
            raise RuntimeError(f"baseline sync exited {code}")
        return took


async def one_run(backend: str, run: int, args: argparse.Namespace, tmp: Path) -> RunResult:
    rng = random.Random(run)
    result = RunResult(backend, run)
    state = EmulatorState()
    host = state.host(GH)
    seed(host, args.repos, args.tracked)
    host.faults.latency_ms = args.latency_ms
    async with running_emulator(state) as emu:
        result.baseline_s = await baseline(backend, tmp, emu)
        async with database(backend, tmp) as db:
            engine = create_engine(db)
            await migrate(engine)
            cfg = write_config(tmp, db, emu)
            try:
                first = args.kills // 3
                for _ in range(first):
                    await kill_during_work(tmp, cfg, engine, rng, result)
                child = await Child(tmp, "serve", "--config", str(cfg)).start()
                result.converge_initial_s = await converge(engine, host, 0)
                await child.terminate()
                await track(engine, host, args.tracked)
                for step in range(args.kills - first):
                    churn(host, rng, step)
                    await kill_during_work(tmp, cfg, engine, rng, result)
                child = await Child(tmp, "serve", "--config", str(cfg)).start()
                result.converge_final_s = await converge(engine, host, args.tracked)
                result.exit_on_sigterm = await child.terminate()
                result.tracebacks += child.tracebacks()
                assert child.proc is not None
                result.checks = await check(engine, host, args.tracked, child.proc.pid)
            finally:
                await engine.dispose()
    return result


async def track(engine: AsyncEngine, host: HostState, count: int) -> None:
    """Track pull request #1 of the first ``count`` repos (each with a durable request)."""
    names = [f"{PREFIX}/acme/repo-{i}" for i in range(count)]
    async with engine.begin() as conn:
        now = datetime.now(UTC)
        bc = await cs_store.create_batch_change(conn, "bench", "", now)
        ids = await repo_store.repo_ids_by_name(conn, names)
        await cs_store.track_changesets(conn, bc, [(ids[n], 1) for n in names], now)


# --- report -------------------------------------------------------------------------------------


def fmt(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f}"


def report(results: list[RunResult], args: argparse.Namespace, started: datetime) -> str:
    lines = [
        "# Reliability benchmark: kill -9 / restart during syncs",
        "",
        "Produced by `bench/reliability.py` (see its docstring and `bench/README.md`).",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.system()} {platform.release()}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}",
        f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other engineers' jobs share this machine)",
        f"- command: `.venv/bin/python bench/reliability.py --backends {args.backends} "
        f"--runs {args.runs} --repos {args.repos} --tracked {args.tracked} "
        f"--kills {args.kills} --latency-ms {args.latency_ms}`",
        f"- emulator: one GitHub org of {args.repos} repos (100 per page), {args.tracked} "
        f"tracked pull requests, every request delayed {args.latency_ms} ms; `serve` with "
        "repo_sync_interval 2 s, changeset_poll_interval 0.5 s, leases 4 s / 6 s",
        "",
        "## Per run",
        "",
        "| backend | run | kills (mid-work) | baseline sync s | converge after kills: "
        "initial / final s | final / baseline | SIGTERM exit | tracebacks | "
        "lost / stale / dup ids / dup names / wrong names+flags | pending requests | "
        "wrong changeset states | changesets doubled or lost | claims left |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r.checks
        lines.append(
            f"| {r.backend} | {r.run} | {r.kills} ({r.kills_mid_work}) | {r.baseline_s:.1f} | "
            f"{r.converge_initial_s:.1f} / {r.converge_final_s:.1f} | "
            f"{r.converge_final_s / r.baseline_s:.1f}x | {r.exit_on_sigterm} | {r.tracebacks} | "
            f"{c['rows lost']} / {c['stale rows']} / {c['duplicate ids']} / "
            f"{c['duplicate names']} / {c['wrong names or flags']} | {c['pending requests']} | "
            f"{c['wrong changeset states']} | {c['changesets doubled or lost']} | "
            f"{c['claims left']} |"
        )
    lines += ["", "## Summary (min / median of the runs)", ""]
    for backend in dict.fromkeys(r.backend for r in results):
        rs = [r for r in results if r.backend == backend]
        kills = sum(r.kills for r in rs)
        bad = {k: sum(r.checks[k] for r in rs) for k in rs[0].checks}
        verdict = "PASS" if all(r.passed for r in rs) else "FAIL"
        lines += [
            f"- {backend}: {kills} kills ({sum(r.kills_mid_work for r in rs)} mid-work) in "
            f"{len(rs)} runs; rows lost {bad['rows lost']}, duplicates "
            f"{bad['duplicate ids'] + bad['duplicate names']}, stale rows {bad['stale rows']}, "
            f"pending requests left {bad['pending requests']}, wrong changeset states "
            f"{bad['wrong changeset states']}, claims left after SIGTERM {bad['claims left']}: "
            f"**{verdict}**",
            f"  - baseline (uninterrupted one-shot sync of the listing): "
            f"{fmt([r.baseline_s for r in rs])} s; converge after the last kill: "
            f"{fmt([r.converge_final_s for r in rs])} s "
            f"({fmt([r.converge_final_s / r.baseline_s for r in rs])} x baseline; includes "
            "waiting out the killed worker's leases)",
        ]
    lines += [
        "",
        "Reading the figures: *kills (mid-work)* counts kills that landed while the process held",
        "a service claim or changeset claims (a sync in flight). *Converge* is measured from",
        "the restart after the last kill until the store matches the emulator (names, archived",
        "flags, changeset states, no pending request); it includes the restarted process's",
        "start (imports, migrations) and the wait for the dead worker's leases (4 s / 6 s).",
        "",
    ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="ru-bench-rel-") as tmp:
        for backend in args.backends.split(","):
            for run in range(1, args.runs + 1):
                r = await one_run(backend, run, args, Path(tmp))
                print(
                    f"{backend} run {run}: kills {r.kills} ({r.kills_mid_work} mid-work), "
                    f"baseline {r.baseline_s:.1f}s, converge {r.converge_final_s:.1f}s, "
                    f"checks {r.checks}, SIGTERM exit {r.exit_on_sigterm}",
                    flush=True,
                )
                results.append(r)
    args.out.write_text(report(results, args, started))
    print(f"wrote {args.out}")
    return 0 if all(r.passed for r in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repos", type=int, default=3000)
    parser.add_argument("--tracked", type=int, default=500)
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--latency-ms", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
