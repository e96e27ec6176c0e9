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

Building the parser imports no command: each subcommand names its function as
``"module:function"``, imported only when that command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from repo_updater.entrypoints.cli.common import CLIError, batch_change_name, pr_number

_CLI = "repo_updater.entrypoints.cli"


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--database", help="database URL (sqlite:///file.db or postgresql://...)")


def _add_read_commands(sub: Any) -> None:
    for what in ("repos", "services", "events", "batch-changes", "changesets"):
        group = sub.add_parser(what, help=f"{what} commands").add_subparsers(
            dest="action", required=True
        )
        p = group.add_parser("list", help=f"list {what}")
        _store_options(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=f"{_CLI}.read:cmd_list", what=what)
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
            _add_batch_change_writes(group)
        if what == "changesets":
            _add_changeset_writes(group)


def _add_batch_change_writes(group: Any) -> None:
    c = group.add_parser("create", help="create a batch change")
    c.add_argument("name", type=batch_change_name)
    c.add_argument("--description", default="")
    c2 = group.add_parser("close", help="close a batch change")
    c2.add_argument("id", type=int)
    for q in (c, c2):
        _store_options(q)
        q.set_defaults(func=f"{_CLI}.write:cmd_write")


def _add_changeset_writes(group: Any) -> None:
    t = group.add_parser("track", help="track existing pull requests")
    t.add_argument("--batch-change", type=int, required=True)
    t.add_argument("--repo", required=True, help="repository name as `repos list` shows it")
    t.add_argument(
        "--number", type=pr_number, nargs="+", required=True,
        help="pull request number(s) on that repository",
    )  # fmt: skip
    s = group.add_parser("sync", help="request an immediate sync")
    s.add_argument("id", type=int)
    for q in (t, s):
        _store_options(q)
        q.set_defaults(func=f"{_CLI}.write:cmd_write")


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="run everything against the built-in emulator (no token)")
    p.add_argument("--database", help="database URL (default: ./repo-updater.db)")
    p.add_argument("--emulator-port", type=int, default=7700)
    p.add_argument("--api-port", type=int, default=7800)
    p.add_argument("--interval", type=float, default=3.0, help="repo sync interval, seconds")
    p.add_argument("--once", action="store_true", help="exit after the walkthrough")
    p.set_defaults(func="repo_updater.entrypoints.demo:run_demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repo-updater", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", required=True)

    from repo_updater.entrypoints.cli import emulator

    _add_demo(sub)
    for name in ("serve", "sync", "migrate"):
        p = sub.add_parser(name, help=f"{name} (see --help)")
        _store_options(p)
        if name == "sync":
            p.add_argument("--service", help="only this external service")
        p.set_defaults(func=f"{_CLI}.run:cmd_{name}")
    _add_read_commands(sub)
    emulator.add_parser(sub)
    return parser


def resolve(target: str) -> Callable[[argparse.Namespace], Coroutine[Any, Any, int]]:
    """``"module:function"`` -> the command function (imported now)."""
    module, _, name = target.partition(":")
    func: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = getattr(
        importlib.import_module(module), name
    )
    return func


def _report(exc: Exception) -> int | None:
    """Print a known failure as one line and return the exit status; None if unknown."""
    from sqlalchemy.exc import DBAPIError

    from repo_updater.config import ConfigError
    from repo_updater.store import changesets as cs_store
    from repo_updater.store.db import DatabaseURLError

    usage = (
        ConfigError,
        CLIError,
        DatabaseURLError,
        cs_store.BatchChangeExists,
        cs_store.BatchChangeNotFound,
        cs_store.BatchChangeClosed,
        cs_store.RepoNotFound,
    )
    if isinstance(exc, usage):
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, DBAPIError):  # e.g. an SQLite file that cannot be opened, a refused login
        print(f"error: database: {exc.orig}", file=sys.stderr)
        return 1
    if isinstance(exc, OSError):  # e.g. an unknown or unreachable database host
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        code: int = asyncio.run(resolve(args.func)(args))
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        status = _report(exc)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
