"""``repo-updater repos ...``: the repositories in the store."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import print_rows, store_options, store_transaction
from repo_updater.entrypoints.cli.output import output_option

COLUMNS = ["id", "name", "archived", "fork", "private", "updated_at", "deleted_at"]


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "repos",
        help="repositories in the store",
        description="The repositories the repo syncer keeps in step with the code hosts.",
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    p = group.add_parser(
        "list",
        help="list repositories",
        description="List repositories by id (live ones; --deleted adds removed ones).",
    )
    store_options(p)
    output_option(p)
    p.add_argument("--archived", action="store_true", help="only archived repositories")
    p.add_argument("--deleted", action="store_true", help="include deleted repositories")
    p.add_argument("--name", help="only names that contain this text")
    p.set_defaults(func=f"{__name__}:cmd_list")


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import repos as repo_store

    async with store_transaction(args, read=True) as conn:
        rows = await repo_store.list_repos(
            conn,
            archived=True if args.archived else None,
            include_deleted=args.deleted,
            name_contains=args.name,
        )
    print_rows(rows, args.output, COLUMNS)
    return 0
