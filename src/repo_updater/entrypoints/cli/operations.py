"""Bulk operations from the command line.

  repo-updater changesets close|reopen|merge|comment|ready|draft|update
      --batch-change NAME [--state S ...] [--id N ...] [--dry-run] [--no-wait] [--no-execute]
  repo-updater operations list [--batch-change NAME] [--output table|json|ndjson|csv]
  repo-updater operations show ID [--results STATE] [--output table|json|ndjson|csv]

An operation is stored first; then the command follows its progress until it finishes. With a
config file that names the code hosts (``--config``), the command also runs an operation
worker itself, so no ``serve`` is needed; it is safe next to a running ``serve`` too, since
work is claimed in the database and never done twice. Without one (``--database`` only), or
with ``--no-execute``, it waits for ``serve`` to do the work. ``--no-wait`` returns at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from repo_updater.entrypoints.cli.common import (
    CLIError,
    batch_change_ref,
    config_path,
    find_batch_change,
    load,
    print_rows,
    store_options,
    store_transaction,
)
from repo_updater.entrypoints.cli.output import output_option

if TYPE_CHECKING:
    from repo_updater.service_layer.operations import OperationStatus

ACTIONS = {
    "close": "close changesets (merged ones are left alone)",
    "reopen": "reopen closed changesets",
    "merge": "merge changesets whose checks passed and review is approved (--force: any)",
    "comment": "comment on changesets (--body TEXT)",
    "ready": "mark draft changesets ready for review",
    "draft": "convert open changesets to drafts",
    "update": "change the title and/or description (--title, --body)",
}
STATES = ("OPEN", "DRAFT", "CLOSED", "MERGED", "DELETED", "READONLY")
RESULT_STATES = ("pending", "done", "skipped", "failed")


def add_changeset_actions(actions: Any) -> None:
    """The ``changesets`` group's bulk actions (called by ``cli.changesets``)."""
    for name, help_text in ACTIONS.items():
        p = actions.add_parser(
            name,
            help=help_text,
            description=f"Bulk operation: {help_text}. Stored first, then run (paced within "
            "the hosts' write limits) by a worker in this command when --config names the "
            "hosts, else by `repo-updater serve`; the command shows progress until it ends.",
        )
        p.add_argument("--batch-change", type=batch_change_ref, metavar="NAME", required=True,
                       help="the batch change's name (or id)")  # fmt: skip
        p.add_argument(
            "--state", action="append", type=str.upper, choices=STATES, default=[],
            help="only changesets in this state, any case (repeatable)",
        )  # fmt: skip
        p.add_argument(
            "--id", type=int, nargs="+", default=[], dest="ids", metavar="N",
            help="only these changeset ids (as `changesets list` shows them)",
        )  # fmt: skip
        p.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
        p.add_argument("--no-wait", action="store_true", help="enqueue and return at once")
        p.add_argument(
            "--no-execute", action="store_true",
            help="do not run a worker here; wait for `repo-updater serve` to do the work",
        )  # fmt: skip
        if name == "merge":
            p.add_argument(
                "--method", choices=("merge", "squash", "rebase"), default="merge",
                help="merge method (default: merge)",
            )  # fmt: skip
            p.add_argument(
                "--force", action="store_true",
                help="merge without passed checks and approval (undrafts drafts first)",
            )  # fmt: skip
        if name in ("comment", "update"):
            what = "comment text" if name == "comment" else "new description"
            p.add_argument("--body", required=name == "comment", help=what)
        if name == "update":
            p.add_argument("--title", help="new title")
        store_options(p)
        p.set_defaults(func=f"{__name__}:cmd_run", operation=name)


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "operations",
        help="bulk operations on changesets (close, merge, comment, ...) and their progress",
        description="Bulk operations started with `changesets close|reopen|merge|comment|"
        "ready|draft|update` (or the API), and what became of each changeset.",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "list",
        help="list operations, newest first",
        description="Bulk operations, newest first, with their counts by result state.",
    )
    p.add_argument("--batch-change", type=batch_change_ref, metavar="NAME",
                   help="only this batch change's (name or id)")  # fmt: skip
    output_option(p)
    store_options(p)
    p.set_defaults(func=f"{__name__}:cmd_list")
    s = actions.add_parser(
        "show",
        help="an operation's progress and its changesets' results",
        description="One operation: its progress and expected finish, and each changeset's "
        "result. --output json prints them as one object; ndjson and csv one result a line.",
    )
    s.add_argument("id", type=int, help="operation id, as `operations list` shows it")
    s.add_argument("--results", choices=RESULT_STATES, help="only results in this state")
    output_option(s)
    store_options(s)
    s.set_defaults(func=f"{__name__}:cmd_show")


def _args(args: argparse.Namespace) -> Any:
    from repo_updater.core.operations import MergeMethod, OperationArgs

    return OperationArgs(
        merge_method=MergeMethod(getattr(args, "method", "merge")),
        force=getattr(args, "force", False),
        body=getattr(args, "body", None),
        title=getattr(args, "title", None),
    )


async def cmd_run(args: argparse.Namespace) -> int:
    import getpass

    from repo_updater.bootstrap import utcnow
    from repo_updater.core.domain import ExternalState
    from repo_updater.core.operations import InvalidOperation, OperationKind
    from repo_updater.service_layer import operations
    from repo_updater.store import operations as op_store

    kind = OperationKind(args.operation)
    states = [ExternalState(s) for s in args.state]
    try:
        async with store_transaction(args, read=args.dry_run) as conn:
            bc = (await find_batch_change(conn, args.batch_change)).id
            if args.dry_run:
                planned = await operations.preview(
                    conn, bc, kind, _args(args), states=states, changeset_ids=args.ids
                )
            else:
                op_id = await operations.enqueue(
                    conn, bc, kind, _args(args), states=states, changeset_ids=args.ids,
                    requested_by=f"cli:{getpass.getuser()}", now=utcnow(),
                )  # fmt: skip
    except (InvalidOperation, op_store.ChangesetNotInBatchChange) as exc:
        raise CLIError(str(exc)) from None
    if args.dry_run:
        for item in planned:
            t = item.target
            state = t.facts.external_state.value if t.facts.external_state else "(not synced)"
            where = f"{t.repo_name}#{t.number}"
            print(f"#{t.changeset_id:<5} {where:<40} {state:<9} {item.plan.describe()}")
        writes = sum(1 for item in planned if item.plan.calls)
        print(f"dry run: {writes} of {len(planned)} changesets would be written to")
        return 0
    print(f"operation {op_id}: {kind.value} on batch change {args.batch_change!r}")
    if args.no_wait:
        print(f"follow it with: repo-updater operations show {op_id}")
        return 0
    return await _follow(args, op_id)


async def _follow(args: argparse.Namespace, op_id: int) -> int:
    """Show progress until the operation finishes (running a worker here when the config
    names the code hosts)."""
    import asyncio

    from repo_updater.bootstrap import open_app

    execute = config_path(args) is not None and not args.no_execute
    if not execute:
        return await _watch(args, op_id, None)
    config = load(args, required=True)
    async with open_app(config) as app:
        stop = asyncio.Event()
        worker = asyncio.create_task(app.operation_worker.run(stop))
        try:
            return await _watch(args, op_id, app.operation_worker.limits_for)
        finally:
            stop.set()
            await asyncio.gather(worker, return_exceptions=True)


async def _watch(args: argparse.Namespace, op_id: int, limits_for: Any) -> int:
    import asyncio

    from repo_updater.bootstrap import utcnow
    from repo_updater.core.operations import OperationState
    from repo_updater.service_layer import operations

    bar = ProgressBar()
    started = time.monotonic()
    hinted = False
    while True:
        async with store_transaction(args, read=True) as conn:
            status = await operations.status(conn, op_id, limits_for or (lambda _h: ()), utcnow())
        bar.show(status)
        if status.operation.state is OperationState.FINISHED:
            bar.done()
            return await _summary(args, status)
        if limits_for is None and not hinted and time.monotonic() - started > 15:
            if status.operation.started_at is None:
                print("waiting for a worker: is `repo-updater serve` running? (or pass "
                      "--config to run one here)", file=sys.stderr)  # fmt: skip
            hinted = True
        await asyncio.sleep(0.5)


class ProgressBar:
    """One line on stderr: a bar on a terminal, else a line every 10 s."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, status: OperationStatus) -> None:
        p = status.progress
        width = 30
        filled = int(width * p.fraction)
        eta = ""
        if p.expected_finish is not None:
            eta = f"  expected finish {p.expected_finish.astimezone().strftime('%H:%M:%S')}"
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {p.finished}/{p.total}  "
            f"done {p.done} skipped {p.skipped} failed {p.failed}{eta}"
        )
        now = time.monotonic()
        if self.tty:
            sys.stderr.write("\r" + line.ljust(100))
            sys.stderr.flush()
        elif now - self.last >= 10 or p.pending == 0:
            print(line, file=sys.stderr)
            self.last = now

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


async def _summary(args: argparse.Namespace, status: OperationStatus) -> int:
    from collections import Counter

    from repo_updater.core.operations import ResultState
    from repo_updater.store import operations as op_store

    p = status.progress
    print(f"finished: {p.done} done, {p.skipped} skipped, {p.failed} failed of {p.total}")
    async with store_transaction(args, read=True) as conn:
        results = await op_store.list_results(conn, status.operation.id, limit=100_000)
    reasons = Counter((r.state, r.detail) for r in results if r.state is not ResultState.DONE)
    for (state, detail), count in sorted(reasons.items(), key=lambda x: (x[0][0], -x[1])):
        print(f"  {count:>5} {state.value}: {detail}")
    return 1 if p.failed else 0


COLUMNS = ["id", "batch_change", "kind", "state", "total", "done", "skipped", "failed",
           "pending", "created_at"]  # fmt: skip


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import operations as op_store

    async with store_transaction(args, read=True) as conn:
        bc = None
        if args.batch_change is not None:
            bc = (await find_batch_change(conn, args.batch_change)).id
        views = await op_store.list_operations(conn, batch_change_id=bc)
    print_rows(views, args.output, COLUMNS)
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.core.operations import ResultState
    from repo_updater.entrypoints.cli.output import relative
    from repo_updater.service_layer import operations
    from repo_updater.store import operations as op_store

    limits_for = _configured_limits(args)
    try:
        async with store_transaction(args, read=True) as conn:
            status = await operations.status(conn, args.id, limits_for, utcnow())
            state = ResultState(args.results) if args.results else None
            results = await op_store.list_results(conn, args.id, state=state, limit=100_000)
    except op_store.OperationNotFound as exc:
        raise CLIError(str(exc)) from None
    if args.output == "json":  # one object: the operation, its progress, its results
        import json

        from repo_updater.entrypoints.render import json_default

        body = {"operation": status.operation, "progress": status.progress, "results": results}
        print(json.dumps(body, default=json_default, indent=2))
        return 0
    if args.output != "table":
        print_rows(results, args.output, RESULT_COLUMNS)
        return 0
    op, p = status.operation, status.progress
    print(f"operation {op.id}: {op.kind.value} on {op.batch_change!r} ({op.state.value}), "
          f"requested by {op.requested_by} {relative(op.created_at)}")  # fmt: skip
    print(f"  {p.done} done, {p.skipped} skipped, {p.failed} failed, {p.pending} pending "
          f"of {p.total}")  # fmt: skip
    if p.expected_finish is not None:
        at = p.expected_finish.astimezone()
        print(f"  expected to finish {relative(p.expected_finish)} ({at:%H:%M:%S})")
    print_rows(results, "table", RESULT_COLUMNS)
    return 0


RESULT_COLUMNS = ["changeset_id", "repo_name", "number", "state", "attempts", "finished_at",
                  "detail"]  # fmt: skip


def _configured_limits(args: argparse.Namespace) -> Any:
    """Write limits by code host from the config, if there is one (for the finish time)."""
    if config_path(args) is None:
        return lambda _host: ()
    from repo_updater.bootstrap import write_limits

    limits = write_limits(load(args, required=True))
    return lambda host: limits.get(host, ())
