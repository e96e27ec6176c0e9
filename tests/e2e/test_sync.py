"""End to end: the code-host emulator on loopback, the app as ``open_app`` builds it, and a real
store (SQLite file and PostgreSQL). Asserts what a user of ``repos list`` would notice: repos
appear, archive flips show up, renames keep the id, deletions are soft, a sync that could not
list everything deletes and changes nothing it did not see, and tokens never leak."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.bootstrap import App, open_app
from repo_updater.config import Config, parse_config
from repo_updater.core.domain import HostKind, Repo
from repo_updater.core.errors import SourceError
from repo_updater.emulator.admin_client import EmulatorAdmin
from repo_updater.emulator.server import RunningEmulator
from repo_updater.service_layer.repo_syncer import SyncResult
from repo_updater.sources.http import RetryPolicy
from repo_updater.store import changesets as cs_store
from repo_updater.store import events as event_store
from repo_updater.store import external_services as service_store
from repo_updater.store import repos as repo_store
from repo_updater.store.schema import metadata

FAST = RetryPolicy(attempts=2, backoff=0.01, max_rate_limit_wait=2.0)

# The owner each host's listing is configured with.
OWNER = {
    HostKind.GITHUB: "acme",
    HostKind.GITLAB: "platform",
    HostKind.GITEA: "infra",
    HostKind.BITBUCKET_SERVER: "OPS",
}
# A query-string fragment that only the second listing page's request carries (GitHub, GitLab
# and Gitea page with ``page=N``; Bitbucket Server with ``start=N``, 100 repos per page).
SECOND_PAGE = {
    HostKind.GITHUB: "page=2",
    HostKind.GITLAB: "page=2",
    HostKind.GITEA: "page=2",
    HostKind.BITBUCKET_SERVER: "start=100",
}
# Repos per listing page, as the sources ask for them.
PAGE_SIZE = {
    HostKind.GITHUB: 100,
    HostKind.GITLAB: 100,
    HostKind.GITEA: 50,
    HostKind.BITBUCKET_SERVER: 100,
}


def service(emu: RunningEmulator, kind: HostKind, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"svc-{kind.value.lower()}",
        "kind": kind.value,
        "url": emu.base_url(kind),
        "orgs": [OWNER[kind]],
        "name_prefix": f"{kind.value.lower()}.test",
        **extra,
    }


def config(db: str, *services: dict[str, Any], env: Mapping[str, str] | None = None) -> Config:
    return parse_config(
        {"database": db, "repo_sync_interval": 3600, "external_services": list(services)},
        env or {},
    )


def seed(emu: RunningEmulator, kind: HostKind, count: int) -> None:
    host = emu.state.host(kind)
    for i in range(count):
        host.add_repo(OWNER[kind], f"repo-{i}")


async def repos_by_external_name(app: App, *, include_deleted: bool = True) -> dict[str, Repo]:
    async with app.engine.connect() as conn:
        rows = await repo_store.list_repos(conn, include_deleted=include_deleted)
    return {r.external_name: r for r in rows}


async def archived_names(app: App) -> list[str]:
    async with app.engine.connect() as conn:
        return [r.external_name for r in await repo_store.list_repos(conn, archived=True)]


async def service_row(app: App, name: str) -> service_store.ServiceStatus:
    async with app.engine.connect() as conn:
        (row,) = [s for s in await service_store.list_services(conn) if s.name == name]
    return row


def completed(result: SyncResult) -> SyncResult:
    assert result.complete, result.summary()
    assert result.error is None
    return result


# --- the repo lifecycle on every host -----------------------------------------------------------


@pytest.mark.parametrize("kind", list(HostKind))
async def test_archive_rename_delete_reach_the_store(
    kind: HostKind, store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    owner = OWNER[kind]
    seed(emu, kind, 6)
    svc = service(emu, kind)
    async with open_app(config(store_url, svc), retry=FAST) as app:
        first = completed(await app.repo_sync_worker.sync_service(svc["name"]))
        assert (first.added, first.removed) == (6, 0)
        repos = await repos_by_external_name(app)
        assert sorted(repos) == sorted(f"{owner}/repo-{i}" for i in range(6))
        assert all(r.name == f"{svc['name_prefix']}/{r.external_name}" for r in repos.values())
        assert all(r.deleted_at is None and not r.archived for r in repos.values())
        assert await archived_names(app) == []

        # Archive: `repos list --archived` shows exactly that repo after the next sync.
        await admin.archive(kind, f"{owner}/repo-2")
        second = completed(await app.repo_sync_worker.sync_service(svc["name"]))
        assert second.archived == [f"{svc['name_prefix']}/{owner}/repo-2"]
        assert await archived_names(app) == [f"{owner}/repo-2"]
        async with app.engine.connect() as conn:
            archived_events = await event_store.list_events(conn, kind="RepoArchived")
        assert [e.repo_id for e in archived_events] == [repos[f"{owner}/repo-2"].id]

        # Unarchive: gone from the archived list again.
        await admin.unarchive(kind, f"{owner}/repo-2")
        third = completed(await app.repo_sync_worker.sync_service(svc["name"]))
        assert third.unarchived == [f"{svc['name_prefix']}/{owner}/repo-2"]
        assert await archived_names(app) == []

        # Rename: same store id, new name.
        await admin.rename(kind, f"{owner}/repo-3", "renamed-3")
        fourth = completed(await app.repo_sync_worker.sync_service(svc["name"]))
        assert fourth.renamed == 1
        after = await repos_by_external_name(app)
        assert f"{owner}/repo-3" not in after
        renamed = after[f"{owner}/renamed-3"]
        assert renamed.id == repos[f"{owner}/repo-3"].id
        assert renamed.name == f"{svc['name_prefix']}/{owner}/renamed-3"
        assert renamed.deleted_at is None
        async with app.engine.connect() as conn:
            assert await repo_store.get_repo_by_name(conn, renamed.name) == renamed

        # Delete: soft-deleted, not listed any more, the row (and id) kept.
        await admin.delete(kind, f"{owner}/repo-4")
        fifth = completed(await app.repo_sync_worker.sync_service(svc["name"]))
        assert fifth.removed == 1
        live = await repos_by_external_name(app, include_deleted=False)
        assert f"{owner}/repo-4" not in live
        assert len(live) == 5
        gone = (await repos_by_external_name(app))[f"{owner}/repo-4"]
        assert gone.id == repos[f"{owner}/repo-4"].id
        assert gone.deleted_at is not None
        status = await service_row(app, svc["name"])
        assert (status.repo_count, status.last_sync_error) == (5, None)

        # Nothing changed on the host: the next sync writes nothing.
        sixth = completed(await app.repo_sync_worker.sync_service(svc["name"]))
        assert (sixth.added, sixth.modified, sixth.removed, sixth.rows_written) == (0, 0, 0, 0)


# --- fault switches: a sync that cannot list everything changes nothing it did not see -----------


class ShortTimeout(httpx.AsyncBaseTransport):
    """The real HTTP transport with a short timeout on every request: ``open_app`` and
    ``build_source`` take a transport but no timeout (the sources default to 30 s)."""

    def __init__(self, seconds: float) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._timeout = httpx.Timeout(seconds).as_dict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.extensions["timeout"] = self._timeout
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


# name -> (fault fields, words the error must contain)
FAULTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    # FAST makes two attempts: both answer 502.
    "errors": ({"errors_next": 2, "error_status": 502}, ("502",)),
    # With a 1 s client timeout and one attempt (see the test).
    "timeouts": ({"timeouts_next": 1, "timeout_seconds": 20.0}, ("timed out",)),
    # Retried like a 5xx: truncated on both of FAST's attempts.
    "truncated": ({"truncate_next": 2}, ("not valid JSON",)),
    "rate-limited": ({"rate_limited_next": 1, "retry_after": 3600}, ("rate limit",)),
    # One request left: the first page takes it, the second finds the primary limit exhausted
    # (resetting in 60 s, beyond FAST's 2 s of patience).
    "rate-limit-exhausted": ({"rate_limit_remaining": 1}, ("rate limit",)),
}


@asynccontextmanager
async def github_app(store_url: str, emu: RunningEmulator, **kw: Any) -> AsyncIterator[App]:
    svc = service(emu, HostKind.GITHUB)
    async with open_app(config(store_url, svc), **{"retry": FAST, **kw}) as app:
        yield app


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_on_a_later_page_deletes_and_changes_nothing_then_converges(
    fault: str, store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    gh, name = HostKind.GITHUB, "svc-github"
    seed(emu, gh, 250)  # pages: repo-0..99, repo-100..199, repo-200..249
    extra: dict[str, Any] = {}
    if fault == "timeouts":
        extra = {
            "transport": ShortTimeout(1.0),
            "retry": RetryPolicy(attempts=1, backoff=0.01, max_rate_limit_wait=2.0),
        }
    async with github_app(store_url, emu, **extra) as app:
        completed(await app.repo_sync_worker.sync_service(name))
        before = await repos_by_external_name(app)
        assert len(before) == 250

        # Changes on every page: page 1 (listed before the fault), page 2 (the failing page)
        # and page 3 (never reached).
        await admin.archive(gh, "acme/repo-5")
        await admin.archive(gh, "acme/repo-150")
        await admin.rename(gh, "acme/repo-160", "renamed-160")
        await admin.delete(gh, "acme/repo-249")
        fields, words = FAULTS[fault]
        if fault != "rate-limit-exhausted":
            fields = {**fields, "path_contains": "page=2"}
        await admin.set_faults(gh, **fields)

        failed = await app.repo_sync_worker.sync_service(name)
        assert not failed.complete, failed.summary()
        assert failed.error
        for word in words:
            assert word.lower() in failed.error.lower(), failed.error
        assert "page=2" in failed.error, "the error names the request that failed"
        assert "INCOMPLETE" in failed.summary() and failed.error in failed.summary()
        assert failed.pages == 1 and failed.removed == 0

        # The fault really fired (and is used up, except the primary limit).
        left = await admin.faults(gh)
        assert (
            left["errors_next"],
            left["timeouts_next"],
            left["truncate_next"],
            left["rate_limited_next"],
        ) == (0, 0, 0, 0)

        after = await repos_by_external_name(app)
        assert len(after) == 250
        assert all(r.deleted_at is None for r in after.values()), "nothing deleted"
        assert await archived_names(app) == ["acme/repo-5"]  # page 1 was written
        for i in range(100, 250):
            key = f"acme/repo-{i}"
            assert after[key] == before[key], f"{key} changed by an incomplete sync"
        status = await service_row(app, name)
        assert status.last_sync_error == failed.error
        assert status.repo_count == 250

        await admin.clear_faults(gh)
        converged = completed(await app.repo_sync_worker.sync_service(name))
        assert converged.archived == ["github.test/acme/repo-150"]
        assert (converged.renamed, converged.removed) == (1, 1)
        assert await archived_names(app) == ["acme/repo-5", "acme/repo-150"]
        final = await repos_by_external_name(app)
        assert final["acme/repo-249"].deleted_at is not None
        assert final["acme/renamed-160"].id == before["acme/repo-160"].id
        assert len([r for r in final.values() if r.deleted_at is None]) == 249
        assert (await service_row(app, name)).last_sync_error is None


async def test_short_retry_after_is_waited_through(
    store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    gh = HostKind.GITHUB
    seed(emu, gh, 150)
    async with github_app(store_url, emu) as app:
        completed(await app.repo_sync_worker.sync_service("svc-github"))
        await admin.archive(gh, "acme/repo-120")
        await admin.set_faults(gh, rate_limited_next=1, retry_after=1, path_contains="page=2")
        result = completed(await app.repo_sync_worker.sync_service("svc-github"))
        assert (await admin.faults(gh))["rate_limited_next"] == 0, "the limit was hit"
        assert result.archived == ["github.test/acme/repo-120"]
        assert await archived_names(app) == ["acme/repo-120"]
        assert (await service_row(app, "svc-github")).last_sync_error is None


async def test_5xx_within_retries_is_absorbed(
    store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    gh = HostKind.GITHUB
    seed(emu, gh, 150)
    async with github_app(store_url, emu) as app:
        completed(await app.repo_sync_worker.sync_service("svc-github"))
        await admin.delete(gh, "acme/repo-149")
        await admin.set_faults(gh, errors_next=1, path_contains="page=2")
        result = completed(await app.repo_sync_worker.sync_service("svc-github"))
        assert (await admin.faults(gh))["errors_next"] == 0
        assert result.removed == 1


@pytest.mark.parametrize("kind", [HostKind.GITLAB, HostKind.GITEA, HostKind.BITBUCKET_SERVER])
async def test_5xx_on_a_later_page_deletes_nothing_on_every_host(
    kind: HostKind, store_url: str, emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    owner, size = OWNER[kind], PAGE_SIZE[kind]
    total = size * 2 + 10
    seed(emu, kind, total)
    svc = service(emu, kind)
    async with open_app(config(store_url, svc), retry=FAST) as app:
        completed(await app.repo_sync_worker.sync_service(svc["name"]))
        before = await repos_by_external_name(app)
        await admin.archive(kind, f"{owner}/repo-{size + 3}")  # on page 2
        await admin.delete(kind, f"{owner}/repo-{total - 1}")  # on page 3
        await admin.set_faults(kind, errors_next=2, path_contains=SECOND_PAGE[kind])

        failed = await app.repo_sync_worker.sync_service(svc["name"])
        assert not failed.complete and failed.error and "502" in failed.error
        assert (await admin.faults(kind))["errors_next"] == 0
        assert await repos_by_external_name(app) == before
        assert (await service_row(app, svc["name"])).last_sync_error == failed.error

        await admin.clear_faults(kind)
        done = completed(await app.repo_sync_worker.sync_service(svc["name"]))
        assert done.removed == 1
        assert await archived_names(app) == [f"{owner}/repo-{size + 3}"]


# --- token secrecy ----------------------------------------------------------------------------

SECRET = "tok-9f3b2a7c-SECRET-e41d"


async def all_store_text(engine: AsyncEngine) -> str:
    parts = []
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = (await conn.execute(sa.select(table))).all()
            parts.append(repr(rows))
    return "\n".join(parts)


def log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(r) for r in records)


@pytest.mark.parametrize("kind", list(HostKind))
async def test_token_never_leaks(
    kind: HostKind,
    store_url: str,
    emu: RunningEmulator,
    admin: EmulatorAdmin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    owner = OWNER[kind]
    seed(emu, kind, 3)
    emu.state.host(kind).add_pull(f"{owner}/repo-0", title="Upgrade CI")
    await admin.set_token(kind, SECRET)
    svc = service(emu, kind, token_env="CODE_HOST_TOKEN")
    cfg = config(store_url, svc, env={"CODE_HOST_TOKEN": SECRET})
    messages: list[str] = []
    async with open_app(cfg, {"CODE_HOST_TOKEN": SECRET}, retry=FAST) as app:
        # With the right token everything works (so the token really is sent).
        completed(await app.repo_sync_worker.sync_service(svc["name"]))
        async with app.engine.begin() as conn:
            bc = await cs_store.create_batch_change(conn, "bc", "", app.clock())
            repo = await repo_store.get_repo_by_name(conn, f"{svc['name_prefix']}/{owner}/repo-0")
            assert repo is not None
            await cs_store.track_changeset(conn, bc, repo.id, 1, app.clock())
        assert (await app.changeset_syncer.run_once()).synced == 1

        # The host now wants another token: 401 everywhere.
        await admin.set_token(kind, "a-different-token")
        unauthorized = await app.repo_sync_worker.sync_service(svc["name"])
        assert not unauthorized.complete and unauthorized.error
        assert "401" in unauthorized.error
        messages.append(unauthorized.error)
        async with app.engine.begin() as conn:
            await cs_store.request_sync(conn, [1], "test", app.clock())
        assert (await app.changeset_syncer.run_once()).failed == 1
        source = app.sources[svc["name"]]
        with pytest.raises(SourceError) as info:
            async for _ in source.list_repos():
                pass
        messages += [str(info.value), repr(info.value)]

        # Right token again, but the host fails with 5xx beyond the retries.
        await admin.set_token(kind, SECRET)
        await admin.set_faults(kind, errors_next=100)
        failing = await app.repo_sync_worker.sync_service(svc["name"])
        assert not failing.complete and failing.error and "502" in failing.error
        messages.append(failing.error)
        async with app.engine.begin() as conn:
            await cs_store.request_sync(conn, [1], "test", app.clock())
        assert (await app.changeset_syncer.run_once()).failed == 1
        with pytest.raises(SourceError) as info:
            async for _ in source.list_repos():
                pass
        messages += [str(info.value), repr(info.value)]

        async with app.engine.connect() as conn:
            (view,) = await cs_store.list_changesets(conn)
            services = await service_store.list_services(conn)
        assert view.sync_error
        messages.append(view.sync_error)
        messages += [s.last_sync_error or "" for s in services]
        stored = await all_store_text(app.engine)

    assert caplog.records, "expected log output at DEBUG"
    for text in [*messages, stored, log_text(caplog.records)]:
        assert SECRET not in text
