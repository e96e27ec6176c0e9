"""``repo-updater services ...``: the configured external services and their sync status."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import print_rows, store_options, store_transaction


def add_parser(sub: Any) -> None:
    group = sub.add_parser("services", help="external services (code-host connections)")
    actions = group.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "list",
        help="list external services: last sync (failed or not), last success, next sync, error",
    )
    store_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=f"{__name__}:cmd_list")


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import external_services as service_store

    async with store_transaction(args) as conn:
        rows = await service_store.list_services(conn)
    columns = [
        "name",
        "kind",
        "url",
        "repo_count",
        "last_sync_at",
        "last_success_at",
        "next_sync_at",
        "last_sync_error",
    ]
    print_rows(rows, args.json, columns)
    return 0
