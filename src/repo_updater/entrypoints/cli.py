"""The ``repo-updater`` command line.

  repo-updater demo                          everything on the embedded default (SQLite + emulator)
  repo-updater serve  --config FILE          run syncers, workers and the API until Ctrl-C
  repo-updater sync   --config FILE [--service NAME]   one-shot repo sync with progress
  repo-updater repos list [--archived] [--json]
  repo-updater services list
  repo-updater events list [--kind KIND]
  repo-updater batch-changes create NAME | list | close ID
  repo-updater changesets track --batch-change ID --repo NAME --number N | list | sync ID
  repo-updater emulator serve | archive | unarchive | rename | delete | fault ...

The database comes from ``--database``, else the config file's ``database``, else
``$REPO_UPDATER_DATABASE``, else ``sqlite:///repo-updater.db`` in the current directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from repo_updater.app import open_app, serve
from repo_updater.config import Config, ConfigError, load_config
from repo_updater.domain import MAX_PULL_NUMBER
from repo_updater.entrypoints import emulator_cli
from repo_updater.entrypoints.api import _default
from repo_updater.services.repo_syncer import SyncProgress
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from repo_updater.store import services as service_store
from repo_updater.store.db import DatabaseURLError, create_engine, migrate

DEFAULT_DATABASE = "sqlite:///repo-updater.db"
# Pull request numbers are 32-bit on the hosts (GitHub's GraphQL ``Int``): a larger one would
# fail the whole batch it is loaded in, for every changeset in it.
MAX_NAME = 200  # batch_changes.name


class CLIError(Exception):
    pass


def _pr_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if not 1 <= number <= MAX_PULL_NUMBER:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PULL_NUMBER}")
    return number


def _batch_change_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise argparse.ArgumentTypeError("must not be empty")
    if len(name) > MAX_NAME or "\x00" in name:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_NAME} characters, without NUL")
    return name


def _config(args: argparse.Namespace, *, required: bool) -> Config:
    path = getattr(args, "config", None) or os.environ.get("REPO_UPDATER_CONFIG")
    if path is None:
        if required:
            raise CLIError("this command needs --config FILE (or $REPO_UPDATER_CONFIG)")
        return Config(database=_database(args, None))
    config = load_config(Path(path), os.environ)
    if getattr(args, "database", None):
        config = config.model_copy(update={"database": args.database})
    return config


def _database(args: argparse.Namespace, config: Config | None) -> str:
    if getattr(args, "database", None):
        return str(args.database)
    if config is not None:
        return config.database
    return os.environ.get("REPO_UPDATER_DATABASE", DEFAULT_DATABASE)


def _print(rows: Sequence[Any], as_json: bool, columns: Sequence[str]) -> None:
    if as_json:
        print(json.dumps(list(rows), default=_default, indent=2))
        return
    if not rows:
        print("(none)")
        return
    table = [[("" if getattr(r, c) is None else str(getattr(r, c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


async def _with_store(args: argparse.Namespace) -> Any:
    path = getattr(args, "config", None) or os.environ.get("REPO_UPDATER_CONFIG")
    config = load_config(Path(path), os.environ) if path else None
    engine = create_engine(_database(args, config))
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return engine


async def cmd_list(args: argparse.Namespace) -> int:
    engine = await _with_store(args)
    try:
        async with engine.begin() as conn:
            if args.what == "repos":
                rows: Sequence[Any] = await repo_store.list_repos(
                    conn,
                    archived=True if args.archived else None,
                    include_deleted=args.deleted,
                    name_contains=args.name,
                )
                _print(rows, args.json, ["id", "name", "archived", "fork", "private", "deleted_at"])
            elif args.what == "services":
                rows = await service_store.list_services(conn)
                _print(
                    rows,
                    args.json,
                    ["name", "kind", "url", "repo_count", "last_sync_at", "last_sync_error"],
                )
            elif args.what == "events":
                rows = await repo_store.list_events(conn, kind=args.kind, limit=args.limit)
                _print(rows, args.json, ["id", "kind", "repo_id", "payload", "created_at"])
            elif args.what == "batch-changes":
                rows = await cs_store.list_batch_changes(conn)
                _print(rows, args.json, ["id", "name", "state", "changeset_count"])
            else:
                rows = await cs_store.list_changesets(conn, batch_change_id=args.batch_change)
                _print(
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


async def cmd_write(args: argparse.Namespace) -> int:
    engine = await _with_store(args)
    try:
        async with engine.begin() as conn:
            now = _now()
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


def _now() -> Any:
    from repo_updater.app import utcnow

    return utcnow()


class ProgressLine:
    """A one-line progress display on stderr (only when it is a terminal, else every 10 s)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, p: SyncProgress) -> None:
        now = time.monotonic()
        elapsed = max(now - self.start, 1e-6)
        line = f"{p.service}: {p.listed:,} repos in {p.pages:,} pages ({p.listed / elapsed:,.0f}/s)"
        if self.tty:
            sys.stderr.write("\r" + line.ljust(70))
            sys.stderr.flush()
        elif now - self.last >= 10:
            print(line, file=sys.stderr)
            self.last = now

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


async def cmd_sync(args: argparse.Namespace) -> int:
    config = _config(args, required=True)
    known = [s.name for s in config.external_services]
    if args.service and args.service not in known:
        raise CLIError(f"no external service named {args.service!r} (known: {', '.join(known)})")
    names = [args.service] if args.service else known
    failed = False
    async with open_app(config) as app:
        for name in names:
            progress = ProgressLine()
            result = await app.claimed_sync(name, progress)
            progress.done()
            if result is None:
                print(f"{name}: skipped, another worker is syncing it right now")
                continue
            print(result.summary())
            failed |= not result.complete
    return 1 if failed else 0


async def cmd_serve(args: argparse.Namespace) -> int:
    config = _config(args, required=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    def ready(url: str | None) -> None:
        n = len(config.external_services)
        print(f"serving {n} services; API on {url}; Ctrl-C to stop", flush=True)

    async with open_app(config) as app:
        await serve(app, stop, on_ready=ready)
    return 0


async def cmd_migrate(args: argparse.Namespace) -> int:
    engine = await _with_store(args)
    await engine.dispose()
    print("database is at the newest schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repo-updater", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", required=True)

    def store_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config file")
        p.add_argument("--database", help="database URL (sqlite:///file.db or postgresql://...)")

    from repo_updater.entrypoints import demo

    demo.add_parser(sub)
    for name, func in (("serve", cmd_serve), ("sync", cmd_sync), ("migrate", cmd_migrate)):
        p = sub.add_parser(name, help=f"{name} (see --help)")
        store_opts(p)
        if name == "sync":
            p.add_argument("--service", help="only this external service")
        p.set_defaults(func=func)

    for what in ("repos", "services", "events", "batch-changes", "changesets"):
        group = sub.add_parser(what, help=f"{what} commands").add_subparsers(
            dest="action", required=True
        )
        p = group.add_parser("list", help=f"list {what}")
        store_opts(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_list, what=what)
        if what == "repos":
            p.add_argument("--archived", action="store_true", help="only archived repositories")
            p.add_argument("--deleted", action="store_true", help="include deleted repositories")
            p.add_argument("--name", help="name contains")
        if what == "events":
            p.add_argument("--kind", help="e.g. RepoArchived")
            p.add_argument("--limit", type=int, default=100)
        if what == "changesets":
            p.add_argument("--batch-change", type=int)
        if what == "batch-changes":
            c = group.add_parser("create", help="create a batch change")
            c.add_argument("name", type=_batch_change_name)
            c.add_argument("--description", default="")
            c2 = group.add_parser("close", help="close a batch change")
            c2.add_argument("id", type=int)
            for q in (c, c2):
                store_opts(q)
                q.set_defaults(func=cmd_write)
        if what == "changesets":
            t = group.add_parser("track", help="track existing pull requests")
            t.add_argument("--batch-change", type=int, required=True)
            t.add_argument("--repo", required=True, help="repository name as `repos list` shows it")
            t.add_argument(
                "--number", type=_pr_number, nargs="+", required=True,
                help="pull request number(s) on that repository",
            )  # fmt: skip
            s = group.add_parser("sync", help="request an immediate sync")
            s.add_argument("id", type=int)
            for q in (t, s):
                store_opts(q)
                q.set_defaults(func=cmd_write)
    emulator_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code: int = asyncio.run(args.func(args))
        return code
    except (
        ConfigError,
        CLIError,
        DatabaseURLError,
        cs_store.BatchChangeExists,
        cs_store.BatchChangeNotFound,
        cs_store.BatchChangeClosed,
        cs_store.RepoNotFound,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:  # e.g. an SQLite file that cannot be opened, a refused login
        print(f"error: database: {exc.orig}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. an unknown or unreachable database host
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
