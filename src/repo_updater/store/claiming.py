"""Claiming changesets to sync: which ones, and the claim itself.

A claim is ``changesets.claimed_by`` / ``claimed_until``: a worker holds a changeset until it
completes or releases it, or until the lease expires (a dead worker's claim simply runs out).
Requested changesets come first (oldest request first), then due ones (oldest
``next_sync_at`` first). Each comes from a LIMITed walk of one index (ready requests by
``requested_at``, due changesets by ``next_sync_at``), never from a query that joins, filters
and sorts every tracked changeset, so a round costs the same at 1,000 or 100,000 tracked.

A changeset's sync request is not written by the claim: the claim reads the request's
``generation`` and hands it to the worker, and completing the sync deletes the request only if
its generation is still that one (a re-request meanwhile bumps it, so the request stays for
another sync). A request is "ready" unless a failed sync parked it until a retry time
(``claimed_until`` / ``claimed_generation``: see :mod:`repo_updater.store.changeset_claims`).

PostgreSQL claims in ONE statement: the two walks lock with ``FOR NO KEY UPDATE SKIP LOCKED``
(concurrent workers pick disjoint changesets) and the claim is a data-modifying part of the
same statement. Five statements (the request rows locked and written too), each with a list of
ids spelled out as parameters, cost about 11 ms a round at 20,000 tracked (issue 12).
SQLite has no row locks and no data-modifying WITH: there the two selects run one after the
other, then the claiming UPDATE; it re-checks that each changeset is free, which keeps several
tasks of one process apart (SQLite has one writer at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.domain import ChangesetRef, HostKind, PublicationState
from repo_updater.store.changesets import in_open_batch_change
from repo_updater.store.schema import UTCDateTime, changeset_sync_requests, changesets, repos

HostKey = tuple[HostKind, str]  # (host_kind, host_url): one code host


class ClaimedChangeset(NamedTuple):
    """A changeset a worker holds, and what syncing it needs. A named tuple, not a frozen
    dataclass: a claim makes 200 at a time, and a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` a field) took a tenth of a PostgreSQL claim round."""

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
    if conn.dialect.name != "postgresql":
        return await _claim_in_steps(conn, worker_id, now, lease, limit, skip_hosts)
    sql, bind = _pg_claim_sql(conn.dialect, limit)
    params = bind(_pg_params(worker_id, now, lease, skip_hosts))
    rows: Sequence[Any] = (await conn.exec_driver_sql(sql, params)).all()
    return [_claimed(tuple(row[:9]), worker_id, row[9], row[10]) for row in rows]


def _claimed(
    row: tuple[Any, ...], worker_id: str, generation: int | None, reason: str | None
) -> ClaimedChangeset:
    """A claimed row (the columns of ``_COLUMNS``, in that order: positions, not names, which
    cost a third of a PostgreSQL claim's Python time) with its request's generation and
    reason."""
    (changeset_id, repo_id, number, failures, repo_name, repo_external_id, kind, url,
     archived) = row  # fmt: skip
    return ClaimedChangeset(
        changeset_id=changeset_id,
        repo_id=repo_id,
        repo_name=repo_name,
        repo_external_id=repo_external_id,
        number=int(number),
        host_kind=_HOST_KINDS[kind],
        host_url=url,
        repo_archived=bool(archived),
        claimed_by=worker_id,
        request_generation=generation,
        sync_failures=failures,
        request_reason=reason,
    )


_HOST_KINDS = {str(kind): kind for kind in HostKind}


def _request_ready(now: Any) -> sa.ColumnElement[bool]:
    q = changeset_sync_requests
    return sa.or_(
        q.c.claimed_until.is_(None),
        q.c.claimed_until <= now,  # a parked request (failed sync) waits for its retry time
        q.c.generation > sa.func.coalesce(q.c.claimed_generation, 0),  # or a newer ask
    )


def _claim_free(now: Any) -> sa.ColumnElement[bool]:
    c = changesets
    return sa.or_(c.c.claimed_until.is_(None), c.c.claimed_until <= now)


_COLUMNS = (
    changesets.c.id,
    changesets.c.repo_id,
    changesets.c.external_id,
    changesets.c.sync_failures,
    repos.c.external_name,
    repos.c.external_id.label("repo_external_id"),
    repos.c.host_kind,
    repos.c.host_url,
    repos.c.archived,
)


def _claimable(
    now: Any, not_skipped: sa.ColumnElement[bool] | None
) -> list[sa.ColumnElement[bool]]:
    """Published, on a live (not soft-deleted) repo, of an open batch change, not under a live
    claim, not on a host backing off."""
    r = repos
    where = [
        changesets.c.publication_state == PublicationState.PUBLISHED.value,
        r.c.deleted_at.is_(None),  # a removed repo's changesets are not synced
        _claim_free(now),
        in_open_batch_change(),
    ]
    return where if not_skipped is None else [*where, not_skipped]


# --- PostgreSQL: one statement -------------------------------------------------------------------


def _pg_claim(limit: int) -> sa.Select[Any]:
    """The claim as one statement (``_pg_claim_sql`` compiles it once per ``limit``): lock the
    picks, claim them, read their requests, and return what the syncer needs. ``limit`` is written
    into the SQL, not a parameter: with a parameter, PostgreSQL estimates its generic plan for
    an unknown LIMIT, finds it dearer than a custom plan and plans the statement afresh every
    round (about 1 ms); with the number written in, it reuses one plan after five rounds."""
    c, q, r = changesets, changeset_sync_requests, repos
    rows = sa.literal_column(str(int(limit)), sa.Integer)
    now = sa.bindparam("now", type_=UTCDateTime())
    until = sa.bindparam("until", type_=UTCDateTime())
    worker = sa.bindparam("worker", type_=sa.String)
    # Hosts backing off, as "kind url" keys: a filter on each walked row. (An anti-join with
    # unnest() made the planner expect one repo left and drive the walk from repos.)
    not_skipped = (r.c.host_kind + " " + r.c.host_url) != sa.all_(
        sa.bindparam("skip", type_=postgresql.ARRAY(sa.String))
    )
    # FOR NO KEY UPDATE (``key_share``): a claim changes no key, so it must not block the KEY
    # SHARE lock that inserting a sync request (its foreign key) takes on the changeset.
    requested = (
        sa.select(c.c.id, sa.literal(0).label("branch"), q.c.requested_at.label("due_at"))
        .select_from(q.join(c, c.c.id == q.c.changeset_id).join(r, r.c.id == c.c.repo_id))
        .where(_request_ready(now), *_claimable(now, not_skipped))
        .order_by(q.c.requested_at, q.c.changeset_id)
        .limit(rows)
        .with_for_update(of=c, skip_locked=True, key_share=True)
    )
    first = requested.cte("requested")
    # Due ones, but not those the first walk took (every other ready request's changeset is
    # locked by another worker, so skipped anyway). The outer LIMIT stops before this walk
    # starts when the first one fills the round. ``<> ALL(ARRAY(..))``, not NOT EXISTS on the
    # requests: an anti-join that the planner expects to leave no row (every changeset
    # requested, as after a bulk track) is planned as a scan and sort of every changeset.
    due = (
        sa.select(c.c.id, sa.literal(1).label("branch"), c.c.next_sync_at.label("due_at"))
        .select_from(c.join(r, r.c.id == c.c.repo_id))
        .where(
            c.c.next_sync_at <= now,
            c.c.id != sa.all_(_array(sa.select(first.c.id))),
            *_claimable(now, not_skipped),
        )
        .order_by(c.c.next_sync_at, c.c.id)
        .limit(rows)
        .with_for_update(of=c, skip_locked=True, key_share=True)
    )
    # Each walk is its own WITH part: PostgreSQL refuses a locking clause on a UNION's leg.
    picked = sa.union_all(sa.select(first), sa.select(due.cte("due"))).limit(rows).cte("picked")
    claimed = (
        c.update()
        .where(c.c.id == sa.any_(_array(sa.select(picked.c.id))))
        .values(claimed_by=worker, claimed_until=until)
        .returning(c.c.id, c.c.repo_id, c.c.external_id, c.c.sync_failures)
        .cte("claimed")
    )
    # The request is read, not written: its generation as of this claim goes back with the
    # claim, and completing deletes the request only if nothing re-requested it since. So a
    # claim never waits on, nor locks, a request row (a request upsert may hold it).
    return (
        sa.select(
            claimed.c.id, claimed.c.repo_id, claimed.c.external_id, claimed.c.sync_failures,
            r.c.external_name, r.c.external_id.label("repo_external_id"), r.c.host_kind,
            r.c.host_url, r.c.archived, q.c.generation, q.c.reason,
        )
        .select_from(
            claimed.join(picked, picked.c.id == claimed.c.id)
            .join(r, r.c.id == claimed.c.repo_id)
            .outerjoin(q, q.c.changeset_id == claimed.c.id)
        )
        .order_by(picked.c.branch, picked.c.due_at, claimed.c.id)
    )  # fmt: skip


def _array(ids: sa.Select[Any]) -> sa.ColumnElement[Any]:
    """``ARRAY(subquery)``: with ``= ANY(...)`` the planner probes the primary key for each id
    (``IN (subquery)`` made it hash the ids and scan the whole request table)."""
    return sa.func.array(ids.scalar_subquery())


_Binder = Callable[[dict[str, Any]], tuple[Any, ...]]
_compiled: dict[tuple[type[sa.Dialect], str, int], tuple[str, _Binder]] = {}


def _pg_claim_sql(dialect: sa.Dialect, limit: int) -> tuple[str, _Binder]:
    """The claim compiled once for this kind of dialect, and a function that turns named
    parameters into the driver's positional ones (bind processors applied). Executing the
    statement object instead costs about 2 ms a round in SQLAlchemy alone (its cache key is
    recomputed from the whole statement tree on every call): a third of the claim."""
    key = (type(dialect), str(dialect.paramstyle), limit)
    if key not in _compiled:
        compiled = _pg_claim(limit).compile(dialect=dialect)
        order = list(compiled.positiontup or ())
        processors = {
            name: compiled.binds[name].type.bind_processor(dialect) for name in set(order)
        }

        def bind(named: dict[str, Any]) -> tuple[Any, ...]:
            values = compiled.construct_params(named)
            out = []
            for name in order:
                process = processors[name]
                out.append(values[name] if process is None else process(values[name]))
            return tuple(out)

        _compiled[key] = (str(compiled), bind)
    return _compiled[key]


def _pg_params(
    worker_id: str, now: datetime, lease: timedelta, skip_hosts: Collection[HostKey]
) -> dict[str, Any]:
    return {
        "now": now,
        "until": now + lease,
        "worker": worker_id,
        "skip": [f"{kind} {url}" for kind, url in skip_hosts],
    }


# --- SQLite: selects, then the claiming UPDATEs ---------------------------------------------------


async def _claim_in_steps(
    conn: AsyncConnection,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    skip_hosts: Collection[HostKey],
) -> list[ClaimedChangeset]:
    c, q = changesets, changeset_sync_requests
    not_skipped = (
        sa.and_(
            *(
                sa.not_(sa.and_(repos.c.host_kind == str(kind), repos.c.host_url == url))
                for kind, url in skip_hosts
            )
        )
        if skip_hosts
        else None
    )
    # ``+ 0`` keeps the request index the outer loop whatever the statistics say. After an
    # ANALYZE that saw the request queue empty (it usually is), SQLite assumes the default ~1M
    # rows for it and drives the join from a full scan of ``changesets`` plus a sort: every
    # idle poll then costs O(changesets) (issue 12, item 5).
    requested = (
        sa.select(*_COLUMNS)
        .select_from(
            q.join(c, c.c.id == q.c.changeset_id + 0).join(repos, repos.c.id == c.c.repo_id)
        )
        .where(_request_ready(now), *_claimable(now, not_skipped))
        .order_by(q.c.requested_at, q.c.changeset_id)
        .limit(limit)
    )
    candidates = list((await conn.execute(requested)).all())
    if len(candidates) < limit:
        # Every ready request is in ``candidates`` already (fewer than ``limit``).
        due = (
            sa.select(*_COLUMNS)
            .select_from(c.join(repos, repos.c.id == c.c.repo_id))
            .where(c.c.next_sync_at <= now, *_claimable(now, not_skipped))
            .order_by(c.c.next_sync_at, c.c.id)
            .limit(limit - len(candidates))
        )
        if candidates:
            due = due.where(c.c.id.not_in([row.id for row in candidates]))
        candidates += (await conn.execute(due)).all()
    if not candidates:
        return []
    until = now + lease
    won = set(
        (
            await conn.execute(
                c.update()
                .where(c.c.id.in_([row.id for row in candidates]), _claim_free(now))
                .values(claimed_by=worker_id, claimed_until=until)
                .returning(c.c.id)
            )
        ).scalars()
    )
    requests: dict[int, tuple[int, str]] = {}
    if won:
        returned = await conn.execute(
            sa.select(q.c.changeset_id, q.c.generation, q.c.reason).where(
                q.c.changeset_id.in_(sorted(won))
            )
        )
        requests = {row.changeset_id: (row.generation, row.reason) for row in returned}
    return [
        _claimed(tuple(row), worker_id, *requests.get(row.id, (None, None)))
        for row in candidates
        if row.id in won
    ]
