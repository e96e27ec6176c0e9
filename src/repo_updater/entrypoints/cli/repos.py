"""``repo-updater repos ...``: the repositories in the store."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import print_rows, store_options, store_transaction


def add_parser(sub: Any) -> None:
    group = sub.add_parser("repos", help="repositories in the store").add_subparsers(
        dest="action", required=True
    )
    p = group.add_parser("list", help="list repositories")
    store_options(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--archived", action="store_true", help="only archived repositories")
    p.add_argument("--deleted", action="store_true", help="include deleted repositories")
    p.add_argument("--name", help="name contains")
    p.set_defaults(func=f"{__name__}:cmd_list")


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import repos as repo_store

    async with store_transaction(args) as conn:
        rows = await repo_store.list_repos(
            conn,
            archived=True if args.archived else None,
            include_deleted=args.deleted,
            name_contains=args.name,
        )
    print_rows(rows, args.json, ["id", "name", "archived", "fork", "private", "deleted_at"])
    return 0
