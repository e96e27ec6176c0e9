"""Read commands: ``repos|services|events|batch-changes|changesets list``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from repo_updater.entrypoints.cli.common import open_store, print_rows
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store


async def cmd_list(args: argparse.Namespace) -> int:
    engine = await open_store(args)
    try:
        async with engine.begin() as conn:
            if args.what == "repos":
                rows: Sequence[Any] = await repo_store.list_repos(
                    conn,
                    archived=True if args.archived else None,
                    include_deleted=args.deleted,
                    name_contains=args.name,
                )
                print_rows(
                    rows, args.json, ["id", "name", "archived", "fork", "private", "deleted_at"]
                )
            elif args.what == "services":
                rows = await service_store.list_services(conn)
                print_rows(
                    rows,
                    args.json,
                    ["name", "kind", "url", "repo_count", "last_sync_at", "last_sync_error"],
                )
            elif args.what == "events":
                rows = await event_store.list_events(conn, kind=args.kind, limit=args.limit)
                print_rows(rows, args.json, ["id", "kind", "repo_id", "payload", "created_at"])
            elif args.what == "batch-changes":
                rows = await cs_store.list_batch_changes(conn)
                print_rows(rows, args.json, ["id", "name", "state", "changeset_count"])
            else:
                rows = await cs_store.list_changesets(conn, batch_change_id=args.batch_change)
                print_rows(
                    rows,
                    args.json,
                    [
                        "id",
                        "repo_name",
                        "number",
                        "external_state",
                        "review_state",
                        "check_state",
                        "title",
                        "last_synced_at",
                    ],
                )
    finally:
        await engine.dispose()
    return 0
