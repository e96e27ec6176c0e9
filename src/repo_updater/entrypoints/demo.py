"""``repo-updater demo``: the whole system on the embedded default, no token needed.

Starts the code-host emulator (GitHub, GitLab, Gitea, Bitbucket Server) on loopback, seeds it,
syncs every host into a SQLite file, tracks pull requests in a batch change, then walks through
an archive: the repo is archived in the emulator, whose webhook delivery (registered by the
demo, signed with a secret made up for the run) reaches the API at once, and its changesets
turn READONLY in well under a second; unarchived, they return to what the host says. Then it
shows who can read a private repo, removes a collaborator on the emulator, and shows them gone
after the next permissions sync. A further step merges and closes changesets across the four
hosts in bulk, and shows a write refused by an archived repository turning that repository's
changesets READONLY (``demo_operations``). Then it keeps serving (API and dashboard) until
Ctrl-C, so you can archive repos yourself with ``repo-updater emulator archive acme/<repo>``
and watch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from repo_updater.bootstrap import App, open_app
from repo_updater.config import DEFAULT_DATABASE, Config, parse_config
from repo_updater.core.domain import ExternalState, HostKind, HostPullState
from repo_updater.emulator.server import running_emulator
from repo_updater.emulator.state import EmulatorState
from repo_updater.entrypoints import demo_operations
from repo_updater.entrypoints.serve import serve
from repo_updater.store import changesets as cs_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repo_permissions as grant_store
from repo_updater.store import repos as repo_store

BATCH_CHANGE = "demo-upgrade-ci"
SECRET_ENV = "REPO_UPDATER_DEMO_WEBHOOK_SECRET"  # made up per run unless set
DEMO_REPO = "acme/repo-1"
PRIVATE_REPO = "acme/payments"


def seed(state: EmulatorState) -> None:
    gh = state.host(HostKind.GITHUB)
    for i in range(30):
        repo = gh.add_repo("acme", f"repo-{i}", fork=i % 10 == 9, description=f"Service {i}")
        if i < 5:
            gh.add_pull(repo.full_name, title=f"Upgrade CI on {repo.name}")
            gh.add_pull(
                repo.full_name, title=f"Draft: bump deps on {repo.name}", state=HostPullState.DRAFT
            )
    gh.add_repo("acme", "legacy-monolith", archived=True)
    # A private repo: who can read it is synced from the host (collaborators, a team, and the
    # org's owners), and follows changes there.
    gh.add_repo("acme", PRIVATE_REPO.partition("/")[2], private=True, description="Payments")
    for login, level in (("alice", "admin"), ("bob", "write"), ("carol", "read")):
        gh.set_collaborator(PRIVATE_REPO, login, level)
    gh.groups["payments-team"] = ["dave", "erin"]
    gh.repo(PRIVATE_REPO).group_access["payments-team"] = "maintain"
    gh.owner_members["acme"] = {"octo-admin": "admin"}
    gl = state.host(HostKind.GITLAB)
    for i in range(6):
        gl.add_repo("platform", f"svc-{i}")
        gl.add_repo("platform/tools", f"tool-{i}")
    gl.add_pull("platform/svc-0", title="Upgrade CI on svc-0")
    gt = state.host(HostKind.GITEA)
    for i in range(8):
        gt.add_repo("infra", f"role-{i}")
    bb = state.host(HostKind.BITBUCKET_SERVER)
    for i in range(4):
        bb.add_repo("OPS", f"deploy-{i}")
    # Private repos on the other hosts too, each with its own notion of access.
    gl.add_repo("platform", "secrets", private=True)
    gl.set_collaborator("platform/secrets", "alice", "maintain")
    gl.set_collaborator("platform/secrets", "guest-gus", "guest")  # cannot read the code
    gt.add_repo("infra", "vault", private=True)
    gt.set_collaborator("infra/vault", "bob", "write")
    bb.add_repo("OPS", "credentials", private=True)
    bb.set_collaborator("OPS/credentials", "carol", "admin")
    demo_operations.seed(state)  # pull requests for the bulk-operations step


SERVICES = {
    HostKind.GITHUB: "demo-github",
    HostKind.GITLAB: "demo-gitlab",
    HostKind.GITEA: "demo-gitea",
    HostKind.BITBUCKET_SERVER: "demo-bitbucket",
}
DEMO_CONFIG_FILE = "repo-updater-demo.yaml"


def demo_env() -> dict[str, str]:
    """The environment the demo's app reads: the webhook secret, made up for this run."""
    return {**os.environ, SECRET_ENV: os.environ.get(SECRET_ENV) or secrets.token_hex(16)}


def register_webhooks(state: EmulatorState, api_url: str, secret: str) -> None:
    """Each emulated host delivers its changes to the demo's API, signed with ``secret``."""
    for kind, name in SERVICES.items():
        state.webhooks.clear_hooks(kind)
        state.webhooks.add_hook(kind, f"{api_url}/webhooks/{name}", secret)


def demo_config(
    base_urls: dict[HostKind, str],
    database: str,
    api_port: int,
    interval: float,
    env: dict[str, str] | None = None,
) -> Config:
    """The demo's config; ``env`` must hold ``SECRET_ENV`` (``demo_env``)."""
    env = env if env is not None else {SECRET_ENV: "unused"}
    data = demo_config_dict(base_urls, database, api_port, interval, webhooks=True)
    return parse_config(data, env)


def demo_config_dict(
    base_urls: dict[HostKind, str],
    database: str,
    api_port: int,
    interval: float,
    *,
    webhooks: bool = False,
) -> dict[str, Any]:
    """The demo's config as a config file would hold it (written to ``DEMO_CONFIG_FILE``, so
    that commands which talk to the hosts, such as ``batch-changes apply``, can use it). The
    file leaves out the webhook secret's variable: only the running demo receives webhooks."""
    hook = {"webhook_secret_env": SECRET_ENV} if webhooks else {}
    selections = {
        HostKind.GITHUB: ("github", "acme", "github.emulator"),
        HostKind.GITLAB: ("gitlab", "platform", "gitlab.emulator"),
        HostKind.GITEA: ("gitea", "infra", "gitea.emulator"),
        HostKind.BITBUCKET_SERVER: ("bitbucketServer", "OPS", "bitbucket.emulator"),
    }
    return {
        "database": database,
        "repo_sync_interval": interval,
        "changeset_poll_interval": 1,
        # A short refresh, so the walkthrough sees a removal on the host within seconds
        # (the default is every 24 hours).
        "permissions": {"refresh_interval": interval, "poll_interval": 0.5},
        "api": {"host": "127.0.0.1", "port": api_port},
        "external_services": [
            {
                "name": SERVICES[host],
                "kind": kind,
                "url": base_urls[host],
                "orgs": [org],
                "name_prefix": prefix,
                # The emulated hosts set no write limit: the default pacing (GitHub's 80 a
                # minute, 500 an hour) would spread the example spec's apply over minutes.
                "write_limits": {"per_minute": 6000, "per_hour": 100000},
                **hook,
            }
            for host, (kind, org, prefix) in selections.items()
        ],
    }


async def wait_for(check: Callable[[], Awaitable[bool]], limit: float, what: str) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > limit:
            raise TimeoutError(f"demo: {what} did not happen within {limit:.0f}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def changeset_states(app: App, repo_suffix: str | None = None) -> list[Any]:
    async with app.engine.connect() as conn:
        views = await cs_store.list_changesets(conn)
    return [v for v in views if repo_suffix is None or v.repo_name.endswith("/" + repo_suffix)]


def show(rows: list[Any]) -> None:
    for v in rows:
        state = v.external_state.value if v.external_state else "(not synced)"
        print(f"    #{v.id:<3} {v.repo_name}#{v.number:<3} {state:<9} {v.title}")


async def walkthrough(app: App, state: EmulatorState, interval: float) -> None:
    async def synced_all() -> bool:
        async with app.engine.connect() as conn:
            return all(s.last_sync_at for s in await service_store.list_services(conn))

    await wait_for(synced_all, 60, "the first sync of every service")
    async with app.engine.connect() as conn:
        services = await service_store.list_services(conn)
    for s in services:
        print(f"  synced {s.name:<15} {s.repo_count:>3} repos  error: {s.last_sync_error or '-'}")

    async with app.engine.begin() as conn:
        existing = {b.name: b.id for b in await cs_store.list_batch_changes(conn)}
        bc_id = existing.get(BATCH_CHANGE) or await cs_store.create_batch_change(
            conn, BATCH_CHANGE, "Upgrade the CI image everywhere", app.clock()
        )
        for repo in await repo_store.list_repos(conn, name_contains="/acme/repo-"):
            if repo.external_name in {f"acme/repo-{i}" for i in range(5)}:
                for number in (1, 2):
                    await cs_store.track_changeset(conn, bc_id, repo.id, number, app.clock())
    app.changeset_syncer.wake()

    async def all_synced() -> bool:
        return all(v.last_synced_at for v in await changeset_states(app))

    await wait_for(all_synced, 60, "the first changeset sync")
    print(
        f"\n  batch change {BATCH_CHANGE!r} tracks {len(await changeset_states(app))} changesets;"
        f" on {DEMO_REPO}:"
    )
    show(await changeset_states(app, DEMO_REPO))

    print(f"\n  archiving {DEMO_REPO} in the emulator (it sends a webhook; repo sync every "
          f"{interval:g}s) ...")  # fmt: skip
    state.host(HostKind.GITHUB).set_archived(DEMO_REPO, True)

    async def readonly() -> bool:
        rows = await changeset_states(app, DEMO_REPO)
        return bool(rows) and all(v.external_state is ExternalState.READONLY for v in rows)

    took = await wait_for(readonly, 4 * interval + 30, "READONLY after archiving")
    print(f"  after {took:.2f}s (the webhook) its changesets are READONLY:")
    show(await changeset_states(app, DEMO_REPO))

    print(f"\n  unarchiving {DEMO_REPO} ...")
    state.host(HostKind.GITHUB).set_archived(DEMO_REPO, False)

    async def back() -> bool:
        rows = await changeset_states(app, DEMO_REPO)
        return all(v.external_state in (ExternalState.OPEN, ExternalState.DRAFT) for v in rows)

    took = await wait_for(back, 4 * interval + 30, "the host's states after unarchiving")
    print(f"  after {took:.2f}s they are back to what the host says:")
    show(await changeset_states(app, DEMO_REPO))
    await permissions_walkthrough(app, state, interval)
    await demo_operations.walkthrough(app, state, wait_for)


async def readers(app: App, name: str) -> list[Any] | None:
    """The stored grants of a repo, or None before its first permissions sync."""
    async with app.engine.connect() as conn:
        access = await grant_store.repo_access(conn, name=name)
    if access is None or access.status is None or access.status.last_synced_at is None:
        return None
    return access.permissions


def show_readers(grants: list[Any]) -> None:
    for g in grants:
        print(f"    {g.login:<12} {g.permission:<9} ({g.access})")


async def permissions_walkthrough(app: App, state: EmulatorState, interval: float) -> None:
    name = f"github.emulator/{PRIVATE_REPO}"

    async def synced() -> bool:
        return await readers(app, name) is not None

    await wait_for(synced, 60, f"the first permissions sync of {PRIVATE_REPO}")
    grants = await readers(app, name) or []
    print(f"\n  {PRIVATE_REPO} is private; who can read it (from the host's collaborators):")
    show_readers(grants)

    print(f"\n  removing carol from {PRIVATE_REPO} in the emulator ...")
    state.host(HostKind.GITHUB).set_collaborator(PRIVATE_REPO, "carol", None)

    async def gone() -> bool:
        now = await readers(app, name) or []
        return all(g.login != "carol" for g in now)

    took = await wait_for(gone, 4 * interval + 30, "carol's removal after a permissions sync")
    print(f"  after {took:.1f}s (the next permissions sync) carol is gone:")
    show_readers(await readers(app, name) or [])


async def until_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (Ctrl-C, SIGTERM): then cancel it and return
    False, so the walkthrough never holds up a shutdown."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, stopped, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()  # a failed walkthrough raises here
    return True


def _write_config(data: dict[str, Any]) -> str:
    """Write the demo's config next to the working directory; its name, or a note why not."""
    import yaml

    try:
        with open(DEMO_CONFIG_FILE, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f)
    except OSError as exc:
        return f"(could not write {DEMO_CONFIG_FILE}: {exc})"
    return DEMO_CONFIG_FILE


async def run_demo(args: argparse.Namespace) -> int:
    state = EmulatorState()
    seed(state)
    try:
        emulator_cm = running_emulator(state, port=args.emulator_port)
        emulator = await emulator_cm.__aenter__()
    except OSError as exc:
        print(
            f"error: cannot start the emulator on port {args.emulator_port}: {exc} "
            "(use --emulator-port 0 for any free port)"
        )
        return 2
    try:
        urls = {kind: emulator.base_url(kind) for kind in HostKind}
        database = args.database or DEFAULT_DATABASE
        env = demo_env()
        config = demo_config(urls, database, args.api_port, args.interval, env)
        config_file = _write_config(demo_config_dict(urls, database, args.api_port,
                                                     args.interval))  # fmt: skip
        print(f"emulator: {emulator.url}  (admin API {emulator.url}/_admin)")
        print(f"database: {config.database}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        async with open_app(config, env) as app:
            ready: asyncio.Future[str | None] = loop.create_future()
            server = asyncio.create_task(serve(app, stop, on_ready=ready.set_result))
            try:
                waiting: list[asyncio.Future[Any]] = [ready, server]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if not ready.done():
                    print(f"error: {server.exception()} (use --api-port 0 for any free port)")
                    return 2
                api_url = ready.result()
                assert api_url is not None
                register_webhooks(state, api_url, env[SECRET_ENV])
                print(f"webhooks: every emulated host delivers to {api_url}/webhooks/<service>")
                if not await until_stopped(walkthrough(app, state, args.interval), stop):
                    print("\nstopped", flush=True)
                    return 0
                if args.once:
                    return 0
                db_flag = "" if database == DEFAULT_DATABASE else f" --database {database}"
                async with app.engine.connect() as conn:
                    ids = {b.name: b.id for b in await cs_store.list_batch_changes(conn)}
                print(
                    f"\nAPI and dashboard: {ready.result()}/  (Ctrl-C to stop)\n"
                    f"The batch change: {ready.result()}/#/batch-changes/{ids[BATCH_CHANGE]}\n"
                    "Try, in another terminal (and watch the page):\n"
                    f"  repo-updater emulator archive acme/repo-3 --url {emulator.url}\n"
                    f"  repo-updater batch-changes status {BATCH_CHANGE}{db_flag}\n"
                    f"  repo-updater changesets list --state readonly{db_flag}\n"
                    f"  repo-updater emulator collaborator remove {PRIVATE_REPO} bob "
                    f"--url {emulator.url}\n"
                    f"  repo-updater repos permissions github.emulator/{PRIVATE_REPO}{db_flag}\n"
                    f"  repo-updater batch-changes apply examples/upgrade-ci.yaml --preview "
                    f"--config {config_file}\n"
                    f"  repo-updater batch-changes apply examples/upgrade-ci.yaml "
                    f"--config {config_file}",
                    flush=True,
                )
                await stop.wait()
                return 0
            finally:
                stop.set()
                (outcome,) = await asyncio.gather(server, return_exceptions=True)
                if isinstance(outcome, Exception) and ready.done():
                    raise outcome
    finally:
        await emulator_cm.__aexit__(None, None, None)
