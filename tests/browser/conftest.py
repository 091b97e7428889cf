"""Chromium driven by Playwright against the session's server, by accessible names only.

The browser is this machine's Chromium (`/usr/bin/chromium`; `.ci/run` installs it):
Playwright's own download needs the network. A missing browser fails the tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.conftest import last_otp, new_phone

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
EXPECT_TIMEOUT_MS = 10_000
PHONE_SCREEN = {"width": 390, "height": 844}

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest_asyncio.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def base_url(client: httpx.AsyncClient) -> str:
    return str(client.base_url).rstrip("/")


@pytest_asyncio.fixture
async def context(browser: Browser, base_url: str) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (its own cookies) for one test."""
    fresh = await browser.new_context(base_url=base_url, viewport=PHONE_SCREEN)
    try:
        yield fresh
    finally:
        await fresh.close()


async def logged_in_page(context: BrowserContext, outbox: Path, phone: str | None = None) -> Page:
    """A page of the trader app after logging in with the code from the SMS outbox."""
    phone = phone or new_phone()
    page = await context.new_page()
    await page.goto("/")
    await page.get_by_role("textbox", name="Phone number").fill(phone)
    await page.get_by_role("button", name="Send code").click()
    code = page.get_by_role("textbox", name="Code")
    await expect(code).to_be_visible()
    await code.fill(last_otp(outbox, phone))
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    return page
