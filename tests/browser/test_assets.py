"""Every page loads its files from the tracker alone, with the right content types, and works.

The pages have no build step: the rider's and the operator's scripts are ES modules
(`<script type="module">`) that import their parts from beside them (`rider-*.js`,
`operator-*.js`), and a browser runs a module only when it is served with a JavaScript content
type. Each page is opened with every request to another origin refused: map tiles are the only
outside resource (the maps work without them), nothing comes from a CDN, and the page still goes
live. Every `rider*.js` / `operator*.js` / `replay*.js` in `web/static` must be loaded by its page,
so a part left out of the imports is noticed here.
"""

from __future__ import annotations

import re
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, Response, Route, expect

from tests.browser.conftest import Tracker
from web import STATIC_DIR

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIVE_TIMEOUT_MS = 15_000
PAGES = {"/": "rider", "/operator": "operator", "/replay": "replay"}  # path → file prefix


def tiles_pattern(tracker: Tracker) -> re.Pattern[str]:
    """The tile URLs of the tracker's tile template ({z}, {x}, {y}, {s} anything but a slash)."""
    template = cast(dict[str, Any], tracker.get("/api/config"))["tiles_url"]
    return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$")


async def wait_until_working(page: Page, path: str) -> None:
    if path == "/":
        await expect(page.locator("#status")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
        await page.wait_for_function(
            "BT_RIDER.ready && BT_RIDER.drawnBuses().length > 0", timeout=LIVE_TIMEOUT_MS
        )
    elif path == "/operator":
        await expect(page.locator("#status")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
        await expect(page.locator("#fleet-body tr").first).to_be_attached()
        await expect(page.locator("#routes-body tr.total")).to_be_attached()
    else:
        await expect(page.locator("#bounds")).to_have_text(re.compile(r"\S"))
        await expect(page.locator("#zone-name")).not_to_be_empty()


@pytest.mark.parametrize("path", list(PAGES))
async def test_a_page_loads_everything_from_the_tracker(
    tracker: Tracker, page: Page, path: str
) -> None:
    outside: list[str] = []
    responses: list[Response] = []
    errors: list[str] = []

    async def refuse(route: Route) -> None:
        outside.append(route.request.url)
        await route.abort()

    await page.route(lambda url: not url.startswith(tracker.url + "/"), refuse)
    page.on("response", lambda response: responses.append(response))
    page.on("pageerror", lambda error: errors.append(str(error)))
    await tracker.log_in(page)
    await page.goto(tracker.url + path)
    await wait_until_working(page, path)

    tiles = tiles_pattern(tracker)
    assert [url for url in outside if not tiles.match(url)] == []
    assert errors == []
    scripts = {urlsplit(r.url).path: r for r in responses if r.request.resource_type == "script"}
    prefix = PAGES[path]
    expected = {"/vendor/leaflet/leaflet.js", "/static/common.js"} | {
        f"/static/{p.name}" for p in STATIC_DIR.glob(f"{prefix}*.js")
    }
    assert set(scripts) == expected
    for url, response in scripts.items():
        assert response.status == 200, url
        assert "javascript" in response.headers["content-type"], url
    styles = [r for r in responses if r.request.resource_type == "stylesheet"]
    assert {urlsplit(r.url).path for r in styles} == {
        "/vendor/leaflet/leaflet.css",
        "/static/common.css",
        f"/static/{prefix}.css",
    }
    for response in styles:
        assert response.status == 200, response.url
        assert response.headers["content-type"].startswith("text/css"), response.url
