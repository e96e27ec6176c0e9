"""The changeset state history (what the burndown is computed from) is written on every change
of external state, by every path, in the transaction of the change: a sync's result, and the
re-derivation after an archive flip however it was learned; never for a sync that changed
nothing; never when the transaction rolls back."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.domain import ChangesetSnapshot, HostPullState
from repo_updater.service_layer import repo_changes
from repo_updater.store import changeset_queries as queries
from repo_updater.store import changesets as store
from repo_updater.store.changeset_claims import SyncOutcome, claim_work, complete_syncs
from repo_updater.store.schema import changeset_state_history as history
from tests.support.fakes import T0, insert_repo

LEASE = timedelta(minutes=5)
H = timedelta(hours=1)


async def rows(conn: AsyncConnection) -> list[tuple[int, str, object]]:
    result = await conn.execute(
        sa.select(history.c.changeset_id, history.c.external_state, history.c.at).order_by(
            history.c.id
        )
    )
    return [(r[0], r[1], r[2]) for r in result]


async def sync(conn: AsyncConnection, at: timedelta, states: dict[int, HostPullState]) -> None:
    """One sync round at T0 + ``at`` in which the host reports ``states`` by PR number."""
    claimed = await claim_work(conn, "w", T0 + at, LEASE, 100)
    outcomes = [
        SyncOutcome(c, ChangesetSnapshot(c.changeset_id, c.number, states[c.number]))
        for c in claimed
        if c.number in states
    ]
    await complete_syncs(conn, outcomes, T0 + at)


async def test_every_state_change_is_recorded_once_at_its_time(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc = await store.create_batch_change(conn, "bc", "", T0)
        repo = await insert_repo(conn, "acme/widgets")
        other = await insert_repo(conn, "acme/other")
        a = await store.track_changeset(conn, bc, repo, 1, T0)
        b = await store.track_changeset(conn, bc, other, 2, T0)
        await sync(conn, 1 * H, {1: HostPullState.OPEN, 2: HostPullState.DRAFT})
        assert await rows(conn) == [(a, "OPEN", T0 + H), (b, "DRAFT", T0 + H)]

        await store.request_sync(conn, [a, b], "test", T0 + 2 * H)
        await sync(conn, 2 * H, {1: HostPullState.OPEN, 2: HostPullState.DRAFT})
        assert len(await rows(conn)) == 2  # a sync that changed nothing records nothing

        # An archive flip learned without a listing (a refused write, a webhook).
        await repo_changes.set_archived(
            conn, repo, True, why="test", external_service_id=None, now=T0 + 3 * H
        )
        assert (await rows(conn))[2:] == [(a, "READONLY", T0 + 3 * H)]
        await repo_changes.set_archived(
            conn, repo, False, why="test", external_service_id=None, now=T0 + 4 * H
        )
        await store.request_sync(conn, [b], "test", T0 + 5 * H)
        await sync(conn, 5 * H, {2: HostPullState.MERGED})
        assert (await rows(conn))[3:] == [(a, "OPEN", T0 + 4 * H), (b, "MERGED", T0 + 5 * H)]

        shown = await queries.state_history(conn, a, limit=2)
        assert [(s.external_state.value, s.at) for s in shown] == [
            ("READONLY", T0 + 3 * H),
            ("OPEN", T0 + 4 * H),
        ]


async def test_history_rolls_back_with_the_change(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        bc = await store.create_batch_change(conn, "bc", "", T0)
        repo = await insert_repo(conn, "acme/widgets")
        await store.track_changeset(conn, bc, repo, 1, T0)
        await sync(conn, H, {1: HostPullState.OPEN})

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        async with engine.begin() as conn:
            await repo_changes.set_archived(
                conn, repo, True, why="test", external_service_id=None, now=T0 + 2 * H
            )
            raise Crash
    async with engine.connect() as conn:
        assert [state for _, state, _ in await rows(conn)] == ["OPEN"]
        (view,) = await store.list_changesets(conn)
        assert view.external_state is not None and view.external_state.value == "OPEN"
