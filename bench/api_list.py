"""Benchmark: one ``GET /api/changesets`` at 20,000 changesets, before and after cursor paging
(issue 7, item 7: "one call is 11 MB and 2.4 s, ten concurrent calls ... RSS 190 -> 874 MB").

    .venv/bin/python bench/api_list.py [--backends sqlite,postgresql] [--reps 3] [--size 20000]

"Before" is the code of ``api_common.BASELINE`` (exported with git archive), "after" is this
working tree; both run in the same way, in the same run, on fresh databases seeded alike. Each
rep: a child process seeds the database, another serves the API alone (no syncers); this
process sends the calls and reads the server's memory from /proc (peak RSS growth during a
call: VmHWM reset just before, minus VmRSS then). Writes ``bench/results/api_list.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from api_common import (
    BASELINE,
    ROOT,
    baseline_src,
    database,
    read_json_line,
    reset_peak,
    rss_kib,
    start_child,
    stats,
    stop_child,
)

SEED = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
import sqlalchemy as sa
from repo_updater.bootstrap import open_app
from repo_updater.config import parse_config
from repo_updater.store.schema import batch_change_changesets, batch_changes, changesets, repos

async def main(url, n):
    now = datetime.now(UTC)
    async with open_app(parse_config({"database": url}, {}), {}) as app:
        async with app.engine.begin() as conn:
            bc = (await conn.execute(batch_changes.insert().values(
                name="bench", description="", state="OPEN", created_at=now
            ).returning(batch_changes.c.id))).scalar_one()
            await conn.execute(repos.insert(), [
                {"name": f"github.com/acme/repo-{i}", "host_kind": "github",
                 "host_url": "https://api.github.com", "external_id": str(i),
                 "external_name": f"acme/repo-{i}", "url": f"https://github.com/acme/repo-{i}",
                 "created_at": now, "updated_at": now} for i in range(200)])
            repo_ids = (await conn.execute(sa.select(repos.c.id))).scalars().all()
            rows = [
                {"repo_id": repo_ids[i % 200], "external_id": str(i // 200 + 1),
                 "publication_state": "PUBLISHED", "external_state": "OPEN", "host_state": "OPEN",
                 "review_state": "PENDING", "check_state": "PASSED",
                 "title": f"Upgrade the CI configuration of repo {i % 200} (part {i // 200})",
                 "url": f"https://github.com/acme/repo-{i % 200}/pull/{i // 200 + 1}",
                 "head_ref": "batch/upgrade-ci", "base_ref": "main", "additions": 12,
                 "deletions": 3, "last_synced_at": now, "next_sync_at": now + timedelta(hours=1),
                 "created_at": now, "updated_at": now} for i in range(n)]
            for start in range(0, n, 2000):
                await conn.execute(changesets.insert(), rows[start:start + 2000])
            ids = (await conn.execute(sa.select(changesets.c.id))).scalars().all()
            for start in range(0, n, 5000):
                await conn.execute(batch_change_changesets.insert(), [
                    {"batch_change_id": bc, "changeset_id": i} for i in ids[start:start + 5000]])
    print("{}", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

SERVE = """
import asyncio, json, os, sys
from repo_updater.bootstrap import open_app
from repo_updater.config import parse_config
from repo_updater.entrypoints.api import running_api

async def main(url):
    config = parse_config({"database": url, "repo_sync_interval": 3600}, {})
    async with open_app(config, {}) as app:
        async with running_api(app, port=0) as api:
            print(json.dumps({"url": api, "pid": os.getpid()}), flush=True)
            await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


@dataclass
class Call:
    seconds: float
    bytes: int
    peak_growth_mib: float


@dataclass
class Rep:
    single: dict[str, Call] = field(default_factory=dict)  # by variant
    concurrent: Call | None = None  # ten at once, of the first variant
    rss_after_mib: float = 0.0


async def measure(client: httpx.AsyncClient, pid: int, paths: list[str]) -> Call:
    """Send ``paths`` at once; the time until all have answered, the bytes, the peak growth."""
    rss_before, _ = rss_kib(pid)
    reset_peak(pid)
    start = time.perf_counter()
    responses = await asyncio.gather(*(client.get(p) for p in paths))
    seconds = time.perf_counter() - start
    _, peak = rss_kib(pid)
    for r in responses:
        r.raise_for_status()
    size = sum(len(r.content) for r in responses)
    return Call(seconds, size, (peak - rss_before) / 1024)


async def walk(client: httpx.AsyncClient, pid: int) -> Call:
    """Every changeset, 1,000 per page, through the cursor."""
    rss_before, _ = rss_kib(pid)
    reset_peak(pid)
    start, size, after = time.perf_counter(), 0, None
    while True:
        params = {"limit": "1000", **({"after": after} if after else {})}
        response = await client.get("/api/changesets", params=params)
        response.raise_for_status()
        size += len(response.content)
        after = response.json()["next"]
        if after is None:
            break
    _, peak = rss_kib(pid)
    return Call(time.perf_counter() - start, size, (peak - rss_before) / 1024)


async def one_rep(backend: str, src: Path | None, size: int, tmp: Path) -> Rep:
    rep = Rep()
    async with database(backend, tmp) as url:
        seed = await start_child(SEED, [url, str(size)], src)
        await read_json_line(seed, wait=600)
        await seed.wait()
        server = await start_child(SERVE, [url], src)
        try:
            ready = await read_json_line(server)
            pid = int(str(ready["pid"]))
            async with httpx.AsyncClient(base_url=str(ready["url"]), timeout=600) as client:
                (await client.get("/healthz")).raise_for_status()
                if src is not None:  # before: one call answers everything
                    rep.single["all"] = await measure(client, pid, ["/api/changesets"])
                    rep.concurrent = await measure(client, pid, ["/api/changesets"] * 10)
                else:
                    rep.single["default page"] = await measure(client, pid, ["/api/changesets"])
                    big = "/api/changesets?limit=1000"
                    rep.single["limit=1000"] = await measure(client, pid, [big])
                    rep.concurrent = await measure(client, pid, [big] * 10)
                    rep.single["walk all"] = await walk(client, pid)
            rep.rss_after_mib = rss_kib(pid)[0] / 1024
        finally:
            await stop_child(server)
    return rep


def report(results: dict[tuple[str, str], list[Rep]], size: int, reps: int) -> str:
    lines = [
        "# API list call at scale",
        "",
        f"`GET /api/changesets` with {size:,} changesets tracked. Before: commit `{BASELINE}` "
        "(no paging: every call answers every changeset); after: this tree (cursor paging, "
        "default page 100, at most 1,000). Same run, fresh databases seeded alike, the API "
        "alone in its own process. Peak growth: the server's VmHWM during the call minus its "
        f"VmRSS before it. {reps} reps; min / median.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}. Command: "
        "`.venv/bin/python bench/api_list.py`",
        "",
        "| backend | code | call | time s | bytes | peak growth MiB |",
        "|---|---|---|---|---|---|",
    ]
    for (backend, code), rep_list in results.items():
        variants = list(rep_list[0].single)
        rows = [(v, [r.single[v] for r in rep_list]) for v in variants]
        rows.append(("10 at once", [r.concurrent for r in rep_list if r.concurrent]))
        for variant, calls in rows:
            t = stats([c.seconds for c in calls])
            m = stats([c.peak_growth_mib for c in calls])
            lines.append(
                f"| {backend} | {code} | {variant} | {t[0]:.3f} / {t[1]:.3f} | "
                f"{calls[0].bytes:,} | {m[0]:.1f} / {m[1]:.1f} |"
            )
    lines += ["", "Ratios (after / before, medians):", ""]
    for backend in sorted({b for b, _ in results}):
        before = results.get((backend, "before"))
        after = results.get((backend, "after"))
        if not before or not after:
            continue

        def med(reps_: list[Rep], variant: str, attr: str) -> float:
            return stats([getattr(r.single[variant], attr) for r in reps_])[1]

        for variant in ("default page", "limit=1000"):
            ratio = med(after, variant, "seconds") / med(before, "all", "seconds")
            shrink = after[0].single[variant].bytes / before[0].single["all"].bytes
            lines.append(
                f"- {backend}, one call, {variant} vs all: time x{ratio:.3f}, bytes x{shrink:.4f}"
            )
        c_after = stats([r.concurrent.seconds for r in after if r.concurrent])[1]
        c_before = stats([r.concurrent.seconds for r in before if r.concurrent])[1]
        m_after = stats([r.concurrent.peak_growth_mib for r in after if r.concurrent])[1]
        m_before = stats([r.concurrent.peak_growth_mib for r in before if r.concurrent])[1]
        lines.append(
            f"- {backend}, ten at once (1,000 each vs all each): time x{c_after / c_before:.3f}, "
            f"peak growth {m_before:.0f} -> {m_after:.0f} MiB"
        )
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/api_list.md")
    args = parser.parse_args()
    results: dict[tuple[str, str], list[Rep]] = {}
    with tempfile.TemporaryDirectory() as tmp, baseline_src() as old_src:
        for backend in args.backends.split(","):
            for code, src in (("before", old_src), ("after", None)):
                for i in range(args.reps):
                    rep = await one_rep(backend, src, args.size, Path(tmp))
                    results.setdefault((backend, code), []).append(rep)
                    shown = ", ".join(f"{k} {v.seconds:.3f}s" for k, v in rep.single.items())
                    print(f"{backend} {code} rep {i + 1}: {shown}", flush=True)
    text = report(results, args.size, args.reps)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
