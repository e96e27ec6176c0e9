"""What the operation worker needs besides its loop: the host side of a result (carrying out
a planned call, looking at the host again after an interrupted attempt, which errors are
final), the write tokens a worker holds, and SQLite's in-process write lock."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.changeset_state import derive_external_state
from repo_updater.core.domain import ChangesetRef, ChangesetSnapshot, HostKind
from repo_updater.core.errors import Conflict, NotFound, Refused, SourceError, Unauthorized
from repo_updater.core.operations import OperationKind
from repo_updater.core.pacing import WriteLimit, reservation
from repo_updater.core.ports import WritingSource
from repo_updater.core.reconcile import CallKind, ChangesetFacts, HostCall
from repo_updater.store import write_budgets
from repo_updater.store.operation_claims import Attempt, ClaimedGroup

HostKey = tuple[HostKind, str]
# Comments are looked for from a little before the interrupted attempt began: the host's
# clock may be behind ours.
CLOCK_SKEW = timedelta(minutes=2)
HELD_TOKENS_FOR = timedelta(seconds=1)


class InternalError(SourceError):
    """An unexpected error, carried as a retryable failure (its text is only its type)."""


def final_detail(exc: SourceError) -> str | None:
    """The result text of an error that retrying will not fix, or None for a transient one."""
    if isinstance(exc, NotFound):
        return f"not found on the host (deleted, or not visible to the token): {exc}"
    if isinstance(exc, Unauthorized):
        return f"the host refused the token (check its write permission): {exc}"
    if isinstance(exc, Refused | Conflict):
        return f"refused by the host: {exc}"
    return None


async def call_host(
    source: WritingSource, group: ClaimedGroup, attempt: Attempt, call: HostCall
) -> ChangesetSnapshot | None:
    """Make one planned call; the pull request as the host answered, if it did."""
    repo, number = group.repo_name, attempt.number
    match call.kind:
        case CallKind.CLOSE:
            return await source.close_changeset(repo, number)
        case CallKind.REOPEN:
            return await source.reopen_changeset(repo, number)
        case CallKind.MERGE:
            assert call.merge_method is not None
            return await source.merge_changeset(repo, number, call.merge_method)
        case CallKind.MARK_READY:
            return await source.mark_ready(repo, number)
        case CallKind.CONVERT_TO_DRAFT:
            return await source.convert_to_draft(repo, number)
        case CallKind.UPDATE:
            return await source.update_changeset(repo, number, title=call.title, body=call.body)
        case CallKind.COMMENT:
            assert call.body is not None
            await source.add_comment(repo, number, call.body)
            return None


async def look_again(
    source: WritingSource, group: ClaimedGroup, attempt: Attempt
) -> ChangesetFacts:
    """The changeset as the host has it now, after an attempt that may have reached it: its
    state, and for a comment whether the comment is there (posted since the attempt began)."""
    ref = ChangesetRef(
        attempt.changeset_id, group.repo_name, group.repo_external_id, attempt.number
    )
    found = await source.load_changesets([ref])
    facts = attempt.facts if not found else with_snapshot(attempt.facts, found[0])
    if group.kind is OperationKind.COMMENT and group.args.body is not None:
        assert attempt.write_started_at is not None
        since = attempt.write_started_at - CLOCK_SKEW
        commented = await source.has_comment(group.repo_name, attempt.number, group.args.body,
                                             since)  # fmt: skip
        facts = dataclasses.replace(facts, already_commented=commented)
    return facts


def with_snapshot(facts: ChangesetFacts, snap: ChangesetSnapshot) -> ChangesetFacts:
    return dataclasses.replace(
        facts,
        external_state=derive_external_state(snap.state, facts.repo_archived),
        review_state=snap.review_state,
        check_state=snap.check_state,
        title=snap.title,
    )


class HeldTokens:
    """Write tokens a worker took from the shared budget (``store.write_budgets``) and has
    not spent yet: a few at a time (``core.pacing.reservation``), so that not every write locks
    the host's budget row; those not spent within a second are given up, never returned (the
    limits can only be undershot)."""

    def __init__(self, limits_for: Callable[[HostKey], Sequence[WriteLimit]]) -> None:
        self._limits_for = limits_for
        self._held: dict[HostKey, tuple[int, datetime]] = {}

    async def take(self, conn: AsyncConnection, host: HostKey, now: datetime) -> float:
        """One token: 0.0 when taken, else the seconds to wait for the shared budget."""
        held = self._held.get(host)
        if held is not None and held[0] > 0 and held[1] > now:
            self._held[host] = (held[0] - 1, held[1])
            return 0.0
        limits = self._limits_for(host)
        taken, wait = await write_budgets.take_tokens(conn, host, limits, now, reservation(limits))
        if taken:
            self._held[host] = (taken - 1, now + HELD_TOKENS_FOR)
        return wait

    def give_up(self, host: HostKey) -> None:
        """The host said stop (a rate limit): spend nothing more that was taken before."""
        self._held.pop(host, None)


class WriteLock:
    """One write transaction at a time in this process (SQLite has one writer), first come
    first served, except that urgent ones (an archived refusal, whose changesets must turn
    READONLY at once) go before those waiting."""

    def __init__(self) -> None:
        self._locked = False
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @contextlib.asynccontextmanager
    async def held(self, *, urgent: bool = False) -> AsyncIterator[None]:
        if self._locked or self._waiting:
            waiter = asyncio.get_running_loop().create_future()
            if urgent:
                self._waiting.appendleft(waiter)
            else:
                self._waiting.append(waiter)
            try:
                await waiter  # the releaser hands the lock over: _locked stays True
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed over to us as we were cancelled: pass it on
                else:
                    self._waiting.remove(waiter)
                raise
        else:
            self._locked = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._locked = False
