"""Commands that run the service: ``demo``, ``serve``, ``sync`` (one-shot, with progress),
``migrate``. The parser is built without importing the service; the commands import it."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from repo_updater.entrypoints.cli.common import CLIError, load, open_store, store_options

if TYPE_CHECKING:
    from repo_updater.config import Config
    from repo_updater.service_layer.repo_syncer import SyncProgress


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run everything against the built-in emulator (no token)",
        description="Start the code-host emulator, sync it, track pull requests in a batch "
        "change, archive a repository and show its changesets turn READONLY and back; then "
        "keep serving the API and the dashboard until Ctrl-C.",
    )
    p.add_argument("--database", help="database URL (default: ./repo-updater.db)")
    p.add_argument(
        "--emulator-port", type=int, default=7700, help="emulator port (default 7700; 0: any)"
    )
    p.add_argument(
        "--api-port", type=int, default=7800, help="API and dashboard port (default 7800; 0: any)"
    )
    p.add_argument("--interval", type=float, default=3.0, help="repo sync interval, seconds")
    p.add_argument("--once", action="store_true", help="exit after the walkthrough")
    p.set_defaults(func="repo_updater.entrypoints.demo:run_demo")
    for name, summary in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=EPILOGS.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        store_options(p)
        if name == "sync":
            p.add_argument(
                "--service", help="only this external service (no retiring of the others)"
            )
        p.set_defaults(func=f"{__name__}:cmd_{name}")


COMMANDS = {
    "serve": "run the repo syncer, the changeset syncer and the API until SIGINT or SIGTERM",
    "sync": "sync the configured services' repos once, with progress",
    "migrate": "bring the database to the newest schema",
}
# ``sync`` exit statuses (cron and CI read them).
EXIT_INCOMPLETE = 1
EXIT_SKIPPED = 3
EPILOGS = {
    "serve": (
        "SIGINT and SIGTERM stop it cleanly: in-flight work is handed back (claims released).\n"
        "Services in the store that the config no longer has are retired at start: every\n"
        "process sharing a database must load the same config."
    ),
    "sync": (
        "exit status:\n"
        "  0    every service synced completely\n"
        f"  {EXIT_INCOMPLETE}    a sync failed or could not list everything (nothing was removed)\n"
        f"  {EXIT_SKIPPED}    a service was skipped: another worker is syncing it right now\n"
        "  130  interrupted by SIGINT (143: SIGTERM); the claim on the service is released\n"
        "Without --service, services the config no longer has are retired first."
    ),
}


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
    import asyncio

    config = load(args, required=True)
    known = [s.name for s in config.external_services]
    if args.service and args.service not in known:
        raise CLIError(f"no external service named {args.service!r} (known: {', '.join(known)})")
    names = [args.service] if args.service else known

    # SIGTERM (and SIGINT) cancel the sync: the claim on the service is released on the way
    # out, so the next run need not wait for the lease to run out.
    task = asyncio.current_task()
    assert task is not None

    def cancel(signum: int) -> None:
        task.cancel(f"signal {signum}")

    with on_signals(cancel) as received:
        try:
            return await _sync(config, names, retire=not args.service)
        except asyncio.CancelledError:
            if not received:
                raise
            print(f"interrupted by signal {received[-1]}: stopped, claims released", flush=True)
            return 128 + received[-1]


async def _sync(config: Config, names: list[str], *, retire: bool) -> int:
    from repo_updater.bootstrap import open_app

    failed = skipped = False
    async with open_app(config, retire_unconfigured=retire) as app:
        for name in names:
            progress = ProgressLine()
            result = await app.repo_sync_worker.claimed_sync(name, progress)
            progress.done()
            if result is None:
                print(f"{name}: skipped, another worker is syncing it right now", flush=True)
                skipped = True
                continue
            print(result.summary(), flush=True)
            failed |= not result.complete
    if failed:
        return EXIT_INCOMPLETE
    return EXIT_SKIPPED if skipped else 0


@contextlib.contextmanager
def on_signals(handler: Callable[[int], None]) -> Iterator[list[int]]:
    """Call ``handler(signum)`` on SIGINT and SIGTERM (alike) while the block runs; yields
    the list of signals received."""
    import asyncio

    loop = asyncio.get_running_loop()
    received: list[int] = []

    def handle(signum: int) -> None:
        received.append(signum)
        handler(signum)

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, handle, int(sig))
            installed.append(sig)
    try:
        yield received
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from repo_updater.bootstrap import open_app
    from repo_updater.entrypoints.serve import serve

    config = load(args, required=True)
    stop = asyncio.Event()

    def ready(url: str | None) -> None:
        n = len(config.external_services)
        print(f"serving {n} services; API on {url}; Ctrl-C or SIGTERM to stop", flush=True)

    from repo_updater.entrypoints.api import ExposureRefused

    with on_signals(lambda _: stop.set()):
        async with open_app(config, retire_unconfigured=True) as app:
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
