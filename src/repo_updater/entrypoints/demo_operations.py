"""The demo's second step: bulk operations across the four hosts.

A batch change ``demo-cleanup`` tracks two pull requests on each host (one of each pair has
passed checks and an approving review). The walkthrough merges the batch change (only the
approved ones with passed checks merge; the others are skipped with the reason), then archives
``acme/legacy-api`` on the GitHub emulator and closes the rest at once: the host refuses the
write to the archived repository, which marks it archived, turns its changesets READONLY and
skips its other changesets without another request, all in one transaction.
"""

from __future__ import annotations

from typing import Any

from repo_updater.bootstrap import App
from repo_updater.core.domain import CheckState, ExternalState, HostKind, ReviewState
from repo_updater.core.operations import OperationArgs, OperationKind, OperationState
from repo_updater.emulator.state import EmulatorState
from repo_updater.service_layer import operations
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import operations as op_store
from repo_updater.store import repos as repo_store

BATCH_CHANGE = "demo-cleanup"
ARCHIVE_ME = "acme/legacy-api"
# Host -> (owner/repo on the host, the store name prefix the demo config gives it).
TARGETS = {
    HostKind.GITHUB: (ARCHIVE_ME, "github.emulator"),
    HostKind.GITLAB: ("platform/svc-1", "gitlab.emulator"),
    HostKind.GITEA: ("infra/role-0", "gitea.emulator"),
    HostKind.BITBUCKET_SERVER: ("OPS/deploy-0", "bitbucket.emulator"),
}
GITHUB_MERGEABLE = "acme/repo-20"


def seed(state: EmulatorState) -> None:
    """Two pull requests per target repo; the first of each pair is ready to merge (on GitHub
    that one is on another repo, so the archived one keeps two open)."""
    gh = state.host(HostKind.GITHUB)
    gh.add_repo("acme", ARCHIVE_ME.split("/")[1])
    for kind, (name, _) in TARGETS.items():
        host = state.host(kind)
        for i, title in enumerate(("Bump base image", "Remove legacy flag")):
            pull = host.add_pull(name, title=f"{title} on {name}", head_ref=f"cleanup-{i}")
            if i == 0 and kind is not HostKind.GITHUB:
                host.set_check_state(name, pull.number, CheckState.PASSED)
                host.add_review(name, pull.number, author="lead", state=ReviewState.APPROVED)
    ready = gh.add_pull(GITHUB_MERGEABLE, title="Bump base image", head_ref="cleanup-0")
    gh.set_check_state(GITHUB_MERGEABLE, ready.number, CheckState.PASSED)
    gh.add_review(GITHUB_MERGEABLE, ready.number, author="lead", state=ReviewState.APPROVED)


async def track(app: App) -> int:
    async with app.engine.begin() as conn:
        existing = {b.name: b.id for b in await cs_store.list_batch_changes(conn)}
        bc = existing.get(BATCH_CHANGE) or await cs_store.create_batch_change(
            conn, BATCH_CHANGE, "Clean up after the CI upgrade", app.clock()
        )
        names = [f"{prefix}/{name}" for name, prefix in TARGETS.values()]
        names.append(f"github.emulator/{GITHUB_MERGEABLE}")
        ids = await repo_store.repo_ids_by_name(conn, names)
        pairs = [(repo_id, n) for repo_id in ids.values() for n in (1, 2)]
        if f"github.emulator/{GITHUB_MERGEABLE}" in ids:
            pairs.remove((ids[f"github.emulator/{GITHUB_MERGEABLE}"], 2))
        await cs_store.track_changesets(conn, bc, pairs, app.clock())
    app.changeset_syncer.wake()
    return bc


async def run_operation(
    app: App,
    bc: int,
    kind: OperationKind,
    wait: Any,
    args: OperationArgs | None = None,
    ids: list[int] | None = None,
) -> list[Any]:
    async with app.engine.begin() as conn:
        op = await operations.enqueue(
            conn, bc, kind, args or OperationArgs(), changeset_ids=ids or [],
            requested_by="demo", now=app.clock(),
        )  # fmt: skip
    app.operation_worker.wake()

    async def finished() -> bool:
        async with app.engine.connect() as conn:
            view = await op_store.get_operation(conn, op)
        return view.state is OperationState.FINISHED

    took = await wait(finished, 60, f"the {kind.value} operation")
    async with app.engine.connect() as conn:
        view = await op_store.get_operation(conn, op)
        results = await op_store.list_results(conn, op)
    print(
        f"\n  {kind.value} {BATCH_CHANGE!r} (operation {op}) finished in {took:.1f}s: "
        f"{view.done} done, {view.skipped} skipped, {view.failed} failed"
    )
    for r in results:
        print(f"    #{r.changeset_id:<3} {r.repo_name + '#' + str(r.number):<42} "
              f"{r.state.value:<8} {r.detail}")  # fmt: skip
    return results


async def walkthrough(app: App, state: EmulatorState, wait: Any) -> None:
    print(f"\n  bulk operations: {BATCH_CHANGE!r} tracks two pull requests on every host")
    bc = await track(app)

    async def synced() -> bool:
        async with app.engine.connect() as conn:
            views = await cs_store.list_changesets(conn, batch_change_id=bc)
        return bool(views) and all(v.last_synced_at for v in views)

    await wait(synced, 60, f"the first sync of {BATCH_CHANGE}")
    results = await run_operation(app, bc, OperationKind.MERGE, wait)
    # Every source reads approvals and build states (GitLab's /approvals and /reviewers,
    # Bitbucket's build status), so each host's ready pull request merged. Should one still look
    # unapproved or unchecked (a host whose source cannot see it), force just those: the host
    # applies its own merge rules anyway. An empty list would mean every changeset: never sent.
    unknown = [
        r.changeset_id
        for r in results
        if r.number == 1 and r.repo_name.startswith(("gitlab.", "bitbucket.")) and r.detail
        and r.state.value == "skipped"
    ]  # fmt: skip
    if unknown:
        print(f"\n  merging {len(unknown)} of them with --force (the hosts check approvals "
              "and builds)")  # fmt: skip
        await run_operation(
            app, bc, OperationKind.MERGE, wait, OperationArgs(force=True), ids=unknown
        )

    print(f"\n  archiving {ARCHIVE_ME} on the GitHub emulator, then closing the rest at once ...")
    state.host(HostKind.GITHUB).set_archived(ARCHIVE_ME, True)
    await run_operation(app, bc, OperationKind.CLOSE, wait)
    async with app.engine.connect() as conn:
        views = await cs_store.list_changesets(conn, batch_change_id=bc)
        events = await event_store.list_events(conn, kind="RepoArchived")
    archived = [v for v in views if v.repo_name == f"github.emulator/{ARCHIVE_ME}"]
    # The archive's webhook races the refused write: either may record the flip first.
    refused = any(e.payload.get("why") == "write refused" for e in events
                  if e.payload.get("name") == f"github.emulator/{ARCHIVE_ME}")  # fmt: skip
    learned = "the host's refusal of the write" if refused else "the host's webhook"
    states = sorted({(v.external_state or ExternalState.OPEN).value for v in archived})
    print(f"  {ARCHIVE_ME}: learned it is archived from {learned}; its changesets are "
          f"{', '.join(states)}")  # fmt: skip
