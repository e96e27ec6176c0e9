"""What the API benchmarks share: throw-away databases, a baseline copy of the code (the commit
before the API work, exported with ``git archive``, so "before" is measured on the real old code
in the same run), child processes that run a script against one or the other, and memory
figures of a child read from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("REPO_UPDATER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BASELINE = "73c2a46"  # main before the API work (no tokens, no paging, no coalescing)


@contextlib.contextmanager
def baseline_src(commit: str = BASELINE) -> Iterator[Path]:
    """``src/`` of ``commit``, exported to a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="ru-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp) / "src"


@contextlib.asynccontextmanager
async def database(backend: str, tmp: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL; dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:8]}.db"
        return
    name = f"ru_bench_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN.replace("postgresql://", "postgres://", 1)
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def child_env(src: Path | None) -> dict[str, str]:
    """The environment of a child that imports ``repo_updater`` from ``src`` (None: ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_UPDATER_")}
    env["PYTHONPATH"] = str(src or ROOT / "src")
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def start_child(
    script: str, args: Sequence[str], src: Path | None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args,
        env=child_env(src), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def read_json_line(proc: asyncio.subprocess.Process, wait: float = 120) -> dict[str, object]:
    """The next line the child prints, as JSON (it prints one when it is ready or done)."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), wait)
    if not line:
        err = b"" if proc.stderr is None else await proc.stderr.read()
        raise RuntimeError(f"child exited: {err.decode()[-2000:]}")
    data: dict[str, object] = json.loads(line)
    return data


async def stop_child(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak(pid: int) -> None:
    """Reset a process's VmHWM to its current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def stats(values: Sequence[float]) -> tuple[float, float]:
    return min(values), statistics.median(values)
