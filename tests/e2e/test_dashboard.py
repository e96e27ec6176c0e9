"""The dashboard in a real browser (Debian's chromium through Playwright) against the whole
app: the emulator, `serve` (repo and changeset syncers, API) on a SQLite file. Checks what a
person sees: the counts, the burndown drawn, the changesets (errored and READONLY first, a
state filter, paging), an archive flip appearing without a reload, and the services page.
Each test saves a screenshot under its tmp dir and prints the path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import HostKind, HostPullState
from repo_updater.emulator.admin_client import EmulatorAdmin
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.serve import serve
from repo_updater.store import changesets as cs_store
from repo_updater.store import repos as repo_store
from tests.support.browser import chromium, page_of, screenshot

DEADLINE = 30_000  # ms: generous, the machine is shared
REPOS = 6  # acme/repo-0..5, each with an open and a draft pull request


@dataclass
class Running:
    app: App
    url: str
    batch_change_id: int


@pytest.fixture
async def running(emu: RunningEmulator, tmp_path: Path) -> AsyncIterator[Running]:
    gh = emu.state.host(HostKind.GITHUB)
    for i in range(REPOS):
        emulated = gh.add_repo("acme", f"repo-{i}")
        gh.add_pull(emulated.full_name, title=f"Upgrade CI on repo-{i}")
        gh.add_pull(emulated.full_name, title=f"Bump deps on repo-{i}", state=HostPullState.DRAFT)
    config = parse_config(
        {
            "database": f"sqlite:///{tmp_path}/dash.db",
            "repo_sync_interval": 0.5,
            "changeset_poll_interval": 0.2,
            "api": {"host": "127.0.0.1", "port": 0},
            "external_services": [
                {"name": "gh", "kind": "github", "url": emu.base_url(HostKind.GITHUB),
                 "orgs": ["acme"], "name_prefix": "gh.test"},
            ],
        },
        {},
    )  # fmt: skip
    stop = asyncio.Event()
    async with open_app(config, {}) as app:
        ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(app, stop, on_ready=ready.set_result))
        try:
            url = await asyncio.wait_for(ready, 30)
            assert url is not None
            await app.repo_sync_worker.sync_service("gh")
            async with app.engine.begin() as conn:
                bc = await cs_store.create_batch_change(conn, "upgrade-ci", "CI", app.clock())
                for repo in await repo_store.list_repos(conn):
                    for number in (1, 2):
                        await cs_store.track_changeset(conn, bc, repo.id, number, app.clock())
            app.changeset_syncer.wake()
            async with httpx.AsyncClient(base_url=url) as client:
                for _ in range(300):
                    stats = (await client.get(f"/api/batch-changes/{bc}/stats")).json()
                    if stats["by_state"].get("UNSYNCED", 0) == 0:
                        break
                    await asyncio.sleep(0.1)
            yield Running(app, url, bc)
        finally:
            stop.set()
            await task


async def count(page: Page, state: str) -> str:
    return (await page.locator(f'[data-count="{state}"] .n').inner_text()).strip()


async def test_a_batch_change_page_shows_counts_chart_and_a_flip_without_reload(
    running: Running, admin: EmulatorAdmin, tmp_path: Path
) -> None:
    async with chromium() as browser, page_of(browser) as page:
        await page.goto(f"{running.url}/#/batch-changes/{running.batch_change_id}")
        cards = page.locator("#counts")
        await expect(cards.locator('[data-count="total"] .n')).to_have_text("12", timeout=DEADLINE)
        assert await count(page, "OPEN") == "6" and await count(page, "DRAFT") == "6"
        assert await count(page, "READONLY") == "0"
        assert await page.locator('svg.burndown polygon[data-state="OPEN"]').count() == 1
        assert await page.locator('svg.burndown polygon[data-state="READONLY"]').count() == 0
        rows = page.locator("#changesets tr[data-id]")
        assert await rows.count() == 12
        link = rows.first.locator("a")
        href = await link.get_attribute("href") or ""
        assert href.startswith("http://127.0.0.1:") and "/pull/" in href, href
        await screenshot(page, tmp_path / "before-flip.png")

        # A marker only this page load has: it survives if the page updates itself.
        await page.evaluate("window.__sameLoad = true")
        await admin.archive(HostKind.GITHUB, "acme/repo-2")
        readonly = cards.locator('[data-count="READONLY"] .n')
        await expect(readonly).to_have_text("2", timeout=DEADLINE)
        band = page.locator('svg.burndown polygon[data-state="READONLY"]')
        await expect(band).to_have_count(1, timeout=DEADLINE)
        assert await band.get_attribute("data-now") == "2"
        assert await count(page, "OPEN") == "5" and await count(page, "DRAFT") == "5"
        assert await page.evaluate("window.__sameLoad") is True, "the page was reloaded"
        # READONLY first in the table (nothing errored), with its badge.
        first_two = [await rows.nth(i).locator(".badge").inner_text() for i in range(2)]
        assert first_two == ["READONLY", "READONLY"]
        assert "repo-2#" in await rows.first.inner_text()
        await screenshot(page, tmp_path / "after-flip.png")

        # Filter by state, then page through with a small page size.
        await page.locator('[data-filter="DRAFT"]').click()
        await expect(rows).to_have_count(5, timeout=DEADLINE)
        assert {await rows.nth(i).locator(".badge").inner_text() for i in range(5)} == {"DRAFT"}
        await page.goto(f"{running.url}/#/batch-changes/{running.batch_change_id}?per_page=5")
        await expect(rows).to_have_count(5, timeout=DEADLINE)
        seen = [await rows.nth(i).get_attribute("data-id") for i in range(5)]
        await page.locator('[data-page="next"]').click()
        await expect(rows.first).not_to_have_attribute("data-id", seen[0], timeout=DEADLINE)
        seen += [await rows.nth(i).get_attribute("data-id") for i in range(await rows.count())]
        await page.locator('[data-page="next"]').click()
        await expect(rows).to_have_count(2, timeout=DEADLINE)
        seen += [await rows.nth(i).get_attribute("data-id") for i in range(2)]
        assert len(set(seen)) == 12, "every changeset once across the pages"
        assert await page.locator('[data-page="next"]').is_disabled()


async def test_services_page_shows_sync_status_history_and_errors(
    running: Running, admin: EmulatorAdmin, tmp_path: Path
) -> None:
    async with chromium() as browser, page_of(browser) as page:
        await page.goto(f"{running.url}/#/services")
        row = page.locator('tr[data-service="gh"]')
        await expect(row).to_contain_text("github", timeout=DEADLINE)
        assert "6" in await row.inner_text()  # repos
        assert await row.locator(".syncs i").count() >= 1
        await admin.set_faults(HostKind.GITHUB, errors_next=50)
        await expect(row.locator(".syncs i.failed").first).to_be_attached(timeout=DEADLINE)
        await expect(row.locator("td.err")).not_to_have_text("", timeout=DEADLINE)
        await screenshot(page, tmp_path / "services.png")
        await admin.clear_faults(HostKind.GITHUB)
        # The batch changes page lists the batch change with a link to its page.
        await page.goto(f"{running.url}/#/")
        await page.locator("a", has_text="upgrade-ci").click()
        await expect(page.locator("h1")).to_have_text("upgrade-ci", timeout=DEADLINE)
