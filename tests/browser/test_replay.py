"""The replay page (/replay) in Chromium against the real demo tracker's stored history.

The stored range loads and the last hour of it is loaded by itself; playing advances the time
and moves the buses; dragging the timeline changes the time shown; 60× plays faster than 1×;
Arabic turns the page right-to-left; an empty history and a failing endpoint are told.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import Tracker, screenshot_path

pytestmark = pytest.mark.asyncio(loop_scope="session")

HISTORY_NEEDED_S = 30.0  # enough stored history for a window worth playing (60× for 0.4 s)
HISTORY_WAIT_S = 90.0


async def wait_for_history(tracker: Tracker) -> None:
    """Until the tracker has stored `HISTORY_NEEDED_S` of positions (at once in a full run)."""
    deadline = time.monotonic() + HISTORY_WAIT_S
    while time.monotonic() < deadline:
        bounds = tracker.get("/api/history/bounds")
        assert isinstance(bounds, dict)
        if bounds["first_s"] is not None and bounds["last_s"] - bounds["first_s"] >= (
            HISTORY_NEEDED_S
        ):
            return
        await asyncio.sleep(1)
    pytest.fail(f"the tracker stored less than {HISTORY_NEEDED_S} s of history")


async def open_replay(page: Page, tracker: Tracker) -> None:
    await wait_for_history(tracker)
    await tracker.log_in(page)
    await page.goto(tracker.url + "/replay")
    await expect(page.locator("#loaded")).to_contain_text("positions of", timeout=15_000)
    await expect(page.locator("path.replay-bus").first).to_be_attached()


async def scrubber_s(page: Page) -> float:
    return float(await page.locator("#scrubber").input_value())


async def bus_paths(page: Page) -> dict[str, str]:
    """vehicle id → the SVG path of its dot (it changes when the bus moves)."""
    paths: dict[str, str] = await page.eval_on_selector_all(
        "path.replay-bus",
        "paths => Object.fromEntries(paths.map(p => [p.dataset.id, p.getAttribute('d')]))",
    )
    return paths


async def play_for(page: Page, seconds: float) -> tuple[float, float]:
    """Play for about `seconds` (Space on the page), then pause: (play time gained, wall time)."""
    before = await scrubber_s(page)
    started = time.monotonic()
    await page.locator("#play").click()
    await expect(page.locator("#play")).to_have_attribute("aria-pressed", "true")
    await asyncio.sleep(seconds)
    await page.locator("#play").click()
    elapsed = time.monotonic() - started
    await expect(page.locator("#play")).to_have_attribute("aria-pressed", "false")
    return await scrubber_s(page) - before, elapsed


async def test_the_stored_range_and_the_last_hour_load(tracker: Tracker, page: Page) -> None:
    await open_replay(page, tracker)
    await expect(page.locator("#bounds")).to_contain_text("Stored history:")
    await expect(page.locator("#zone-name")).to_have_text("Australia/Brisbane")
    assert await page.locator("#from").input_value()
    assert await page.locator("#to").input_value()
    await expect(page.locator("#scrubber")).to_be_enabled()
    await expect(page.locator("#play")).to_be_enabled()
    await expect(page.locator("#bus-count")).to_contain_text("Buses on the map:")
    await page.screenshot(path=screenshot_path("replay-loaded"))


async def test_playing_advances_the_time_and_moves_the_buses(tracker: Tracker, page: Page) -> None:
    await open_replay(page, tracker)
    shown_before = await page.locator("#play-time").text_content()
    time_before = await scrubber_s(page)
    paths_before = await bus_paths(page)
    await page.locator("body").focus()
    await page.keyboard.press("Space")  # play
    await expect(page.locator("#play")).to_have_attribute("aria-pressed", "true")
    await asyncio.sleep(2.0)
    await page.keyboard.press("Space")  # pause
    await expect(page.locator("#play")).to_have_attribute("aria-pressed", "false")
    assert await scrubber_s(page) > time_before + 5  # 10× by default
    assert await page.locator("#play-time").text_content() != shown_before
    paths_after = await bus_paths(page)
    moved = [v for v, d in paths_after.items() if v in paths_before and paths_before[v] != d]
    assert moved, "no bus moved on the map while playing"
    await page.screenshot(path=screenshot_path("replay-playing"))


async def test_dragging_the_timeline_changes_the_time(tracker: Tracker, page: Page) -> None:
    await open_replay(page, tracker)
    shown_before = await page.locator("#play-time").text_content()
    time_before = await scrubber_s(page)
    box = await page.locator("#scrubber").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + 4, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.4, y, steps=5)
    await page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    await page.mouse.up()
    assert await scrubber_s(page) > time_before + 10
    await expect(page.locator("#play-time")).not_to_have_text(shown_before or "")
    valuetext = await page.locator("#scrubber").get_attribute("aria-valuetext")
    assert valuetext
    assert (await page.locator("#play-time").text_content() or "?") in valuetext
    await page.screenshot(path=screenshot_path("replay-dragged"))


async def test_60x_plays_faster_than_1x(tracker: Tracker, page: Page) -> None:
    await open_replay(page, tracker)
    await page.locator("#speed").select_option("1")
    gained_1x, wall_1x = await play_for(page, 2.0)
    await page.locator("#scrubber").focus()
    await page.keyboard.press("Home")  # back to the start of the window
    await page.locator("#speed").select_option("60")
    gained_60x, wall_60x = await play_for(page, 0.4)
    rate_1x = gained_1x / wall_1x
    rate_60x = gained_60x / wall_60x
    assert 0.2 < rate_1x < 2.0, f"1× played {gained_1x:.1f} s in {wall_1x:.1f} s"
    assert rate_60x > 15 * rate_1x, f"60× played {gained_60x:.1f} s in {wall_60x:.1f} s"


async def test_arabic_turns_the_page_right_to_left(tracker: Tracker, page: Page) -> None:
    await open_replay(page, tracker)
    await page.locator("#language").select_option("ar")
    await expect(page.locator("html")).to_have_attribute("dir", "rtl")
    await expect(page.locator("h1")).to_have_text("إعادة العرض")
    await expect(page.locator("#play-label")).to_have_text("تشغيل")
    await expect(page.locator("#bounds")).to_contain_text("السجل المخزن")
    await page.screenshot(path=screenshot_path("replay-arabic"))


async def test_an_empty_history_is_told(tracker: Tracker, page: Page) -> None:
    await page.route(
        "**/api/history/bounds", lambda route: route.fulfill(json={"first_s": None, "last_s": None})
    )
    await tracker.log_in(page)
    await page.goto(tracker.url + "/replay")
    await expect(page.locator("#bounds")).to_contain_text("No history is stored yet")
    await expect(page.locator("#load")).to_be_disabled()
    await expect(page.locator("#play")).to_be_disabled()
    await page.screenshot(path=screenshot_path("replay-empty-history"))


async def test_a_failing_history_request_shows_a_clear_error(tracker: Tracker, page: Page) -> None:
    await page.route(
        "**/api/history?*",
        lambda route: route.fulfill(status=503, json={"detail": "the database is unavailable"}),
    )
    await tracker.log_in(page)
    await page.goto(tracker.url + "/replay")
    error = page.locator("#error")
    await expect(error).to_contain_text("503 the database is unavailable")
    await expect(page.locator("#bounds")).to_contain_text("Stored history:")  # not a blank page
    await page.screenshot(path=screenshot_path("replay-api-error"))


async def test_a_truncated_window_is_told(tracker: Tracker, page: Page) -> None:
    await wait_for_history(tracker)

    async def cut_short(route: Route) -> None:
        answer = await (await route.fetch()).json()
        answer["positions"] = answer["positions"][:100]
        answer.update(count=100, limit=100, truncated=True)
        await route.fulfill(json=answer)

    await page.route("**/api/history?*", cut_short)
    await tracker.log_in(page)
    await page.goto(tracker.url + "/replay")
    loaded = page.locator("#loaded")
    await expect(loaded).to_contain_text("more than 100 positions")
    await expect(loaded).to_have_class(re.compile("warning"))
    await expect(page.locator("#play")).to_be_enabled()
    await page.locator("#window-form").screenshot(path=screenshot_path("replay-truncated"))
