"""Bulk operations: creating them (the operation, its per-repo groups and one pending result
per changeset, set-based), choosing their changesets, and reading them back with their
progress. Claiming and completing results lives in ``store.operation_claims``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.domain import CheckState, ExternalState, HostKind, ReviewState
from repo_updater.core.operations import (
    OperationArgs,
    OperationKind,
    OperationState,
    ResultState,
)
from repo_updater.core.reconcile import ChangesetFacts
from repo_updater.store.changesets import BatchChangeNotFound
from repo_updater.store.schema import (
    batch_change_changesets,
    batch_changes,
    bulk_operation_repos,
    bulk_operation_results,
    bulk_operations,
    changesets,
    repos,
    spec_targets,
)


class OperationNotFound(LookupError):
    pass


class ChangesetNotInBatchChange(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Target:
    """A changeset an operation may act on, with what the planner needs to know of it."""

    changeset_id: int
    repo_id: int
    repo_name: str  # the store's global name
    number: int
    host_url: str
    facts: ChangesetFacts


@dataclass(frozen=True, slots=True)
class OperationView:
    id: int
    batch_change_id: int
    batch_change: str  # its name
    kind: OperationKind
    args: dict[str, Any]
    requested_by: str
    state: OperationState
    total: int
    pending: int
    done: int
    skipped: int
    failed: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ResultView:
    id: int
    changeset_id: int
    repo_name: str
    number: int
    state: ResultState
    detail: str
    attempts: int
    next_attempt_at: datetime | None  # only while pending
    finished_at: datetime | None


def facts_of(row: Any) -> ChangesetFacts:
    """Planner facts from a row with the changeset's and its repo's columns."""
    return ChangesetFacts(
        host_kind=HostKind(row.host_kind),
        external_state=None if row.external_state is None else ExternalState(row.external_state),
        review_state=None if row.review_state is None else ReviewState(row.review_state),
        check_state=None if row.check_state is None else CheckState(row.check_state),
        title=row.title,
        repo_archived=bool(row.archived),
    )


FACT_COLUMNS = (
    changesets.c.external_state,
    changesets.c.review_state,
    changesets.c.check_state,
    changesets.c.title,
    repos.c.host_kind,
    repos.c.host_url,
    repos.c.archived,
)


async def select_targets(
    conn: AsyncConnection,
    batch_change_id: int,
    *,
    states: Collection[ExternalState] = (),
    changeset_ids: Collection[int] = (),
) -> list[Target]:
    """The batch change's changesets (all, or those in ``states``, or those ``changeset_ids``,
    which must all belong to it), by id."""
    exists = await conn.execute(
        sa.select(batch_changes.c.id).where(batch_changes.c.id == batch_change_id)
    )
    if exists.scalar_one_or_none() is None:
        raise BatchChangeNotFound(f"no batch change with id {batch_change_id}")
    bcc = batch_change_changesets
    stmt = (
        sa.select(changesets.c.id, changesets.c.repo_id, changesets.c.external_id,
                  repos.c.name.label("repo_name"), *FACT_COLUMNS)
        .select_from(
            bcc.join(changesets, changesets.c.id == bcc.c.changeset_id).join(
                repos, repos.c.id == changesets.c.repo_id
            )
        )
        .where(bcc.c.batch_change_id == batch_change_id)
        .order_by(changesets.c.id)
    )  # fmt: skip
    if states:
        stmt = stmt.where(changesets.c.external_state.in_([s.value for s in states]))
    rows: list[Any] = []
    if changeset_ids:
        wanted = sorted(set(changeset_ids))
        for part in chunks(wanted):
            rows += (await conn.execute(stmt.where(changesets.c.id.in_(part)))).all()
        missing = set(wanted) - {r.id for r in rows}
        if missing and not states:
            raise ChangesetNotInBatchChange(
                f"changeset {min(missing)} is not tracked by batch change {batch_change_id}"
            )
        rows.sort(key=lambda r: r.id)
    else:
        rows = list((await conn.execute(stmt)).all())
    return [
        Target(
            changeset_id=r.id,
            repo_id=r.repo_id,
            repo_name=r.repo_name,
            number=int(r.external_id),
            host_url=r.host_url,
            facts=facts_of(r),
        )
        for r in rows
    ]


async def create_operation(
    conn: AsyncConnection,
    batch_change_id: int,
    kind: OperationKind,
    args: OperationArgs,
    targets: Sequence[Target],
    *,
    requested_by: str,
    now: datetime,
) -> int:
    """Store an operation with one pending result per target (grouped by repo), ready to be
    claimed at once. Set-based: a few statements per 500 changesets."""
    state = OperationState.RUNNING if targets else OperationState.FINISHED
    op_id = (
        await conn.execute(
            bulk_operations.insert()
            .values(
                batch_change_id=batch_change_id,
                kind=kind.value,
                args=args.to_json(),
                requested_by=requested_by,
                state=state.value,
                total=len(targets),
                created_at=now,
                finished_at=None if targets else now,
            )
            .returning(bulk_operations.c.id)
        )
    ).scalar_one()
    group_of: dict[int, int] = {}
    repo_ids = sorted({t.repo_id for t in targets})
    for part in chunks(repo_ids):
        rows = await conn.execute(
            bulk_operation_repos.insert()
            .values([{"operation_id": op_id, "repo_id": r, "next_attempt_at": now} for r in part])
            .returning(bulk_operation_repos.c.id, bulk_operation_repos.c.repo_id)
        )
        group_of.update({row.repo_id: row.id for row in rows})
    results = [
        {"operation_id": op_id, "group_id": group_of[t.repo_id], "changeset_id": t.changeset_id,
         "state": ResultState.PENDING.value, "next_attempt_at": now}
        for t in targets
    ]  # fmt: skip
    for result_part in chunks(results):
        await conn.execute(bulk_operation_results.insert(), list(result_part))
    return int(op_id)


async def _counts(conn: AsyncConnection, operation_ids: Sequence[int]) -> dict[int, Counter[str]]:
    """Result states counted per operation, for these operations only (an index walk)."""
    r = bulk_operation_results
    counts: dict[int, Counter[str]] = {op_id: Counter() for op_id in operation_ids}
    for part in chunks(sorted(operation_ids)):
        rows = await conn.execute(
            sa.select(r.c.operation_id, r.c.state, sa.func.count())
            .where(r.c.operation_id.in_(part))
            .group_by(r.c.operation_id, r.c.state)
        )
        for op_id, state, n in rows:
            counts[op_id][state] = int(n)
    return counts


async def list_operations(
    conn: AsyncConnection,
    *,
    batch_change_id: int | None = None,
    operation_ids: Collection[int] = (),
    after_id: int = 0,
    limit: int = 100,
    newest_first: bool = True,
) -> list[OperationView]:
    op, bc = bulk_operations, batch_changes
    stmt = (
        sa.select(op, bc.c.name.label("batch_change"))
        .select_from(op.join(bc, bc.c.id == op.c.batch_change_id))
        .order_by(op.c.id.desc() if newest_first else op.c.id)
        .limit(limit)
    )
    if after_id:
        stmt = stmt.where(op.c.id < after_id if newest_first else op.c.id > after_id)
    if batch_change_id is not None:
        stmt = stmt.where(op.c.batch_change_id == batch_change_id)
    if operation_ids:
        stmt = stmt.where(op.c.id.in_(sorted(operation_ids)))
    rows = (await conn.execute(stmt)).all()
    counts = await _counts(conn, [row.id for row in rows])
    return [
        OperationView(
            id=row.id,
            batch_change_id=row.batch_change_id,
            batch_change=row.batch_change,
            kind=OperationKind(row.kind),
            args=dict(row.args),
            requested_by=row.requested_by,
            state=OperationState(row.state),
            total=row.total,
            pending=counts[row.id][ResultState.PENDING.value],
            done=counts[row.id][ResultState.DONE.value],
            skipped=counts[row.id][ResultState.SKIPPED.value],
            failed=counts[row.id][ResultState.FAILED.value],
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )
        for row in rows
    ]


async def get_operation(conn: AsyncConnection, operation_id: int) -> OperationView:
    found = await list_operations(conn, operation_ids=[operation_id], limit=1)
    if not found:
        raise OperationNotFound(f"no operation with id {operation_id}")
    return found[0]


async def list_results(
    conn: AsyncConnection,
    operation_id: int,
    *,
    state: ResultState | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[ResultView]:
    r, g, t = bulk_operation_results, bulk_operation_repos, spec_targets
    # An apply_spec result has no changeset of its own: its target's, once it has one.
    changeset = sa.func.coalesce(r.c.changeset_id, t.c.changeset_id)
    stmt = (
        sa.select(
            r,
            changeset.label("any_changeset_id"),
            repos.c.name.label("repo_name"),
            changesets.c.external_id,
        )
        .select_from(
            r.join(g, g.c.id == r.c.group_id)
            .join(repos, repos.c.id == g.c.repo_id)
            .outerjoin(t, t.c.id == r.c.spec_target_id)
            .outerjoin(changesets, changesets.c.id == changeset)
        )
        .where(r.c.operation_id == operation_id, r.c.id > after_id)
        .order_by(r.c.id)
        .limit(limit)
    )
    if state is not None:
        stmt = stmt.where(r.c.state == state.value)
    return [
        ResultView(
            id=row.id,
            changeset_id=row.any_changeset_id or 0,
            repo_name=row.repo_name,
            number=0 if row.external_id is None else int(row.external_id),
            state=ResultState(row.state),
            detail=row.detail,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at if row.state == ResultState.PENDING else None,
            finished_at=row.finished_at,
        )
        for row in await conn.execute(stmt)
    ]


async def pending_by_host(
    conn: AsyncConnection, operation_id: int
) -> dict[tuple[HostKind, str], int]:
    """Pending results of an operation per code host (for the expected finish time)."""
    r, g = bulk_operation_results, bulk_operation_repos
    rows = await conn.execute(
        sa.select(repos.c.host_kind, repos.c.host_url, sa.func.count())
        .select_from(r.join(g, g.c.id == r.c.group_id).join(repos, repos.c.id == g.c.repo_id))
        .where(r.c.operation_id == operation_id, r.c.state == ResultState.PENDING.value)
        .group_by(repos.c.host_kind, repos.c.host_url)
    )
    return {(HostKind(kind), url): int(n) for kind, url, n in rows}
