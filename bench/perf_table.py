"""Issue 12's performance table, each row with its floor measured in the same run.

    .venv/bin/python bench/perf_table.py [--repos 20000] [--cron-repos 30000]
        [--changesets 20000] [--runs 3] [--backends sqlite,postgresql]
        [--src DIR] [--label after] [--json FILE]
    .venv/bin/python bench/perf_table.py report BEFORE.json AFTER.json [--out FILE]

Rows (min and median of ``--runs`` runs; every sync runs in a child process of its own):

- *first sync* of N emulated GitHub repos (10 orgs, 100 a page) into a fresh database;
  floor = fetch every page (httpx, one at a time) + ``json.loads`` + ONE bulk insert
  (executemany) of the same N rows into a fresh copy of ``repos``.
- *unchanged re-sync, cold*: a fresh process re-syncs the unchanged N (every page 200, parsed
  and diffed); floor = the same fetch + ``json.loads`` + ONE SELECT of the N stored rows.
- *unchanged re-sync, warm*: the first sync's process re-syncs (ETag cache warm, every page
  304), as ``serve`` does; floor = the conditional fetch of every page (304) + ONE SELECT.
- *a fresh ``repo-updater sync`` process*, ``--cron-repos`` unchanged repos, SQLite, startup
  included (wall time of ``python -m repo_updater sync``); floor = the wall time of a fresh
  Python process that imports httpx and SQLAlchemy, fetches + parses the pages and runs ONE
  SELECT of the rows.
- *claims*: ``--changesets`` changesets tracked at once (``track_changesets``: each gets a sync
  request), then drained by ``claim_work(limit=200)`` rounds (each round's claims completed):
  the first rounds' claim time, the last rounds', the whole drain; then the idle poll (nothing
  due) before and after an explicit ``ANALYZE``.

Unchanged re-syncs must write 0 rows (``SyncResult.rows_written``); peak RSS is ``ru_maxrss``
of the syncing child. ``--src DIR`` runs the children on another checkout's ``DIR/src`` (the
"before" column: the unmodified commit in a worktree). Only 127.0.0.1 is used; children and
throw-away databases are cleaned up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import repo_sync as rs

RESULTS = Path(__file__).resolve().parent / "results" / "perf.md"
SERVICE = "bench-github"
CLAIM_LIMIT = 200
FLOOR = Path(__file__).resolve().parent / "perf_floor.py"


# --- children --------------------------------------------------------------------------------


def config_dict(url: str, port: int, orgs: int) -> dict[str, Any]:
    return {
        "database": url,
        "external_services": [
            {
                "name": SERVICE,
                "kind": "github",
                "url": f"http://127.0.0.1:{port}/github",
                "orgs": [f"org{i}" for i in range(orgs)],
            }
        ],
    }


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def child_sync(url: str, port: int, orgs: int, mode: str, warm_runs: int) -> dict[str, Any]:
    """``first``: first sync, then ``warm_runs`` warm re-syncs; ``cold``: one re-sync."""
    from repo_updater.bootstrap import open_app
    from repo_updater.config import parse_config

    out: dict[str, Any] = {}
    async with open_app(parse_config(config_dict(url, port, orgs), {}), env={}) as app:
        start = time.perf_counter()
        r = await app.repo_sync_worker.sync_service(SERVICE)
        key = "first" if mode == "first" else "cold"
        out[key] = {
            "s": time.perf_counter() - start,
            "listed": r.listed,
            "added": r.added,
            "rows_written": r.rows_written,
            "complete": r.complete,
        }
        if mode == "first":
            out["warm"] = []
            for _ in range(warm_runs):
                start = time.perf_counter()
                r = await app.repo_sync_worker.sync_service(SERVICE)
                out["warm"].append(
                    {
                        "s": time.perf_counter() - start,
                        "listed": r.listed,
                        "rows_written": r.rows_written,
                        "complete": r.complete,
                    }
                )
    out["peak_rss_mb"] = peak_mb()
    return out


async def child_claims(url: str, n: int) -> dict[str, Any]:
    import sqlalchemy as sa

    from repo_updater.store import changesets as cs_store
    from repo_updater.store.changeset_claims import claim_work
    from repo_updater.store.db import create_engine, migrate
    from repo_updater.store.schema import changeset_sync_requests, changesets, repos

    engine = create_engine(url)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(
                repos.insert(),
                [
                    {
                        "name": f"github/o/r{i}",
                        "host_kind": "github",
                        "host_url": "http://h",
                        "external_id": str(i),
                        "external_name": f"o/r{i}",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(n // 100)
                ],
            )
            ids = [r[0] for r in await conn.execute(sa.select(repos.c.id).order_by(repos.c.id))]
            bc = await cs_store.create_batch_change(conn, "bench", "", now)
        start = time.perf_counter()
        async with engine.begin() as conn:
            pairs = [(ids[i // 100], i % 100 + 1) for i in range(n)]
            await cs_store.track_changesets(conn, getattr(bc, "id", bc), pairs, now)
        track_s = time.perf_counter() - start
        rounds: list[float] = []
        claimed_total = 0
        drain_start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            async with engine.begin() as conn:
                got = await claim_work(conn, "bench", now, timedelta(minutes=5), CLAIM_LIMIT)
            rounds.append(time.perf_counter() - t0)
            if not got:
                rounds.pop()
                break
            claimed_total += len(got)
            done = [c.changeset_id for c in got]
            async with engine.begin() as conn:
                await conn.execute(
                    changeset_sync_requests.delete().where(
                        changeset_sync_requests.c.changeset_id.in_(done)
                    )
                )
                await conn.execute(
                    changesets.update()
                    .where(changesets.c.id.in_(done))
                    .values(
                        claimed_by=None, claimed_until=None, next_sync_at=now + timedelta(days=1)
                    )
                )
        drain_s = time.perf_counter() - drain_start

        async def idle() -> list[float]:
            out = []
            for _ in range(20):
                t0 = time.perf_counter()
                async with engine.begin() as conn:
                    assert not await claim_work(conn, "b", now, timedelta(minutes=5), CLAIM_LIMIT)
                out.append(time.perf_counter() - t0)
            return out

        idle_before = await idle()
        async with engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE"))
        idle_after = await idle()
        return {
            "n": n,
            "claimed": claimed_total,
            "track_s": track_s,
            "rounds": rounds,
            "drain_s": drain_s,
            "idle": idle_before,
            "idle_analyzed": idle_after,
        }
    finally:
        await engine.dispose()


def child_main(argv: Sequence[str]) -> int:
    mode, out = argv[0], argv[-1]
    if mode == "_sync":
        url, port, orgs, kind, warm = argv[1], int(argv[2]), int(argv[3]), argv[4], int(argv[5])
        data = asyncio.run(child_sync(url, port, orgs, kind, warm))
    elif mode == "_claims":
        data = asyncio.run(child_claims(argv[1], int(argv[2])))
    else:
        raise SystemExit(f"unknown child mode {mode}")
    Path(out).write_text(json.dumps(data))
    return 0


# --- parent ------------------------------------------------------------------------------------


def env_for(src: Path | None) -> dict[str, str]:
    env = rs.child_env()
    if src is not None:
        env["PYTHONPATH"] = str(src / "src")
    return env


def run(
    args: list[str], src: Path | None, script: Path | None = None, timeout: float = 3600
) -> tuple[dict[str, Any], float]:
    """Run a child of this script (or of ``script``); returns its JSON and its wall time
    (startup included)."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(script or __file__), *args, out.name],
            env=env_for(src),
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise rs.BenchError(f"child {args[0]} failed with {proc.returncode}")
        return json.loads(out.read()), wall


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values)}


def measure_syncs(backend: str, n: int, port: int, a: argparse.Namespace) -> dict[str, Any]:
    firsts, colds, warms, floors, peaks = [], [], [], [], []
    for i in range(a.runs):
        with rs.database(backend, a.pg) as url:
            first, _ = run(["_sync", url, str(port), str(rs.ORGS), "first", "3"], a.src)
            cold, _ = run(["_sync", url, str(port), str(rs.ORGS), "cold", "0"], a.src)
            floor, _ = run(["floor", url, str(port), str(rs.ORGS)], None, FLOOR)
        for label, r in (("first", first["first"]), ("cold", cold["cold"])):
            if not r["complete"] or r["listed"] != n:
                raise rs.BenchError(f"{backend} {label} sync listed {r['listed']} of {n}")
        firsts.append(first["first"])
        colds.append(cold["cold"])
        warms.extend(first["warm"])
        floors.append(floor)
        peaks.append(max(first["peak_rss_mb"], cold["peak_rss_mb"]))
        print(
            f"  {backend} run {i + 1}: first {first['first']['s']:.2f} s, cold re-sync "
            f"{cold['cold']['s']:.2f} s, warm re-sync {min(w['s'] for w in first['warm']):.2f}"
            f" s; floor fetch {floor['fetch']:.2f} + insert {floor['insert']:.2f} / select "
            f"{floor['select']:.2f} / 304 fetch {floor['fetch304']:.2f} s",
            flush=True,
        )
    return {
        "first": stats([r["s"] for r in firsts]),
        "first_floor": stats([f["fetch"] + f["insert"] for f in floors]),
        "cold": stats([r["s"] for r in colds]),
        "cold_floor": stats([f["fetch"] + f["select"] for f in floors]),
        "warm": stats([r["s"] for r in warms]),
        "warm_floor": stats([f["fetch304"] + f["select"] for f in floors]),
        "resync_rows_written": sum(r["rows_written"] for r in colds + warms),
        "peak_rss_mb": max(peaks),
    }


def measure_cron(n: int, a: argparse.Namespace) -> dict[str, Any]:
    with rs.emulator(n) as port, rs.database("sqlite", a.pg) as url:
        run(["_sync", url, str(port), str(rs.ORGS), "first", "0"], a.src)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "config.json"  # JSON is YAML
            cfg.write_text(json.dumps(config_dict(url, port, rs.ORGS)))
            walls, floors = [], []
            for _ in range(a.runs):
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "repo_updater", "sync", "--config", str(cfg)],
                    env=env_for(a.src),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    check=False,
                    timeout=600,
                )
                walls.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise rs.BenchError(f"repo-updater sync failed: {proc.stderr[-500:]!r}")
                _, wall = run(["cron", url, str(port), str(rs.ORGS)], None, FLOOR)
                floors.append(wall)
            print(f"  cron: sync {min(walls):.2f} s, floor {min(floors):.2f} s", flush=True)
    return {"sync": stats(walls), "floor": stats(floors)}


def measure_claims(backend: str, n: int, a: argparse.Namespace) -> dict[str, Any]:
    with rs.database(backend, a.pg) as url:
        data, _ = run(["_claims", url, str(n)], a.src)
    with rs.database(backend, a.pg) as url:
        floor, _ = run(["claims", url, str(n)], None, FLOOR)
    rounds = data["rounds"]
    k = min(10, len(rounds))
    out = {
        "floor_ms": stats([r * 1000 for r in floor["rounds"]]),
        "floor_drain_s": floor["drain_s"],
        "n": n,
        "claimed": data["claimed"],
        "rounds": len(rounds),
        "track_s": data["track_s"],
        "all_ms": stats([r * 1000 for r in rounds]),
        "first_ms": stats([r * 1000 for r in rounds[:k]]),
        "last_ms": stats([r * 1000 for r in rounds[-k:]]),
        "drain_s": data["drain_s"],
        "idle_ms": stats([r * 1000 for r in data["idle"]]),
        "idle_analyzed_ms": stats([r * 1000 for r in data["idle_analyzed"]]),
    }
    print(
        f"  claims {backend}: all rounds {out['all_ms']['min']:.1f} / "
        f"{out['all_ms']['median']:.1f} ms, first {out['first_ms']['median']:.1f} ms, last "
        f"{out['last_ms']['median']:.1f} ms, drain {out['drain_s']:.1f} s, idle poll "
        f"{out['idle_ms']['median']:.1f} ms -> analyzed {out['idle_analyzed_ms']['median']:.1f}"
        f" ms; floor: a round {out['floor_ms']['min']:.1f} / {out['floor_ms']['median']:.1f} ms,"
        f" drain {out['floor_drain_s']:.1f} s",
        flush=True,
    )
    return out


def measure(a: argparse.Namespace, command: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "label": a.label,
        "command": command,
        "src": str(a.src or Path.cwd()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "repos": a.repos,
        "cron_repos": a.cron_repos,
        "changesets": a.changesets,
        "runs": a.runs,
        "syncs": {},
        "claims": {},
    }
    print(f"[{a.label}] N={a.repos:,}", flush=True)
    if a.repos:  # --repos 0: claims (and cron) only
        with rs.emulator(a.repos) as port:
            for backend in a.backends:
                result["syncs"][backend] = measure_syncs(backend, a.repos, port, a)
    if a.cron_repos:
        result["cron"] = measure_cron(a.cron_repos, a)
    if a.changesets:
        for backend in a.backends:
            result["claims"][backend] = measure_claims(backend, a.changesets, a)
    return result


# --- report ------------------------------------------------------------------------------------


def fmt(s: dict[str, float], unit: str = "s", scale: float = 1.0) -> str:
    p = 0 if scale * s["median"] >= 100 else (1 if scale * s["median"] >= 10 else 2)
    return f"{s['min'] * scale:.{p}f} / {s['median'] * scale:.{p}f} {unit}"


def ratio(x: dict[str, float], floor: dict[str, float]) -> str:
    return f"{x['min'] / floor['min']:.2f}x"


def report(before: dict[str, Any], after: dict[str, Any], out: Path) -> str:
    rows = [
        "| row | goal | before (min / median) | before / floor | after (min / median) "
        "| after / floor | floor in the after run (min / median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend in after["syncs"]:
        b, x = before["syncs"].get(backend), after["syncs"][backend]
        for key, label, goal in (
            ("cold", "unchanged re-sync, cold (fresh process, pages 200)", "<= 1.5x"),
            ("warm", "unchanged re-sync, warm (serve: pages 304)", "<= 1.5x"),
            ("first", "first sync", "<= 2.5x"),
        ):
            fl = key + "_floor"
            bcol = f"{fmt(b[key])} | {ratio(b[key], b[fl])}" if b else "- | -"
            rows.append(
                f"| {label}, {backend}, {after['repos']:,} repos | {goal} | {bcol} | "
                f"{fmt(x[key])} | {ratio(x[key], x[fl])} | {fmt(x[fl])} |"
            )
    if "cron" in after:
        b, x = before.get("cron"), after["cron"]
        bcol = f"{fmt(b['sync'])} | {ratio(b['sync'], b['floor'])}" if b else "- | -"
        rows.append(
            f"| fresh `repo-updater sync` process, {after['cron_repos']:,} unchanged, "
            f"SQLite, startup included | <= 2x | {bcol} | {fmt(x['sync'])} | "
            f"{ratio(x['sync'], x['floor'])} | {fmt(x['floor'])} |"
        )
    claims = [
        "| backend | changesets | claim 200: all rounds (min / median) | first 10 rounds "
        "| last 10 rounds | drain (rounds) | idle poll | idle poll after ANALYZE | floor: a "
        "round (min / median) | floor drain | all rounds / floor (min, median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tag, data in (("before", before), ("after", after)):
        for backend, c in data["claims"].items():
            claims.append(
                f"| {tag}: {backend} | {c['n']:,} | "
                + (f"{fmt(c['all_ms'], 'ms')} | " if "all_ms" in c else "- | ")
                + f"{fmt(c['first_ms'], 'ms')} | "
                f"{fmt(c['last_ms'], 'ms')} | {c['drain_s']:.1f} s ({c['rounds']}) | "
                f"{fmt(c['idle_ms'], 'ms')} | {fmt(c['idle_analyzed_ms'], 'ms')} | "
                + (
                    f"{fmt(c['floor_ms'], 'ms')} | {c['floor_drain_s']:.1f} s | "
                    f"{ratio(c['all_ms'], c['floor_ms'])}, "
                    f"{c['all_ms']['median'] / c['floor_ms']['median']:.2f}x |"
                    if "floor_ms" in c
                    else "- | - | - |"
                )
            )
    peaks = ", ".join(
        f"{tag} {backend} {d['syncs'][backend]['peak_rss_mb']:.0f} MB"
        for tag, d in (("before", before), ("after", after))
        for backend in d["syncs"]
    )
    written = ", ".join(
        f"{tag} {backend} {d['syncs'][backend]['resync_rows_written']}"
        for tag, d in (("before", before), ("after", after))
        for backend in d["syncs"]
    )
    text = "\n".join(
        [
            "# Issue 12: the performance table, each row against its floor",
            "",
            f"- machine: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
            f"python {platform.python_version()}",
            f"- before: {before['date']}, `{before['command']}` (children on {before['src']})",
            f"- after: {after['date']}, `{after['command']}` (children on {after['src']})",
            f"- runs per row: {after['runs']} (min / median); ratios are min / min floor",
            "",
            *rows,
            "",
            "Claims (each round claims 200 and completes them; a flat last-vs-first means a "
            "linear drain):",
            "",
            *claims,
            "",
            f"- peak RSS of the syncing child processes: {peaks}",
            f"- rows written by all unchanged re-syncs (must be 0): {written}",
            "",
        ]
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "report":
        p = argparse.ArgumentParser()
        p.add_argument("before", type=Path)
        p.add_argument("after", type=Path)
        p.add_argument("--out", type=Path, default=RESULTS)
        r = p.parse_args(argv[1:])
        before, after = json.loads(r.before.read_text()), json.loads(r.after.read_text())
        print(report(before, after, r.out))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repos", type=int, default=20000)
    p.add_argument("--cron-repos", type=int, default=30000)
    p.add_argument("--changesets", type=int, default=20000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--pg", default=os.environ.get("REPO_UPDATER_BENCH_PG", rs.PG_ADMIN_DEFAULT))
    p.add_argument("--src", type=Path, default=None, help="run the children on DIR/src")
    p.add_argument("--label", default="after")
    p.add_argument("--json", type=Path, default=None, help="write the measurements here")
    a = p.parse_args(argv)
    a.backends = [b for b in a.backends.split(",") if b]
    command = shlex.join([".venv/bin/python", "bench/perf_table.py", *argv])
    data = measure(a, command)
    if a.json is not None:
        a.json.write_text(json.dumps(data, indent=1))
    print(json.dumps({k: v for k, v in data.items() if k in ("syncs", "cron")}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        sys.exit(child_main(sys.argv[1:]))
    try:
        sys.exit(main(sys.argv[1:]))
    except rs.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
