"""Reading batch changes and changesets: views, bounded pages (keyset paging, never OFFSET),
one by id, and the state history of one changeset. ``store.changesets`` re-exports the views and
the list functions under their old names."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.burndown import UNSYNCED
from repo_updater.core.domain import (
    BatchChangeState,
    CheckState,
    ExternalState,
    PublicationState,
    ReviewState,
)
from repo_updater.core.webhooks import synced_by
from repo_updater.store.schema import (
    batch_change_changesets,
    batch_changes,
    changeset_state_history,
    changesets,
    repos,
)


@dataclass(frozen=True, slots=True)
class BatchChangeView:
    id: int
    name: str
    description: str
    state: BatchChangeState
    created_at: datetime
    closed_at: datetime | None
    changeset_count: int


@dataclass(frozen=True, slots=True)
class ChangesetView:
    id: int
    repo_id: int
    repo_name: str  # the store's global name, e.g. "github.com/acme/widgets"
    number: int
    publication_state: PublicationState
    external_state: ExternalState | None  # None until the first successful sync
    review_state: ReviewState | None
    check_state: CheckState | None
    title: str
    url: str
    head_ref: str
    base_ref: str
    additions: int
    deletions: int
    last_synced_at: datetime | None
    next_sync_at: datetime | None
    sync_error: str | None
    batch_change_ids: tuple[int, ...]
    last_sync_reason: str | None = None  # the request's reason, or "scheduled"
    synced_by: str | None = None  # webhook, poll or request (``core.webhooks.synced_by``)


@dataclass(frozen=True, slots=True)
class StateChange:
    external_state: ExternalState
    at: datetime


class ChangesetOrder(enum.StrEnum):
    ID = "id"
    # What needs a person first: sync errors, then READONLY, then the rest; by id within each.
    ATTENTION = "attention"


@dataclass(frozen=True, slots=True)
class ChangesetFilter:
    batch_change_id: int | None = None
    state: str | None = None  # an ExternalState value, or UNSYNCED (no state yet)
    repo_id: int | None = None
    errored: bool | None = None  # True: only those whose last sync failed


# --- batch changes ------------------------------------------------------------------------------


def _batch_change_select() -> sa.Select[Any]:
    bc, bcc = batch_changes, batch_change_changesets
    count = sa.func.count(bcc.c.changeset_id)
    return (
        sa.select(bc, count.label("changeset_count"))
        .select_from(bc.outerjoin(bcc, bcc.c.batch_change_id == bc.c.id))
        .group_by(*bc.c)
        .order_by(bc.c.id)
    )


def _batch_change_view(row: Any) -> BatchChangeView:
    return BatchChangeView(
        id=row.id,
        name=row.name,
        description=row.description,
        state=BatchChangeState(row.state),
        created_at=row.created_at,
        closed_at=row.closed_at,
        changeset_count=int(row.changeset_count),
    )


async def list_batch_changes(
    conn: AsyncConnection,
    state: BatchChangeState | None = None,
    *,
    name: str | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[BatchChangeView]:
    """Batch changes by id after ``after_id``; ``name`` matches exactly (names are unique)."""
    stmt = _batch_change_select().where(batch_changes.c.id > after_id)
    if state is not None:
        stmt = stmt.where(batch_changes.c.state == state.value)
    if name is not None:
        stmt = stmt.where(batch_changes.c.name == name)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_batch_change_view(row) for row in await conn.execute(stmt)]


async def get_batch_change(conn: AsyncConnection, batch_change_id: int) -> BatchChangeView | None:
    stmt = _batch_change_select().where(batch_changes.c.id == batch_change_id)
    row = (await conn.execute(stmt)).first()
    return None if row is None else _batch_change_view(row)


# --- changesets ---------------------------------------------------------------------------------


def attention_rank() -> sa.ColumnElement[int]:
    """0 for a changeset whose last sync failed, 1 for READONLY, 2 for the rest."""
    c = changesets.c
    return sa.case(
        (c.sync_error.is_not(None), 0),
        (c.external_state == ExternalState.READONLY.value, 1),
        else_=2,
    )


def _filtered(stmt: sa.Select[Any], where: ChangesetFilter) -> sa.Select[Any]:
    c, bcc = changesets, batch_change_changesets
    if where.batch_change_id is not None:
        member = sa.select(bcc.c.changeset_id).where(bcc.c.batch_change_id == where.batch_change_id)
        stmt = stmt.where(c.c.id.in_(member))
    if where.state == UNSYNCED:
        stmt = stmt.where(c.c.external_state.is_(None))
    elif where.state is not None:
        stmt = stmt.where(c.c.external_state == where.state)
    if where.repo_id is not None:
        stmt = stmt.where(c.c.repo_id == where.repo_id)
    if where.errored is not None:
        error = c.c.sync_error
        stmt = stmt.where(error.is_not(None) if where.errored else error.is_(None))
    return stmt


async def page_changesets(
    conn: AsyncConnection,
    where: ChangesetFilter,
    *,
    order: ChangesetOrder = ChangesetOrder.ID,
    after: tuple[int, int] | None = None,
    limit: int,
) -> list[tuple[ChangesetView, tuple[int, int]]]:
    """Up to ``limit`` changesets matching ``where`` after the keyset ``after``; each with its
    own keyset ``(rank, id)`` (rank 0 in id order), the cursor of the next page."""
    c = changesets
    if order is ChangesetOrder.ATTENTION:
        rank = attention_rank()
        stmt = _changeset_select(rank).order_by(rank, c.c.id)
        if after is not None:
            r, i = after
            stmt = stmt.where(sa.or_(rank > r, sa.and_(rank == r, c.c.id > i)))
    else:  # plain id order: the primary key index serves the keyset
        stmt = _changeset_select(sa.literal(0, sa.Integer)).order_by(c.c.id)
        if after is not None:
            stmt = stmt.where(c.c.id > after[1])
    stmt = _filtered(stmt, where).limit(limit)
    rows = (await conn.execute(stmt)).all()
    views = await _views(conn, rows)
    return [(view, (int(row.rank), row.id)) for view, row in zip(views, rows, strict=True)]


async def list_changesets(
    conn: AsyncConnection,
    batch_change_id: int | None = None,
    state: ExternalState | None = None,
    repo_id: int | None = None,
    *,
    after_id: int = 0,
    limit: int | None = None,
) -> list[ChangesetView]:
    """Changesets by id, each once (even when it belongs to several batch changes). Without
    ``limit``, all of them: for the CLI and tests; the API pages with ``page_changesets``."""
    where = ChangesetFilter(batch_change_id, state.value if state else None, repo_id)
    stmt = _filtered(_changeset_select(sa.literal(0, sa.Integer)), where)
    stmt = stmt.where(changesets.c.id > after_id).order_by(changesets.c.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return await _views(conn, (await conn.execute(stmt)).all())


async def get_changeset(conn: AsyncConnection, changeset_id: int) -> ChangesetView | None:
    stmt = _changeset_select(sa.literal(0, sa.Integer)).where(changesets.c.id == changeset_id)
    views = await _views(conn, (await conn.execute(stmt)).all())
    return views[0] if views else None


async def state_history(
    conn: AsyncConnection, changeset_id: int, *, limit: int
) -> list[StateChange]:
    """The newest ``limit`` state changes of a changeset, oldest first."""
    h = changeset_state_history
    rows = await conn.execute(
        sa.select(h.c.external_state, h.c.at)
        .where(h.c.changeset_id == changeset_id)
        .order_by(h.c.at.desc(), h.c.id.desc())
        .limit(limit)
    )
    return [StateChange(ExternalState(s), at) for s, at in reversed(rows.all())]


def _changeset_select(rank: sa.ColumnElement[int]) -> sa.Select[Any]:
    c = changesets
    return sa.select(c, repos.c.name.label("repo_name"), rank.label("rank")).select_from(
        c.join(repos, repos.c.id == c.c.repo_id)
    )


async def _views(conn: AsyncConnection, rows: list[Any]) -> list[ChangesetView]:
    bcc = batch_change_changesets
    memberships: dict[int, list[int]] = {}
    for part in chunks([row.id for row in rows]):
        for cs_id, bc_id in await conn.execute(
            sa.select(bcc.c.changeset_id, bcc.c.batch_change_id)
            .where(bcc.c.changeset_id.in_(part))
            .order_by(bcc.c.batch_change_id)
        ):
            memberships.setdefault(cs_id, []).append(bc_id)
    return [
        ChangesetView(
            id=row.id,
            repo_id=row.repo_id,
            repo_name=row.repo_name,
            number=int(row.external_id),
            publication_state=PublicationState(row.publication_state),
            external_state=_opt(ExternalState, row.external_state),
            review_state=_opt(ReviewState, row.review_state),
            check_state=_opt(CheckState, row.check_state),
            title=row.title,
            url=row.url,
            head_ref=row.head_ref,
            base_ref=row.base_ref,
            additions=row.additions,
            deletions=row.deletions,
            last_synced_at=row.last_synced_at,
            next_sync_at=row.next_sync_at,
            sync_error=row.sync_error,
            batch_change_ids=tuple(memberships.get(row.id, ())),
            last_sync_reason=row.last_sync_reason,
            synced_by=synced_by(row.last_sync_reason),
        )
        for row in rows
    ]


E = TypeVar("E", ExternalState, ReviewState, CheckState)


def _opt(kind: type[E], value: str | None) -> E | None:
    return None if value is None else kind(value)
