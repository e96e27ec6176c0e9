"""The ``repo-updater`` command line.

  repo-updater demo                          everything on the embedded default (SQLite + emulator)
  repo-updater serve  --config FILE          run syncers, workers and the API until Ctrl-C
  repo-updater sync   --config FILE [--service NAME]   one-shot repo sync with progress
  repo-updater repos list [--archived] [--json]
  repo-updater repos permissions NAME        who can read a repository
  repo-updater accounts repos LOGIN --service S   the private repos an account can read
  repo-updater services list
  repo-updater events list [--kind KIND]
  repo-updater batch-changes create NAME | list | close ID
  repo-updater changesets track --batch-change ID --repo NAME --number N | list | sync ID
  repo-updater tokens create NAME [--scope read|write] | list | revoke NAME
  repo-updater changesets close|reopen|merge|comment|ready|draft|update --batch-change NAME
               [--state S] [--id N ...] [--dry-run]     bulk operations, with progress
  repo-updater operations list | show ID
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

from repo_updater.entrypoints.cli.common import CLIError

# Command groups, each a module with ``add_parser(sub)``; its commands import what they use.
GROUPS = (
    "repos",
    "external_services",
    "events",
    "batch_changes",
    "changesets",
    "tokens",
    "accounts",
    "operations",
    "emulator",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repo-updater", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", required=True)
    importlib.import_module(f"{__name__}.run").add_parsers(sub)
    for group in GROUPS:
        importlib.import_module(f"{__name__}.{group}").add_parser(sub)
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
        cs_store.ChangesetNotSynced,
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
