"""Claim order and plans (issue 12, item 5): ties on ``requested_at`` / ``next_sync_at`` are
broken by changeset id (the order of the claim indexes), and on SQLite an ANALYZE taken while
the request queue was empty does not turn the idle poll into a scan of every changeset."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.core.domain import HostKind
from repo_updater.store import changesets as store
from repo_updater.store.changeset_claims import claim_work
from repo_updater.store.schema import changeset_sync_requests, changesets
from tests.support.fakes import T0, insert_repo

LEASE = timedelta(minutes=5)


async def _track(engine: AsyncEngine, n: int) -> list[int]:
    async with engine.begin() as conn:
        bc = await store.create_batch_change(conn, "bc", "", T0)
        repo = await insert_repo(conn, "acme/widgets")
        # One statement: every request and next_sync_at share one timestamp (the tie).
        return await store.track_changesets(conn, bc, [(repo, i) for i in range(n, 0, -1)], T0)


async def test_ties_are_claimed_in_changeset_id_order(engine: AsyncEngine) -> None:
    ids = sorted(await _track(engine, 30))
    async with engine.begin() as conn:
        first = await claim_work(conn, "w1", T0, LEASE, 7)
        assert [c.changeset_id for c in first] == ids[:7]  # requested, tied: by id
        await conn.execute(sa.delete(changeset_sync_requests))
        await conn.execute(changesets.update().values(claimed_by=None, claimed_until=None))
        due = await claim_work(conn, "w2", T0, LEASE, 5)
        assert [c.changeset_id for c in due] == ids[:5]  # due, tied next_sync_at: by id


async def test_sqlite_idle_poll_walks_the_request_index_after_analyze(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's planner only")
    await _track(engine, 300)
    async with engine.begin() as conn:
        await conn.execute(sa.delete(changeset_sync_requests))  # the queue is empty...
        await conn.execute(changesets.update().values(next_sync_at=T0 + timedelta(days=1)))
        await conn.execute(sa.text("ANALYZE"))  # ...when the statistics are taken
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with engine.begin() as conn:
            assert await claim_work(conn, "w", T0, LEASE, 200) == []
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    requested_sql, params = seen[0]
    assert "changeset_sync_requests" in requested_sql
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + requested_sql, params)
        plan = [str(list(r)[3]) for r in rows]
    assert plan[0].startswith("SCAN changeset_sync_requests USING INDEX"), plan
    assert not any(p.startswith("SCAN changesets") for p in plan), plan


async def test_bulk_tracking_refreshes_postgresql_statistics(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner statistics only")
    await _track(engine, store.ANALYZE_AFTER_TRACKED)
    async with engine.connect() as conn:
        tuples = (
            await conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE relname = 'changeset_sync_requests'")
            )
        ).scalar_one()
    assert tuples >= store.ANALYZE_AFTER_TRACKED  # planned as what it is, not as empty


async def test_postgresql_claim_walks_the_claim_indexes(engine: AsyncEngine) -> None:
    """The one-statement claim reads about ``limit`` requests and changesets, whatever the
    queue's length: the request index in claim order, then primary-key probes (no scan or sort
    of every request or changeset, which made each round O(N))."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's one-statement claim only")
    from repo_updater.store.claiming import _pg_claim_sql, _pg_params

    ids = await _track(engine, 3 * store.ANALYZE_AFTER_TRACKED)  # analyzed: planned as it is

    async def plan() -> str:
        async with engine.connect() as conn:
            sql, bind = _pg_claim_sql(conn.dialect, 200)
            params = bind(_pg_params("w", T0, LEASE, [(HostKind.GITHUB, "https://github.com")]))
            rows = await conn.exec_driver_sql("EXPLAIN " + sql, params)
            return "\n".join(str(r[0]) for r in rows)

    every_one_requested = await plan()
    async with engine.begin() as conn:  # a few requests left, every changeset due
        await conn.execute(
            changeset_sync_requests.delete().where(
                changeset_sync_requests.c.changeset_id > min(ids) + 50
            )
        )
        await conn.execute(sa.text("ANALYZE changeset_sync_requests"))
    few_requested = await plan()
    # Every changeset requested: the request index in claim order, no scan of either table.
    assert "Index Scan using changeset_sync_requests_requested_idx" in every_one_requested
    assert "Seq Scan on changeset_sync_requests" not in every_one_requested, every_one_requested
    # In both cases the due walk is the schedule index: never a scan and sort of every
    # changeset (a few requests may be read whole: that is O(requests), not O(changesets)).
    for text in (every_one_requested, few_requested):
        assert "Index Scan using changesets_next_sync_idx" in text, text
        assert "Seq Scan on changesets" not in text, text
