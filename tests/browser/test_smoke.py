"""The browser fixtures work: the map page loads in Chromium and goes live."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Tracker, screenshot_path

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_map_page_goes_live(tracker: Tracker, page: Page) -> None:
    await page.goto(tracker.url + "/")
    await expect(page.locator("#status")).to_have_text("live", timeout=15_000)
    await page.screenshot(path=screenshot_path("smoke-map"))
