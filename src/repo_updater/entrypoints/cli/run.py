"""Commands that run the service: ``demo``, ``serve``, ``sync`` (one-shot, with progress),
``migrate``. The parser is built without importing the service; the commands import it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from repo_updater.entrypoints.cli.common import CLIError, load, open_store, store_options

if TYPE_CHECKING:
    from repo_updater.service_layer.repo_syncer import SyncProgress


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("demo", help="run everything against the built-in emulator (no token)")
    p.add_argument("--database", help="database URL (default: ./repo-updater.db)")
    p.add_argument("--emulator-port", type=int, default=7700)
    p.add_argument("--api-port", type=int, default=7800)
    p.add_argument("--interval", type=float, default=3.0, help="repo sync interval, seconds")
    p.add_argument("--once", action="store_true", help="exit after the walkthrough")
    p.set_defaults(func="repo_updater.entrypoints.demo:run_demo")
    for name in ("serve", "sync", "migrate"):
        p = sub.add_parser(name, help=f"{name} (see --help)")
        store_options(p)
        if name == "sync":
            p.add_argument("--service", help="only this external service")
        p.set_defaults(func=f"{__name__}:cmd_{name}")


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
    config = load(args, required=True)
    known = [s.name for s in config.external_services]
    if args.service and args.service not in known:
        raise CLIError(f"no external service named {args.service!r} (known: {', '.join(known)})")
    names = [args.service] if args.service else known
    from repo_updater.bootstrap import open_app

    failed = False
    async with open_app(config) as app:
        for name in names:
            progress = ProgressLine()
            result = await app.repo_sync_worker.claimed_sync(name, progress)
            progress.done()
            if result is None:
                print(f"{name}: skipped, another worker is syncing it right now")
                continue
            print(result.summary())
            failed |= not result.complete
    return 1 if failed else 0


async def cmd_serve(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import open_app
    from repo_updater.entrypoints.serve import serve

    config = load(args, required=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    def ready(url: str | None) -> None:
        n = len(config.external_services)
        print(f"serving {n} services; API on {url}; Ctrl-C to stop", flush=True)

    from repo_updater.entrypoints.api import ExposureRefused

    async with open_app(config) as app:
        try:
            await serve(app, stop, on_ready=ready)
        except ExposureRefused as exc:
            raise CLIError(str(exc)) from None
    return 0


async def cmd_migrate(args: argparse.Namespace) -> int:
    engine = await open_store(args)
    await engine.dispose()
    print("database is at the newest schema")
    return 0
