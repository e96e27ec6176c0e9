"""The ``repo-updater`` command line.

  repo-updater demo                          everything on the embedded default (SQLite + emulator)
  repo-updater serve  --config FILE          run syncers, workers and the API until Ctrl-C
  repo-updater sync   --config FILE [--service NAME]   one-shot repo sync with progress
  repo-updater repos list [--archived] [--output table|json|ndjson|csv]
  repo-updater repos permissions NAME        who can read a repository
  repo-updater accounts repos LOGIN --service S   the private repos an account can read
  repo-updater services list | history NAME
  repo-updater events list [--kind KIND] [--follow]
  repo-updater batch-changes create NAME | list | status NAME | close NAME
  repo-updater changesets track --batch-change NAME --repo REPO --number N | list | sync ID
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
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

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


DESCRIPTION = (
    "Keeps a database of code-host repositories and of the changesets (pull requests) that "
    "batch changes track, in step with GitHub, GitLab, Gitea and Bitbucket Server."
)
EPILOG = (
    "Start with `repo-updater demo`. Every command has --help. The database is --database, "
    "else the config's (--config FILE or $REPO_UPDATER_CONFIG), else $REPO_UPDATER_DATABASE, "
    "else ./repo-updater.db."
)


class _Version(argparse.Action):
    """``--version``: reads the installed version only when asked (``--help`` stays fast)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        import importlib.metadata

        print(f"repo-updater {importlib.metadata.version('repo-updater')}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repo-updater", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action=_Version)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines on stderr as text or one JSON object each (default: the config's "
        "log_format, else text)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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


def _configured_log_format(args: argparse.Namespace) -> Literal["text", "json"]:
    """The config file's ``log_format``, read before anything logs (a config that cannot be
    read is reported by the command itself, which loads it properly)."""
    from repo_updater.entrypoints.cli.common import config_path

    path = config_path(args)
    if path is None:
        return "text"
    try:
        import yaml

        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError):
        return "text"
    return "json" if isinstance(data, dict) and data.get("log_format") == "json" else "text"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import asyncio  # here, not at the top: --help does without it (40 ms)

    from repo_updater import logs

    logs.configure(args.log_format or _configured_log_format(args), verbose=args.verbose)
    try:
        code: int = asyncio.run(resolve(args.func)(args))
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`... | head`): nothing left to say
        from repo_updater.entrypoints.cli.output import quiet_broken_pipe

        return quiet_broken_pipe()
    except Exception as exc:
        status = _report(exc)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
