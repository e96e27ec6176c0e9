"""Claiming and completing bulk-operation work (the operation worker's half of the store).

The unit a worker claims is a group: one operation's changesets on one repository
(``bulk_operation_repos``), held with ``claimed_by`` / ``claimed_until`` like a changeset sync
claim (two LIMITed steps, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a claiming UPDATE that
re-checks the claim, an expiring lease). The worker then runs the group's due results one by
one; every result write is guarded by the group's claim, so a worker whose lease ran out and
was taken over changes nothing.

A result is final once it leaves ``pending`` and is never run again. Before the first write of
an attempt the worker commits ``write_started_at``: a later attempt (after a transient error,
or by another worker after a crash) sees it and looks at the host before writing again.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import HostKind, HostPullState
from repo_updater.core.operations import OperationArgs, OperationKind, OperationState, ResultState
from repo_updater.core.reconcile import ChangesetFacts
from repo_updater.store import changesets as changeset_store
from repo_updater.store.operations import FACT_COLUMNS, facts_of
from repo_updater.store.schema import (
    bulk_operation_repos,
    bulk_operation_results,
    bulk_operations,
    changesets,
    external_service_repos,
    host_write_budgets,
    repos,
)

HostKey = tuple[HostKind, str]
_PENDING = ResultState.PENDING.value


@dataclass(frozen=True, slots=True)
class ClaimedGroup:
    id: int
    operation_id: int
    repo_id: int
    repo_name: str  # host-relative, e.g. "acme/widgets"
    repo_external_id: str
    host_kind: HostKind
    host_url: str
    kind: OperationKind
    args: OperationArgs
    claimed_by: str

    @property
    def host(self) -> HostKey:
        return (self.host_kind, self.host_url)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One pending result about to run, with fresh facts from the store."""

    result_id: int
    changeset_id: int
    number: int
    attempts: int  # attempts that began a write before this one
    write_started_at: datetime | None  # an earlier attempt may have reached the host
    facts: ChangesetFacts


async def claim_groups(
    conn: AsyncConnection,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    *,
    hosts: Collection[HostKey],
) -> list[ClaimedGroup]:
    """Claim up to ``limit`` due groups of running operations (oldest due first) on
    ``hosts`` (those the worker can write to), leaving out hosts paused by a rate limit."""
    if limit < 1 or not hosts:
        return []
    g, op, b = bulk_operation_repos, bulk_operations, host_write_budgets
    paused = (
        sa.select(sa.literal(1))
        .where(
            b.c.host_kind == repos.c.host_kind,
            b.c.host_url == repos.c.host_url,
            b.c.paused_until > now,
        )
        .exists()
    )
    free = sa.or_(g.c.claimed_until.is_(None), g.c.claimed_until <= now)
    candidates = (
        sa.select(g.c.id)
        .select_from(g.join(op, op.c.id == g.c.operation_id).join(repos, repos.c.id == g.c.repo_id))
        .where(
            g.c.next_attempt_at <= now,
            free,
            op.c.state == OperationState.RUNNING.value,
            sa.or_(
                *(
                    sa.and_(repos.c.host_kind == str(kind), repos.c.host_url == url)
                    for kind, url in sorted(hosts)
                )
            ),
            sa.not_(paused),
        )
        .order_by(g.c.next_attempt_at, g.c.id)
        .limit(limit)
        .with_for_update(of=g, skip_locked=True)
    )
    ids = list((await conn.execute(candidates)).scalars())
    if not ids:
        return []
    won = list(
        (
            await conn.execute(
                g.update()
                .where(g.c.id.in_(ids), free)
                .values(claimed_by=worker_id, claimed_until=now + lease)
                .returning(g.c.id)
            )
        ).scalars()
    )
    if not won:
        return []
    rows = await conn.execute(
        sa.select(
            g.c.id, g.c.operation_id, g.c.repo_id, op.c.kind, op.c.args,
            repos.c.external_name, repos.c.external_id, repos.c.host_kind, repos.c.host_url,
        )
        .select_from(g.join(op, op.c.id == g.c.operation_id).join(repos, repos.c.id == g.c.repo_id))
        .where(g.c.id.in_(won))
        .order_by(g.c.next_attempt_at, g.c.id)
    )  # fmt: skip
    return [
        ClaimedGroup(
            id=row.id,
            operation_id=row.operation_id,
            repo_id=row.repo_id,
            repo_name=row.external_name,
            repo_external_id=row.external_id,
            host_kind=HostKind(row.host_kind),
            host_url=row.host_url,
            kind=OperationKind(row.kind),
            args=OperationArgs.from_json(row.args),
            claimed_by=worker_id,
        )
        for row in rows
    ]


def _mine(group: ClaimedGroup) -> sa.ColumnElement[bool]:
    """Result rows of ``group`` while its claim is still ours."""
    g, r = bulk_operation_repos, bulk_operation_results
    held = sa.select(g.c.id).where(g.c.id == group.id, g.c.claimed_by == group.claimed_by)
    return r.c.group_id.in_(held)


async def due_results(
    conn: AsyncConnection, group: ClaimedGroup, now: datetime, limit: int = 100
) -> list[int]:
    """Ids of the group's pending results that may run now, in changeset order."""
    r = bulk_operation_results
    rows = await conn.execute(
        sa.select(r.c.id)
        .where(r.c.group_id == group.id, r.c.state == _PENDING, r.c.next_attempt_at <= now)
        .order_by(r.c.id)
        .limit(limit)
    )
    return list(rows.scalars())


async def begin(
    conn: AsyncConnection,
    group: ClaimedGroup,
    result_id: int,
    now: datetime,
    lease: timedelta | None,
) -> Attempt | None:
    """Read the result with its changeset's and repo's current state, renewing the group's
    lease first when ``lease`` is given. None when the claim is lost or the result is no
    longer pending."""
    g, r = bulk_operation_repos, bulk_operation_results
    if lease is not None:
        renewed = await conn.execute(
            g.update()
            .where(g.c.id == group.id, g.c.claimed_by == group.claimed_by)
            .values(claimed_until=now + lease)
        )
        if renewed.rowcount == 0:
            return None
    row = (
        await conn.execute(
            sa.select(
                r.c.id,
                r.c.changeset_id,
                r.c.attempts,
                r.c.write_started_at,
                changesets.c.external_id,
                *FACT_COLUMNS,
            )
            .select_from(
                r.join(changesets, changesets.c.id == r.c.changeset_id).join(
                    repos, repos.c.id == changesets.c.repo_id
                )
            )
            .where(r.c.id == result_id, r.c.state == _PENDING, _mine(group))
        )
    ).one_or_none()
    if row is None:
        return None
    return Attempt(
        result_id=row.id,
        changeset_id=row.changeset_id,
        number=int(row.external_id),
        attempts=row.attempts,
        write_started_at=row.write_started_at,
        facts=facts_of(row),
    )


async def repo_archived(conn: AsyncConnection, repo_id: int) -> bool:
    archived = await conn.execute(sa.select(repos.c.archived).where(repos.c.id == repo_id))
    return bool(archived.scalar_one_or_none())


async def start_write(
    conn: AsyncConnection,
    group: ClaimedGroup,
    result_id: int,
    now: datetime,
    *,
    first: bool = True,
) -> bool:
    """Record that a write is about to be sent (commit this before sending it); ``first``:
    this worker's first write of the operation (the operation's start is recorded if it has
    none). False when the claim is lost."""
    r, op = bulk_operation_results, bulk_operations
    started = await conn.execute(
        r.update()
        .where(r.c.id == result_id, r.c.state == _PENDING, _mine(group))
        .values(write_started_at=now, attempts=r.c.attempts + 1)
    )
    if started.rowcount == 0:
        return False
    if first:
        await conn.execute(
            op.update()
            .where(op.c.id == group.operation_id, op.c.started_at.is_(None))
            .values(started_at=now)
        )
    return True


async def finish(
    conn: AsyncConnection,
    group: ClaimedGroup,
    result_id: int,
    state: ResultState,
    detail: str,
    now: datetime,
) -> bool:
    """Make a result final (done, skipped or failed). False when the claim is lost."""
    if state is ResultState.PENDING:
        raise ValueError("finish() makes a result final; use retry_later() to keep it pending")
    r = bulk_operation_results
    done = await conn.execute(
        r.update()
        .where(r.c.id == result_id, r.c.state == _PENDING, _mine(group))
        .values(state=state.value, detail=detail[:2000], finished_at=now)
    )
    return bool(done.rowcount)


async def retry_later(
    conn: AsyncConnection,
    group: ClaimedGroup,
    result_id: int,
    detail: str,
    when: datetime,
    *,
    not_sent: bool = False,
) -> bool:
    """Keep a result pending until ``when``. ``not_sent``: the host surely did not apply the
    write (it answered a rate limit), so the attempt does not count and the next one need not
    look first."""
    r = bulk_operation_results
    values: dict[str, Any] = {"detail": detail[:2000], "next_attempt_at": when}
    if not_sent:
        uncounted = sa.case((r.c.attempts > 0, r.c.attempts - 1), else_=0)
        values |= {"write_started_at": None, "attempts": uncounted}
    updated = await conn.execute(
        r.update().where(r.c.id == result_id, r.c.state == _PENDING, _mine(group)).values(values)
    )
    return bool(updated.rowcount)


async def skip_rest(conn: AsyncConnection, group: ClaimedGroup, detail: str, now: datetime) -> int:
    """Skip every pending result of the group (its repo turned out archived)."""
    r = bulk_operation_results
    skipped = await conn.execute(
        r.update()
        .where(r.c.group_id == group.id, r.c.state == _PENDING, _mine(group))
        .values(state=ResultState.SKIPPED.value, detail=detail, finished_at=now)
    )
    return int(skipped.rowcount)


async def release(
    conn: AsyncConnection, group: ClaimedGroup, now: datetime, *, not_before: datetime | None = None
) -> bool:
    """End the claim: the group is due again at its earliest pending result (not before
    ``not_before``), or done. Returns True when this finished the whole operation."""
    g, r, op = bulk_operation_repos, bulk_operation_results, bulk_operations
    earliest = (
        sa.select(sa.func.min(r.c.next_attempt_at))
        .where(r.c.group_id == group.id, r.c.state == _PENDING)
        .scalar_subquery()
    )
    due: Any = earliest
    if not_before is not None:
        due = sa.case((earliest < not_before, not_before), else_=earliest)
    await conn.execute(
        g.update()
        .where(g.c.id == group.id, g.c.claimed_by == group.claimed_by)
        .values(next_attempt_at=due, claimed_by=None, claimed_until=None)
    )
    pending = (
        sa.select(sa.literal(1))
        .where(r.c.operation_id == group.operation_id, r.c.state == _PENDING)
        .exists()
    )
    finished = await conn.execute(
        op.update()
        .where(
            op.c.id == group.operation_id,
            op.c.state == OperationState.RUNNING.value,
            sa.not_(pending),
        )
        .values(state=OperationState.FINISHED.value, finished_at=now)
    )
    return bool(finished.rowcount)


async def record_write(
    conn: AsyncConnection, changeset_id: int, state: HostPullState | None, now: datetime
) -> None:
    """What a successful write tells about its changeset: the host state it answered (shown
    at once: ``rederive`` applies the READONLY rule with the repo's flag as it is in this
    transaction, and records the change in the state history) and a sync request for the rest
    (reviews, checks, timeline)."""
    if state is not None and state is not HostPullState.DELETED:
        await conn.execute(
            changesets.update()
            .where(changesets.c.id == changeset_id)
            .values(host_state=state.value, updated_at=now)
        )
        await changeset_store.rederive(conn, changesets.c.id == changeset_id, now=now)
    await changeset_store.request_sync(conn, [changeset_id], "operation", now)


async def service_of_repo(conn: AsyncConnection, repo_id: int) -> int | None:
    """An external service that lists the repo (the first), for the events it gets."""
    esr = external_service_repos
    found = await conn.execute(
        sa.select(sa.func.min(esr.c.external_service_id)).where(esr.c.repo_id == repo_id)
    )
    value = found.scalar_one_or_none()
    return None if value is None else int(value)
