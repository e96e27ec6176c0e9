"""``repo-updater events ...``: the events outbox (RepoArchived, RepoRenamed, ...)."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import print_rows, store_options, store_transaction


def add_parser(sub: Any) -> None:
    group = sub.add_parser("events", help="repository events")
    actions = group.add_subparsers(dest="action", required=True)
    p = actions.add_parser("list", help="list events, oldest first")
    store_options(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--kind", help="e.g. RepoArchived")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=f"{__name__}:cmd_list")


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import events as event_store

    async with store_transaction(args) as conn:
        rows = await event_store.list_events(conn, kind=args.kind, limit=args.limit)
    print_rows(rows, args.json, ["id", "kind", "repo_id", "payload", "created_at"])
    return 0
