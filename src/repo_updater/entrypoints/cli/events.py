"""``repo-updater events ...``: the events outbox (RepoArchived, RepoRenamed, ...)."""

from __future__ import annotations

import argparse
from typing import Any

from repo_updater.entrypoints.cli.common import (
    CLIError,
    open_store,
    print_rows,
    store_options,
    store_transaction,
)
from repo_updater.entrypoints.cli.output import output_option

COLUMNS = ["id", "kind", "repo_id", "payload", "created_at"]
FOLLOW_POLL = 1.0  # seconds between looks for new events


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "events",
        help="repository events (added, archived, renamed, deleted, ...)",
        description="The events outbox: one row per change the repo syncer wrote.",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "list",
        help="list events, oldest first (--follow: then stream new ones)",
        description="List events, oldest first. With --follow, print the newest --limit "
        "events, then each new one as it is written, until Ctrl-C.",
    )
    store_options(p)
    output_option(p)
    p.add_argument("--kind", help="only this kind, e.g. RepoArchived")
    p.add_argument("--limit", type=int, default=100, help="how many events (default 100)")
    p.add_argument(
        "-f", "--follow", action="store_true",
        help="keep printing new events as they come, until Ctrl-C (tables: one line each)",
    )  # fmt: skip
    p.set_defaults(func=f"{__name__}:cmd_list")


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import events as event_store

    if not 1 <= args.limit <= 100_000:
        raise CLIError("--limit must be between 1 and 100000")
    if args.follow:
        return await follow(args)
    async with store_transaction(args, read=True) as conn:
        rows = await event_store.list_events(conn, kind=args.kind, limit=args.limit)
    print_rows(rows, args.output, COLUMNS)
    return 0


async def follow(args: argparse.Namespace) -> int:
    """The newest ``--limit`` events, then new ones as they are written, until Ctrl-C."""
    import asyncio

    from repo_updater.entrypoints.cli.output import emit, emit_ndjson, table
    from repo_updater.store import events as event_store

    engine = await open_store(args, must_exist=True)
    fmt = "ndjson" if args.output == "json" else args.output  # a stream has no closing ]
    try:
        async with engine.connect() as conn:
            newest = await event_store.newest_events(conn, kind=args.kind, limit=args.limit)
        last = newest[-1].id if newest else 0
        if fmt == "table":
            print(table(newest, COLUMNS) if newest else "(waiting for events; Ctrl-C to stop)")
        elif fmt == "csv":
            emit(newest, COLUMNS, "csv")
        else:
            emit_ndjson(newest)
        while True:
            await asyncio.sleep(FOLLOW_POLL)
            async with engine.connect() as conn:
                rows = await event_store.list_events(conn, kind=args.kind, after_id=last)
            if not rows:
                continue
            last = rows[-1].id
            if fmt == "table":  # the header was printed once; keep the lines short
                for e in rows:
                    print(
                        f"{e.id}  {e.kind}  repo {e.repo_id}  {e.created_at:%H:%M:%S}", flush=True
                    )
            elif fmt == "csv":
                emit(rows, COLUMNS, "csv", header=False)
            else:
                emit_ndjson(rows)
    except asyncio.CancelledError:
        return 0
    finally:
        await engine.dispose()
