"""The operation worker against the emulator's four hosts and a real store (SQLite and
PostgreSQL): what each changeset's result says, what reached the hosts, what the store shows
afterwards, and how refusals, rate limits, budgets and interrupted attempts are handled."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from repo_updater.bootstrap import App
from repo_updater.core.domain import (
    CheckState,
    ExternalState,
    HostKind,
    HostPullState,
    ReviewState,
)
from repo_updater.core.operations import OperationArgs, OperationKind, ResultState
from repo_updater.emulator.merge_rules import add_comment
from repo_updater.emulator.server import RunningEmulator
from repo_updater.service_layer import operations
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import operations as op_store
from repo_updater.store.schema import bulk_operation_results, changeset_sync_requests
from repo_updater.store.write_budgets import list_budgets
from tests.support.metrics import samples, value
from tests.support.operations import (
    OWNERS,
    enqueue,
    fast_worker,
    run_until_finished,
    tracked,
    writes_per_pull,
)

KINDS = list(HostKind)


def seed(emu: RunningEmulator, repos: int = 2, pulls: int = 3) -> None:
    for kind, owner in OWNERS.items():
        host = emu.state.host(kind)
        for r in range(repos):
            repo = host.add_repo(owner, f"app-{r}")
            for p in range(pulls):
                host.add_pull(repo.full_name, title=f"Change {p}", head_ref=f"b{p}")


async def results(app: App, operation_id: int) -> dict[tuple[str, int], tuple[str, str]]:
    async with app.engine.connect() as conn:
        rows = await op_store.list_results(conn, operation_id, limit=1000)
    return {(r.repo_name, r.number): (r.state.value, r.detail) for r in rows}


async def test_close_across_four_hosts_skips_merged_and_shows_closed_at_once(
    store_url: str, emu: RunningEmulator
) -> None:
    seed(emu)
    for kind, owner in OWNERS.items():  # one merged pull request per host
        emu.state.host(kind).set_pull_state(f"{owner}/app-0", 1, HostPullState.MERGED)
    async with tracked(store_url, emu) as (app, bc):
        op = await enqueue(app, bc, OperationKind.CLOSE)
        view = await run_until_finished(app, op)
        got = await results(app, op)
        async with app.engine.connect() as conn:
            states = {(v.repo_name, v.number): v.external_state for v in
                      await cs_store.list_changesets(conn)}  # fmt: skip
    assert (view.total, view.done, view.skipped, view.failed) == (24, 20, 4, 0)
    for kind, owner in OWNERS.items():
        name = f"{kind.value}.test/{owner}/app-0"
        assert got[(name, 1)] == ("skipped", "already merged: a merged changeset is not closed")
        assert got[(name, 2)] == ("done", "close")
        assert states[(name, 1)] is ExternalState.MERGED
        assert states[(name, 2)] is ExternalState.CLOSED  # written with the result
        pulls = emu.state.host(kind).repo(f"{owner}/app-1").pulls
        assert all(p.state is HostPullState.CLOSED for p in pulls.values())
        verb = "decline" if kind is HostKind.BITBUCKET_SERVER else "update"
        assert set(writes_per_pull(emu, kind, verb).values()) == {1}  # each once


@pytest.mark.parametrize("kind", KINDS, ids=[k.value for k in KINDS])
async def test_an_archived_refusal_turns_the_repos_changesets_readonly_in_one_go(
    store_url: str, emu: RunningEmulator, kind: HostKind
) -> None:
    seed(emu, repos=2, pulls=4)
    owner = OWNERS[kind]
    async with tracked(store_url, emu) as (app, bc):
        # Archived on the host only: the store learns it from the refused write.
        host = emu.state.host(kind)
        archived = host.set_archived(f"{owner}/app-1", True)
        # Gitea lets a PATCH (close) through on an archived repo; a comment is refused.
        operation = OperationKind.COMMENT if kind is HostKind.GITEA else OperationKind.CLOSE
        body = "Closing: superseded" if operation is OperationKind.COMMENT else None
        async with app.engine.begin() as conn:
            ids = [v.id for v in await cs_store.list_changesets(conn)
                   if v.repo_name.startswith(f"{kind.value}.test/")]  # fmt: skip
        op = await enqueue_ids(app, bc, operation, ids, body)
        await run_until_finished(app, op)
        got = await results(app, op)
        async with app.engine.connect() as conn:
            views = await cs_store.list_changesets(conn)
            requested = set((await conn.execute(
                sa.select(changeset_sync_requests.c.changeset_id))).scalars())  # fmt: skip
            events = await event_store.list_events(conn, kind="RepoArchived")
    name = f"{kind.value}.test/{owner}/app-1"
    on_repo = [v for v in views if v.repo_name == name]
    assert {v.external_state for v in on_repo} == {ExternalState.READONLY}
    assert {v.id for v in on_repo} <= requested  # a sync requested for each
    why = [(e.repo_id, e.payload["why"]) for e in events]
    assert why == [(on_repo[0].repo_id, "write refused")]
    outcomes = sorted(got[(name, n)] for n in range(1, 5))
    assert outcomes == [("skipped", "repository archived (read-only)")] * 3 + [
        ("skipped", "repository archived (the host refused the write)")
    ]
    # One refused write reached the archived repo, and nothing after it.
    assert [w.status for w in host.writes.log if w.repo_id == archived.id] == [
        404 if kind is HostKind.GITEA and host.writes.gitea_version < (1, 21) else
        {HostKind.GITHUB: 403, HostKind.GITLAB: 403, HostKind.GITEA: 423,
         HostKind.BITBUCKET_SERVER: 409}[kind]
    ]  # fmt: skip
    other = [got[(f"{kind.value}.test/{owner}/app-0", n)][0] for n in range(1, 5)]
    assert other == ["done"] * 4
    # The app's worker counts its writes on the app's registry (wired by bootstrap).
    figures = samples(app.metrics.exposition().decode())
    host_url = app.sources[f"svc-{kind.value}"].host_url
    writes = "repo_updater_host_writes_total"
    assert value(figures, writes, host=host_url, result="ok") == 4
    assert value(figures, writes, host=host_url, result="archived") == 1


async def enqueue_ids(
    app: App, bc: int, kind: OperationKind, ids: list[int], body: str | None
) -> int:
    async with app.engine.begin() as conn:
        return await operations.enqueue(
            conn, bc, kind, OperationArgs(body=body), changeset_ids=ids,
            requested_by="test", now=app.clock(),
        )  # fmt: skip


async def test_merge_needs_passed_checks_and_approval_unless_forced(
    store_url: str, emu: RunningEmulator
) -> None:
    gh = emu.state.host(HostKind.GITHUB)
    repo = gh.add_repo("acme", "app")
    ready = gh.add_pull(repo.full_name, title="ready")
    gh.set_check_state(repo.full_name, ready.number, CheckState.PASSED)
    gh.add_review(repo.full_name, ready.number, author="ann", state=ReviewState.APPROVED)
    gh.add_pull(repo.full_name, title="failing")  # checks pending, no review
    async with tracked(store_url, emu) as (app, bc):
        first = await enqueue(app, bc, OperationKind.MERGE)
        await run_until_finished(app, first)
        got = await results(app, first)
        forced = await enqueue(app, bc, OperationKind.MERGE, force=True)
        await run_until_finished(app, forced)
        got_forced = await results(app, forced)
    name = "github.test/acme/app"
    assert got[(name, 1)] == ("done", "merge (merge)")
    assert got[(name, 2)][0] == "skipped" and "checks not passed (PENDING)" in got[(name, 2)][1]
    assert got_forced[(name, 2)] == ("done", "merge (merge)")
    assert got_forced[(name, 1)] == ("skipped", "already merged")
    assert all(p.state is HostPullState.MERGED for p in repo.pulls.values())


async def test_an_interrupted_comment_is_looked_for_before_it_is_posted_again(
    store_url: str, emu: RunningEmulator
) -> None:
    gh = emu.state.host(HostKind.GITHUB)
    repo = gh.add_repo("acme", "app")
    for i in range(2):
        gh.add_pull(repo.full_name, title=f"pr {i}")
    async with tracked(store_url, emu) as (app, bc):
        op = await enqueue(app, bc, OperationKind.COMMENT, body="Please rebase")
        # A worker died after recording both attempts; only #1's comment reached the host.
        async with app.engine.begin() as conn:
            await conn.execute(
                bulk_operation_results.update()
                .where(bulk_operation_results.c.operation_id == op)
                .values(write_started_at=app.clock(), attempts=1)
            )
        add_comment(repo.pulls[1], "Please rebase")
        await run_until_finished(app, op)
        got = await results(app, op)
    assert [c.body for c in repo.pulls[1].comments] == ["Please rebase"]  # not twice
    assert [c.body for c in repo.pulls[2].comments] == ["Please rebase"]  # posted once
    assert got[("github.test/acme/app", 1)] == (
        "done",
        "done (found on the host after an interrupted attempt)",
    )
    assert got[("github.test/acme/app", 2)] == ("done", "comment")


async def test_a_secondary_rate_limit_pauses_the_host_and_nothing_is_lost(
    store_url: str, emu: RunningEmulator
) -> None:
    gh = emu.state.host(HostKind.GITHUB)
    repo = gh.add_repo("acme", "app")
    for i in range(4):
        gh.add_pull(repo.full_name, title=f"pr {i}")
    async with tracked(store_url, emu) as (app, bc):
        gh.writes.per_minute, gh.writes.retry_after = 2, 1
        op = await enqueue(app, bc, OperationKind.COMMENT, body="hello")
        worker = fast_worker(app, metrics=app.metrics)
        await worker.run_once()
        async with app.engine.connect() as conn:
            [budget] = [b for b in await list_budgets(conn) if b.host_kind is HostKind.GITHUB]
            waiting = await op_store.list_results(conn, op, state=ResultState.PENDING)
        assert budget.paused_until is not None  # shared with every worker, in the database
        assert len(waiting) == 2 and waiting[0].detail.startswith("rate limited")
        gh.writes.per_minute = None
        view = await run_until_finished(app, op, worker)
    assert (view.done, view.failed) == (4, 0)
    assert all(len(p.comments) == 1 for p in repo.pulls.values())
    figures = samples(app.metrics.exposition().decode())
    host_url = app.sources["svc-github"].host_url
    assert value(figures, "repo_updater_host_writes_total", host=host_url, result="ok") == 4
    assert value(figures, "repo_updater_host_writes_total", host=host_url,
                 result="rate_limited") >= 1  # fmt: skip


async def test_the_write_budget_paces_and_the_expected_finish_says_when(
    store_url: str, emu: RunningEmulator
) -> None:
    gh = emu.state.host(HostKind.GITHUB)
    repo = gh.add_repo("acme", "app")
    for i in range(5):
        gh.add_pull(repo.full_name, title=f"pr {i}")
    async with tracked(store_url, emu, write_limits={"per_minute": 3}) as (app, bc):
        op = await enqueue(app, bc, OperationKind.CLOSE)
        await app.operation_worker.run_once()
        async with app.engine.connect() as conn:
            status = await operations.status(conn, op, app.operation_worker.limits_for, app.clock())
            waiting = await op_store.list_results(conn, op, state=ResultState.PENDING)
    # 3 a minute: a burst of 1, then one every 30 s; the rest waits for the budget.
    assert status.progress.done == 1 and status.progress.pending == 4
    assert waiting[0].detail == "waiting for the host's write budget"
    assert status.progress.expected_finish is not None
    assert (status.progress.expected_finish - app.clock()).total_seconds() > 60
    assert sum(1 for p in repo.pulls.values() if p.state is HostPullState.CLOSED) == 1


async def test_transient_errors_are_retried_and_final_ones_are_not(
    store_url: str, emu: RunningEmulator
) -> None:
    gh = emu.state.host(HostKind.GITHUB)
    repo = gh.add_repo("acme", "app")
    for i in range(3):
        gh.add_pull(repo.full_name, title=f"pr {i}")
    async with tracked(store_url, emu) as (app, bc):
        del repo.pulls[3]  # gone on the host: not found is final
        gh.faults.errors_next, gh.faults.error_status = 2, 502
        gh.faults.path_contains = "/pulls/1"
        op = await enqueue(app, bc, OperationKind.CLOSE)
        view = await run_until_finished(app, op, fast_worker(app))
        got = await results(app, op)
    assert got[("github.test/acme/app", 1)] == ("done", "close")
    assert got[("github.test/acme/app", 2)] == ("done", "close")
    state, detail = got[("github.test/acme/app", 3)]
    assert state == "failed" and detail.startswith("not found on the host")
    assert view.failed == 1
