"""Bulk operations as the CLI and the API use them: preview the plan of each changeset
(``--dry-run``), enqueue an operation for the workers, and report its progress with an
expected finish time.

The plan a preview shows comes from the stored state; the worker plans again from the state
at the moment it acts (a changeset merged meanwhile is then skipped, not closed).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import ExternalState, HostKind
from repo_updater.core.operations import (
    OperationArgs,
    OperationKind,
    Progress,
    expected_finish,
)
from repo_updater.core.pacing import WriteLimit, seconds_for
from repo_updater.core.reconcile import Plan, plan
from repo_updater.store import operations as op_store
from repo_updater.store import write_budgets
from repo_updater.store.operations import OperationView, Target

HostKey = tuple[HostKind, str]
LimitsFor = Callable[[HostKey], Sequence[WriteLimit]]


@dataclass(frozen=True, slots=True)
class Planned:
    target: Target
    plan: Plan


@dataclass(frozen=True, slots=True)
class OperationStatus:
    operation: OperationView
    progress: Progress


async def preview(
    conn: AsyncConnection,
    batch_change_id: int,
    kind: OperationKind,
    args: OperationArgs,
    *,
    states: Collection[ExternalState] = (),
    changeset_ids: Collection[int] = (),
) -> list[Planned]:
    """What the operation would do to each selected changeset, from the stored state."""
    args.validate(kind)
    targets = await op_store.select_targets(
        conn, batch_change_id, states=states, changeset_ids=changeset_ids
    )
    return [Planned(t, plan(t.facts, kind, args)) for t in targets]


async def enqueue(
    conn: AsyncConnection,
    batch_change_id: int,
    kind: OperationKind,
    args: OperationArgs,
    *,
    states: Collection[ExternalState] = (),
    changeset_ids: Collection[int] = (),
    requested_by: str,
    now: datetime,
) -> int:
    """Store the operation for the workers (every selected changeset gets a pending result;
    the workers decide what to do with each). Returns its id."""
    args.validate(kind)
    targets = await op_store.select_targets(
        conn, batch_change_id, states=states, changeset_ids=changeset_ids
    )
    return await op_store.create_operation(
        conn, batch_change_id, kind, args, targets, requested_by=requested_by, now=now
    )


async def status(
    conn: AsyncConnection, operation_id: int, limits_for: LimitsFor, now: datetime
) -> OperationStatus:
    """The operation with its counts and expected finish time."""
    view = await op_store.get_operation(conn, operation_id)
    return OperationStatus(view, await _progress(conn, view, limits_for, now))


async def statuses(
    conn: AsyncConnection, views: Sequence[OperationView], limits_for: LimitsFor, now: datetime
) -> list[OperationStatus]:
    return [OperationStatus(v, await _progress(conn, v, limits_for, now)) for v in views]


async def _progress(
    conn: AsyncConnection, view: OperationView, limits_for: LimitsFor, now: datetime
) -> Progress:
    paced = None
    if view.pending:
        budgets = {(b.host_kind, b.host_url): b for b in await write_budgets.list_budgets(conn)}
        paced = 0.0
        for host, pending in (await op_store.pending_by_host(conn, view.id)).items():
            limits = list(limits_for(host))
            stored = budgets.get(host)
            buckets = [None if stored is None else stored.buckets.get(lim.window_seconds)
                       for lim in limits]  # fmt: skip
            if limits:
                paced = max(paced, seconds_for(pending, limits, buckets, now))
    finished = view.total - view.pending
    return Progress(
        total=view.total,
        pending=view.pending,
        done=view.done,
        skipped=view.skipped,
        failed=view.failed,
        expected_finish=expected_finish(
            now,
            started_at=view.started_at,
            finished=finished,
            pending=view.pending,
            paced_seconds=paced,
        ),
    )
