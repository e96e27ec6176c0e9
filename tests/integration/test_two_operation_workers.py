"""Two operation workers (two apps with their own engines, as two ``serve`` processes would
have) on one store: together they run every changeset of an operation, none twice; a worker
that dies in the middle of a write leaves nothing done twice when another takes over; and one
stopped mid-write hands its claim back at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import sqlalchemy as sa

from repo_updater.bootstrap import App, open_app
from repo_updater.core.domain import HostKind, HostPullState
from repo_updater.core.operations import OperationKind, OperationState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.store import operation_claims as claims
from repo_updater.store import operations as op_store
from repo_updater.store.schema import bulk_operation_repos, bulk_operation_results
from tests.support.operations import (
    DEADLINE,
    FAST,
    config,
    enqueue,
    run_until_finished,
    tracked,
    writes_per_pull,
)

GH = HostKind.GITHUB
UNLIMITED = {"per_minute": 1_000_000, "per_hour": 100_000_000}


async def test_two_workers_share_an_operation_without_doing_any_twice(
    store_url: str, emu: RunningEmulator
) -> None:
    host = emu.state.host(GH)
    for i in range(20):
        repo = host.add_repo("acme", f"repo-{i}")
        for k in range(5):
            host.add_pull(repo.full_name, title=f"change {k}")
    async with (
        tracked(store_url, emu, worker_id="worker-a", write_limits=UNLIMITED)
        as (a, bc),
        tracked_view(store_url, emu, "worker-b") as b,
    ):  # fmt: skip
        op = await enqueue(a, bc, OperationKind.CLOSE)

        async def drain(app: App) -> int:
            total = 0
            while True:
                claimed, finished = await app.operation_worker.run_once()
                total += finished
                if not claimed:
                    return total

        done_a, done_b = await asyncio.gather(drain(a), drain(b))
        view = await run_until_finished(a, op)
    assert (view.state, view.done, done_a + done_b) == (OperationState.FINISHED, 100, 100)
    assert set(writes_per_pull(emu, GH, "update").values()) == {1}  # each closed once
    assert len(writes_per_pull(emu, GH, "update")) == 100
    if store_url.startswith("postgresql"):  # SKIP LOCKED: the second worker takes other groups
        assert done_a > 0 and done_b > 0


def tracked_view(
    store_url: str, emu: RunningEmulator, worker_id: str
) -> contextlib.AbstractAsyncContextManager[App]:
    """A second app on the same store and hosts (no tracking of its own)."""
    cfg = config(store_url, emu, write_limits=UNLIMITED)
    return open_app(cfg, retry=FAST, worker_id=worker_id)


async def test_a_write_interrupted_by_a_dead_worker_is_not_done_twice(
    store_url: str, emu: RunningEmulator
) -> None:
    host = emu.state.host(GH)
    repo = host.add_repo("acme", "app")
    for k in range(3):
        host.add_pull(repo.full_name, title=f"change {k}")
    async with tracked(store_url, emu) as (app, bc):
        op = await enqueue(app, bc, OperationKind.MERGE, force=True)
        # A worker claims the group, records the start of #1's merge, merges it on the host,
        # and dies before it can record the outcome. Its lease has run out.
        async with app.engine.begin() as conn:
            [group] = await claims.claim_groups(
                conn, "dead-worker", app.clock(), timedelta(0), 10, hosts=[(GH, group_host(app))]
            )
            [first, *_] = await claims.due_results(conn, group, app.clock())
            assert await claims.start_write(conn, group, first, app.clock())
        host.set_pull_state("acme/app", 1, HostPullState.MERGED)
        view = await run_until_finished(app, op)
        async with app.engine.connect() as conn:
            results = await op_store.list_results(conn, op)
    assert view.done == 3 and view.failed == 0
    assert results[0].detail == "done (found on the host after an interrupted attempt)"
    assert writes_per_pull(emu, GH, "merge") == {(repo.id, 2): 1, (repo.id, 3): 1}


def group_host(app: App) -> str:
    [(kind, url)] = app.operation_worker.hosts
    assert kind is GH
    return str(url)


async def test_a_worker_stopped_mid_write_hands_its_claim_back(
    store_url: str, emu: RunningEmulator
) -> None:
    """Shutdown (``serve`` cancels the loops) while a write is in flight: the group's claim is
    released at once, as the changeset syncer releases its claims, so another worker takes the
    group over without waiting for the lease; it looks at the host first and finishes."""
    host = emu.state.host(GH)
    repo = host.add_repo("acme", "app")
    for k in range(2):
        host.add_pull(repo.full_name, title=f"change {k}")
    async with (
        tracked(store_url, emu, worker_id="worker-a") as (a, bc),
        tracked_view(store_url, emu, "worker-b") as b,
    ):
        op = await enqueue(a, bc, OperationKind.CLOSE)
        host.faults.timeouts_next, host.faults.path_contains = 1, "/pulls/1"  # the PATCH hangs
        stop = asyncio.Event()
        running = asyncio.create_task(a.operation_worker.run(stop))
        await until(lambda: write_started(a, op))  # the write of #1 is in flight
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, DEADLINE)
        async with a.engine.connect() as conn:
            holders = await conn.execute(
                sa.select(bulk_operation_repos.c.claimed_by).where(
                    bulk_operation_repos.c.operation_id == op
                )
            )
            assert list(holders.scalars()) == [None]  # handed back, not left to the lease
        claimed, _ = await b.operation_worker.run_once()  # another worker takes it over now
        view = await run_until_finished(b, op)
    assert claimed == 1 and (view.done, view.failed) == (2, 0)
    assert all(p.state is HostPullState.CLOSED for p in repo.pulls.values())


async def write_started(app: App, op: int) -> bool:
    async with app.engine.connect() as conn:
        started = await conn.execute(
            sa.select(sa.func.count())
            .select_from(bulk_operation_results)
            .where(
                bulk_operation_results.c.operation_id == op,
                bulk_operation_results.c.write_started_at.is_not(None),
            )
        )
        return bool(started.scalar_one())


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
