"""``repo-updater services ...``: the configured external services, their sync status and
their recent syncs."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import (
    CLIError,
    print_rows,
    store_options,
    store_transaction,
)
from repo_updater.entrypoints.cli.output import output_option

COLUMNS = [
    "name",
    "kind",
    "repo_count",
    "last_sync_at",
    "last_success_at",
    "next_sync_at",
    "last_sync_error",
    "webhook_last_delivery_at",
    "webhook_verifies",
]
HISTORY_COLUMNS = [
    "finished_at", "complete", "listed", "added", "modified", "removed", "archived", "error",
]  # fmt: skip


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "services",
        help="external services (code-host connections) and their syncs",
        description="The external services of the config, as the store knows them.",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "list",
        help="list external services: last sync (failed or not), last success, next sync, error",
        description="One line per service. LAST_SYNC_AT is the last sync, failed or not; "
        "LAST_SUCCESS_AT the last complete one; a failing service is retried with a backoff.",
    )
    store_options(p)
    output_option(p)
    p.set_defaults(func=f"{__name__}:cmd_list")
    h = actions.add_parser(
        "history",
        help="a service's recent repo syncs, newest first",
        description="The newest repo syncs of one service (the store keeps 50): when each "
        "ended, whether it listed everything, what it changed, and its error.",
    )
    h.add_argument("name", help="the service's name, as `services list` shows it")
    h.add_argument("--limit", type=int, default=20, help="how many syncs (1-50, default 20)")
    store_options(h)
    output_option(h)
    h.set_defaults(func=f"{__name__}:cmd_history")


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import external_services as service_store

    async with store_transaction(args, read=True) as conn:
        rows = await service_store.list_services(conn)
    print_rows(rows, args.output, COLUMNS)
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import external_services as service_store
    from repo_updater.store import sync_history

    if not 1 <= args.limit <= sync_history.KEEP:
        raise CLIError(f"--limit must be between 1 and {sync_history.KEEP}")
    async with store_transaction(args, read=True) as conn:
        status = await service_store.service_sync_status(conn, args.name, utcnow())
        if status is None:
            raise CLIError(f"no external service named {args.name!r}; see `services list`")
        rows = await sync_history.recent_syncs(conn, status.id, limit=args.limit)
    print_rows(rows, args.output, HISTORY_COLUMNS)
    return 0
