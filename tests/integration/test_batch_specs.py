"""Applying batch specs through the durable apply_spec operation, against the emulator and a
real store (SQLite and PostgreSQL): branch, commit and pull request on the host, the changeset
tracked, idempotent re-applies, updates, closes, archived refusals, interrupted attempts."""

from __future__ import annotations

from repo_updater.core.domain import ExternalState, HostKind, HostPullState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.service_layer import spec_apply
from repo_updater.store import changesets as cs_store
from repo_updater.store import operations as op_store
from repo_updater.store.schema import bulk_operation_results
from tests.support.operations import OWNERS, run_until_finished
from tests.support.specs import apply, make_spec, synced_app, write_count, writers

CI = ".github/workflows/ci.yml"


FILE_HOSTS = list(HostKind)


async def test_apply_on_each_host_commits_opens_and_tracks_then_reapply_writes_nothing(
    store_url: str, emu: RunningEmulator
) -> None:
    for kind in FILE_HOSTS:
        emu.state.host(kind).add_repo(OWNERS[kind], "svc")
    async with synced_app(store_url, emu) as app:
        _, view = await apply(app, make_spec())
        assert (view.total, view.done, view.failed) == (len(FILE_HOSTS), len(FILE_HOSTS), 0)
        async with app.engine.connect() as conn:
            states = {v.repo_name: v.external_state for v in await cs_store.list_changesets(conn)}
        firsts = {}
        for kind in FILE_HOSTS:
            repo = emu.state.host(kind).repo(f"{OWNERS[kind]}/svc")
            firsts[kind] = repo.git.branches["batch/upgrade-ci"]
            assert "checkout@v4" in (repo.git.file("batch/upgrade-ci", CI) or ""), kind
        before = {kind: write_count(emu, kind) for kind in FILE_HOSTS}
        _, again = await apply(app, make_spec())
        assert again.done == 0
        after_reapply = {kind: write_count(emu, kind) for kind in FILE_HOSTS}
        changes = [{"path": CI, "replace": {"regex": "checkout@v3", "replacement": "checkout@v5"}}]
        _, changed = await apply(app, make_spec(changes=changes, title="Checkout v5"))
        assert (changed.done, changed.failed) == (len(FILE_HOSTS), 0)
    for kind in FILE_HOSTS:
        repo = emu.state.host(kind).repo(f"{OWNERS[kind]}/svc")
        first = repo.git.commits[firsts[kind]]
        assert first.parents == (repo.git.branches["main"],), kind  # ONE commit on the base
        (pull,) = repo.pulls.values()
        assert (pull.head_ref, pull.state) == ("batch/upgrade-ci", HostPullState.DRAFT), kind
        assert states[f"{kind.value}.test/{OWNERS[kind]}/svc"] is ExternalState.DRAFT
        assert after_reapply[kind] == before[kind], kind  # the re-apply wrote nothing
        # the changed spec: new content on the branch, the new title on the same PR
        assert "checkout@v5" in (repo.git.file("batch/upgrade-ci", CI) or ""), kind
        assert pull.title.endswith("Checkout v5"), kind


def seed_github(emu: RunningEmulator, repos: int = 3) -> None:
    host = emu.state.host(HostKind.GITHUB)
    for i in range(repos):
        host.add_repo("acme", f"app-{i}")


async def test_apply_on_github_opens_branch_commit_and_draft_pull_and_tracks_it(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu)
    host = emu.state.host(HostKind.GITHUB)
    async with synced_app(store_url, emu) as app:
        queued, view = await apply(app, make_spec())
        assert (view.total, view.done, view.skipped, view.failed) == (3, 3, 0, 0)
        async with app.engine.connect() as conn:
            tracked = await cs_store.list_changesets(conn)
            results = await op_store.list_results(conn, queued.operation_id)
        assert sorted(v.repo_name for v in tracked) == [
            f"github.test/acme/app-{i}" for i in range(3)
        ]
        assert {v.external_state for v in tracked} == {ExternalState.DRAFT}
        assert {(r.detail, r.attempts) for r in results} == {("commit, then open pull request", 1)}
        assert all(r.number == 1 for r in results)
    for i in range(3):
        repo = host.repo(f"acme/app-{i}")
        assert "actions/checkout@v4" in (repo.git.file("batch/upgrade-ci", CI) or "")
        assert "actions/checkout@v3" in (repo.git.file("main", CI) or "")  # base untouched
        head = repo.git.commits[repo.git.branches["batch/upgrade-ci"]]
        assert head.parents == (repo.git.branches["main"],)  # ONE commit on the base
        assert head.message == "ci: checkout v4"
        (pull,) = repo.pulls.values()
        assert (pull.head_ref, pull.base_ref, pull.state) == (
            "batch/upgrade-ci", "main", HostPullState.DRAFT,
        )  # fmt: skip


async def test_reapply_of_the_same_spec_writes_nothing(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu)
    async with synced_app(store_url, emu) as app:
        await apply(app, make_spec())
        before = write_count(emu, HostKind.GITHUB)
        _, view = await apply(app, make_spec())
    assert write_count(emu, HostKind.GITHUB) == before
    assert (view.done, view.skipped) == (0, 3)


async def test_changed_content_force_updates_branch_and_title_change_updates_pull(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu, repos=1)
    host = emu.state.host(HostKind.GITHUB)
    repo = host.repo("acme/app-0")
    async with synced_app(store_url, emu) as app:
        await apply(app, make_spec())
        first = repo.git.branches["batch/upgrade-ci"]
        changes = [{"path": CI, "replace": {"regex": "checkout@v3", "replacement": "checkout@v5"}}]
        _, view = await apply(app, make_spec(changes=changes, title="Checkout v5"))
        assert view.done == 1
    second = repo.git.branches["batch/upgrade-ci"]
    assert second != first
    assert repo.git.commits[second].parents == (repo.git.branches["main"],)  # forced, not stacked
    assert "checkout@v5" in (repo.git.file("batch/upgrade-ci", CI) or "")
    (pull,) = repo.pulls.values()
    assert pull.title == "Checkout v5"
    assert len(repo.pulls) == 1


async def test_repo_no_longer_matched_has_its_changeset_closed(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu, repos=2)
    host = emu.state.host(HostKind.GITHUB)
    async with synced_app(store_url, emu) as app:
        await apply(app, make_spec())
        on = {"repos": ["*/acme/*"], "exclude": ["*/app-1"]}
        queued, view = await apply(app, make_spec(on=on))
        assert queued.removed == 1
        assert (view.done, view.skipped) == (1, 1)
    assert host.repo("acme/app-1").pulls[1].state is HostPullState.CLOSED
    assert host.repo("acme/app-0").pulls[1].state is HostPullState.DRAFT


async def test_archived_repo_met_during_apply_turns_readonly(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu, repos=2)
    host = emu.state.host(HostKind.GITHUB)
    async with synced_app(store_url, emu) as app:
        await apply(app, make_spec())
        host.set_archived("acme/app-1", True)  # the store has not seen it yet
        changes = [{"path": CI, "replace": {"regex": "checkout@v3", "replacement": "checkout@v5"}}]
        queued, view = await apply(app, make_spec(changes=changes))
        async with app.engine.connect() as conn:
            states = {v.repo_name: v.external_state for v in await cs_store.list_changesets(conn)}
            results = {r.repo_name: r.detail for r in
                       await op_store.list_results(conn, queued.operation_id)}  # fmt: skip
    assert states["github.test/acme/app-1"] is ExternalState.READONLY
    assert states["github.test/acme/app-0"] is ExternalState.DRAFT
    assert "archived" in results["github.test/acme/app-1"]
    assert (view.done, view.skipped) == (1, 1)


async def test_an_interrupted_apply_resumes_without_committing_twice(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu, repos=1)
    host = emu.state.host(HostKind.GITHUB)
    repo = host.repo("acme/app-0")
    async with synced_app(store_url, emu) as app:
        hosts = writers(app)
        async with app.engine.begin() as conn:
            queued = await spec_apply.enqueue(
                conn, make_spec(), requested_by="test", now=app.clock(), hosts=lambda h: h in hosts
            )
        # A worker died after it recorded the start of the write and the commit reached the
        # host, before the pull request was opened.
        async with app.engine.begin() as conn:
            await conn.execute(
                bulk_operation_results.update()
                .where(bulk_operation_results.c.operation_id == queued.operation_id)
                .values(write_started_at=app.clock(), attempts=1)
            )
        text = (repo.git.file("main", CI) or "").replace("checkout@v3", "checkout@v4")
        landed = repo.git.commit_files("main", {CI: text}, "ci: checkout v4")
        repo.git.branches["batch/upgrade-ci"] = landed.sha
        view = await run_until_finished(app, queued.operation_id)
        async with app.engine.connect() as conn:
            (result,) = await op_store.list_results(conn, queued.operation_id)
    assert view.done == 1
    assert result.detail == "open pull request"
    assert [w.action for w in host.writes.log] == ["create"]  # no second commit
    assert repo.git.branches["batch/upgrade-ci"] == landed.sha
    assert repo.pulls[1].head_ref == "batch/upgrade-ci"


async def test_a_rate_limit_pauses_the_apply_and_it_resumes_where_it_stopped(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu, repos=2)
    host = emu.state.host(HostKind.GITHUB)
    host.faults.rate_limited_next = 1
    host.faults.retry_after = 1
    host.faults.path_contains = "/git/trees"
    async with synced_app(store_url, emu) as app:
        _, view = await apply(app, make_spec())
    assert (view.done, view.failed) == (2, 0)
    assert all(len(host.repo(f"acme/app-{i}").pulls) == 1 for i in range(2))


async def test_on_removed_detach_leaves_the_pull_open_and_untracked(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu, repos=2)
    host = emu.state.host(HostKind.GITHUB)
    async with synced_app(store_url, emu) as app:
        queued, _ = await apply(app, make_spec())
        before = write_count(emu, HostKind.GITHUB)
        on = {"repos": ["*/acme/*"], "exclude": ["*/app-1"]}
        again, view = await apply(app, make_spec(on=on, on_removed="detach"))
        async with app.engine.connect() as conn:
            members = await op_store.select_targets(conn, queued.batch_change_id)
    assert again.detached == 1 and again.removed == 0
    assert (view.total, view.done) == (1, 0)  # app-0: unchanged
    assert write_count(emu, HostKind.GITHUB) == before  # nothing written
    assert host.repo("acme/app-1").pulls[1].state is HostPullState.DRAFT
    assert [t.repo_name for t in members] == ["github.test/acme/app-0"]


async def test_preview_shows_diffs_skips_and_closes_and_writes_nothing(
    store_url: str, emu: RunningEmulator
) -> None:
    seed_github(emu, repos=2)
    host = emu.state.host(HostKind.GITHUB)
    host.add_repo("acme", "old", archived=True)
    async with synced_app(store_url, emu) as app:
        await apply(app, make_spec())
        before = write_count(emu, HostKind.GITHUB)
        changes = [{"path": CI, "replace": {"regex": "checkout@v3", "replacement": "checkout@v5"}}]
        on = {"repos": ["*/acme/*"], "exclude": ["*/app-1"]}
        spec = make_spec(on=on, changes=changes)
        async with app.engine.connect() as conn:
            previews = await spec_apply.preview(conn, spec, writers(app), now=app.clock())
        got = {p.repo_name: p for p in previews}
    assert got["github.test/acme/app-0"].action == "change"
    assert "+      - uses: actions/checkout@v5" in got["github.test/acme/app-0"].diff
    assert (got["github.test/acme/old"].action, got["github.test/acme/old"].reason) == (
        "skip", "archived",
    )  # fmt: skip
    assert got["github.test/acme/app-1"].action == "close"
    assert write_count(emu, HostKind.GITHUB) == before
