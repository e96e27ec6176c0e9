"""Running one result of an ``apply_spec`` operation (one repository), inside the operation
worker (``OperationWorker`` hands its apply_spec groups here), with the worker's claims,
write budget, retries, rate-limit pause and archived refusal. Per result:

1. read the result, its target (what earlier applies put on the host) and the repo; an
   archived repo skips the group (no request);
2. a repo the spec no longer matches: its open changeset is closed (one write);
3. otherwise read the default branch and the spec's files from the host (reads only), decide
   the new content (``core.specs.decide``) and the writes it needs against the target
   (``core.specs.steps``): none when nothing differs, so a re-apply of the same spec writes
   nothing. After an interrupted attempt (``write_started_at``) the branch is read too: a
   commit that already landed is not made again;
4. in one transaction: the repo is still not archived, a token of the host's write budget is
   taken and ``write_started_at`` committed; then the writes, a token each: ONE commit on the
   branch (created, or force-updated), then open the pull request (draft or ready) and track
   it in the batch change, or update its title and body, or mark it ready;
5. outcomes as for any operation (``OperationWorker._failed``): an archived refusal marks the
   repo archived (its changesets READONLY) in one transaction, a rate limit pauses the host.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from repo_updater.batch_spec import parse_spec
from repo_updater.core.domain import ExternalState, NewChangesetSpec
from repo_updater.core.errors import SourceError
from repo_updater.core.operations import ResultState
from repo_updater.core.ports import FileWriter, WritingSource
from repo_updater.core.reconcile import ARCHIVED_REASON
from repo_updater.core.specs import (
    Applied,
    Outcome,
    Published,
    Spec,
    Steps,
    decide,
    matches,
    steps,
)
from repo_updater.store import changesets as cs_store
from repo_updater.store import operation_claims as claims
from repo_updater.store import spec_targets as store
from repo_updater.store.operation_claims import Attempt, ClaimedGroup
from repo_updater.store.spec_targets import SpecAttempt

if TYPE_CHECKING:
    from repo_updater.service_layer.operation_worker import OperationWorker, Step

_OPEN = (ExternalState.OPEN, ExternalState.DRAFT)
NOT_MATCHED = "no longer matched by the spec"


class SpecRunner:
    def __init__(self, worker: OperationWorker) -> None:
        self.w = worker
        self._specs: dict[int, Spec] = {}

    async def _spec(self, spec_id: int) -> Spec:
        if spec_id not in self._specs:
            async with self.w._engine.connect() as conn:
                self._specs[spec_id] = parse_spec(await store.load_spec(conn, spec_id))
        return self._specs[spec_id]

    def _as_attempt(self, attempt: SpecAttempt) -> Attempt:
        """What ``OperationWorker._failed`` needs of an attempt."""
        return cast(Attempt, attempt)

    async def run_result(self, group: ClaimedGroup, result_id: int) -> Step:
        from repo_updater.service_layer.operation_worker import Step

        w = self.w
        source = w._sources[group.host]
        async with w._transaction() as conn:
            now = w._clock()
            attempt = await store.begin(conn, group, result_id, now, w._renewal(group, now))
            if attempt is None:
                return Step(stop=True)
            if attempt.repo_archived:
                return await self._skip_archived(conn, group, attempt)
        assert group.args.spec_id is not None
        spec = await self._spec(group.args.spec_id)
        target = attempt.target
        if not matches(spec, target.repo_name):
            return await self._remove(group, attempt, spec, source)
        files = cast(FileWriter, source)
        try:
            base = await files.default_branch(group.repo_name)
            current = await files.read_files(group.repo_name, base, spec.paths)
            outcome = decide(spec, current)
            applied = _applied(target)
            if attempt.write_started_at is not None and outcome.skip is None:
                on_branch = await files.read_files(
                    group.repo_name, spec.changeset.branch, list(outcome.files)
                )
                if all(on_branch.get(p) == c for p, c in outcome.files.items()):
                    applied = dataclasses.replace(applied, digest=outcome.digest)
        except SourceError as exc:
            return await w._failed(group, self._as_attempt(attempt), exc, started=False)
        todo = steps(spec, outcome, applied)
        if not todo.any:
            detail = outcome.skip or "unchanged since the last apply"
            return await self._finish(group, attempt, ResultState.SKIPPED, detail)
        started = await self._start(group, attempt)
        if started is not None:
            return started
        try:
            existing = {path for path, content in current.items() if content is not None}
            await self._write(group, attempt, spec, outcome, todo, base, existing, source, files)
        except SourceError as exc:
            w._count_write(group, exc)
            return await w._failed(group, self._as_attempt(attempt), exc, started=True)
        w._count_write(group, None)
        w._notify()
        return await self._finish(group, attempt, ResultState.DONE, todo.describe())

    async def _write(
        self,
        group: ClaimedGroup,
        attempt: SpecAttempt,
        spec: Spec,
        outcome: Outcome,
        todo: Steps,
        base: str,
        existing: set[str],
        source: WritingSource,
        files: FileWriter,
    ) -> None:
        w, template, target = self.w, spec.changeset, attempt.target
        first = True

        async def token() -> None:
            nonlocal first
            if not first:
                await w._token_in_place(group)
            first = False

        if todo.commit:
            await token()
            for _ in range(files.commit_cost(outcome.files) - 1):  # one token per request
                await w._token_in_place(group)
            await files.commit_files(
                group.repo_name,
                base=base,
                branch=template.branch,
                files=outcome.files,
                message=template.commit_message,
                existing=existing,
            )
            async with w._transaction() as conn:
                await store.record_commit(
                    conn, target.id, template.branch, outcome.digest, w._clock()
                )
        draft = template.published is Published.DRAFT
        if todo.open_pull:
            await token()
            snapshot = await source.create_changeset(
                NewChangesetSpec(
                    repo_name=group.repo_name,
                    title=template.title,
                    body=template.body,
                    head_ref=template.branch,
                    base_ref=base,
                    draft=draft,
                )
            )
            async with w._transaction() as conn:
                now = w._clock()
                bc = await store.batch_change_of_operation(conn, group.operation_id)
                (changeset_id,) = await cs_store.track_changesets(
                    conn, bc, [(group.repo_id, snapshot.number)], now
                )
                await claims.record_write(conn, changeset_id, snapshot.state, now)
                await store.record_pull(
                    conn,
                    target.id,
                    changeset_id=changeset_id,
                    title=template.title,
                    body=template.body,
                    draft=draft,
                    now=now,
                )
            return
        assert target.number is not None or not (todo.update_pull or todo.mark_ready)
        snapshot_state = None
        if todo.update_pull:
            await token()
            assert target.number is not None
            snap = await source.update_changeset(
                group.repo_name, target.number, title=template.title, body=template.body
            )
            snapshot_state = snap.state
        if todo.mark_ready:
            await token()
            assert target.number is not None
            snap = await source.mark_ready(group.repo_name, target.number)
            snapshot_state = snap.state
        if todo.update_pull or todo.mark_ready:
            async with w._transaction() as conn:
                now = w._clock()
                if target.changeset_id is not None:
                    await claims.record_write(conn, target.changeset_id, snapshot_state, now)
                await store.record_pull(
                    conn,
                    target.id,
                    title=template.title,
                    body=template.body,
                    draft=target.draft and not todo.mark_ready,
                    now=now,
                )

    async def _remove(
        self, group: ClaimedGroup, attempt: SpecAttempt, spec: Spec, source: WritingSource
    ) -> Step:
        """The spec no longer matches the repo: close its changeset (if still open)."""
        target = attempt.target
        if target.number is None or target.external_state not in (*_OPEN, None):
            async with self.w._transaction() as conn:
                await store.set_state(conn, target.id, store.CLOSED, self.w._clock())
            return await self._finish(group, attempt, ResultState.SKIPPED, NOT_MATCHED)
        started = await self._start(group, attempt)
        if started is not None:
            return started
        try:
            snap = await source.close_changeset(group.repo_name, target.number)
        except SourceError as exc:
            self.w._count_write(group, exc)
            return await self.w._failed(group, self._as_attempt(attempt), exc, started=True)
        self.w._count_write(group, None)
        async with self.w._transaction() as conn:
            now = self.w._clock()
            if target.changeset_id is not None:
                await claims.record_write(conn, target.changeset_id, snap.state, now)
            await store.set_state(conn, target.id, store.CLOSED, now)
        self.w._notify()
        return await self._finish(group, attempt, ResultState.DONE, f"close ({NOT_MATCHED})")

    async def _start(self, group: ClaimedGroup, attempt: SpecAttempt) -> Step | None:
        """Take a write token and record the start of the write (None: go ahead), or the step
        to end with (archived meanwhile, budget exhausted, claim lost)."""
        from repo_updater.service_layer.operation_worker import Step

        w = self.w
        while True:
            async with w._transaction() as conn:
                now = w._clock()
                if await claims.repo_archived(conn, group.repo_id):
                    return await self._skip_archived(conn, group, attempt)
                wait = await w._tokens.take(conn, group.host, now)
                if wait > w._max_inline_wait:
                    when = now + timedelta(seconds=wait)
                    await claims.retry_later(
                        conn, group, attempt.result_id, "waiting for the host's write budget", when
                    )
                    return Step(stop=True, not_before=when)
                if wait <= 0:
                    first = group.operation_id not in w._started
                    if not await claims.start_write(
                        conn, group, attempt.result_id, now, first=first
                    ):
                        return Step(stop=True)
                    w._started.add(group.operation_id)
                    return None
            await asyncio.sleep(wait)

    async def _skip_archived(self, conn: Any, group: ClaimedGroup, attempt: SpecAttempt) -> Step:
        from repo_updater.service_layer.operation_worker import Step

        now = self.w._clock()
        await claims.finish(
            conn, group, attempt.result_id, ResultState.SKIPPED, ARCHIVED_REASON, now
        )
        await claims.skip_rest(conn, group, ARCHIVED_REASON, now)
        return Step(finished=True, stop=True)

    async def _finish(
        self, group: ClaimedGroup, attempt: SpecAttempt, state: ResultState, detail: str
    ) -> Step:
        from repo_updater.service_layer.operation_worker import Step

        async with self.w._transaction() as conn:
            done = await claims.finish(
                conn, group, attempt.result_id, state, detail, self.w._clock()
            )
        return Step(finished=True) if done else Step(stop=True)


def _applied(target: store.Target) -> Applied:
    return Applied(
        digest=target.digest,
        number=target.number,
        title=target.title,
        body=target.body,
        draft=target.draft,
        open=target.external_state in (*_OPEN, None),
    )
