"""The browser fixtures work: the map page loads in Chromium and goes live; the API docs
(/docs) show their operations with nothing fetched from outside the tracker."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import Tracker, screenshot_path

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_map_page_goes_live(tracker: Tracker, page: Page) -> None:
    await page.goto(tracker.url + "/")
    await expect(page.locator("#status")).to_have_text("live", timeout=15_000)
    await page.screenshot(path=screenshot_path("smoke-map"))


async def test_the_api_docs_show_their_operations_offline(tracker: Tracker, page: Page) -> None:
    own = urlsplit(tracker.url).netloc
    outside: list[str] = []

    async def only_the_tracker(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            await route.continue_()
        else:  # a CDN, say: this machine has no internet
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_the_tracker)
    await page.goto(tracker.url + "/docs")
    operations = page.locator(".opblock-summary-path")
    await expect(operations.first).to_be_visible(timeout=15_000)
    assert await operations.count() >= 20
    await expect(page.get_by_text("/gtfs-rt/vehicle-positions", exact=True)).to_be_visible()
    assert outside == []
    await page.screenshot(path=screenshot_path("api-docs"))
