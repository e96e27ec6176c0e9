"""``repo-updater accounts ...``: what an account on a code host can read."""

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


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "accounts",
        help="accounts on code hosts and what they can read",
        description="Accounts as the permissions syncer found them on the code hosts.",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "repos",
        help="the private repositories of a service an account can read",
        description="The live private repositories of one external service that an account "
        "(its login, any case) can read, by name, with its permission on each.",
    )
    store_options(p)
    p.add_argument("login", help="the account's login on the service's code host")
    p.add_argument(
        "--service", required=True, help="the external service (code-host connection), by name"
    )
    output_option(p)
    p.set_defaults(func=f"{__name__}:cmd_repos")


async def cmd_repos(args: argparse.Namespace) -> int:
    from repo_updater.store import external_services as service_store
    from repo_updater.store import repo_permissions as grant_store

    async with store_transaction(args, read=True) as conn:
        services = {s.name: s.id for s in await service_store.list_services(conn)}
        if args.service not in services:
            known = ", ".join(sorted(services)) or "none synced yet"
            raise CLIError(f"no external service named {args.service!r} (known: {known})")
        rows = await grant_store.repos_readable_by(conn, args.login, services[args.service])
    if not rows and args.output == "table":
        print(f"{args.login} can read no private repository of {args.service}")
        return 0
    print_rows(rows, args.output, ["id", "name", "permission", "access"])
    return 0
