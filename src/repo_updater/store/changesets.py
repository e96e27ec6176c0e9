"""Store functions for batch changes, changesets and changeset sync requests.

Every function takes an ``AsyncConnection``: the caller owns the transaction, so the repo syncer
can request syncs (and re-derive states) in the same transaction as its diff. Claiming and
completing syncs lives in ``repo_updater.store.changeset_claims``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.changeset_state import READONLY_WHEN_ARCHIVED
from repo_updater.core.domain import (
    MAX_PULL_NUMBER,
    BatchChangeState,
    ExternalState,
    PublicationState,
)

# The read side lives in changeset_queries; these names stay importable from here.
from repo_updater.store.changeset_queries import BatchChangeView as BatchChangeView
from repo_updater.store.changeset_queries import ChangesetView as ChangesetView
from repo_updater.store.changeset_queries import list_batch_changes as list_batch_changes
from repo_updater.store.changeset_queries import list_changesets as list_changesets
from repo_updater.store.schema import (
    UTCDateTime,
    batch_change_changesets,
    batch_changes,
    changeset_state_history,
    changeset_sync_requests,
    changesets,
    repos,
)
from repo_updater.store.sql import dialect_insert


class BatchChangeExists(ValueError):
    """A batch change with that name exists already."""


class BatchChangeNotFound(LookupError):
    pass


class BatchChangeClosed(ValueError):
    """Changesets cannot be added to a closed batch change."""


class ChangesetNotSynced(ValueError):
    """A sync was asked of a changeset that is not synced at all: it belongs to no open batch
    change, or its repository was removed. The message says which."""


class RepoNotFound(LookupError):
    pass


# --- shared SQL pieces --------------------------------------------------------------------------


def in_open_batch_change() -> sa.Exists:
    """True for a changeset (correlated with ``changesets``) that belongs to an OPEN batch
    change."""
    bcc, bc = batch_change_changesets, batch_changes
    return (
        sa.select(sa.literal(1))
        .select_from(bcc.join(bc, bc.c.id == bcc.c.batch_change_id))
        .where(bcc.c.changeset_id == changesets.c.id, bc.c.state == BatchChangeState.OPEN.value)
        .exists()
    )


def on_live_repo() -> sa.Exists:
    """True for a changeset (correlated with ``changesets``) whose repository is not
    soft-deleted: only those are synced."""
    return (
        sa.select(sa.literal(1))
        .where(repos.c.id == changesets.c.repo_id, repos.c.deleted_at.is_(None))
        .exists()
    )


def _derived_state_sql() -> sa.ColumnElement[str]:
    """``derive_external_state`` in SQL, from the stored host state and the repo's CURRENT
    archived flag. Host and external states share their names (tests check both agree)."""
    archived = (
        sa.select(repos.c.archived).where(repos.c.id == changesets.c.repo_id).scalar_subquery()
    )
    readonly_when = [s.value for s in READONLY_WHEN_ARCHIVED]
    return sa.case(
        (
            sa.and_(changesets.c.host_state.in_(readonly_when), archived.is_(True)),
            sa.literal(ExternalState.READONLY.value),
        ),
        else_=changesets.c.host_state,
    )


async def rederive(conn: AsyncConnection, where: sa.ColumnElement[bool], *, now: datetime) -> int:
    """Recompute ``external_state`` for the changesets matching ``where``; returns how many
    changed. Never-synced changesets (no host state) keep no external state. Every change is
    recorded in ``changeset_state_history`` at ``now``, in the caller's transaction: this is
    the only function that sets ``external_state``, so the history misses none."""
    derived = _derived_state_sql()
    if conn.dialect.name != "sqlite":  # lock in id order first (see changeset_claims.lock_rows)
        await conn.execute(
            sa.select(changesets.c.id)
            .where(where, changesets.c.host_state.is_not(None))
            .order_by(changesets.c.id)
            .with_for_update(key_share=True)
        )
    result = await conn.execute(
        changesets.update()
        .where(where, changesets.c.host_state.is_not(None))
        .where(changesets.c.external_state.is_distinct_from(derived))
        .values(external_state=derived)
        .returning(changesets.c.id, changesets.c.external_state)
    )
    changed = result.all()
    if changed:
        await conn.execute(
            changeset_state_history.insert(),
            [
                {"changeset_id": cs_id, "external_state": state, "at": now}
                for cs_id, state in changed
            ],
        )
    return len(changed)


async def rederive_for_repos(
    conn: AsyncConnection, repo_ids: Iterable[int], *, now: datetime
) -> int:
    """Re-derive every changeset on these repos from its host state and the repo's current
    archived flag, set-based (call it in the transaction that flips ``archived``)."""
    changed = 0
    for part in chunks(sorted(set(repo_ids))):
        changed += await rederive(conn, changesets.c.repo_id.in_(part), now=now)
    return changed


# --- batch changes ------------------------------------------------------------------------------


async def create_batch_change(
    conn: AsyncConnection, name: str, description: str, now: datetime
) -> int:
    if not name.strip():
        raise ValueError("batch change name must not be empty")
    stmt = (
        dialect_insert(conn, batch_changes)
        .values(
            name=name,
            description=description,
            state=BatchChangeState.OPEN.value,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[batch_changes.c.name])
        .returning(batch_changes.c.id)
    )
    new_id = (await conn.execute(stmt)).scalar_one_or_none()
    if new_id is None:
        raise BatchChangeExists(f"a batch change named {name!r} exists already")
    return int(new_id)


async def close_batch_change(conn: AsyncConnection, batch_change_id: int, now: datetime) -> None:
    """Close a batch change (idempotent). Its changesets are no longer synced unless another
    open batch change also tracks them."""
    result = await conn.execute(
        batch_changes.update()
        .where(
            batch_changes.c.id == batch_change_id,
            batch_changes.c.state == BatchChangeState.OPEN.value,
        )
        .values(state=BatchChangeState.CLOSED.value, closed_at=now)
    )
    if result.rowcount == 0:
        await _require_batch_change(conn, batch_change_id)
        return
    # Its changesets that no other open batch change tracks are no longer synced: their
    # pending requests would wait forever (invariant 3 and the pending-requests metric).
    q, bcc = changeset_sync_requests, batch_change_changesets
    members = sa.select(bcc.c.changeset_id).where(bcc.c.batch_change_id == batch_change_id)
    still_tracked = sa.select(changesets.c.id).where(in_open_batch_change())
    await conn.execute(
        q.delete().where(q.c.changeset_id.in_(members), q.c.changeset_id.not_in(still_tracked))
    )


async def _require_batch_change(conn: AsyncConnection, batch_change_id: int) -> BatchChangeState:
    state = (
        await conn.execute(
            sa.select(batch_changes.c.state).where(batch_changes.c.id == batch_change_id)
        )
    ).scalar_one_or_none()
    if state is None:
        raise BatchChangeNotFound(f"no batch change with id {batch_change_id}")
    return BatchChangeState(state)


# --- changesets ---------------------------------------------------------------------------------

ANALYZE_AFTER_TRACKED = 1000  # changesets tracked at once before PostgreSQL re-analyzes
# Every table the claim joins: a claim planned on stale row counts (the repos of a fresh store,
# the new links) hash-joins and sorts all requests instead of walking the request index.
ANALYZE_TRACKING = (
    "ANALYZE changesets, changeset_sync_requests, batch_change_changesets, batch_changes, repos"
)


async def track_changeset(
    conn: AsyncConnection, batch_change_id: int, repo_id: int, number: int, now: datetime
) -> int:
    """Import an existing pull request into a batch change and request its first sync.

    Idempotent; a pull request can belong to several batch changes. Its states stay NULL
    until the first sync."""
    (changeset_id,) = await track_changesets(conn, batch_change_id, [(repo_id, number)], now)
    return changeset_id


async def track_changesets(
    conn: AsyncConnection,
    batch_change_id: int,
    items: Sequence[tuple[int, int]],
    now: datetime,
) -> list[int]:
    """Bulk form of :func:`track_changeset` for ``(repo_id, number)`` pairs: set-based, so
    importing thousands of pull requests costs a few statements per 500. Validates everything
    before writing anything; returns the changeset ids in the order of ``items``."""
    for _, number in items:
        if not 1 <= number <= MAX_PULL_NUMBER:
            raise ValueError(
                f"pull request number must be between 1 and {MAX_PULL_NUMBER}, got {number}"
            )
    if await _require_batch_change(conn, batch_change_id) is not BatchChangeState.OPEN:
        raise BatchChangeClosed(f"batch change {batch_change_id} is closed")
    wanted = sorted({repo_id for repo_id, _ in items})
    live: set[int] = set()
    for part in chunks(wanted):
        rows = await conn.execute(
            sa.select(repos.c.id).where(repos.c.id.in_(part), repos.c.deleted_at.is_(None))
        )
        live.update(rows.scalars())
    missing = [repo_id for repo_id in wanted if repo_id not in live]
    if missing:
        raise RepoNotFound(f"no repository with id {missing[0]}")
    published = PublicationState.PUBLISHED.value
    keys = list(dict.fromkeys((repo_id, str(number)) for repo_id, number in items))
    ids: dict[tuple[int, str], int] = {}
    # One statement with executemany parameters: SQLAlchemy compiles it once and sends the
    # rows in batches ("insertmanyvalues"); a multi-row VALUES built per chunk cost more
    # Python time compiling than the database spent writing.
    insert = dialect_insert(conn, changesets)
    upsert = insert.on_conflict_do_update(
        index_elements=[changesets.c.repo_id, changesets.c.external_id],
        set_={"publication_state": published},
    ).returning(changesets.c.id, changesets.c.repo_id, changesets.c.external_id)
    values = [
        {"repo_id": repo_id, "external_id": external_id, "publication_state": published,
         "next_sync_at": now, "created_at": now, "updated_at": now}
        for repo_id, external_id in keys
    ]  # fmt: skip
    for row in await conn.execute(upsert, values):
        ids[(row.repo_id, row.external_id)] = row.id
    await conn.execute(
        dialect_insert(conn, batch_change_changesets).on_conflict_do_nothing(),
        [{"batch_change_id": batch_change_id, "changeset_id": i} for i in ids.values()],
    )
    # Requestable by construction (published, live repos checked above, this open batch
    # change): no per-chunk join against every link, which, planned on the statistics of a
    # store that was empty before this call, made tracking 100k changesets quadratic.
    for id_part in chunks(sorted(ids.values())):
        await _upsert_requests(
            conn, [changesets.c.id.in_(id_part)], "tracked", now, requestable=True
        )
    if len(ids) >= ANALYZE_AFTER_TRACKED and conn.dialect.name == "postgresql":
        # Fresh planner statistics, or the claim plans 100k new rows as if the tables were
        # small (hash joins, a sort spilled to disk). Not on SQLite: see ``changeset_claims``.
        await conn.execute(sa.text(ANALYZE_TRACKING))
    return [ids[(repo_id, str(number))] for repo_id, number in items]


# --- sync requests ------------------------------------------------------------------------------


async def _upsert_requests(
    conn: AsyncConnection,
    where: Sequence[sa.ColumnElement[bool]],
    reason: str,
    now: datetime,
    *,
    requestable: bool = False,
) -> int:
    """One request row per published changeset matching ``where`` (``requestable``: the caller
    knows they all are, e.g. just tracked). An existing row gets its generation bumped (so a
    sync already in flight does not consume it) and the new reason; ``requested_at`` keeps the
    oldest pending time, so re-requests never push a changeset back in the queue."""
    q = changeset_sync_requests
    checks = (
        ()
        if requestable
        else (
            changesets.c.publication_state == PublicationState.PUBLISHED.value,
            on_live_repo(),
            in_open_batch_change(),  # nothing would ever claim the request of any other
        )
    )
    # Ordered: the upsert locks request rows in changeset id order, as ``claim_work`` does
    # (two statements locking the same rows in different orders can deadlock on PostgreSQL).
    source = (
        sa.select(
            changesets.c.id,
            sa.literal(reason, sa.String),
            sa.literal(now, UTCDateTime()),
            sa.literal(1, sa.Integer),
        )
        .where(*checks, *where)
        .order_by(changesets.c.id)
    )
    insert = dialect_insert(conn, q).from_select(
        ["changeset_id", "reason", "requested_at", "generation"], source
    )
    upsert = insert.on_conflict_do_update(
        index_elements=[q.c.changeset_id],
        set_={"generation": q.c.generation + 1, "reason": insert.excluded.reason},
    ).returning(q.c.changeset_id)
    return len((await conn.execute(upsert)).all())


async def request_sync(
    conn: AsyncConnection, changeset_ids: Iterable[int], reason: str, now: datetime
) -> int:
    """Request a sync of these changesets (unknown and unpublished ids, changesets of no open
    batch change and changesets whose repository was removed are ignored: nothing would ever
    consume their request).
    Duplicates collapse into one row per changeset. Returns the number of changesets that
    now have a pending request."""
    total = 0
    for part in chunks(sorted(set(changeset_ids))):
        total += await _upsert_requests(conn, [changesets.c.id.in_(part)], reason, now)
    return total


async def requestable(conn: AsyncConnection, changeset_ids: Iterable[int]) -> list[int]:
    """Those of these changesets a sync request would be served for: published, on a live
    repository, in an open batch change."""
    out: list[int] = []
    for part in chunks(sorted(set(changeset_ids))):
        stmt = sa.select(changesets.c.id).where(
            changesets.c.id.in_(part),
            changesets.c.publication_state == PublicationState.PUBLISHED.value,
            on_live_repo(),
            in_open_batch_change(),
        )
        out += (await conn.execute(stmt)).scalars()
    return out


async def request_syncs_for_repos(
    conn: AsyncConnection, repo_ids: Collection[int], reason: str, now: datetime
) -> int:
    """Request a sync of every published changeset on these repos that belongs to an open
    batch change (e.g. their archived flag flipped). Set-based; returns the request count."""
    total = 0
    for part in chunks(sorted(set(repo_ids))):
        total += await _upsert_requests(conn, [changesets.c.repo_id.in_(part)], reason, now)
    return total


async def pending_requests(conn: AsyncConnection) -> dict[int, int]:
    """Pending sync requests: changeset id -> generation."""
    q = changeset_sync_requests
    return {row.changeset_id: row.generation for row in await conn.execute(sa.select(q))}


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What decides whether a forced sync of one changeset costs a host request now."""

    last_synced_at: datetime | None
    in_flight: bool  # a worker holds a live claim on it
    pending_at: datetime | None  # a pending request is ready at this time (None: none pending)
    not_synced: str | None = None  # why it is not synced at all (no open batch change, ...)


async def sync_status(conn: AsyncConnection, changeset_id: int, now: datetime) -> SyncStatus | None:
    """The sync status of a published changeset; None for an unknown or unpublished one."""
    c, q = changesets, changeset_sync_requests
    row = (
        await conn.execute(
            sa.select(c.c.last_synced_at, c.c.claimed_until, q.c.changeset_id.label("pending"),
                      q.c.claimed_until.label("parked_until"),
                      in_open_batch_change().label("open"), on_live_repo().label("live"))
            .select_from(c.outerjoin(q, q.c.changeset_id == c.c.id))
            .where(c.c.id == changeset_id,
                   c.c.publication_state == PublicationState.PUBLISHED.value)
        )
    ).first()  # fmt: skip
    if row is None:
        return None
    pending_at = None
    if row.pending is not None:
        parked = row.parked_until
        pending_at = parked if parked is not None and parked > now else now
    in_flight = row.claimed_until is not None and row.claimed_until > now
    not_synced = None
    if not row.live:
        not_synced = "its repository was removed"
    elif not row.open:
        not_synced = "it belongs to no open batch change"
    return SyncStatus(row.last_synced_at, in_flight, pending_at, not_synced)


async def request_sync_at(
    conn: AsyncConnection, changeset_id: int, reason: str, now: datetime, not_before: datetime
) -> None:
    """A sync request that becomes ready at ``not_before``: parked exactly as a failed sync
    parks its request (``claimed_until`` in the future, nothing newer to claim). Any later
    ``request_sync`` bumps its generation and so makes it ready at once. An existing request
    is left as it is."""
    q = changeset_sync_requests
    await conn.execute(
        dialect_insert(conn, q)
        .values(changeset_id=changeset_id, reason=reason, requested_at=now, generation=1,
                claimed_until=not_before, claimed_generation=1)
        .on_conflict_do_nothing(index_elements=[q.c.changeset_id])
    )  # fmt: skip
