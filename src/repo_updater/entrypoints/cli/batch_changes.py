"""``repo-updater batch-changes ...``: create, list, look at (status) and close batch changes.
A batch change is named by its name or its id everywhere."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import (
    batch_change_name,
    batch_change_ref,
    find_batch_change,
    print_rows,
    store_options,
    store_transaction,
)
from repo_updater.entrypoints.cli.output import output_option

COLUMNS = ["id", "name", "state", "changeset_count", "created_at", "closed_at"]
REF_HELP = "the batch change's name (or id), as `batch-changes list` shows it"


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "batch-changes",
        help="batch changes: create, list, status, close, apply a batch spec",
        description="A batch change groups the changesets (pull requests) of one large-scale "
        "change; its changesets are synced while it is open.",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="list batch changes", description="List batch changes.")
    store_options(p)
    output_option(p)
    p.set_defaults(func=f"{__name__}:cmd_list")
    c = actions.add_parser(
        "create", help="create a batch change", description="Create an open batch change."
    )
    c.add_argument("name", type=batch_change_name, help="a unique name, e.g. upgrade-ci")
    c.add_argument("--description", default="", help="what the change is for (optional)")
    store_options(c)
    c.set_defaults(func=f"{__name__}:cmd_create")
    s = actions.add_parser(
        "status",
        help="counts by state, the burndown as text, and what needs action",
        description="A batch change at a glance: its changesets counted by state, review and "
        "check state; the burndown (how many were in each state over time, READONLY on its "
        "own); and the changesets that need a person: sync errors, READONLY (archived "
        "repositories), failed checks, changes requested.",
    )
    s.add_argument("batch_change", type=batch_change_ref, metavar="NAME", help=REF_HELP)
    s.add_argument(
        "--points", type=int, default=12, help="moments in the burndown (2-200, default 12)"
    )
    s.add_argument(
        "--output", "-o", choices=["text", "json"], default="text",
        help="text (for people) or json (the same figures, for scripts)",
    )  # fmt: skip
    store_options(s)
    s.set_defaults(func=f"{__name__}:cmd_status")
    x = actions.add_parser(
        "close",
        help="close a batch change (its changesets stop syncing)",
        description="Close a batch change: its changesets are no longer synced.",
    )
    x.add_argument("batch_change", type=batch_change_ref, metavar="NAME", help=REF_HELP)
    store_options(x)
    x.set_defaults(func=f"{__name__}:cmd_close")
    from repo_updater.entrypoints.cli import batch_specs

    batch_specs.add_apply(actions)


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import changeset_queries as queries

    async with store_transaction(args, read=True) as conn:
        rows = await queries.list_batch_changes(conn)
    print_rows(rows, args.output, COLUMNS)
    return 0


async def cmd_create(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import changesets as cs_store

    async with store_transaction(args) as conn:
        new_id = await cs_store.create_batch_change(conn, args.name, args.description, utcnow())
    print(f"created batch change {args.name!r} (id {new_id})")
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.core.burndown import MAX_POINTS
    from repo_updater.entrypoints.cli import status_view
    from repo_updater.entrypoints.cli.common import CLIError
    from repo_updater.service_layer.batch_change_stats import batch_change_stats
    from repo_updater.store import changeset_queries as queries

    if not 2 <= args.points <= MAX_POINTS:
        raise CLIError(f"--points must be between 2 and {MAX_POINTS}")
    now = utcnow()
    async with store_transaction(args, read=True) as conn:
        bc = await find_batch_change(conn, args.batch_change)
        stats = await batch_change_stats(conn, bc.id, now, points=args.points)
        assert stats is not None  # found just now, in this transaction
        attention = await queries.page_changesets(
            conn,
            queries.ChangesetFilter(batch_change_id=bc.id),
            order=queries.ChangesetOrder.ATTENTION,
            limit=status_view.SHOWN + 1,
        )
    views = [v for v, _ in attention]
    if args.output == "json":
        status_view.print_json(bc, stats, views)
    else:
        print(status_view.render(bc, stats, views, now))
    return 0


async def cmd_close(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import changesets as cs_store

    async with store_transaction(args) as conn:
        bc = await find_batch_change(conn, args.batch_change)
        await cs_store.close_batch_change(conn, bc.id, utcnow())
    print(f"closed batch change {bc.name!r} (id {bc.id}); its changesets are no longer synced")
    return 0
