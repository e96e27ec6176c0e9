"""What the CLI's commands share: errors, argument types, the store they open, and tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repo_updater.core.domain import MAX_BATCH_CHANGE_NAME, MAX_PULL_NUMBER

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from repo_updater.config import Config


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


async def open_store(args: argparse.Namespace) -> AsyncEngine:
    """The migrated store the command's options name (the caller disposes of it)."""
    from repo_updater.config import load_config
    from repo_updater.store.db import create_engine, dispose_after_failure, migrate

    path = config_path(args)
    config = load_config(Path(path), os.environ) if path else None
    engine = create_engine(database_url(args, config))
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
async def store_transaction(args: argparse.Namespace) -> AsyncIterator[AsyncConnection]:
    """One transaction on the store the command's options name; the engine is disposed of."""
    engine = await open_store(args)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


def print_rows(rows: Sequence[Any], as_json: bool, columns: Sequence[str]) -> None:
    if as_json:
        from repo_updater.entrypoints.render import json_default

        print(json.dumps(list(rows), default=json_default, indent=2))
        return
    if not rows:
        print("(none)")
        return
    table = [[("" if getattr(r, c) is None else str(getattr(r, c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
