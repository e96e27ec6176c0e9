"""Completing and releasing changeset syncs (the changeset syncer's half of the store);
claiming them is :mod:`repo_updater.store.claiming`.

A claim carries its sync request's ``generation`` as the claim read it (the claim does not
write the request). On success the request is deleted only if nothing re-requested it meanwhile
(same generation) and the claim is still the worker's; on failure it stays, parked until the
retry time (``claimed_until``, ``claimed_generation``) unless a new request arrives. A request is
therefore never dropped, except with its repository: changesets on a removed (soft-deleted)
repo are never claimed, and the removal consumes their requests
(:func:`stop_syncs_for_repos`), so none waits forever.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.changeset_state import is_terminal, last_change
from repo_updater.core.domain import ChangesetSnapshot
from repo_updater.core.schedule import next_sync_at, retry_at
from repo_updater.store.changesets import rederive, request_syncs_for_repos
from repo_updater.store.claiming import ClaimedChangeset, HostKey, claim_work
from repo_updater.store.schema import (
    UTCDateTime,
    changeset_events,
    changeset_sync_requests,
    changesets,
)
from repo_updater.store.sql import insert_ignore

__all__ = [
    "ClaimedChangeset",
    "HostKey",
    "SyncOutcome",
    "claim_work",
    "complete_sync",
    "complete_syncs",
    "lock_rows",
    "release_claims",
    "resume_syncs_for_repos",
    "stop_syncs_for_repos",
]


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


async def lock_rows(conn: AsyncConnection, changeset_ids: Iterable[int]) -> dict[int, str | None]:
    """PostgreSQL: lock these changesets, then their sync request rows, each in changeset id
    order, before the transaction writes them. The lock order every writer follows: changesets
    before requests, each in id order (``rederive`` and the request upsert lock in id order;
    ``claim_work`` skips locked changesets and never locks a request), so no two writers
    deadlock on them. SQLite takes no row locks (one writer at a time). Returns who holds a
    claim on each changeset found (``claimed_by``), as of the lock."""
    c, q = changesets, changeset_sync_requests
    ids = sorted(set(changeset_ids))
    pg = conn.dialect.name != "sqlite"
    owners: dict[int, str | None] = {}
    for part in chunks(ids):
        select = sa.select(c.c.id, c.c.claimed_by).where(c.c.id.in_(part)).order_by(c.c.id)
        rows = await conn.execute(select.with_for_update(key_share=True) if pg else select)
        owners.update((row.id, row.claimed_by) for row in rows)
    for part in chunks(ids if pg else []):
        await conn.execute(
            sa.select(q.c.changeset_id)
            .where(q.c.changeset_id.in_(part))
            .order_by(q.c.changeset_id)
            .with_for_update()
        )
    return owners


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
    owners = await lock_rows(conn, [o.claimed.changeset_id for o in outcomes])
    # A claim whose lease ran out may have been taken over: its outcome is not written, its
    # request not touched.
    held = {
        o.claimed.changeset_id
        for o in outcomes
        if owners.get(o.claimed.changeset_id) == o.claimed.claimed_by
    }
    ok = [o for o in outcomes if o.snapshot is not None and o.claimed.changeset_id in held]
    failed = [o for o in outcomes if o.error is not None and o.claimed.changeset_id in held]
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
        if done:  # a request re-requested since the claim has a newer generation: it stays
            await conn.execute(
                q.delete().where(q.c.changeset_id == _b("b_id"), q.c.generation == _b("b_gen")),
                [{"b_id": d.changeset_id, "b_gen": d.request_generation} for d in done],
            )
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
        parked = [
            {"b_id": o.claimed.changeset_id, "b_gen": o.claimed.request_generation,
             "b_retry": p["b_retry"]}
            for o, p in zip(failed, params, strict=True)
            if o.claimed.request_generation is not None
        ]  # fmt: skip
        if parked:
            await conn.execute(
                q.update()
                .where(q.c.changeset_id == _b("b_id"), q.c.generation == _b("b_gen"))
                .values(
                    claimed_until=_b("b_retry", UTCDateTime()), claimed_generation=q.c.generation
                ),
                parked,
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
    c = changesets
    await lock_rows(conn, [x.changeset_id for x in claimed])
    params = [{"b_id": x.changeset_id, "b_worker": x.claimed_by} for x in claimed]
    await conn.execute(
        c.update()
        .where(c.c.id == _b("b_id"), c.c.claimed_by == _b("b_worker"))
        .values(claimed_by=None, claimed_until=not_before),
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
