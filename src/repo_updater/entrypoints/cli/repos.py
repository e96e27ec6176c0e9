"""``repo-updater repos ...``: the repositories in the store."""

from __future__ import annotations

import argparse
import json
from typing import Any

from repo_updater.entrypoints.cli.common import (
    CLIError,
    print_rows,
    store_options,
    store_transaction,
)


def add_parser(sub: Any) -> None:
    group = sub.add_parser("repos", help="repositories in the store").add_subparsers(
        dest="action", required=True
    )
    p = group.add_parser("list", help="list repositories")
    store_options(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--archived", action="store_true", help="only archived repositories")
    p.add_argument("--deleted", action="store_true", help="include deleted repositories")
    p.add_argument("--name", help="name contains")
    p.set_defaults(func=f"{__name__}:cmd_list")
    p = group.add_parser("permissions", help="who can read a repository, and the last sync")
    store_options(p)
    p.add_argument("name", help="the repository's store name, e.g. github.com/acme/api")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=f"{__name__}:cmd_permissions")


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


async def cmd_permissions(args: argparse.Namespace) -> int:
    from repo_updater.entrypoints.render import json_default
    from repo_updater.store import repo_permissions as grant_store

    async with store_transaction(args) as conn:
        access = await grant_store.repo_access(conn, name=args.name)
    if access is None:
        raise CLIError(f"no repository named {args.name!r} (see: repo-updater repos list)")
    if args.json:
        print(json.dumps(access, default=json_default, indent=2))
        return 0
    status = access.status
    if not access.private:
        print(f"{access.name} is public: anyone can read it")
        return 0
    if status is None or status.last_synced_at is None:
        when = "not synced yet"
    else:
        when = f"synced {status.last_synced_at:%Y-%m-%d %H:%M:%S} UTC"
    print(f"{access.name} is private; permissions {when}")
    if status is not None and status.last_error:
        print(f"last sync failed ({status.failures}x): {status.last_error}")
    print_rows(access.permissions, False, ["login", "permission", "access"])
    return 0
