"""Write commands: ``batch-changes create|close`` and ``changesets track|sync``."""

from __future__ import annotations

import argparse

from repo_updater.bootstrap import utcnow
from repo_updater.entrypoints.cli.common import CLIError, open_store
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store


async def cmd_write(args: argparse.Namespace) -> int:
    engine = await open_store(args)
    try:
        async with engine.begin() as conn:
            now = utcnow()
            if args.action == "create":
                new_id = await cs_store.create_batch_change(conn, args.name, args.description, now)
                print(f"created batch change {args.name!r} (id {new_id})")
            elif args.action == "close":
                await cs_store.close_batch_change(conn, args.id, now)
                print(f"closed batch change {args.id}")
            elif args.action == "track":
                repo = await repo_store.get_repo_by_name(conn, args.repo)
                if repo is None:
                    raise CLIError(
                        f"no repository named {args.repo!r}; see `repo-updater repos list`"
                    )
                ids = await cs_store.track_changesets(
                    conn, args.batch_change, [(repo.id, n) for n in args.number], now
                )
                for number, cs_id in zip(args.number, ids, strict=True):
                    print(f"tracking {args.repo}#{number} as changeset {cs_id}; sync requested")
            elif args.action == "sync":
                if not await cs_store.request_sync(conn, [args.id], "cli", now):
                    raise CLIError(f"no changeset with id {args.id}")
                print(f"sync of changeset {args.id} requested")
    finally:
        await engine.dispose()
    return 0
