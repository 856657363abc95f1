"""The rider's page (`/`) in a real Chromium against a real tracker with simulated buses.

The buses are drawn on one canvas, so the tests read what was drawn from `window.BT_RIDER`
(`drawnBuses()`: id, route, page coordinates and the drawn position of every bus on screen) and
click where a bus is drawn, as a rider would.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, TypedDict, cast

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import Tracker, screenshot_path

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIVE_TIMEOUT_MS = 15_000


class DrawnBus(TypedDict):
    id: str
    route_id: str | None
    stale: bool
    heading: float | None
    x: float
    y: float
    lat: float
    lon: float


async def drawn_buses(page: Page) -> list[DrawnBus]:
    return cast(list[DrawnBus], await page.evaluate("BT_RIDER.drawnBuses()"))


async def open_live(page: Page, url: str, *, min_buses: int = 1) -> None:
    await page.goto(url)
    await expect(page.locator("#status")).to_have_class(
        re.compile(r"\blive\b"), timeout=LIVE_TIMEOUT_MS
    )
    await page.wait_for_function(
        f"BT_RIDER.ready && BT_RIDER.drawnBuses().length >= {min_buses}", timeout=LIVE_TIMEOUT_MS
    )


def busiest_route(tracker: Tracker) -> str:
    """The route with the most fresh, in-service buses right now."""
    answer = cast(dict[str, Any], tracker.get("/api/vehicles"))
    counts = Counter(
        v["route_id"]
        for v in answer["vehicles"]
        if v["route_id"] and v["state"] == "in_service" and not v["stale"]
    )
    assert counts, "no in-service bus in the demo"
    return str(counts.most_common(1)[0][0])


def isolated(buses: list[DrawnBus], candidates: list[DrawnBus], min_px: float) -> list[DrawnBus]:
    """The candidates with no other drawn bus within `min_px` (a click hits only them)."""
    return [
        c
        for c in candidates
        if all(
            b["id"] == c["id"] or (b["x"] - c["x"]) ** 2 + (b["y"] - c["y"]) ** 2 > min_px**2
            for b in buses
        )
    ]


async def test_buses_appear_point_somewhere_and_move(tracker: Tracker, page: Page) -> None:
    await open_live(page, tracker.url + "/", min_buses=5)
    first = {b["id"]: (b["lat"], b["lon"]) for b in await drawn_buses(page)}
    assert await page.locator(".bus-canvas").get_attribute("data-drawn") == str(len(first))
    moved: list[str] = []
    for _ in range(30):  # pings come every few seconds; give them up to 15 s
        await page.wait_for_timeout(500)
        moved = [
            b["id"]
            for b in await drawn_buses(page)
            if b["id"] in first and first[b["id"]] != (b["lat"], b["lon"])
        ]
        if len(moved) >= 3:
            break
    assert len(moved) >= 3, f"only {len(moved)} buses moved"
    headings = [b["heading"] for b in await drawn_buses(page)]
    assert sum(h is not None for h in headings) >= len(headings) // 2  # arrows, not dots
    await expect(page.locator("#count")).to_have_text(re.compile(r"^\d+ buses$"))
    await expect(page.locator("#route-list input[type=checkbox]").first).to_be_visible()
    await page.screenshot(path=screenshot_path("rider-map"))


async def test_choosing_a_route_filters_the_map_and_the_url_keeps_it(
    tracker: Tracker, page: Page, browser: Browser
) -> None:
    route_id = busiest_route(tracker)
    routes = cast(dict[str, Any], tracker.get("/api/routes"))["routes"]
    route = next(r for r in routes if r["route_id"] == route_id)
    await open_live(page, tracker.url + "/", min_buses=5)
    everyone = await drawn_buses(page)

    await page.get_by_role("searchbox").fill(route["short_name"])
    await page.get_by_role(
        "checkbox", name=re.compile(rf"^{re.escape(route['short_name'])}\b")
    ).first.check()
    await expect(page).to_have_url(re.compile(rf"\?routes={re.escape(route_id)}$"))
    await page.wait_for_function(
        f"""BT_RIDER.drawnBuses().length > 0
            && BT_RIDER.drawnBuses().every(b => b.route_id === {route_id!r})""",
        timeout=LIVE_TIMEOUT_MS,
    )
    chosen = await drawn_buses(page)
    assert 0 < len(chosen) < len(everyone)
    await expect(page.locator("#route-summary")).to_have_text("1 selected")
    await page.screenshot(path=screenshot_path("rider-route-chosen"))

    # the URL is enough to come back to the same view
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    try:
        again = await context.new_page()
        await open_live(again, page.url)
        assert {b["route_id"] for b in await drawn_buses(again)} == {route_id}
        await expect(again.locator(f'#route-list input[value="{route_id}"]')).to_be_checked()
        await again.screenshot(path=screenshot_path("rider-route-from-url"))
    finally:
        await context.close()

    await page.get_by_role("button", name="Show all routes").click()
    await expect(page).to_have_url(tracker.url + "/")
    await page.wait_for_function(f"BT_RIDER.drawnBuses().length > {len(chosen)}")


async def test_clicking_a_bus_shows_route_delay_age_and_next_stops(
    tracker: Tracker, page: Page
) -> None:
    route_id = busiest_route(tracker)
    await open_live(page, f"{tracker.url}/?routes={route_id}")
    await page.wait_for_timeout(1200)  # let the map settle on the route and the glides end
    target: DrawnBus | None = None
    for _ in range(10):
        drawn = await drawn_buses(page)
        fresh = [b for b in drawn if not b["stale"]]
        for bus in isolated(drawn, fresh, 30):
            detail = cast(dict[str, Any], tracker.get(f"/api/vehicles/{bus['id']}?trail_s=0"))
            trip = detail["trip"]
            if trip and trip["next_stops"] and detail["vehicle"]["delay_s"] is not None:
                target = bus
                break
        if target:
            break
        await page.wait_for_timeout(1000)
    assert target is not None, "no lone bus with a trip, a delay and stops ahead"
    # where it is drawn now (it may have glided since)
    now = next(b for b in await drawn_buses(page) if b["id"] == target["id"])
    await page.mouse.click(now["x"], now["y"])

    details = page.locator("#details")
    await expect(details).to_be_visible()
    assert await page.evaluate("BT_RIDER.layer.selectedId") == target["id"]
    short_name = next(
        r["short_name"]
        for r in cast(dict[str, Any], tracker.get("/api/routes"))["routes"]
        if r["route_id"] == route_id
    )
    await expect(page.locator("#details-title")).to_have_text(f"Bus {short_name}")
    await expect(details.locator("dd.delay")).to_have_text(
        re.compile(r"^(\d+ min (late|early)|on time)$")
    )
    age = details.locator("[data-age]")
    await expect(age).to_have_text(re.compile(r"^updated \d+ (s|min) ago"))
    first_age = await age.text_content()
    await expect(age).not_to_have_text(first_age or "", timeout=5_000)  # it counts on its own
    stops = details.locator(".next-stops li")
    await expect(stops.first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(stops.first.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    await page.screenshot(path=screenshot_path("rider-bus-panel"))

    await page.keyboard.press("Escape")
    await expect(details).to_be_hidden()


async def test_clicking_a_stop_shows_its_arrivals_and_departures(
    tracker: Tracker, page: Page
) -> None:
    route_id = busiest_route(tracker)
    await open_live(page, f"{tracker.url}/?routes={route_id}")
    collection = cast(dict[str, Any], tracker.get(f"/api/routes/{route_id}.geojson"))
    stops = [f for f in collection["features"] if f["properties"]["kind"] == "stop"]
    stop = stops[len(stops) // 2]  # mid-route: buses do not wait there as at a terminus
    lon, lat = stop["geometry"]["coordinates"]
    # (`void`: setView answers the map, which is no value to send back to the test)
    await page.evaluate(f"void BT_RIDER.map.setView([{lat}, {lon}], 17, {{animate: false}})")
    stop_id = stop["properties"]["stop_id"]
    await page.wait_for_function(f"BT_RIDER.stopPoint({stop_id!r}) !== null")
    point = cast(dict[str, float], await page.evaluate(f"BT_RIDER.stopPoint({stop_id!r})"))
    # a bus standing on the stop would take the click: wait until none is that close
    for _ in range(20):
        near = [
            b
            for b in await drawn_buses(page)
            if (b["x"] - point["x"]) ** 2 + (b["y"] - point["y"]) ** 2 < 20**2
        ]
        if not near:
            break
        await page.wait_for_timeout(500)
    assert await page.evaluate(f"BT_RIDER.stopPoint({stop_id!r})") == point  # the map stayed
    await page.mouse.click(point["x"], point["y"])

    details = page.locator("#details")
    await expect(details).to_have_attribute("data-kind", "stop")
    await expect(page.locator("#details-title")).to_have_text(f"Stop: {stop['properties']['name']}")
    # the buses on their way ("in 4–7 min"), then the timetable's departures they do not cover
    rows = details.locator(".arrivals li.arrival, .departures li")
    await expect(rows.first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    arrivals = details.locator(".arrivals li.arrival .arr-when")
    if await arrivals.count():
        when = re.compile(r"^(in \d+–\d+ min|in \d+ min|within \d+ min|due|now)$")
        await expect(arrivals.first).to_have_text(when)
    else:
        times = details.locator(".departures li time")
        await expect(times.first).to_have_text(re.compile(r"^\d\d:\d\d$"))
    await page.screenshot(path=screenshot_path("rider-stop-panel"))


async def test_the_language_switch_turns_the_page_arabic_and_french(
    tracker: Tracker, page: Page
) -> None:
    await open_live(page, tracker.url + "/")
    html = page.locator("html")
    await page.select_option("#lang", "ar")
    await expect(html).to_have_attribute("dir", "rtl")
    await expect(html).to_have_attribute("lang", "ar")
    await expect(page.locator("h1")).to_have_text("متتبع الحافلات")
    await expect(page.locator("#status")).to_have_text("مباشر")
    await expect(page.locator("#route-search")).to_have_attribute("placeholder", "ابحث عن خط")
    await expect(page.locator("#count")).to_have_text(re.compile(r"^\d+ حافلة$"))
    # the route panel is on the right in right-to-left
    panel = await page.locator("#routes-panel").bounding_box()
    assert panel is not None
    assert panel["x"] > 600
    await page.screenshot(path=screenshot_path("rider-arabic"))

    await page.select_option("#lang", "fr")
    await expect(html).to_have_attribute("dir", "ltr")
    await expect(page.locator("h1")).to_have_text("Suivi des bus")
    await expect(page.locator("#status")).to_have_text("en direct")
    await page.screenshot(path=screenshot_path("rider-french"))
    await page.select_option("#lang", "en")  # the choice is remembered per browser profile


async def test_a_phone_sized_screen(tracker: Tracker, browser: Browser) -> None:
    context = await browser.new_context(
        viewport={"width": 360, "height": 740}, locale="fr-FR", is_mobile=True, has_touch=True
    )
    try:
        page = await context.new_page()
        await open_live(page, f"{tracker.url}/?routes={busiest_route(tracker)}")
        await expect(page.locator("html")).to_have_attribute("lang", "fr")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 360
        await expect(page.locator("#routes-panel")).to_be_hidden()
        await page.screenshot(path=screenshot_path("rider-phone"))

        await page.get_by_role("button", name="Lignes", exact=True).click()
        await expect(page.locator("#route-search")).to_be_focused()
        await page.screenshot(path=screenshot_path("rider-phone-routes"))
        await page.get_by_role("button", name="Lignes", exact=True).click()

        bus = (await drawn_buses(page))[0]
        await page.mouse.click(bus["x"], bus["y"])
        details = page.locator("#details")
        await expect(details).to_be_visible()
        box = await details.bounding_box()
        assert box is not None
        assert box["y"] > 200  # a bottom sheet, the map above it
        assert abs(box["y"] + box["height"] - 740) < 2
        await expect(details.locator("[data-age]")).to_have_text(re.compile("mis à jour"))
        await page.screenshot(path=screenshot_path("rider-phone-bus"))
    finally:
        await context.close()


async def test_a_dropped_websocket_says_not_live_then_recovers(
    tracker: Tracker, page: Page
) -> None:
    await open_live(page, tracker.url + "/")
    # BT.LiveSocket's own backoff decides the wait: 3 s, so the state can be seen
    await page.evaluate("BT_RIDER.socket.retryMs = 3000; BT_RIDER.socket.socket.close()")
    status = page.locator("#status")
    await expect(status).to_have_text("not live: reconnecting…")
    await expect(status).not_to_have_class(re.compile(r"\blive\b"))
    await expect(page.locator("#map-notice")).to_be_visible()
    await expect(page.locator("body")).to_have_class(re.compile(r"\bnot-live\b"))
    await page.screenshot(path=screenshot_path("rider-not-live"))

    await expect(status).to_have_text("live", timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#map-notice")).to_be_hidden()
    assert await page.evaluate("BT_RIDER.statusLog") == ["live", "reconnecting", "live"]
    await page.wait_for_function("BT_RIDER.drawnBuses().length > 0")


async def test_api_errors_and_an_empty_feed_are_said(tracker: Tracker, page: Page) -> None:
    await page.route(
        "**/api/network.geojson",
        lambda route: route.fulfill(status=503, json={"detail": "database unavailable"}),
    )
    await page.route("**/api/routes", lambda route: route.fulfill(status=200, json={"routes": []}))
    await page.goto(tracker.url + "/?routes=nope")
    error = page.locator("#error")
    await expect(error).to_contain_text("503 database unavailable")
    await expect(page.locator("#route-list")).to_have_text(
        "This feed has no routes: there is nothing to show."
    )
    await expect(page.locator("#map-notice")).to_have_text("No routes in this feed.")
    await page.screenshot(path=screenshot_path("rider-errors"))


async def test_a_route_without_a_shape_is_listed_and_shown_by_its_stops(
    tracker: Tracker, page: Page
) -> None:
    # Cairns has a shape for every route, so the tracker's answers are changed on the way to
    # the page: the chosen route says it has no shape and its lines leave the network layer.
    route_id = busiest_route(tracker)
    routes = tracker.get("/api/routes")
    network = tracker.get("/api/network.geojson")
    assert isinstance(routes, dict)
    assert isinstance(network, dict)
    for route in routes["routes"]:
        if route["route_id"] == route_id:
            route["has_shape"] = False
    network["features"] = [
        f for f in network["features"] if route_id not in f["properties"]["route_ids"]
    ]
    await page.route("**/api/routes", lambda r: r.fulfill(status=200, json=routes))
    await page.route("**/api/network.geojson", lambda r: r.fulfill(status=200, json=network))
    await page.goto(f"{tracker.url}/?routes={route_id}")
    await expect(page.locator("#route-list")).to_contain_text("no shape: stops joined")
    await expect(page.locator("#error")).to_be_hidden()
    await page.wait_for_function("BT_RIDER.drawnBuses().length > 0")
    await page.screenshot(path=screenshot_path("rider-route-without-shape"))
