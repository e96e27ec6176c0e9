"""``repo-updater tokens ...``: API tokens. A token is printed once, when it is created (on
stdout, alone, so ``T=$(repo-updater tokens create ci --scope write)`` works); the store keeps
only its SHA-256, so it can never be shown again: lost means revoke and create another."""

from __future__ import annotations

import argparse
import sys
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
        "tokens",
        help="API tokens: create (shown once), list, revoke",
        description="API tokens authenticate HTTP API calls: 'Authorization: Bearer TOKEN'. "
        "Writes always need a write token; reads need one unless the API listens on loopback "
        "with api.open_reads (the default there).",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = actions.add_parser("create", help="create a token and print it, once")
    c.add_argument("name", help="a name to list and revoke it by (letters, digits, . _ -)")
    c.add_argument(
        "--scope",
        choices=["read", "write"],
        default="read",
        help="read: GET requests only; write: also changes (default: read)",
    )
    store_options(c)
    c.set_defaults(func=f"{__name__}:cmd_create")
    ls = actions.add_parser("list", help="list tokens by name and scope (never the tokens)")
    output_option(ls)
    store_options(ls)
    ls.set_defaults(func=f"{__name__}:cmd_list")
    r = actions.add_parser("revoke", help="revoke a token: it stops working at once")
    r.add_argument("name", help="the token's name, as `tokens list` shows it")
    store_options(r)
    r.set_defaults(func=f"{__name__}:cmd_revoke")


async def cmd_create(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.service_layer.api_tokens import Scope, TokenNameError, create_token
    from repo_updater.store.api_tokens import TokenExists

    try:
        async with store_transaction(args) as conn:
            token = await create_token(conn, args.name, Scope(args.scope), utcnow())
    except (TokenExists, TokenNameError) as exc:
        raise CLIError(str(exc)) from None
    print(
        f"created {args.scope} token {args.name!r}; it is shown once, now (store it safely):",
        file=sys.stderr,
    )
    print(token, flush=True)
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store.api_tokens import list_tokens

    async with store_transaction(args, read=True) as conn:
        rows = await list_tokens(conn)
    print_rows(rows, args.output, ["name", "scope", "created_at"])
    return 0


async def cmd_revoke(args: argparse.Namespace) -> int:
    from repo_updater.store.api_tokens import TokenNotFound, delete_token

    try:
        async with store_transaction(args) as conn:
            await delete_token(conn, args.name)
    except TokenNotFound as exc:
        raise CLIError(f"{exc}; see `repo-updater tokens list`") from None
    print(f"revoked token {args.name!r}")
    return 0
