"""``repo-updater batch-changes ...``: create, list and close batch changes."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import (
    batch_change_name,
    print_rows,
    store_options,
    store_transaction,
)


def add_parser(sub: Any) -> None:
    group = sub.add_parser("batch-changes", help="batch changes")
    actions = group.add_subparsers(dest="action", required=True)
    p = actions.add_parser("list", help="list batch changes")
    store_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=f"{__name__}:cmd_list")
    c = actions.add_parser("create", help="create a batch change")
    c.add_argument("name", type=batch_change_name)
    c.add_argument("--description", default="")
    store_options(c)
    c.set_defaults(func=f"{__name__}:cmd_create")
    x = actions.add_parser("close", help="close a batch change (its changesets stop syncing)")
    x.add_argument("id", type=int)
    store_options(x)
    x.set_defaults(func=f"{__name__}:cmd_close")


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import changesets as cs_store

    async with store_transaction(args) as conn:
        rows = await cs_store.list_batch_changes(conn)
    print_rows(rows, args.json, ["id", "name", "state", "changeset_count"])
    return 0


async def cmd_create(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import changesets as cs_store

    async with store_transaction(args) as conn:
        new_id = await cs_store.create_batch_change(conn, args.name, args.description, utcnow())
    print(f"created batch change {args.name!r} (id {new_id})")
    return 0


async def cmd_close(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import changesets as cs_store

    async with store_transaction(args) as conn:
        await cs_store.close_batch_change(conn, args.id, utcnow())
    print(f"closed batch change {args.id}")
    return 0
