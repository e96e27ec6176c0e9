"""``repo-updater batch-changes apply SPEC.yaml [--preview]``: open, update and close
changesets on many repositories from one batch spec (docs/specs.md).

``--preview`` reads the files from the code hosts and prints, per matched repository, the
unified diff of what would change or why it is skipped; nothing is written. Without it the spec
is stored and an ``apply_spec`` operation enqueued; the command then runs an operation worker
itself (the config names the hosts) and shows progress, like the other bulk operations.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repo_updater.entrypoints.cli.common import CLIError, load, store_options

if TYPE_CHECKING:
    from repo_updater.bootstrap import App
    from repo_updater.core.specs import Spec
    from repo_updater.service_layer.spec_apply import FileWriters


def add_apply(actions: Any) -> None:
    p = actions.add_parser(
        "apply",
        help="apply a batch spec: open, update, close changesets on many repos",
        description="Apply a batch spec (YAML, see docs/specs.md): on every matching "
        "repository, one commit on the spec's branch through the host's API and a pull "
        "request, tracked in the batch change named by the spec. Applying it again changes "
        "only what differs. Needs --config (the code hosts).",
    )
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("--preview", action="store_true", help="show the diffs; change nothing")
    p.add_argument("--no-wait", action="store_true", help="enqueue and return at once")
    p.add_argument(
        "--no-execute",
        action="store_true",
        help="do not run a worker here; wait for `repo-updater serve` to do the work",
    )
    store_options(p)
    p.set_defaults(func=f"{__name__}:cmd_apply")


def read_spec(path: str) -> Spec:
    from repo_updater.batch_spec import SpecError, load_spec

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read the spec {path}: {exc}") from None
    try:
        return load_spec(text)
    except SpecError as exc:
        raise CLIError(str(exc)) from None


def file_writers(app: App) -> FileWriters:
    """The app's sources that can read files and commit (by host)."""
    from repo_updater.service_layer.spec_apply import file_writers as of

    return of(app.sources.values())


async def cmd_apply(args: argparse.Namespace) -> int:
    import getpass

    from repo_updater.bootstrap import open_app, utcnow
    from repo_updater.entrypoints.cli.operations import _watch
    from repo_updater.service_layer import spec_apply
    from repo_updater.store.changesets import BatchChangeClosed, BatchChangeExists

    spec = read_spec(args.spec)
    config = load(args, required=True)
    async with open_app(config) as app:
        writers = file_writers(app)
        if args.preview:
            async with app.engine.connect() as conn:
                previews = await spec_apply.preview(conn, spec, writers, now=utcnow())
            print_preview(previews)
            return 0
        try:
            async with app.engine.begin() as conn:
                queued = await spec_apply.enqueue(
                    conn,
                    spec,
                    requested_by=f"cli:{getpass.getuser()}",
                    now=utcnow(),
                    hosts=lambda host: host in writers,
                )
        except (BatchChangeClosed, BatchChangeExists) as exc:
            raise CLIError(str(exc)) from None
        print(
            f"operation {queued.operation_id}: apply spec {spec.name!r} "
            f"(batch change id {queued.batch_change_id})"
        )
        for reason, count in sorted(Counter(queued.skipped.values()).items()):
            print(f"  {count:>5} skipped: {reason}")
        if queued.detached:
            print(f"  {queued.detached:>5} detached: no longer matched by the spec")
        if args.no_wait:
            print(f"follow it with: repo-updater operations show {queued.operation_id}")
            return 0
        if args.no_execute:
            return await _watch(args, queued.operation_id, None)
        import asyncio

        stop = asyncio.Event()
        worker = asyncio.create_task(app.operation_worker.run(stop))
        try:
            return await _watch(args, queued.operation_id, app.operation_worker.limits_for)
        finally:
            stop.set()
            await asyncio.gather(worker, return_exceptions=True)


def print_preview(previews: list[Any]) -> None:
    changed = 0
    reasons: Counter[str] = Counter()
    for item in sorted(previews, key=lambda p: p.repo_name):
        if item.action == "change":
            changed += 1
            print(f"=== {item.repo_name}: would change")
            print(item.diff, end="")
        elif item.action == "skip":
            reasons[item.reason] += 1
            print(f"=== {item.repo_name}: skipped ({item.reason})")
        else:
            reasons[f"would {item.action}"] += 1
            print(f"=== {item.repo_name}: would {item.action} its changeset ({item.reason})")
    summary = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
    print(f"preview: {changed} of {len(previews)} repositories would change"
          + (f"; {summary}" if summary else "") + ". Nothing was written.")  # fmt: skip
