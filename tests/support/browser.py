"""A real browser for dashboard tests: Debian's chromium (``/usr/bin/chromium``, installed by
``.ci/run``) driven by Playwright, headless, offline. Playwright's own browser downloads are
never used (``executable_path``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("REPO_UPDATER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"the dashboard tests need Debian's chromium at {CHROMIUM}: "
            "`apt-get install -y chromium` (.ci/run does it), or set REPO_UPDATER_CHROMIUM"
        )


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def page_of(browser: Browser) -> AsyncIterator[Page]:
    """A page that fails the test on any script error (collected in ``page.errors``)."""
    context = await browser.new_context(viewport={"width": 1300, "height": 1000})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"script errors on the page: {errors}"


async def screenshot(page: Page, path: Path) -> Path:
    """Save what the page shows (for a person to look at) and print where."""
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
