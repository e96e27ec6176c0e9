"""Batch specs in the store: the applied specs, the per-repo targets (what each apply put on
the host), and an ``apply_spec`` operation (one pending result per target, grouped by repo,
claimed and completed by ``store.operation_claims`` like any operation's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.batching import chunks
from repo_updater.core.domain import BatchChangeState, ExternalState
from repo_updater.core.operations import (
    OperationArgs,
    OperationKind,
    OperationState,
    ResultState,
)
from repo_updater.store.operation_claims import ClaimedGroup, _mine
from repo_updater.store.schema import (
    batch_change_changesets,
    batch_changes,
    batch_specs,
    bulk_operation_repos,
    bulk_operation_results,
    bulk_operations,
    changesets,
    repos,
    spec_targets,
)
from repo_updater.store.sql import dialect_insert

ACTIVE, CLOSED, DETACHED = "active", "closed", "detached"


@dataclass(frozen=True, slots=True)
class SpecRepo:
    """A live repository as a spec's ``on`` sees it."""

    id: int
    name: str  # the store's global name
    external_name: str  # host-relative
    host_kind: str
    host_url: str
    archived: bool
    fork: bool


@dataclass(frozen=True, slots=True)
class Target:
    """What the last applies put on one repository's host (``spec_targets``), with the state
    of its changeset."""

    id: int
    repo_id: int
    repo_name: str
    changeset_id: int | None
    number: int | None
    external_state: ExternalState | None
    state: str
    branch: str
    digest: str | None
    title: str
    body: str
    draft: bool


async def live_repos(conn: AsyncConnection) -> list[SpecRepo]:
    rows = await conn.execute(
        sa.select(
            repos.c.id,
            repos.c.name,
            repos.c.external_name,
            repos.c.host_kind,
            repos.c.host_url,
            repos.c.archived,
            repos.c.fork,
        )
        .where(repos.c.deleted_at.is_(None))
        .order_by(repos.c.name)
    )
    return [
        SpecRepo(
            r.id, r.name, r.external_name, r.host_kind, r.host_url, bool(r.archived), bool(r.fork)
        )
        for r in rows
    ]


async def save_spec(
    conn: AsyncConnection, batch_change_id: int, spec: Mapping[str, Any], now: datetime
) -> int:
    inserted = await conn.execute(
        batch_specs.insert()
        .values(batch_change_id=batch_change_id, spec=dict(spec), created_at=now)
        .returning(batch_specs.c.id)
    )
    return int(inserted.scalar_one())


async def load_spec(conn: AsyncConnection, spec_id: int) -> dict[str, Any]:
    found = await conn.execute(sa.select(batch_specs.c.spec).where(batch_specs.c.id == spec_id))
    return dict(found.scalar_one())


_TARGET_COLUMNS = (
    spec_targets.c.id,
    spec_targets.c.repo_id,
    repos.c.name.label("repo_name"),
    spec_targets.c.changeset_id,
    changesets.c.external_id,
    changesets.c.external_state,
    spec_targets.c.state,
    spec_targets.c.branch,
    spec_targets.c.digest,
    spec_targets.c.title,
    spec_targets.c.body,
    spec_targets.c.draft,
)


def _target(row: Any) -> Target:
    return Target(
        id=row.id,
        repo_id=row.repo_id,
        repo_name=row.repo_name,
        changeset_id=row.changeset_id,
        number=None if row.external_id is None else int(row.external_id),
        external_state=None if row.external_state is None else ExternalState(row.external_state),
        state=row.state,
        branch=row.branch,
        digest=row.digest,
        title=row.title,
        body=row.body,
        draft=bool(row.draft),
    )


def _targets_query() -> sa.Select[Any]:
    t = spec_targets
    return sa.select(*_TARGET_COLUMNS).select_from(
        t.join(repos, repos.c.id == t.c.repo_id).outerjoin(
            changesets, changesets.c.id == t.c.changeset_id
        )
    )


async def targets(conn: AsyncConnection, batch_change_id: int) -> list[Target]:
    rows = await conn.execute(
        _targets_query()
        .where(spec_targets.c.batch_change_id == batch_change_id)
        .order_by(spec_targets.c.id)
    )
    return [_target(r) for r in rows]


async def target(conn: AsyncConnection, target_id: int) -> Target:
    row = (await conn.execute(_targets_query().where(spec_targets.c.id == target_id))).one()
    return _target(row)


async def ensure_targets(
    conn: AsyncConnection, batch_change_id: int, repo_ids: Sequence[int], branch: str, now: datetime
) -> dict[int, int]:
    """A target row for each repo (made active again if it was closed or detached); returns
    repo id -> target id."""
    out: dict[int, int] = {}
    for part in chunks(sorted(set(repo_ids))):
        insert = dialect_insert(conn, spec_targets).values(
            [
                {
                    "batch_change_id": batch_change_id,
                    "repo_id": r,
                    "branch": branch,
                    "updated_at": now,
                }
                for r in part
            ]
        )
        upsert = insert.on_conflict_do_update(
            index_elements=[spec_targets.c.batch_change_id, spec_targets.c.repo_id],
            set_={"state": ACTIVE, "updated_at": now},
        ).returning(spec_targets.c.id, spec_targets.c.repo_id)
        out.update({row.repo_id: row.id for row in await conn.execute(upsert)})
    return out


async def create_operation(
    conn: AsyncConnection,
    batch_change_id: int,
    spec_id: int,
    work: Mapping[int, int],
    *,
    requested_by: str,
    now: datetime,
) -> int:
    """An apply_spec operation with one pending result per ``work`` item (repo id -> target
    id), each repo its own group, claimable at once."""
    args = OperationArgs(spec_id=spec_id).validate(OperationKind.APPLY_SPEC)
    state = OperationState.RUNNING if work else OperationState.FINISHED
    op_id = (
        await conn.execute(
            bulk_operations.insert()
            .values(
                batch_change_id=batch_change_id,
                kind=OperationKind.APPLY_SPEC.value,
                args=args.to_json(),
                requested_by=requested_by,
                state=state.value,
                total=len(work),
                created_at=now,
                finished_at=None if work else now,
            )
            .returning(bulk_operations.c.id)
        )
    ).scalar_one()
    group_of: dict[int, int] = {}
    for part in chunks(sorted(work)):
        rows = await conn.execute(
            bulk_operation_repos.insert()
            .values([{"operation_id": op_id, "repo_id": r, "next_attempt_at": now} for r in part])
            .returning(bulk_operation_repos.c.id, bulk_operation_repos.c.repo_id)
        )
        group_of.update({row.repo_id: row.id for row in rows})
    results = [
        {
            "operation_id": op_id,
            "group_id": group_of[repo_id],
            "changeset_id": None,
            "spec_target_id": target_id,
            "state": ResultState.PENDING.value,
            "next_attempt_at": now,
        }
        for repo_id, target_id in sorted(work.items())
    ]
    for result_part in chunks(results):
        await conn.execute(bulk_operation_results.insert(), list(result_part))
    return int(op_id)


@dataclass(frozen=True, slots=True)
class SpecAttempt:
    result_id: int
    changeset_id: int  # 0: none yet
    attempts: int
    write_started_at: datetime | None
    target: Target
    repo_archived: bool


async def begin(
    conn: AsyncConnection, group: ClaimedGroup, result_id: int, now: datetime, lease: Any
) -> SpecAttempt | None:
    """Like ``operation_claims.begin`` for an apply_spec result: the result with its target
    and repo; None when the claim is lost or the result is no longer pending."""
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
                r.c.id, r.c.attempts, r.c.write_started_at, r.c.spec_target_id, repos.c.archived
            )
            .select_from(
                r.join(spec_targets, spec_targets.c.id == r.c.spec_target_id).join(
                    repos, repos.c.id == spec_targets.c.repo_id
                )
            )
            .where(r.c.id == result_id, r.c.state == ResultState.PENDING.value, _mine(group))
        )
    ).one_or_none()
    if row is None:
        return None
    found = await target(conn, row.spec_target_id)
    return SpecAttempt(
        result_id=row.id,
        changeset_id=found.changeset_id or 0,
        attempts=row.attempts,
        write_started_at=row.write_started_at,
        target=found,
        repo_archived=bool(row.archived),
    )


async def record_commit(
    conn: AsyncConnection, target_id: int, branch: str, digest: str, now: datetime
) -> None:
    await conn.execute(
        spec_targets.update()
        .where(spec_targets.c.id == target_id)
        .values(branch=branch, digest=digest, updated_at=now)
    )


async def record_pull(
    conn: AsyncConnection,
    target_id: int,
    *,
    changeset_id: int | None = None,
    title: str,
    body: str,
    draft: bool,
    now: datetime,
) -> None:
    values: dict[str, Any] = {"title": title, "body": body, "draft": draft, "updated_at": now}
    if changeset_id is not None:
        values["changeset_id"] = changeset_id
    await conn.execute(spec_targets.update().where(spec_targets.c.id == target_id).values(values))


async def set_state(conn: AsyncConnection, target_id: int, state: str, now: datetime) -> None:
    await conn.execute(
        spec_targets.update()
        .where(spec_targets.c.id == target_id)
        .values(state=state, updated_at=now)
    )


async def detach(
    conn: AsyncConnection, batch_change_id: int, target: Target, now: datetime
) -> None:
    """The repo is no longer matched and the spec says detach: its changeset stays open on
    the host and is no longer tracked by the batch change."""
    if target.changeset_id is not None:
        bcc = batch_change_changesets
        await conn.execute(
            bcc.delete().where(
                bcc.c.batch_change_id == batch_change_id,
                bcc.c.changeset_id == target.changeset_id,
            )
        )
    await set_state(conn, target.id, DETACHED, now)


async def find_batch_change(conn: AsyncConnection, name: str) -> tuple[int, bool] | None:
    """The batch change named ``name``: its id and whether it is open; None if there is none."""
    row = (
        await conn.execute(
            sa.select(batch_changes.c.id, batch_changes.c.state).where(batch_changes.c.name == name)
        )
    ).one_or_none()
    return None if row is None else (int(row.id), row.state == BatchChangeState.OPEN.value)


async def batch_change_of_operation(conn: AsyncConnection, operation_id: int) -> int:
    found = await conn.execute(
        sa.select(bulk_operations.c.batch_change_id).where(bulk_operations.c.id == operation_id)
    )
    return int(found.scalar_one())
