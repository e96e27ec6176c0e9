"""A longer property-based run of the live API than the test suite's (``tests/e2e/
test_api_fuzz.py``): random (not derandomised) schemathesis cases, valid and invalid, for every
operation of /openapi.json, on SQLite and PostgreSQL, with a write token.

    .venv/bin/python bench/api_fuzz.py [--examples 100] [--backends sqlite,postgresql]

Reports, per backend: requests sent, 5xx seen, check failures (status, content type or body not
as documented), answers by status. Writes ``bench/results/api_fuzz.md``; exit 1 on any 5xx or
failure.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from api_common import ROOT, database

sys.path.insert(0, str(ROOT))  # tests.support: the fuzz runner and the fakes

from tests.support.api import api_client
from tests.support.api_fuzz import FuzzResult, fuzz
from tests.support.fakes import T0, insert_repo

from repo_updater.bootstrap import open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import ChangesetSnapshot, HostPullState
from repo_updater.store import changesets as cs_store
from repo_updater.store.changeset_claims import SyncOutcome, claim_work, complete_syncs


async def run(url: str, examples: int) -> tuple[FuzzResult, float]:
    async with open_app(parse_config({"database": url}, {}), {}) as app:
        async with app.engine.begin() as conn:
            bc = await cs_store.create_batch_change(conn, "seeded", "", T0)
            for i in range(1, 6):
                repo = await insert_repo(conn, f"acme/r{i}", archived=i == 5)
                await cs_store.track_changeset(conn, bc, repo, i, T0)
            claimed = await claim_work(conn, "seed", T0, timedelta(minutes=5), 10)
            await complete_syncs(
                conn,
                [SyncOutcome(c, ChangesetSnapshot(c.changeset_id, c.number, HostPullState.OPEN))
                 for c in claimed],
                T0,
            )  # fmt: skip
        async with api_client(app) as client:
            document = await client.get("/openapi.json")
            start = time.perf_counter()
            result = await asyncio.to_thread(
                fuzz,
                str(client.client.base_url),
                document,
                client.token,
                max_examples=examples,
                derandomize=False,
            )
            return result, time.perf_counter() - start


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="per operation and mode")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/api_fuzz.md")
    args = parser.parse_args()
    lines = [
        "# API fuzz run (schemathesis)",
        "",
        f"Random valid and invalid cases, {args.examples} per operation and mode, against the "
        "live API on loopback with a write token; checks: no 5xx, status, content type and "
        "body as /openapi.json documents them.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}. Command: "
        f"`.venv/bin/python bench/api_fuzz.py --examples {args.examples}`",
        "",
        "| backend | operations | requests | 5xx | check failures | seconds | by status |",
        "|---|---|---|---|---|---|---|",
    ]
    bad = False
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            async with database(backend, Path(tmp)) as url:
                result, seconds = await run(url, args.examples)
            print(f"{backend}: {result.summary()}", flush=True)
            for failure in result.failures[:20]:
                print("  ", failure)
            statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result.by_status.items()))
            lines.append(
                f"| {backend} | {result.operations} | {result.requests} | "
                f"{result.server_errors} | {len(result.failures)} | {seconds:.0f} | {statuses} |"
            )
            bad |= bool(result.server_errors or result.failures)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
