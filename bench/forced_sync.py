"""Benchmark: 80 forced syncs of one service in 40 s (``POST /api/services/{name}/sync`` every
0.5 s), and the code-host requests they cost, before and after coalescing (issue 7, item 4:
"80 forced syncs in 40 s made 9x the host requests").

    .venv/bin/python bench/forced_sync.py [--reps 3] [--repos 500] [--backend sqlite]

The emulator (GitHub, one org of ``--repos`` repos, 100 per page) runs in this process and
counts every request it answers; ``serve`` runs in a child process: "before" the code of
``api_common.BASELINE``, "after" this tree with the default ``api.forced_sync_min_gap`` (10 s).
The scheduled sync interval is an hour, so only forced syncs run. The floor, measured in the
same rep: the requests of one forced sync on its own. Counted: every host request from the
first forced sync of the burst until the last sync it caused has finished (the gap after the
burst, plus a margin). Writes ``bench/results/forced_sync.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from api_common import (
    BASELINE,
    ROOT,
    baseline_src,
    database,
    read_json_line,
    start_child,
    stats,
    stop_child,
)

from repo_updater.core.domain import HostKind
from repo_updater.emulator.server import running_emulator
from repo_updater.emulator.state import EmulatorState

GH = HostKind.GITHUB
REQUESTS, SECONDS = 80, 40.0
GAP = 10.0  # the default api.forced_sync_min_gap

SERVE = """
import asyncio, json, os, sys
from repo_updater.bootstrap import open_app
from repo_updater.config import parse_config
from repo_updater.entrypoints.serve import serve

async def main(url, github, gap):
    api = {"port": 0} if gap == "default" else {"port": 0, "forced_sync_min_gap": float(gap)}
    config = parse_config({
        "database": url, "repo_sync_interval": 3600, "api": api,
        "external_services": [{"name": "gh", "kind": "github", "url": github, "orgs": ["acme"],
                               "name_prefix": "gh"}],
    }, {})
    async with open_app(config, {}) as app:
        token = None
        try:
            from repo_updater.service_layer.api_tokens import Scope, create_token
            async with app.engine.begin() as conn:
                token = await create_token(conn, "bench", Scope.WRITE, app.clock())
        except ImportError:
            pass  # before tokens: writes needed none
        stop = asyncio.Event()
        def ready(api):
            print(json.dumps({"url": api, "token": token}), flush=True)
        await serve(app, stop, on_ready=ready)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


@dataclass
class Rep:
    floor: int  # host requests of one forced sync on its own
    burst: int  # host requests of the burst
    coalesced: int  # answers that said an earlier request covers them
    seconds: float


async def last_sync(client: httpx.AsyncClient) -> str | None:
    body: Any = (await client.get("/api/services")).json()
    items = body["items"] if isinstance(body, dict) else body
    return str(items[0]["last_sync_at"]) if items and items[0]["last_sync_at"] else None


async def wait_for_sync_after(client: httpx.AsyncClient, previous: str | None) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = await last_sync(client)
        if now is not None and now != previous:
            return now
        await asyncio.sleep(0.1)
    raise RuntimeError("no sync happened within 120 s")


async def one_rep(src: Path | None, gap: str, backend: str, repos: int, tmp: Path) -> Rep:
    state = EmulatorState()
    host = state.host(GH)
    for i in range(repos):
        host.add_repo("acme", f"repo-{i}")
    async with running_emulator(state) as emu, database(backend, tmp) as url:
        server = await start_child(SERVE, [url, emu.base_url(GH), gap], src)
        try:
            ready = await read_json_line(server)
            headers = {"Content-Type": "application/json"}
            if ready.get("token"):
                headers["Authorization"] = f"Bearer {ready['token']}"
            async with httpx.AsyncClient(base_url=str(ready["url"]), timeout=60) as client:
                first = await wait_for_sync_after(client, None)  # the initial (cold) sync
                settle = GAP if gap == "default" else float(gap)
                await asyncio.sleep(settle + 1)  # so the floor's forced sync is not deferred
                host.request_count = 0
                (await client.post("/api/services/gh/sync", headers=headers)).raise_for_status()
                synced = await wait_for_sync_after(client, first)
                await asyncio.sleep(settle + 1)
                floor = host.request_count

                host.request_count = 0
                coalesced = 0
                start = time.monotonic()
                for i in range(REQUESTS):
                    await asyncio.sleep(max(0.0, start + i * SECONDS / REQUESTS - time.monotonic()))
                    answer = await client.post("/api/services/gh/sync", headers=headers)
                    answer.raise_for_status()
                    coalesced += bool(answer.json().get("coalesced"))
                await asyncio.sleep(settle + 5)  # the last coalesced sync, and a margin
                assert synced
                return Rep(floor, host.request_count, coalesced, time.monotonic() - start)
        finally:
            await stop_child(server)


def report(results: dict[str, list[Rep]], repos: int, reps: int) -> str:
    lines = [
        "# Forced syncs: 80 in 40 s",
        "",
        f"One GitHub org of {repos} repos in the emulator (100 per page); `serve` with a 1 h "
        f"sync interval; `POST /api/services/gh/sync` every {SECONDS / REQUESTS:.1f} s, "
        f"{REQUESTS} times. Before: commit `{BASELINE}`; after: this tree with "
        f"`api.forced_sync_min_gap` as shown ({GAP:g} s is the default). A burst over T seconds "
        "costs at most T / gap + 1 syncs. Host requests: every request the "
        "emulator answered (304s included) from the first forced sync until the last sync it "
        "caused ended. Floor: one forced sync on its own, same rep. "
        f"{reps} reps; min / median.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}. Command: "
        f"`.venv/bin/python bench/forced_sync.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        "| code | floor (1 sync) | 80 forced syncs | x floor | answered coalesced |",
        "|---|---|---|---|---|",
    ]
    for code, reps_ in results.items():
        f = stats([r.floor for r in reps_])
        b = stats([r.burst for r in reps_])
        x = stats([r.burst / r.floor for r in reps_])
        c = stats([r.coalesced for r in reps_])
        lines.append(
            f"| {code} | {f[0]:.0f} / {f[1]:.0f} | {b[0]:.0f} / {b[1]:.0f} | "
            f"{x[0]:.1f} / {x[1]:.1f} | {c[0]:.0f} / {c[1]:.0f} of {REQUESTS} |"
        )
    return "\n".join(lines) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--repos", type=int, default=500)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument(
        "--gaps", default="10", help="api.forced_sync_min_gap values to run 'after' with"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/forced_sync.md")
    args = parser.parse_args()
    results: dict[str, list[Rep]] = {}
    with tempfile.TemporaryDirectory() as tmp, baseline_src() as old_src:
        runs: list[tuple[str, Path | None, str]] = [("before", old_src, "default")]
        runs += [(f"after, gap {g} s", None, g) for g in args.gaps.split(",")]
        for code, src, gap in runs:
            for i in range(args.reps):
                rep = await one_rep(src, gap, args.backend, args.repos, Path(tmp))
                results.setdefault(code, []).append(rep)
                print(f"{code} rep {i + 1}: floor {rep.floor}, burst {rep.burst}, "
                      f"coalesced {rep.coalesced}", flush=True)  # fmt: skip
    text = report(results, args.repos, args.reps)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
