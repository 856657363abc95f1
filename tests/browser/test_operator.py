"""The operator's dashboard (/operator) in Chromium against the real demo tracker.

The fleet table fills from the websocket and moves with it, sorts (aria-sort says how) and
filters, a row shows its bus on the map, route statistics and problems render, Arabic turns the
page right-to-left, and bad conditions (a dropped websocket, a failing endpoint) are told.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.conftest import Tracker, screenshot_path

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIVE_TIMEOUT_MS = 15_000
UPDATE_TIMEOUT_S = 25.0  # simulated buses report every 10 s
MINUTES = re.compile(r"[-+]?\d+(?:\.\d+)?")


async def open_operator(page: Page, tracker: Tracker, minimum_rows: int = 5) -> None:
    await tracker.log_in(page)
    await page.goto(tracker.url + "/operator")
    await expect(page.locator("#status")).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#fleet-body tr").nth(minimum_rows - 1)).to_be_attached()


async def column(page: Page, name: str) -> list[str]:
    """The texts of one column of the fleet table, all read at the same moment."""
    texts: list[str] = await page.eval_on_selector_all(
        f"#fleet-body .c-{name}", "cells => cells.map(c => c.title || c.textContent)"
    )
    return texts


async def vehicle_ids(page: Page) -> list[str]:
    ids: list[str] = await page.eval_on_selector_all(
        "#fleet-body tr", "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def minutes(texts: list[str]) -> list[float]:
    """'+2.5 min' → 2.5; cells without a delay are left out (they sort last)."""
    found = [MINUTES.search(text) for text in texts]
    return [float(m.group()) for m in found if m is not None]


async def test_the_fleet_table_fills_and_updates_live(tracker: Tracker, page: Page) -> None:
    await open_operator(page, tracker)
    before = dict(zip(await vehicle_ids(page), await column(page, "seen"), strict=True))
    assert len(before) >= 5
    deadline = time.monotonic() + UPDATE_TIMEOUT_S
    changed: list[str] = []
    while not changed and time.monotonic() < deadline:
        await asyncio.sleep(1)
        now = dict(zip(await vehicle_ids(page), await column(page, "seen"), strict=True))
        changed = [v for v, seen in now.items() if v in before and seen != before[v]]
    assert changed, "no row's last-seen time changed: the table does not follow the websocket"
    totals = await page.locator("#totals").text_content()
    assert totals is not None
    assert re.search(r"\d+ vehicles", totals)
    await page.screenshot(path=screenshot_path("operator-fleet"), full_page=True)


async def test_sorting_by_delay_orders_the_rows(tracker: Tracker, page: Page) -> None:
    await open_operator(page, tracker)
    delay_header = page.locator('#fleet-table th[data-sort="delay"]')
    await delay_header.get_by_role("button").click()
    await expect(delay_header).to_have_attribute("aria-sort", "descending")
    assert await page.locator("#fleet-table th[aria-sort]").count() == 1
    latest_first = minutes(await column(page, "delay"))
    assert len(latest_first) >= 3
    assert latest_first == sorted(latest_first, reverse=True)

    await delay_header.get_by_role("button").click()
    await expect(delay_header).to_have_attribute("aria-sort", "ascending")
    earliest_first = minutes(await column(page, "delay"))
    assert earliest_first == sorted(earliest_first)
    await page.screenshot(path=screenshot_path("operator-sorted-by-delay"))


async def test_filtering_by_text_and_state(tracker: Tracker, page: Page) -> None:
    await open_operator(page, tracker)
    everyone = await vehicle_ids(page)
    wanted = everyone[2]
    await page.get_by_label("Filter").fill(wanted)
    await expect(page.locator("#fleet-body tr")).to_have_count(1)
    assert await vehicle_ids(page) == [wanted]
    await expect(page.locator("#shown-count")).to_contain_text("1 of ")

    await page.get_by_label("Filter").fill("no such bus anywhere")
    await expect(page.locator("#fleet-body tr")).to_have_count(0)
    await expect(page.locator("#fleet-empty")).to_be_visible()

    await page.get_by_label("Filter").fill("")
    await page.locator("#filter-state").select_option("in_service")
    await expect(page.locator("#fleet-body tr").first).to_be_attached()
    states = await page.eval_on_selector_all(
        "#fleet-body .badge", "badges => [...new Set(badges.map(b => b.textContent))]"
    )
    assert states == ["in service"]


async def test_clicking_a_row_shows_the_bus_on_the_map(tracker: Tracker, page: Page) -> None:
    await open_operator(page, tracker)
    row = page.locator("#fleet-body tr").nth(3)
    vehicle_id = await row.get_attribute("data-id")
    assert vehicle_id
    await row.locator(".c-route").click()
    marker = page.locator(".selected-bus")
    await expect(marker).to_be_visible()
    await expect(marker).to_have_attribute("data-id", vehicle_id)
    await expect(page.locator(f'#fleet-body tr[data-id="{vehicle_id}"]')).to_have_class(
        re.compile("selected")
    )
    await expect(page.locator("#selected")).to_contain_text(vehicle_id)
    map_box = await page.locator("#map").bounding_box()
    bus_box = await marker.bounding_box()
    assert map_box
    assert bus_box
    middle_x, middle_y = bus_box["x"] + bus_box["width"] / 2, bus_box["y"] + bus_box["height"] / 2
    assert map_box["x"] <= middle_x <= map_box["x"] + map_box["width"]
    assert map_box["y"] <= middle_y <= map_box["y"] + map_box["height"]
    await page.screenshot(path=screenshot_path("operator-selected-bus"))


async def test_route_statistics_and_problems_render(tracker: Tracker, page: Page) -> None:
    await open_operator(page, tracker)
    total_row = page.locator("#routes-body tr.total")
    await expect(total_row).to_contain_text("All routes")
    await expect(total_row.locator(".c-share")).to_contain_text("%")
    assert await page.locator("#routes-body tr").count() >= 3
    assert await total_row.locator("svg.spread circle.dot").count() >= 3
    chart = page.locator("#delay-chart")
    await expect(chart).to_have_attribute("aria-label", re.compile("median .* p90"))

    groups = page.locator("#problem-lists .problem-group")
    await expect(groups).to_have_count(3)
    await expect(groups.nth(0)).to_contain_text("Stale")
    await expect(groups.nth(1)).to_contain_text("Off route")
    await expect(groups.nth(2)).to_contain_text("Not matched")
    await expect(page.locator("#rejected")).not_to_be_empty()
    rejected = tracker.get("/api/problems")
    assert isinstance(rejected, dict)
    for reason in rejected["rejected_by_reason"]:
        await expect(page.locator(f'#rejected tr[data-reason="{reason}"]')).to_be_attached()
    await page.locator(".routes").screenshot(path=screenshot_path("operator-routes"))
    await page.locator(".problems").screenshot(path=screenshot_path("operator-problems"))


async def test_arabic_turns_the_page_right_to_left(tracker: Tracker, page: Page) -> None:
    await open_operator(page, tracker)
    await page.locator("#language").select_option("ar")
    await expect(page.locator("html")).to_have_attribute("dir", "rtl")
    await expect(page.locator("html")).to_have_attribute("lang", "ar")
    await expect(page.locator("h1")).to_have_text("التشغيل")
    await expect(page.locator("#status")).to_have_text("مباشر")
    await expect(page.locator('#fleet-table th[data-sort="delay"]')).to_contain_text("التأخير")
    await expect(page.locator('a[data-i18n="nav_replay"]')).to_have_text("إعادة العرض")  # common.js
    await page.screenshot(path=screenshot_path("operator-arabic"))
    await page.locator("#language").select_option("fr")
    await expect(page.locator("html")).to_have_attribute("dir", "ltr")
    await expect(page.locator("h1")).to_have_text("Exploitation")
    await expect(page.locator('a[data-i18n="nav_map"]')).to_have_text("Carte en direct")


async def test_a_dropped_websocket_is_told_and_reconnects(tracker: Tracker, page: Page) -> None:
    connections: list[WebSocketRoute] = []
    server_down = False

    async def through(ws: WebSocketRoute) -> None:
        connections.append(ws)
        if server_down:
            await ws.close(code=1011, reason="test: the server is down")
        else:
            ws.connect_to_server()

    await page.route_web_socket(re.compile(r"/ws/live"), through)
    await open_operator(page, tracker)
    server_down = True
    await connections[0].close(code=1011, reason="test: the server went away")
    status = page.locator("#status")
    await expect(status).to_have_text(re.compile("not live"))
    await expect(status).not_to_have_class(re.compile(r"\blive\b"))
    await page.screenshot(path=screenshot_path("operator-reconnecting"))
    server_down = False
    await expect(status).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    assert len(connections) >= 2


async def test_a_failing_endpoint_shows_a_clear_error(tracker: Tracker, page: Page) -> None:
    await page.route(
        "**/api/problems",
        lambda route: route.fulfill(status=503, json={"detail": "the database is unavailable"}),
    )
    await open_operator(page, tracker)
    error = page.locator("#error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("/api/problems: 503 the database is unavailable")
    await expect(page.locator("#fleet-body tr").first).to_be_visible()  # the rest still works
    await page.screenshot(path=screenshot_path("operator-api-error"))
