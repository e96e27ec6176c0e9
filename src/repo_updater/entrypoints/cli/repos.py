"""``repo-updater repos ...``: the repositories in the store, and who can read them."""

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

COLUMNS = ["id", "name", "archived", "fork", "private", "updated_at", "deleted_at"]
GRANT_COLUMNS = ["login", "permission", "access"]


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "repos",
        help="repositories in the store, and who can read them",
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
    p = group.add_parser(
        "permissions",
        help="who can read a repository, and its last permissions sync",
        description="The accounts that can read a private repository, as its last permissions "
        "sync found them (a public one: anyone). --output json prints the repository, its "
        "sync status and its grants as one object; ndjson and csv one grant a line.",
    )
    store_options(p)
    output_option(p)
    p.add_argument("name", help="the repository's store name, e.g. github.com/acme/api")
    p.set_defaults(func=f"{__name__}:cmd_permissions")
    p = group.add_parser(
        "sync",
        help="sync one repository from its code host now",
        description="Ask the repository's code host for it now and write what changed, as a "
        "full sync of its service would (an archive flip makes its open changesets READONLY "
        "and requests their syncs). Needs the config (the service and its token).",
    )
    store_options(p)
    output_option(p)
    p.add_argument("name", help="the repository's store name, e.g. github.com/acme/api")
    p.set_defaults(func=f"{__name__}:cmd_sync")


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


async def cmd_permissions(args: argparse.Namespace) -> int:
    from repo_updater.entrypoints.cli.output import relative
    from repo_updater.store import repo_permissions as grant_store

    async with store_transaction(args, read=True) as conn:
        access = await grant_store.repo_access(conn, name=args.name)
    if access is None:
        raise CLIError(f"no repository named {args.name!r} (see: repo-updater repos list)")
    if args.output == "json":  # one object, as the API answers
        import json

        from repo_updater.entrypoints.render import json_default

        print(json.dumps(access, default=json_default, indent=2))
        return 0
    if args.output != "table":
        print_rows(access.permissions, args.output, GRANT_COLUMNS)
        return 0
    status = access.status
    if not access.private:
        print(f"{access.name} is public: anyone can read it")
        return 0
    if status is None or status.last_synced_at is None:
        when = "not synced yet"
    else:
        when = f"synced {relative(status.last_synced_at)}"
    print(f"{access.name} is private; permissions {when}")
    if status is not None and status.last_error:
        print(f"last sync failed ({status.failures}x): {status.last_error}")
    print_rows(access.permissions, "table", GRANT_COLUMNS)
    return 0


async def cmd_sync(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import open_app
    from repo_updater.core.errors import SourceError
    from repo_updater.entrypoints.cli.common import load
    from repo_updater.service_layer.single_repo_sync import NoSuchRepo, sync_single_repo

    config = load(args, required=True)
    async with open_app(config) as app:
        try:
            done = await sync_single_repo(
                app.engine, app.repo_syncer, config.external_services, app.sources,
                name=args.name, via="cli",
            )  # fmt: skip
        except NoSuchRepo as exc:
            raise CLIError(f"{exc} (see: repo-updater repos list)") from None
        except SourceError as exc:
            raise CLIError(f"the code host could not be asked: {exc}") from None
    if done.after is None:
        print(f"{args.name}: removed (the host no longer has it, or the config no longer "
              "selects it)")  # fmt: skip
        return 0
    if args.output != "table":
        print_rows([done.after], args.output, COLUMNS)
        return 0
    was, now = done.before.archived, done.after.archived
    flip = "" if was == now else (" now ARCHIVED" if now else " now unarchived")
    renamed = "" if done.before.name == done.after.name else f" (was {done.before.name})"
    print(f"{done.after.name}{renamed}: synced{flip}; "
          f"changeset syncs requested: {done.result.changeset_syncs_requested}")  # fmt: skip
    return 0
