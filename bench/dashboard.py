"""Benchmark: the dashboard at 10,000 changesets (issue 10, item 1: "600 KB at 3,000 changesets,
reloading the whole page every 2 s"), before and after.

    .venv/bin/python bench/dashboard.py [--size 10000] [--reps 5] [--backend sqlite|postgresql]

"Before" is the dashboard of ``BEFORE`` (main before this work: one server-rendered HTML page
with a meta refresh every 2 s), exported with git archive and served from its own child
process; "after" is this working tree. Both serve a fresh database seeded alike: one batch
change of ``--size`` changesets on 200 repos, each with a state history over 30 days (opened,
then some merged, closed, archived to READONLY, a few with sync errors).

Measured, each rep:
- bytes of one page load: before, ``GET /``; after, the page, its script and style sheet
  (gzip, as a browser asks) and the API calls the page makes on load;
- bytes and time of one update: before, the whole page again (every 2 s); after, a poll of
  ``/api/pulse`` plus, when something changed, the stats and the page of changesets;
- server time of each call, and the floor: ``GET /healthz`` (one trivial query);
- in Debian's chromium (Playwright): time from navigation to the changesets and the
  burndown drawn (after), or to the page loaded (before).
Writes ``bench/results/dashboard.md`` (``dashboard-postgresql.md`` for PostgreSQL).
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
    ROOT,
    baseline_src,
    database,
    read_json_line,
    start_child,
    stats,
    stop_child,
)

BEFORE = "beef5e3"  # main before the dashboard work
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip

SEED = """
import asyncio, random, sys
from datetime import UTC, datetime, timedelta
import sqlalchemy as sa
from repo_updater.bootstrap import open_app
from repo_updater.config import parse_config
from repo_updater.store.schema import (batch_change_changesets, batch_changes,
    changeset_state_history, changesets, repos)

async def main(url, n):
    rnd = random.Random(7)
    now = datetime.now(UTC)
    start = now - timedelta(days=30)
    async with open_app(parse_config({"database": url}, {}), {}) as app:
        async with app.engine.begin() as conn:
            bc = (await conn.execute(batch_changes.insert().values(
                name="bench", description="Upgrade CI", state="OPEN", created_at=start
            ).returning(batch_changes.c.id))).scalar_one()
            await conn.execute(repos.insert(), [
                {"name": f"github.com/acme/repo-{i}", "host_kind": "github",
                 "host_url": "https://api.github.com", "external_id": str(i),
                 "external_name": f"acme/repo-{i}", "url": f"https://github.com/acme/repo-{i}",
                 "created_at": start, "updated_at": start} for i in range(200)])
            repo_ids = (await conn.execute(sa.select(repos.c.id))).scalars().all()
            rows, history = [], []
            for i in range(n):
                opened = start + timedelta(hours=rnd.uniform(0, 48))
                steps = [("OPEN", opened)]
                roll = rnd.random()
                if roll < 0.45:
                    steps.append(("MERGED", opened + timedelta(days=rnd.uniform(1, 28))))
                elif roll < 0.52:
                    steps.append(("CLOSED", opened + timedelta(days=rnd.uniform(1, 28))))
                elif roll < 0.57:
                    steps.append(("READONLY", opened + timedelta(days=rnd.uniform(5, 28))))
                state = steps[-1][0]
                rows.append({"repo_id": repo_ids[i % 200], "external_id": str(i // 200 + 1),
                 "publication_state": "PUBLISHED", "external_state": state, "host_state": "OPEN",
                 "review_state": "PENDING", "check_state": "PASSED" if i % 3 else "FAILED",
                 "title": f"Upgrade the CI configuration of repo {i % 200} (part {i // 200})",
                 "url": f"https://github.com/acme/repo-{i % 200}/pull/{i // 200 + 1}",
                 "head_ref": "batch/upgrade-ci", "base_ref": "main", "additions": 12,
                 "deletions": 3, "last_synced_at": now - timedelta(minutes=rnd.uniform(0, 90)),
                 "next_sync_at": now + timedelta(hours=1),
                 "sync_error": "GET /repos: HTTP 502" if i % 97 == 0 else None,
                 "created_at": start, "updated_at": now})
                history.append(steps)
            for s in range(0, n, 2000):
                await conn.execute(changesets.insert(), rows[s:s + 2000])
            ids = (await conn.execute(sa.select(changesets.c.id).order_by(changesets.c.id))
                   ).scalars().all()
            for s in range(0, n, 5000):
                await conn.execute(batch_change_changesets.insert(), [
                    {"batch_change_id": bc, "changeset_id": i} for i in ids[s:s + 5000]])
            flat = [{"changeset_id": cid, "external_state": st, "at": at}
                    for cid, steps in zip(ids, history) for st, at in steps]
            for s in range(0, len(flat), 5000):
                await conn.execute(changeset_state_history.insert(), flat[s:s + 5000])
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

# What the page asks for when it loads (app.js: batchChangePage.refresh, poll).
AFTER_LOAD = ["/", "/static/app.js", "/static/app.css"]
AFTER_DATA = [
    "/api/batch-changes/1",
    "/api/batch-changes/1/stats?points=40",
    "/api/changesets?batch_change=1&order=attention&limit=50",
]
GZIP = {"Accept-Encoding": "gzip"}


@dataclass
class Rep:
    load_bytes: dict[str, int] = field(default_factory=dict)  # variant -> bytes of one load
    update_bytes: dict[str, int] = field(default_factory=dict)
    update_seconds: dict[str, float] = field(default_factory=dict)
    floor_seconds: float = 0.0
    call_seconds: dict[str, float] = field(default_factory=dict)  # path -> server time
    browser_seconds: dict[str, float] = field(default_factory=dict)


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    response = await client.get(path, headers=GZIP)
    response.raise_for_status()
    return time.perf_counter() - start, response.num_bytes_downloaded  # as sent (gzip or not)


async def browser_time(url: str, ready: str) -> float:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            start = time.perf_counter()
            await page.goto(url)
            await page.wait_for_selector(ready, timeout=60_000)
            return time.perf_counter() - start
        finally:
            await browser.close()


async def serve(src: Path | None, url: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await start_child(SERVE, [url], src)
    return proc, str((await read_json_line(proc))["url"])


async def one_rep(backend: str, size: int, tmp: Path, before_src: Path) -> Rep:
    rep = Rep()
    async with database(backend, tmp) as before_db, database(backend, tmp) as after_db:
        for src, url in ((before_src, before_db), (None, after_db)):
            seed = await start_child(SEED, [url, str(size)], src)
            await read_json_line(seed, wait=600)
            await stop_child(seed)
        before, before_url = await serve(before_src, before_db)
        after, after_url = await serve(None, after_db)
        try:
            async with httpx.AsyncClient(base_url=before_url, timeout=120) as c:
                seconds, wire = await timed(c, "/")
                rep.load_bytes["before"] = rep.update_bytes["before"] = wire
                rep.update_seconds["before"] = seconds
            async with httpx.AsyncClient(base_url=after_url, timeout=120) as c:
                rep.floor_seconds = (await timed(c, "/healthz"))[0]
                total = 0
                for path in AFTER_LOAD + AFTER_DATA + ["/api/pulse"]:
                    seconds, wire = await timed(c, path)
                    rep.call_seconds[path] = seconds
                    total += wire
                rep.load_bytes["after"] = total
                # An update: a poll, and when the version moved, the stats and the page.
                start = time.perf_counter()
                wire = (await timed(c, "/api/pulse"))[1]
                for path in AFTER_DATA[1:]:
                    wire += (await timed(c, path))[1]
                rep.update_seconds["after"] = time.perf_counter() - start
                rep.update_bytes["after"] = wire
                rep.update_bytes["after (nothing changed)"] = (await timed(c, "/api/pulse"))[1]
            rep.browser_seconds["before"] = await browser_time(before_url + "/", "table")
            rep.browser_seconds["after"] = await browser_time(
                after_url + "/#/batch-changes/1",
                "#changesets tr[data-id] >> nth=49",  # the whole first page drawn
            )
        finally:
            await stop_child(before)
            await stop_child(after)
    return rep


def fmt_bytes(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def report(reps: list[Rep], size: int, backend: str) -> str:
    def row(label: str, values: list[float], unit: str, floor: float | None = None) -> str:
        lo, med = stats(values)
        shown = fmt_bytes if unit == "bytes" else (lambda v: f"{v * 1000:,.1f} ms")
        ratio = f" | {med / floor:,.1f}x" if floor else " |"
        return f"| {label} | {shown(lo)} | {shown(med)}{ratio}"

    floor = stats([r.floor_seconds for r in reps])[1]
    lines = [
        f"# Dashboard at {size:,} changesets ({backend})",
        "",
        f"`python bench/dashboard.py --size {size} --reps {len(reps)} --backend {backend}`, "
        f"{platform.python_version()}, {platform.machine()}, 2 cores shared. Before: "
        f"`{BEFORE}` (server-rendered page, meta refresh every 2 s); after: this tree. Min and "
        "median of the reps; ratios of times against the floor, `GET /healthz` "
        f"(median {floor * 1000:.1f} ms), measured in the same run.",
        "",
        "| figure | min | median | median / floor |",
        "|---|---|---|---|",
    ]
    for variant in ("before", "after"):
        lines.append(row(f"bytes of one page load, {variant}",
                         [r.load_bytes[variant] for r in reps], "bytes"))  # fmt: skip
    for variant in ("before", "after", "after (nothing changed)"):
        lines.append(row(f"bytes of one update (every 2 s), {variant}",
                         [r.update_bytes[variant] for r in reps], "bytes"))  # fmt: skip
    for variant in ("before", "after"):
        lines.append(row(f"server time of one update, {variant}",
                         [r.update_seconds[variant] for r in reps], "s", floor))  # fmt: skip
    for path in reps[0].call_seconds:
        lines.append(row(f"`GET {path}`", [r.call_seconds[path] for r in reps], "s", floor))
    for variant in ("before", "after"):
        lines.append(row(f"chromium: navigation to the page drawn, {variant}",
                         [r.browser_seconds[variant] for r in reps], "s", floor))  # fmt: skip
    lines += [
        "",
        "Before, every update re-sent the whole page (the 200 rows it showed of each table). "
        "After, the page and its assets load once (the assets revalidate with an ETag); each "
        "poll is `/api/pulse` alone unless something changed, and then one page of 50 "
        "changesets, plus the stats (40 burndown points) when a state changed (the figures "
        "above count both), whatever the size of the batch change. JSON answers are gzipped.",
    ]
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=10_000, help="changesets")
    parser.add_argument("--reps", type=int, default=5, help="repetitions")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    reps = []
    with tempfile.TemporaryDirectory(prefix="ru-dash-") as tmp, baseline_src(BEFORE) as src:
        for i in range(args.reps):
            reps.append(await one_rep(args.backend, args.size, Path(tmp), src))
            print(f"rep {i + 1}/{args.reps} done", flush=True)
    text = report(reps, args.size, args.backend)
    suffix = "" if args.backend == "sqlite" else f"-{args.backend}"
    out = ROOT / "bench" / "results" / f"dashboard{suffix}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
