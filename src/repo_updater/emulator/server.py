"""The code-host emulator: one aiohttp app on one loopback port, one sub-app per host.

- ``/github``    GitHub REST, and GitHub GraphQL at ``/github/graphql``
- ``/gitlab``    GitLab REST (``/gitlab/api/v4/...``)
- ``/gitea``     Gitea REST (``/gitea/api/v1/...``)
- ``/bitbucket`` Bitbucket Server REST (``/bitbucket/rest/api/1.0/...``)
- ``/_admin``    JSON admin API that changes the state (see ``admin``)

In a test::

    async with running_emulator() as emu:
        emu.state.seed(HostKind.GITHUB, orgs=1, repos_per_org=5)
        source = GitHubSource(base_url=emu.base_url(HostKind.GITHUB), ...)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from repo_updater.core.domain import HostKind
from repo_updater.emulator import admin, bitbucket, gitea, github, gitlab
from repo_updater.emulator.state import EmulatorState

log = logging.getLogger(__name__)

HOST_PREFIXES: dict[HostKind, str] = {
    HostKind.GITHUB: "/github",
    HostKind.GITLAB: "/gitlab",
    HostKind.GITEA: "/gitea",
    HostKind.BITBUCKET_SERVER: "/bitbucket",
}


def build_app(state: EmulatorState) -> web.Application:
    app = web.Application()
    app.add_subapp("/github", github.build_app(state))
    app.add_subapp("/gitlab", gitlab.build_app(state))
    app.add_subapp("/gitea", gitea.build_app(state))
    app.add_subapp("/bitbucket", bitbucket.build_app(state))
    app.add_subapp("/_admin", admin.build_app(state))
    return app


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    state: EmulatorState
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, kind: HostKind | str) -> str:
        return f"{self.url}{HOST_PREFIXES[HostKind(kind)]}"


async def _start(
    state: EmulatorState, host: str, port: int
) -> tuple[web.AppRunner, RunningEmulator]:
    # handler_cancellation: a client that gave up (timeout faults) cancels the slow handler;
    # a short shutdown_timeout keeps stopping fast even with handlers still sleeping.
    runner = web.AppRunner(
        build_app(state), access_log=None, handler_cancellation=True, shutdown_timeout=0.5
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound_port = int(address[1])
            break
    emulator = RunningEmulator(state=state, host=host, port=bound_port)
    state.webhooks.base_url = emulator.url
    return runner, emulator


@asynccontextmanager
async def running_emulator(
    state: EmulatorState | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator on ``host:port`` (0: any free port) for the duration of the block."""
    runner, emulator = await _start(state if state is not None else EmulatorState(), host, port)
    try:
        yield emulator
    finally:
        await emulator.state.webhooks.aclose()
        await runner.cleanup()


async def serve_forever(state: EmulatorState, host: str = "127.0.0.1", port: int = 7700) -> None:
    """Serve until cancelled (the CLI's ``emulator`` command)."""
    runner, emulator = await _start(state, host, port)
    log.info("code-host emulator listening on %s", emulator.url)
    try:
        await asyncio.Event().wait()
    finally:
        await state.webhooks.aclose()
        await runner.cleanup()
