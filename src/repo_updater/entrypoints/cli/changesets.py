"""``repo-updater changesets ...``: track pull requests, list changesets, request a sync; the
bulk actions (close, merge, ...) are in ``cli.operations``."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import (
    CLIError,
    pr_number,
    print_rows,
    store_options,
    store_transaction,
)
from repo_updater.entrypoints.cli.operations import add_changeset_actions

COLUMNS = [
    "id",
    "repo_name",
    "number",
    "external_state",
    "review_state",
    "check_state",
    "title",
    "last_synced_at",
]


def add_parser(sub: Any) -> None:
    group = sub.add_parser("changesets", help="changesets (tracked pull requests)")
    actions = group.add_subparsers(dest="action", required=True)
    p = actions.add_parser("list", help="list changesets")
    store_options(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--batch-change", type=int)
    p.set_defaults(func=f"{__name__}:cmd_list")
    t = actions.add_parser("track", help="track existing pull requests")
    t.add_argument("--batch-change", type=int, required=True)
    t.add_argument("--repo", required=True, help="repository name as `repos list` shows it")
    t.add_argument(
        "--number", type=pr_number, nargs="+", required=True,
        help="pull request number(s) on that repository",
    )  # fmt: skip
    store_options(t)
    t.set_defaults(func=f"{__name__}:cmd_track")
    s = actions.add_parser("sync", help="request an immediate sync")
    s.add_argument("id", type=int)
    store_options(s)
    s.set_defaults(func=f"{__name__}:cmd_sync")
    add_changeset_actions(actions)  # close, reopen, merge, comment, ready, draft, update


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import changesets as cs_store

    async with store_transaction(args) as conn:
        rows = await cs_store.list_changesets(conn, batch_change_id=args.batch_change)
    print_rows(rows, args.json, COLUMNS)
    return 0


async def cmd_track(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import changesets as cs_store
    from repo_updater.store import repos as repo_store

    async with store_transaction(args) as conn:
        repo = await repo_store.get_repo_by_name(conn, args.repo)
        if repo is None:
            raise CLIError(f"no repository named {args.repo!r}; see `repo-updater repos list`")
        pairs = [(repo.id, n) for n in args.number]
        ids = await cs_store.track_changesets(conn, args.batch_change, pairs, utcnow())
    for number, cs_id in zip(args.number, ids, strict=True):
        print(f"tracking {args.repo}#{number} as changeset {cs_id}; sync requested")
    return 0


async def cmd_sync(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import changesets as cs_store

    async with store_transaction(args) as conn:
        if not await cs_store.request_sync(conn, [args.id], "cli", utcnow()):
            status = await cs_store.sync_status(conn, args.id, utcnow())
            if status is None:
                raise CLIError(f"no changeset with id {args.id}")
            raise CLIError(f"changeset {args.id} is not synced: {status.not_synced}")
    print(f"sync of changeset {args.id} requested")
    return 0
