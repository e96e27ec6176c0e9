"""Benchmark: apply a batch spec to 1,000 repos (900 change, 100 skip), then apply it again.

Per backend (SQLite, PostgreSQL) and run: a fresh database; the GitHub emulator in this process
(127.0.0.1) with 1,000 repos, 900 whose ``.github/workflows/ci.yml`` uses
``actions/checkout@v3`` and 100 where it is ``@v4`` already (the spec changes nothing there:
skipped "nothing changes"); the repos listed; then ``examples/upgrade-ci.yaml``'s change
(replace ``@v3`` with ``@v4``, a draft pull request) applied through the durable
``apply_spec`` operation, run to the end by the app's own ``OperationWorker`` (``run_once`` in a
loop, 4 groups in parallel, as ``batch-changes apply`` runs it). Measured:

- first apply: wall time from enqueue to the operation finished; emulator requests and writes
  per changed repo (from the emulator's request counter and write log);
- a floor in the same run: the same host calls for the 900 changed repos (get repo, get file,
  get branch, create tree, create commit, create ref, open pull request) sent sequentially by a
  bare httpx client to a second copy of the emulator; the ratio says what durability, the
  store and the operation bookkeeping cost on top of the host calls;
- second apply of the same spec: wall time, requests, and writes (goal: 0 writes).

Write limits are lifted for the run (GitHub's 80/min would make it 45 min); the tests cover
pacing. Usage::

    .venv/bin/python bench/specs.py [--runs 3] [--backends sqlite,postgresql]

Writes ``bench/results/specs.md`` (``--output``). PostgreSQL: ``$REPO_UPDATER_BENCH_PG``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``, trust auth, CREATE DATABASE).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from repo_updater.batch_spec import load_spec
from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostKind
from repo_updater.core.operations import OperationState
from repo_updater.emulator.server import running_emulator
from repo_updater.emulator.state import EmulatorState
from repo_updater.entrypoints.cli.batch_specs import file_writers
from repo_updater.service_layer import spec_apply
from repo_updater.store import operations as op_store

PG_ADMIN_URL = os.environ.get(
    "REPO_UPDATER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ROOT = Path(__file__).resolve().parents[1]
REPOS, ALREADY = 1000, 100  # repos; of them, already on v4 (skipped)
OWNER = "acme"
CI = ".github/workflows/ci.yml"
UNLIMITED = {"per_minute": 1_000_000, "per_hour": 100_000_000}


@contextlib.asynccontextmanager
async def database(backend: str, workdir: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{path}{suffix}")
        return
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


def seed() -> EmulatorState:
    state = EmulatorState()
    gh = state.host(HostKind.GITHUB)
    for r in range(REPOS):
        repo = gh.add_repo(OWNER, f"repo-{r:04d}")
        if r % (REPOS // ALREADY) == 0:  # every 10th: already on v4
            text = (repo.git.file("main", CI) or "").replace("@v3", "@v4")
            repo.git.branches["main"] = repo.git.commit_files("main", {CI: text}, "v4").sha
    return state


async def floor(state: EmulatorState) -> float:
    """The host calls of the 900 changes, sequential, through a bare client."""
    async with running_emulator(state) as emu, httpx.AsyncClient() as client:
        base = emu.base_url(HostKind.GITHUB)
        start = time.perf_counter()
        for r in range(REPOS):
            if r % (REPOS // ALREADY) == 0:
                continue
            root = f"{base}/repos/{OWNER}/repo-{r:04d}"
            (await client.get(root)).raise_for_status()
            got = (await client.get(f"{root}/contents/{CI}", params={"ref": "main"})).json()
            text = base64.b64decode(got["content"]).decode().replace("@v3", "@v4")
            branch = (await client.get(f"{root}/branches/main")).json()["commit"]
            entry = {"path": CI, "mode": "100644", "type": "blob", "content": text}
            tree_body = {"base_tree": branch["commit"]["tree"]["sha"], "tree": [entry]}
            tree = (await client.post(f"{root}/git/trees", json=tree_body)).json()
            commit_body = {"message": "m", "tree": tree["sha"], "parents": [branch["sha"]]}
            commit = (await client.post(f"{root}/git/commits", json=commit_body)).json()
            ref_body = {"ref": "refs/heads/batch/upgrade-ci", "sha": commit["sha"]}
            (await client.post(f"{root}/git/refs", json=ref_body)).raise_for_status()
            pull = {"title": "t", "body": "", "head": "batch/upgrade-ci", "base": "main",
                    "draft": True}  # fmt: skip
            (await client.post(f"{root}/pulls", json=pull)).raise_for_status()
        return time.perf_counter() - start


@dataclass(slots=True)
class Run:
    floor: float = 0.0
    first: float = 0.0
    first_requests: int = 0
    first_writes: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    second: float = 0.0
    second_requests: int = 0
    second_writes: int = 0


async def apply_once(app: App, text: str) -> tuple[float, int, int, int]:
    spec = load_spec(text)
    writers = file_writers(app)
    start = time.perf_counter()
    async with app.engine.begin() as conn:
        queued = await spec_apply.enqueue(
            conn, spec, requested_by="bench", now=app.clock(), hosts=lambda h: h in writers
        )
    while True:
        claimed, _ = await app.operation_worker.run_once()
        async with app.engine.connect() as conn:
            view = await op_store.get_operation(conn, queued.operation_id)
        if view.state is OperationState.FINISHED:
            break
        if not claimed:
            await asyncio.sleep(0.02)
    return time.perf_counter() - start, view.done, view.skipped, view.failed


async def one_run(backend: str, workdir: Path, text: str) -> Run:
    run = Run()
    run.floor = await floor(seed())
    state = seed()
    gh = state.host(HostKind.GITHUB)
    async with database(backend, workdir) as url, running_emulator(state) as emu:
        config = parse_config(
            {"database": url, "external_services": [{
                "name": "bench-github", "kind": "github", "url": emu.base_url(HostKind.GITHUB),
                "orgs": [OWNER], "name_prefix": "github.bench", "write_limits": UNLIMITED}]},
            {},
        )  # fmt: skip
        async with open_app(config) as app:
            assert (await app.repo_sync_worker.sync_service("bench-github")).complete
            requests, writes = gh.request_count, len(gh.writes.log)
            run.first, run.done, run.skipped, run.failed = await apply_once(app, text)
            run.first_requests = gh.request_count - requests
            run.first_writes = len(gh.writes.log) - writes
            requests, writes = gh.request_count, len(gh.writes.log)
            run.second, done, _, _ = await apply_once(app, text)
            assert done == 0
            run.second_requests = gh.request_count - requests
            run.second_writes = len(gh.writes.log) - writes
    return run


def mm(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"


def report(results: dict[str, list[Run]], runs: int) -> str:
    changed = REPOS - ALREADY
    lines = [
        "# Batch spec apply: 1,000 repos (900 change, 100 skip), then the same spec again",
        "",
        f"`.venv/bin/python bench/specs.py --runs {runs} --backends {','.join(results)}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        "GitHub emulator in-process on 127.0.0.1; write limits lifted. min / median of the runs.",
        "",
        "| backend | first apply (s) | floor: host calls alone (s) | ratio | requests per "
        "changed repo | writes per changed repo | done / skipped / failed | second apply (s) "
        "| second apply requests | second apply writes (goal 0) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, rs in results.items():
        ratio = [r.first / r.floor for r in rs]
        lines.append(
            f"| {backend} | {mm([r.first for r in rs])} | {mm([r.floor for r in rs])} | "
            f"{mm(ratio, '{:.1f}x')} | {mm([r.first_requests / changed for r in rs])} | "
            f"{mm([r.first_writes / changed for r in rs])} | "
            f"{rs[0].done} / {rs[0].skipped} / {rs[0].failed} | {mm([r.second for r in rs])} | "
            f"{max(r.second_requests for r in rs)} | {max(r.second_writes for r in rs)} |"
        )
    lines += [
        "",
        "Per changed repo the apply sends 7 requests: 3 reads (the repository for its default "
        "branch, the file, the base branch's head) and 4 writes (tree with the content "
        "inline, commit, ref, pull request); a skipped repo costs its 2 reads. The second "
        "apply reads each repo's file again (2 requests per repo) and writes nothing: the "
        "stored digest of each branch's commit and the pull request's title and body match.",
        "",
    ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace, text: str) -> dict[str, list[Run]]:
    results: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            results[backend] = []
            for i in range(args.runs):
                run = await one_run(backend, Path(tmp), text)
                print(f"{backend} run {i + 1}: {run}", file=sys.stderr, flush=True)
                results[backend].append(run)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "specs.md"))
    args = parser.parse_args()
    spec_text = (ROOT / "examples" / "upgrade-ci.yaml").read_text()
    text = report(asyncio.run(main_async(args, spec_text)), args.runs)
    Path(args.output).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
