"""What a batch change's owner looks at first: counts of its changesets by state, and the state
transitions the burndown is computed from (streamed, so memory does not grow with history)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.burndown import UNSYNCED
from repo_updater.core.domain import ExternalState
from repo_updater.store.schema import batch_change_changesets, changeset_state_history, changesets

# Review and check states are counted among the changesets still open for work.
ACTIVE_STATES = (ExternalState.OPEN.value, ExternalState.DRAFT.value)


@dataclass(slots=True)
class StateCounts:
    total: int = 0
    by_state: dict[str, int] = field(default_factory=dict)  # UNSYNCED: never synced
    errored: int = 0  # the last sync failed
    by_review_state: dict[str, int] = field(default_factory=dict)  # open and draft only
    by_check_state: dict[str, int] = field(default_factory=dict)  # open and draft only


def _members(batch_change_id: int) -> sa.Select[tuple[int]]:
    bcc = batch_change_changesets
    return sa.select(bcc.c.changeset_id).where(bcc.c.batch_change_id == batch_change_id)


async def state_counts(conn: AsyncConnection, batch_change_id: int) -> StateCounts:
    c = changesets.c
    members = c.id.in_(_members(batch_change_id))
    out = StateCounts()
    rows = await conn.execute(
        sa.select(
            c.external_state,
            sa.func.count(),
            sa.func.count().filter(c.sync_error.is_not(None)),
        )
        .where(members)
        .group_by(c.external_state)
    )
    for state, n, errored in rows:
        out.by_state[state or UNSYNCED] = int(n)
        out.total += int(n)
        out.errored += int(errored)
    active = sa.and_(members, c.external_state.in_(ACTIVE_STATES))
    for column, target in (
        (c.review_state, out.by_review_state),
        (c.check_state, out.by_check_state),
    ):
        for value, n in await conn.execute(
            sa.select(column, sa.func.count()).where(active).group_by(column)
        ):
            target[value or "UNKNOWN"] = int(n)
    return out


async def transitions(
    conn: AsyncConnection, batch_change_id: int, until: datetime
) -> AsyncIterator[tuple[datetime, int, str]]:
    """``(at, changeset_id, state)`` for the batch change's changesets up to ``until``, in time
    order: each changeset's creation as UNSYNCED, then every recorded state change."""
    c, h = changesets, changeset_state_history
    created = sa.select(
        c.c.created_at.label("at"),
        sa.literal(0).label("seq"),
        c.c.id.label("changeset_id"),
        sa.literal(UNSYNCED).label("state"),
    ).where(c.c.id.in_(_members(batch_change_id)), c.c.created_at <= until)
    changed = sa.select(
        h.c.at,
        h.c.id.label("seq"),
        h.c.changeset_id,
        h.c.external_state.label("state"),
    ).where(h.c.changeset_id.in_(_members(batch_change_id)), h.c.at <= until)
    both = sa.union_all(created, changed).subquery()
    stmt = sa.select(both.c.at, both.c.changeset_id, both.c.state).order_by(both.c.at, both.c.seq)
    # Fetched a thousand rows at a time: one driver round trip per row (aiosqlite hops to its
    # thread for each) cost 1.3 s at 25,000 transitions; memory stays bounded all the same.
    result = await conn.stream(stmt.execution_options(yield_per=1000))
    async for part in result.partitions():
        for at, changeset_id, state in part:
            yield _aware(at), int(changeset_id), str(state)


def _aware(value: datetime | str) -> datetime:
    """A UNION may lose the column type on SQLite: parse and mark UTC as ``UTCDateTime``."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
