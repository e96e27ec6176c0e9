"""The operation worker: runs bulk operations on changesets, durably and paced.

A round claims due groups (one operation's changesets on one repository, see
``store.operation_claims``) for the hosts this worker has connections to, and runs each
group's due results one after the other (groups in parallel). Per result:

1. read the changeset's and repo's current state; an archived repo skips the whole group;
2. if an earlier attempt may have reached the host (``write_started_at``), look at the host
   first: load the pull request (and, for a comment, look for it); if the wanted outcome is
   there the result is done, and nothing is written twice;
3. plan (``core.reconcile``): a skip is final, with its reason;
4. in one transaction: the repo is still not archived, a token of the host's write budget is
   taken (``store.write_budgets``, shared by every process) and ``write_started_at`` is
   committed; then the host calls are made (without a look at the host, steps 1 to 4 are one
   transaction, and a finished result one more);
5. the outcome: done (the changeset's new state written, a sync requested); archived refusal
   (in one transaction: ``repo_changes.set_archived`` with why "write refused", the result
   skipped "repository archived", the group's other results skipped: no further request to
   that repo); a rate limit (the host paused for every worker until ``Retry-After``, the result
   kept pending, not counted); not found, unauthorized, refused, conflict: failed, final;
   anything else: retried with backoff up to ``max_attempts``, then failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from repo_updater.core.domain import HostKind
from repo_updater.core.errors import (
    NotFound,
    RateLimited,
    RepoArchived,
    SourceError,
    describe,
    reason,
)
from repo_updater.core.operations import OperationKind, ResultState
from repo_updater.core.pacing import WriteLimit, resume_at
from repo_updater.core.ports import WritingSource
from repo_updater.core.reconcile import (
    ARCHIVED_REASON,
    ChangesetFacts,
    Plan,
    achieved,
    plan,
)
from repo_updater.core.schedule import retry_at
from repo_updater.metrics import Metrics
from repo_updater.service_layer import repo_changes
from repo_updater.service_layer.health import Health, pause
from repo_updater.service_layer.operation_support import (
    HeldTokens,
    InternalError,
    WriteLock,
    call_host,
    final_detail,
    look_again,
)
from repo_updater.service_layer.spec_worker import SpecRunner
from repo_updater.store import operation_claims as claims
from repo_updater.store import write_budgets
from repo_updater.store.db import is_sqlite, is_unavailable
from repo_updater.store.operation_claims import Attempt, ClaimedGroup

log = logging.getLogger(__name__)

HostKey = tuple[HostKind, str]
REFUSED_ARCHIVED = "repository archived (the host refused the write)"
RELEASE_TIMEOUT = 5.0  # seconds to hand back a group's claim (shutdown, a slow store)


@dataclass(frozen=True, slots=True)
class Step:
    """What running one result did to its group's run."""

    finished: bool = False  # the result is final now
    stop: bool = False  # stop the group here (claim lost, archived, host paused, no budget)
    not_before: datetime | None = None  # the group is not due again before this


# What ``_prepare`` decides: the plan to carry out, a step to end with, seconds to wait (or
# None: not decided yet).
Decision = Plan | Step | float | None


class OperationWorker:
    def __init__(
        self,
        engine: AsyncEngine,
        sources: Mapping[HostKey, WritingSource],
        clock: Callable[[], datetime],
        *,
        worker_id: str,
        limits: Mapping[HostKey, Sequence[WriteLimit]],
        lease: timedelta = timedelta(seconds=60),
        poll_interval: float = 5.0,
        groups_per_round: int = 4,
        max_attempts: int = 5,
        retry_delay: timedelta = timedelta(seconds=5),
        max_retry_delay: timedelta = timedelta(minutes=10),
        max_inline_wait: float = 2.0,
        on_changesets_changed: Callable[[], None] | None = None,
        health: Health | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._sources = dict(sources)
        self._metrics = metrics
        self._clock = clock
        self.worker_id = worker_id
        self._limits = {host: tuple(limits[host]) for host in self._sources if host in limits}
        self._lease = lease
        self._poll_interval = poll_interval
        self._groups_per_round = groups_per_round
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._max_inline_wait = max_inline_wait
        self._notify = on_changesets_changed or (lambda: None)
        self._health = health if health is not None else Health()
        self._wake = asyncio.Event()
        self._tokens = HeldTokens(self.limits_for)
        self._renewed: dict[int, datetime] = {}  # group id -> when its lease was renewed
        self._started: set[int] = set()  # operations this worker has written for
        # SQLite has one writer at a time: serialise our own writes instead of contending
        # (an archived refusal's transaction goes first).
        self._write_lock = WriteLock() if is_sqlite(engine) else None
        self._specs = SpecRunner(self)  # apply_spec results (service_layer.spec_worker)

    @property
    def hosts(self) -> list[HostKey]:
        return sorted(self._sources)

    def limits_for(self, host: HostKey) -> tuple[WriteLimit, ...]:
        return self._limits.get(host, ())

    def wake(self) -> None:
        """Start a round now (call it after enqueueing an operation)."""
        self._wake.set()

    @contextlib.asynccontextmanager
    async def _transaction(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock.held(urgent=urgent))
            yield await stack.enter_async_context(self._engine.begin())

    # --- rounds ------------------------------------------------------------------------------

    async def run_once(self) -> tuple[int, int]:
        """Claim due groups and run them; returns (groups claimed, results made final)."""
        if not self._sources:
            return 0, 0
        async with self._transaction() as conn:
            groups = await claims.claim_groups(
                conn,
                self.worker_id,
                self._clock(),
                self._lease,
                self._groups_per_round,
                hosts=self.hosts,
            )
        if not groups:
            return 0, 0
        finished = await asyncio.gather(*(self._run_group(g) for g in groups))
        return len(groups), sum(finished)

    async def run(self, stop: asyncio.Event) -> None:
        """Run operations until ``stop`` is set: rounds back to back while there is work,
        then sleep until woken or the poll interval passes. A failed round (the store may be
        unreachable) backs off and is logged once per outage (``service_layer.health``)."""
        while not stop.is_set():
            self._wake.clear()
            started = self._health.started()
            try:
                claimed, _ = await self.run_once()
                self._health.succeeded("operations", started)
            except Exception as exc:
                await pause(stop, self._health.failed("operations", exc))
                continue
            if claimed:
                continue
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)

    async def _run_group(self, group: ClaimedGroup) -> int:
        finished = 0
        not_before = None
        try:
            async with self._engine.connect() as conn:
                due = await claims.due_results(conn, group, self._clock())
            for result_id in due:
                if group.kind is OperationKind.APPLY_SPEC:
                    step = await self._specs.run_result(group, result_id)
                else:
                    step = await self._run_result(group, result_id)
                finished += step.finished
                if step.stop:
                    not_before = step.not_before
                    break
        except Exception as exc:  # a bug must not keep the group claimed until its lease ends
            if is_unavailable(exc):  # an outage: logged once by Health, not once per group
                self._health.store_failed(describe(exc))
            else:
                log.exception("operation %d: running group %d failed", group.operation_id,
                              group.id)  # fmt: skip
        finally:
            self._renewed.pop(group.id, None)
            # Handed back even when cancelled (shutdown), so another worker need not wait for
            # the lease; a result whose write had started keeps ``write_started_at``, so the
            # next attempt looks at the host first.
            await asyncio.shield(self._release(group, not_before))
        return finished

    async def _release(self, group: ClaimedGroup, not_before: datetime | None) -> None:
        # Bounded, as the changeset syncer's: a write cancelled mid-rollback can hold SQLite's
        # write lock for the whole busy timeout, and the lease runs out on its own anyway.
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT), self._transaction() as conn:
                if await claims.release(conn, group, self._clock(), not_before=not_before):
                    log.info("operation %d finished", group.operation_id)
        except Exception as exc:
            log.warning(
                "could not release operation %d's claim on %s: %s",
                group.operation_id, group.repo_name, describe(exc),
            )  # fmt: skip

    # --- one result --------------------------------------------------------------------------

    async def _run_result(self, group: ClaimedGroup, result_id: int) -> Step:
        source = self._sources[group.host]
        decision: Decision = None
        async with self._transaction() as conn:
            now = self._clock()
            attempt = await claims.begin(conn, group, result_id, now, self._renewal(group, now))
            if attempt is None:
                return Step(stop=True)
            recovering = attempt.write_started_at is not None
            if not recovering:  # the common case: decide and start in this transaction
                decision = await self._prepare(conn, group, attempt, attempt.facts, False)
        facts = attempt.facts
        if recovering:
            try:
                facts = await look_again(source, group, attempt)
            except SourceError as exc:
                return await self._failed(group, attempt, exc, started=False)
        while not isinstance(decision, Step | Plan):
            if decision is not None:
                await asyncio.sleep(decision)  # a short wait for the write budget
            async with self._transaction() as conn:
                archived = await claims.repo_archived(conn, group.repo_id)
                fresh = dataclasses.replace(facts, repo_archived=archived)
                decision = await self._prepare(conn, group, attempt, fresh, recovering)
        if isinstance(decision, Step):
            return decision
        snapshot = None
        try:
            for i, call in enumerate(decision.calls):
                if i > 0:
                    await self._token_in_place(group)
                snapshot = await call_host(source, group, attempt, call) or snapshot
        except SourceError as exc:
            self._count_write(group, exc)
            return await self._failed(group, attempt, exc, started=True)
        except Exception as exc:  # a bug in a source: retried, then failed; no traceback text
            log.exception("operation %d: unexpected error", group.operation_id)
            error = InternalError(f"internal error: {type(exc).__name__}")
            self._count_write(group, error)
            return await self._failed(group, attempt, error, started=True)
        self._count_write(group, None)
        async with self._transaction() as conn:
            now = self._clock()
            state = None if snapshot is None else snapshot.state
            detail = decision.describe()
            if await claims.finish(conn, group, attempt.result_id, ResultState.DONE, detail, now):
                await claims.record_write(conn, attempt.changeset_id, state, now)
        self._notify()
        return Step(finished=True)

    async def _prepare(
        self,
        conn: AsyncConnection,
        group: ClaimedGroup,
        attempt: Attempt,
        facts: ChangesetFacts,
        recovering: bool,
    ) -> Decision:
        """In the caller's transaction: plan, and when there is something to write, take a
        token of the host's write budget and record the start of the write. Returns the plan
        to carry out, the step to end with (skipped, done, budget exhausted, claim lost), or
        the seconds to wait before asking again (a short wait for the budget)."""
        now = self._clock()
        result_id = attempt.result_id
        if facts.repo_archived:  # no request to an archived repo: skip the group's rest too
            await claims.finish(conn, group, result_id, ResultState.SKIPPED, ARCHIVED_REASON, now)
            await claims.skip_rest(conn, group, ARCHIVED_REASON, now)
            return Step(finished=True, stop=True)
        if recovering and achieved(facts, group.kind, group.args):
            detail = "done (found on the host after an interrupted attempt)"
            done = await claims.finish(conn, group, result_id, ResultState.DONE, detail, now)
            return Step(finished=True) if done else Step(stop=True)
        planned = plan(facts, group.kind, group.args)
        if planned.skip is not None:
            done = await claims.finish(conn, group, result_id, ResultState.SKIPPED, planned.skip,
                                       now)  # fmt: skip
            return Step(finished=True) if done else Step(stop=True)
        wait = await self._tokens.take(conn, group.host, now)
        if wait > self._max_inline_wait:
            when = now + timedelta(seconds=wait)
            detail = "waiting for the host's write budget"
            await claims.retry_later(conn, group, result_id, detail, when)
            return Step(stop=True, not_before=when)
        if wait > 0:
            return wait
        first = group.operation_id not in self._started
        if not await claims.start_write(conn, group, result_id, now, first=first):
            return Step(stop=True)
        self._started.add(group.operation_id)
        return planned

    def _renewal(self, group: ClaimedGroup, now: datetime) -> timedelta | None:
        """The lease to renew the group's claim by, when a third of it has passed since it
        was last renewed (None: not yet)."""
        last = self._renewed.get(group.id)
        if last is not None and now - last < self._lease / 3:
            return None
        self._renewed[group.id] = now
        return self._lease

    async def _token_in_place(self, group: ClaimedGroup) -> None:
        """A token for the next call of a plan already under way (waits in place)."""
        while True:
            async with self._transaction() as conn:
                wait = await self._tokens.take(conn, group.host, self._clock())
            if wait == 0.0:
                return
            await asyncio.sleep(wait)

    def _count_write(self, group: ClaimedGroup, exc: SourceError | None) -> None:
        """One write attempt for ``/metrics``: it went through (None), or why not."""
        if self._metrics is None:
            return
        why = None if exc is None else reason(exc)
        if isinstance(exc, InternalError):  # a bug in a source, not the host's answer
            why = "internal"
        self._metrics.observe_write(group.host_url, why)

    # --- outcomes ----------------------------------------------------------------------------

    async def _archived_refusal(
        self, group: ClaimedGroup, attempt: Attempt, exc: RepoArchived
    ) -> Step:
        """The host refused the write because the repo is archived: in ONE transaction, the
        repo is marked archived as a repo sync would (its open changesets READONLY, a sync of
        each requested, the RepoArchived event), this result and the group's others are
        skipped. No further write goes to the repo."""
        log.info("operation %d: %s is archived: %s", group.operation_id, group.repo_name, exc)
        async with self._transaction(urgent=True) as conn:
            now = self._clock()
            service = await claims.service_of_repo(conn, group.repo_id)
            await repo_changes.set_archived(
                conn,
                group.repo_id,
                True,
                why="write refused",
                external_service_id=service,
                now=now,
            )
            await claims.finish(
                conn, group, attempt.result_id, ResultState.SKIPPED, REFUSED_ARCHIVED, now
            )
            await claims.skip_rest(conn, group, ARCHIVED_REASON, now)
        self._notify()
        return Step(finished=True, stop=True)

    async def _failed(
        self, group: ClaimedGroup, attempt: Attempt, exc: SourceError, *, started: bool
    ) -> Step:
        if isinstance(exc, RepoArchived):
            return await self._archived_refusal(group, attempt, exc)
        now = self._clock()
        if isinstance(exc, RateLimited):
            self._tokens.give_up(group.host)  # the host said stop
            until = resume_at(now, exc.retry_after)
            log.warning("%s rate-limited writes; pausing it until %s", group.host_url, until)
            async with self._transaction() as conn:
                await write_budgets.pause_host(conn, group.host, until, now)
                await claims.retry_later(
                    conn, group, attempt.result_id, f"rate limited: {exc}", until, not_sent=started
                )
            return Step(stop=True, not_before=until)
        final = final_detail(exc)
        attempts = attempt.attempts + (1 if started else 0)
        if final is None and attempts >= self._max_attempts:
            final = f"gave up after {attempts} attempts: {exc}"
        async with self._transaction() as conn:
            if final is not None:
                done = await claims.finish(
                    conn, group, attempt.result_id, ResultState.FAILED, final, now
                )
                if done and isinstance(exc, NotFound) and attempt.changeset_id:
                    await claims.record_write(conn, attempt.changeset_id, None, now)
                return Step(finished=done, stop=not done)
            when = retry_at(
                now,
                max(attempts, 1),
                min_delay=self._retry_delay,
                max_delay=self._max_retry_delay,
            )
            kept = await claims.retry_later(
                conn, group, attempt.result_id, f"will retry: {exc}", when
            )
        return Step(stop=not kept)
