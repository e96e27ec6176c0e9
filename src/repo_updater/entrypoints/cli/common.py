"""What the CLI's commands share: errors, argument types, the store they open (read commands
refuse one that does not exist), batch changes by name or id, and printing (``cli.output``)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repo_updater.core.domain import MAX_BATCH_CHANGE_NAME, MAX_PULL_NUMBER

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from repo_updater.config import Config
    from repo_updater.store.changeset_queries import BatchChangeView


class CLIError(Exception):
    """A mistake in how the command was called: printed as ``error: ...``, exit status 2."""


def pr_number(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if not 1 <= number <= MAX_PULL_NUMBER:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PULL_NUMBER}")
    return number


def batch_change_name(value: str) -> str:
    name = value.strip()
    if not name:
        raise argparse.ArgumentTypeError("must not be empty")
    if len(name) > MAX_BATCH_CHANGE_NAME or "\x00" in name:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_BATCH_CHANGE_NAME} characters, without NUL"
        )
    return name


def config_path(args: argparse.Namespace) -> str | None:
    return getattr(args, "config", None) or os.environ.get("REPO_UPDATER_CONFIG")


def load(args: argparse.Namespace, *, required: bool) -> Config:
    """The config: ``--config`` or ``$REPO_UPDATER_CONFIG``, with ``--database`` on top."""
    from repo_updater.config import Config, load_config

    path = config_path(args)
    if path is None:
        if required:
            raise CLIError("this command needs --config FILE (or $REPO_UPDATER_CONFIG)")
        return Config(database=database_url(args, None))
    config = load_config(Path(path), os.environ)
    if getattr(args, "database", None):
        config = config.model_copy(update={"database": args.database})
    return config


def database_url(args: argparse.Namespace, config: Config | None) -> str:
    """``--database``, else the config's, else ``$REPO_UPDATER_DATABASE``, else the default."""
    from repo_updater.config import DEFAULT_DATABASE

    if getattr(args, "database", None):
        return str(args.database)
    if config is not None:
        return config.database
    return os.environ.get("REPO_UPDATER_DATABASE", DEFAULT_DATABASE)


def require_existing(url: str) -> None:
    """A read command on a SQLite file that does not exist would create an empty one (and
    show nothing): refuse, naming the file. (A PostgreSQL database that does not exist fails
    to connect with the server's own message.)"""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # a malformed URL: create_engine reports it
        return
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return
    if parsed.database == ":memory:" or Path(parsed.database).exists():
        return
    raise CLIError(
        f"no database at {parsed.database}: run `repo-updater demo` or `repo-updater sync "
        "--config FILE` first, or name the database with --config or --database "
        "(or $REPO_UPDATER_CONFIG, $REPO_UPDATER_DATABASE)"
    )


async def open_store(args: argparse.Namespace, *, must_exist: bool = False) -> AsyncEngine:
    """The migrated store the command's options name (the caller disposes of it).
    ``must_exist``: a read command, which refuses a database that is not there yet."""
    from repo_updater.config import load_config
    from repo_updater.store.db import create_engine, dispose_after_failure, migrate

    path = config_path(args)
    config = load_config(Path(path), os.environ) if path else None
    url = database_url(args, config)
    if must_exist:
        require_existing(url)
    engine = create_engine(url)
    try:
        await migrate(engine)
    except BaseException:
        await dispose_after_failure(engine)
        raise
    return engine


def store_options(p: argparse.ArgumentParser) -> None:
    """``--config`` and ``--database``: every command that opens the store takes them."""
    p.add_argument("--config", help="YAML config file (or $REPO_UPDATER_CONFIG)")
    p.add_argument(
        "--database",
        help="database URL, sqlite:///file.db or postgresql://... (or $REPO_UPDATER_DATABASE)",
    )


@contextlib.asynccontextmanager
async def store_transaction(
    args: argparse.Namespace, *, read: bool = False
) -> AsyncIterator[AsyncConnection]:
    """One transaction on the store the command's options name; the engine is disposed of.
    ``read``: a read command (refuses a database that does not exist)."""
    engine = await open_store(args, must_exist=read)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


def print_rows(rows: Sequence[Any], fmt: str | bool, columns: Sequence[str]) -> None:
    """``output.emit``; ``fmt`` is ``args.output`` (True/False: the old ``--json`` flag)."""
    from repo_updater.entrypoints.cli.output import emit

    emit(rows, columns, "json" if fmt is True else "table" if fmt is False else fmt)


def batch_change_ref(value: str) -> str:
    """A batch change's name or id (argparse type): resolved by ``find_batch_change``."""
    ref = value.strip()
    if not ref or len(ref) > MAX_BATCH_CHANGE_NAME or "\x00" in ref:
        raise argparse.ArgumentTypeError("must be a batch change's name or id")
    return ref


async def find_batch_change(conn: AsyncConnection, ref: str) -> BatchChangeView:
    """The batch change named ``ref``, else the one whose id it is; a clear error if none."""
    from repo_updater.store import changeset_queries as queries

    found = await queries.list_batch_changes(conn, name=ref, limit=1)
    if found:
        return found[0]
    if ref.isdigit() and len(ref) <= 10:
        by_id = await queries.get_batch_change(conn, int(ref))
        if by_id is not None:
            return by_id
    what = f"named or numbered {ref}" if ref.isdigit() else f"named {ref!r}"
    raise CLIError(f"no batch change {what}; see `repo-updater batch-changes list`")
