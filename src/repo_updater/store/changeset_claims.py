"""Claiming and completing changeset syncs (the changeset syncer's half of the store).

A claim is ``changesets.claimed_by`` / ``claimed_until``: a worker holds a changeset until it
completes or releases it, or until the lease expires (a dead worker's claim simply runs out).
The candidates come from two LIMITed selects that indexes serve (ready requests by
``requested_at``, then due changesets by ``next_sync_at``), not from one query that joins,
filters and sorts every tracked changeset. On PostgreSQL both lock with ``FOR UPDATE SKIP
LOCKED`` so concurrent workers pick disjoint changesets; the claiming UPDATE re-checks the
claim, which also keeps several tasks of one SQLite process apart.

A sync request (``changeset_sync_requests``) is claimed by recording its ``generation``. On
success it is deleted only if nothing re-requested it meanwhile (same generation, still ours);
on failure it stays, parked until the retry time unless a new request arrives. A request is
therefore never dropped, except with its repository: changesets on a removed (soft-deleted)
repo are never claimed, and the removal consumes their requests
(:func:`stop_syncs_for_repos`), so none waits forever.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.changeset_state import is_terminal, last_change
from repo_updater.core.domain import ChangesetRef, ChangesetSnapshot, HostKind, PublicationState
from repo_updater.core.schedule import next_sync_at, retry_at
from repo_updater.store.changesets import in_open_batch_change, rederive, request_syncs_for_repos
from repo_updater.store.schema import (
    UTCDateTime,
    changeset_events,
    changeset_sync_requests,
    changesets,
    repos,
)
from repo_updater.store.sql import insert_ignore

HostKey = tuple[HostKind, str]  # (host_kind, host_url): one code host


@dataclass(frozen=True, slots=True)
class ClaimedChangeset:
    changeset_id: int
    repo_id: int
    repo_name: str  # host-relative, e.g. "acme/widgets"
    repo_external_id: str
    number: int
    host_kind: HostKind
    host_url: str
    repo_archived: bool
    claimed_by: str
    request_generation: int | None  # the sync request generation this claim satisfies
    sync_failures: int  # consecutive failures before this attempt
    request_reason: str | None = None  # the claimed request's reason (None: due by schedule)

    @property
    def host(self) -> HostKey:
        return (self.host_kind, self.host_url)

    def ref(self) -> ChangesetRef:
        return ChangesetRef(
            changeset_id=self.changeset_id,
            repo_name=self.repo_name,
            repo_external_id=self.repo_external_id,
            number=self.number,
        )


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """The result of syncing one claimed changeset: a snapshot or an error, never both."""

    claimed: ClaimedChangeset
    snapshot: ChangesetSnapshot | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.snapshot is None) == (self.error is None):
            raise ValueError("a sync outcome has exactly one of snapshot and error")
        if self.snapshot is not None and self.snapshot.changeset_id != self.claimed.changeset_id:
            raise ValueError("snapshot is for another changeset than the claimed one")


async def claim_work(
    conn: AsyncConnection,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    *,
    skip_hosts: Collection[HostKey] = (),
) -> list[ClaimedChangeset]:
    """Claim up to ``limit`` changesets to sync: requested ones first (oldest request first),
    then due ones (oldest ``next_sync_at`` first). Only published changesets of open batch
    changes on live repos, not claimed by a live claim, not on ``skip_hosts`` (hosts backing
    off)."""
    if limit < 1:
        return []
    c, q = changesets, changeset_sync_requests
    claim_free = _claim_free(now)
    # Two LIMITed selects, each walking an index in claim order, instead of one query that
    # joins, filters and sorts every tracked changeset on each round (and each idle poll).
    request_ready = sa.or_(
        q.c.claimed_until.is_(None),
        q.c.claimed_until <= now,  # a parked request (failed sync) waits for its retry time
        q.c.generation > sa.func.coalesce(q.c.claimed_generation, 0),  # or a newer ask
    )
    # SQLite: ``+ 0`` keeps the request index the outer loop whatever the statistics say.
    # After an ANALYZE that saw the request queue empty (it usually is), SQLite assumes the
    # default ~1M rows for it and drives the join from a full scan of ``changesets`` plus a
    # sort: every idle poll then costs O(changesets) (issue 12, item 5).
    request_key = q.c.changeset_id + 0 if conn.dialect.name == "sqlite" else q.c.changeset_id
    requested = (
        _candidates(now, skip_hosts, q.join(c, c.c.id == request_key))
        .where(request_ready)
        .order_by(q.c.requested_at, q.c.changeset_id)
        .limit(limit)
    )
    candidates = list((await conn.execute(requested)).all())
    if len(candidates) < limit:
        # Due ones. Every ready request not locked by another worker is in ``candidates``
        # already (fewer than ``limit``); those are locked by us, so exclude them by id.
        due = (
            _candidates(now, skip_hosts, c)
            .where(c.c.next_sync_at <= now)
            .order_by(c.c.next_sync_at, c.c.id)
            .limit(limit - len(candidates))
        )
        if candidates:
            due = due.where(c.c.id.not_in([row.id for row in candidates]))
        candidates += (await conn.execute(due)).all()
    if not candidates:
        return []
    until = now + lease
    ids = [row.id for row in candidates]
    won = set(
        (
            await conn.execute(
                c.update()
                .where(c.c.id.in_(ids), claim_free)
                .values(claimed_by=worker_id, claimed_until=until)
                .returning(c.c.id)
            )
        ).scalars()
    )
    requests: dict[int, tuple[int, str]] = {}
    locked = sorted(won)
    if locked and conn.dialect.name != "sqlite":
        # Never wait on a request row: one that another transaction holds (a sync request
        # upsert bumping its generation) is left out here, so this claim syncs without
        # consuming it and the request is served by a later round. Waiting could deadlock
        # (that transaction may wait on rows this one holds); the lock is taken in changeset
        # id order, as ``_upsert_requests`` takes its rows (no-op on SQLite: one writer).
        locked = list(
            (
                await conn.execute(
                    sa.select(q.c.changeset_id)
                    .where(q.c.changeset_id.in_(locked))
                    .order_by(q.c.changeset_id)
                    .with_for_update(skip_locked=True)
                )
            ).scalars()
        )
    if locked:
        returned = await conn.execute(
            q.update()
            .where(q.c.changeset_id.in_(locked))
            .values(claimed_by=worker_id, claimed_until=until, claimed_generation=q.c.generation)
            .returning(q.c.changeset_id, q.c.generation, q.c.reason)
        )
        requests = {row.changeset_id: (row.generation, row.reason) for row in returned}
    return [
        ClaimedChangeset(
            changeset_id=row.id,
            repo_id=row.repo_id,
            repo_name=row.external_name,
            repo_external_id=row.repo_external_id,
            number=int(row.external_id),
            host_kind=HostKind(row.host_kind),
            host_url=row.host_url,
            repo_archived=bool(row.archived),
            claimed_by=worker_id,
            request_generation=requests[row.id][0] if row.id in requests else None,
            sync_failures=row.sync_failures,
            request_reason=requests[row.id][1] if row.id in requests else None,
        )
        for row in candidates
        if row.id in won
    ]


def _claim_free(now: datetime) -> sa.ColumnElement[bool]:
    c = changesets
    return sa.or_(c.c.claimed_until.is_(None), c.c.claimed_until <= now)


def _candidates(
    now: datetime, skip_hosts: Collection[HostKey], source: sa.FromClause
) -> sa.Select[Any]:
    """Claimable changesets of ``source`` (which includes ``changesets``): published, on a
    live (not soft-deleted) repo, of an open batch change, not under a live claim, not on
    ``skip_hosts``; locked on PostgreSQL with SKIP LOCKED so concurrent workers pick disjoint
    changesets."""
    c, r = changesets, repos
    stmt = (
        sa.select(
            c.c.id,
            c.c.repo_id,
            c.c.external_id,
            c.c.sync_failures,
            r.c.external_name,
            r.c.external_id.label("repo_external_id"),
            r.c.host_kind,
            r.c.host_url,
            r.c.archived,
        )
        .select_from(source.join(r, r.c.id == c.c.repo_id))
        .where(
            c.c.publication_state == PublicationState.PUBLISHED.value,
            r.c.deleted_at.is_(None),  # a removed repo's changesets are not synced
            _claim_free(now),
            in_open_batch_change(),
        )
        # FOR NO KEY UPDATE (``key_share``): a claim changes no key, so it must not block
        # the KEY SHARE lock that inserting a sync request (its foreign key) takes on the
        # changeset; with FOR UPDATE, an upsert holding request rows could wait on a
        # changeset this claim holds while the claim waits on those request rows.
        .with_for_update(of=c, skip_locked=True, key_share=True)
    )
    for host_kind, host_url in skip_hosts:
        stmt = stmt.where(
            sa.not_(sa.and_(r.c.host_kind == str(host_kind), r.c.host_url == host_url))
        )
    return stmt


async def lock_rows(conn: AsyncConnection, changeset_ids: Iterable[int]) -> None:
    """PostgreSQL: lock these changesets, then their sync request rows, each in changeset id
    order, before the transaction writes them. The lock order every writer follows: changesets
    before requests, each in id order (``rederive`` and the request upsert lock in id order;
    ``claim_work`` skips held rows instead of waiting), so no two writers deadlock on them.
    Nothing to do on SQLite (one writer at a time)."""
    if conn.dialect.name == "sqlite":
        return
    c, q = changesets, changeset_sync_requests
    ids = sorted(set(changeset_ids))
    for part in chunks(ids):
        await conn.execute(
            sa.select(c.c.id)
            .where(c.c.id.in_(part))
            .order_by(c.c.id)
            .with_for_update(key_share=True)
        )
    for part in chunks(ids):
        await conn.execute(
            sa.select(q.c.changeset_id)
            .where(q.c.changeset_id.in_(part))
            .order_by(q.c.changeset_id)
            .with_for_update()
        )


def _b(name: str, type_: Any = None) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


async def complete_syncs(
    conn: AsyncConnection, outcomes: Sequence[SyncOutcome], now: datetime
) -> None:
    """Write sync outcomes and end their claims.

    Success: host state, derived external state (the repo's CURRENT archived flag), review,
    check, title, url, refs, diffstat, new timeline events (duplicates ignored), schedule; the
    request is deleted if its generation is still the claimed one. Failure: states kept, the
    error recorded, retry with backoff; the request stays. Writes guarded by the claim, so a
    worker whose lease ran out and was taken over does not overwrite the new owner."""
    c, q = changesets, changeset_sync_requests
    await lock_rows(conn, [o.claimed.changeset_id for o in outcomes])
    ok = [o for o in outcomes if o.snapshot is not None]
    failed = [o for o in outcomes if o.error is not None]
    mine = sa.and_(c.c.id == _b("b_id"), c.c.claimed_by == _b("b_worker"))
    if ok:
        await conn.execute(
            c.update()
            .where(mine)
            .values(
                host_state=_b("b_host_state", sa.String),
                review_state=_b("b_review", sa.String),
                check_state=_b("b_check", sa.String),
                title=_b("b_title", sa.Text),
                url=_b("b_url", sa.String),
                head_ref=_b("b_head", sa.String),
                base_ref=_b("b_base", sa.String),
                # None: the host did not say (a list endpoint); keep what we knew.
                additions=sa.func.coalesce(_b("b_add", sa.Integer), c.c.additions),
                deletions=sa.func.coalesce(_b("b_del", sa.Integer), c.c.deletions),
                external_updated_at=_b("b_updated", UTCDateTime()),
                next_sync_at=_b("b_next", UTCDateTime()),
                last_synced_at=now,
                last_sync_reason=_b("b_reason", sa.String),
                sync_error=None,
                sync_failures=0,
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
            ),
            [_success_params(o, now) for o in ok],
        )
        for part in chunks([o.claimed.changeset_id for o in ok]):
            await rederive(conn, c.c.id.in_(part), now=now)
        events = [
            {"changeset_id": o.claimed.changeset_id, "kind": e.kind, "at": e.at,
             "actor": e.actor, "detail": e.detail}
            for o in ok
            if o.snapshot is not None
            for e in o.snapshot.events
        ]  # fmt: skip
        await insert_ignore(conn, changeset_events, events)
        done = [o.claimed for o in ok if o.claimed.request_generation is not None]
        if done:
            await conn.execute(
                q.delete().where(
                    q.c.changeset_id == _b("b_id"),
                    q.c.generation == _b("b_gen"),
                    q.c.claimed_by == _b("b_worker"),
                ),
                [{"b_id": d.changeset_id, "b_gen": d.request_generation,
                  "b_worker": d.claimed_by} for d in done],
            )  # fmt: skip
    if failed:
        params = [_failure_params(o, now) for o in failed]
        await conn.execute(
            c.update()
            .where(mine)
            .values(
                sync_error=_b("b_error", sa.Text),
                sync_failures=c.c.sync_failures + 1,
                next_sync_at=_b("b_retry", UTCDateTime()),
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
            ),
            params,
        )
        # Park the claimed request until the retry time; a newer generation stays ready.
        await conn.execute(
            q.update()
            .where(q.c.changeset_id == _b("b_id"), q.c.claimed_by == _b("b_worker"))
            .values(claimed_by=None, claimed_until=_b("b_retry", UTCDateTime())),
            [{k: v for k, v in p.items() if k != "b_error"} for p in params],
        )


async def complete_sync(
    conn: AsyncConnection,
    claimed: ClaimedChangeset,
    snapshot: ChangesetSnapshot | None,
    error: str | None,
    now: datetime,
) -> None:
    """``complete_syncs`` for one changeset."""
    await complete_syncs(conn, [SyncOutcome(claimed, snapshot, error)], now)


def _success_params(outcome: SyncOutcome, now: datetime) -> dict[str, Any]:
    snap = outcome.snapshot
    assert snap is not None
    return {
        "b_id": outcome.claimed.changeset_id,
        "b_worker": outcome.claimed.claimed_by,
        "b_host_state": snap.state.value,
        "b_review": snap.review_state.value,
        "b_check": snap.check_state.value,
        "b_title": snap.title,
        "b_url": snap.url,
        "b_head": snap.head_ref,
        "b_base": snap.base_ref,
        "b_add": snap.additions,
        "b_del": snap.deletions,
        "b_updated": snap.updated_at,
        "b_next": next_sync_at(now, last_change(snap), terminal=is_terminal(snap.state)),
        "b_reason": (outcome.claimed.request_reason or "scheduled")[:64],
    }


def _failure_params(outcome: SyncOutcome, now: datetime) -> dict[str, Any]:
    return {
        "b_id": outcome.claimed.changeset_id,
        "b_worker": outcome.claimed.claimed_by,
        "b_error": outcome.error,
        "b_retry": retry_at(now, outcome.claimed.sync_failures + 1),
    }


async def release_claims(
    conn: AsyncConnection, claimed: Sequence[ClaimedChangeset], not_before: datetime | None
) -> None:
    """Give claims back unsynced (e.g. the host rate-limited us). The changesets cannot be
    claimed again before ``not_before``; their requests stay pending, untouched."""
    if not claimed:
        return
    c, q = changesets, changeset_sync_requests
    await lock_rows(conn, [x.changeset_id for x in claimed])
    params = [{"b_id": x.changeset_id, "b_worker": x.claimed_by} for x in claimed]
    await conn.execute(
        c.update()
        .where(c.c.id == _b("b_id"), c.c.claimed_by == _b("b_worker"))
        .values(claimed_by=None, claimed_until=not_before),
        params,
    )
    await conn.execute(
        q.update()
        .where(q.c.changeset_id == _b("b_id"), q.c.claimed_by == _b("b_worker"))
        .values(claimed_by=None, claimed_until=None, claimed_generation=None),
        params,
    )


# --- changesets of removed repositories -----------------------------------------------------------

# What ``sync_error`` says of a changeset whose repository was removed from the store.
REPO_REMOVED = "not synced: its repository was removed ({why})"


async def stop_syncs_for_repos(
    conn: AsyncConnection, repo_ids: Collection[int], why: str, now: datetime
) -> int:
    """Changesets whose repositories were just removed (``why``: "not listed", "name
    conflict", "service removed") are no longer synced: their pending sync requests are
    consumed, their claims and schedule cleared, and ``sync_error`` says why, so a user sees
    it. Their last known states stay. Call it in the transaction that removes the repos.
    Returns how many changesets were stopped."""
    stopped = 0
    message = REPO_REMOVED.format(why=why)
    for part in chunks(sorted(set(repo_ids))):
        ids = sa.select(changesets.c.id).where(changesets.c.repo_id.in_(part))
        await conn.execute(
            changeset_sync_requests.delete().where(changeset_sync_requests.c.changeset_id.in_(ids))
        )
        result = await conn.execute(
            changesets.update()
            .where(changesets.c.repo_id.in_(part))
            .values(
                sync_error=message,
                next_sync_at=None,
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
            )
        )
        stopped += int(result.rowcount)
    return stopped


async def resume_syncs_for_repos(
    conn: AsyncConnection, repo_ids: Collection[int], reason: str, now: datetime
) -> int:
    """The other way: repos listed again. Their changesets are due now and requested (the
    first sync clears the ``sync_error`` left by :func:`stop_syncs_for_repos`)."""
    for part in chunks(sorted(set(repo_ids))):
        await conn.execute(
            changesets.update()
            .where(changesets.c.repo_id.in_(part), changesets.c.next_sync_at.is_(None))
            .values(next_sync_at=now, updated_at=now)
        )
    return await request_syncs_for_repos(conn, repo_ids, reason, now)
