"""The live intelligence on the pages, in Chromium against the real corridor tracker
(`tests.browser.corridor`), checked against the simulator's ground truth (its truth.json):

- the operator's alerts list the cancelled trip (a ghost), the bus that stopped reporting, the
  gap behind the cancelled trip and the detour, and choosing one shows it on the map;
- the time–distance diagram of route C draws a line per bus (none for the cancelled trip's bus,
  a line that stops where the silent bus went silent), the timetable's trips in grey;
- the route table's Headway column shows the frequency line's share of gaps within the band,
  and its adherence chart shows; the accuracy table fills by horizon;
- the rider's stop panel on route C shows "in N–M min" with how old the bus's position is, and
  "no bus reported" for the cancelled trip; a bus's panel shows its predicted next stops;
- the French rider page and the Arabic operator page say the same.

The corridor's clock runs at real time once its fixture hands it over, with every alert open
for a few minutes (`tests.browser.corridor.OPEN_FOR_S`): the alerts test comes first.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import Corridor, screenshot_path

pytestmark = pytest.mark.asyncio(loop_scope="session")

LIVE_TIMEOUT_MS = 15_000
ALERT_TIMEOUT_MS = 60_000  # the assessments come every few seconds, the list re-reads every 30 s
ZONE = ZoneInfo("Africa/Casablanca")  # the corridor feed's agency time zone
RANGE = re.compile(r"^in \d+–\d+ min$")
WHEN = re.compile(r"^(in \d+–\d+ min|in \d+ min|within \d+ min|due|now)$")
SEEN = re.compile(r"^bus seen \d+ (s|min) ago")


def hhmm(epoch_s: float) -> str:
    return dt.datetime.fromtimestamp(epoch_s, ZONE).strftime("%H:%M")


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    north = math.radians(lat2 - lat1) * 6_371_000
    east = math.radians(lon2 - lon1) * 6_371_000 * math.cos(math.radians(lat1))
    return math.hypot(north, east)


async def open_operator(page: Page, corridor: Corridor, lang: str = "en") -> None:
    await corridor.tracker.log_in(page)
    await page.goto(f"{corridor.url}/operator?lang={lang}")
    await expect(page.locator("#status")).to_have_class(
        re.compile(r"\blive\b"), timeout=LIVE_TIMEOUT_MS
    )


def alert_item(page: Page, kind: str, *vehicles: str, text: str | None = None) -> Locator:
    """The alert of `kind` in the list naming `vehicles` (and holding `text`)."""
    item = page.locator(f'#alert-list li[data-kind="{kind}"]')
    for vehicle in vehicles:
        item = item.filter(has=page.locator(f'[data-vehicle="{vehicle}"]'))
    return item.filter(has_text=text) if text else item


async def map_centre_near(page: Page, lat: float, lon: float, within_m: float) -> float:
    """Waits until the operator's map is centred within `within_m` of a point; the distance."""
    distance = math.inf
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        centre = cast(dict[str, float], await page.evaluate("BT_OPERATOR.map.getCenter()"))
        distance = metres(lat, lon, centre["lat"], centre["lng"])
        if distance <= within_m:
            return distance
        await page.wait_for_timeout(200)
    raise AssertionError(f"the map is centred {distance:.0f} m from ({lat}, {lon})")


async def show_on_map(page: Page, item: Locator, caption: str) -> None:
    await item.locator(".alert-show").click()
    await expect(item.locator(".alert-show")).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#map-alert")).to_be_visible()
    await expect(page.locator("#map-alert")).to_contain_text(f"On the map: {caption}")


async def test_the_alerts_list_the_scenarios_and_show_each_on_the_map(
    corridor: Corridor, page: Page
) -> None:
    cancelled = corridor.scenario("cancelled-trip")
    silent = corridor.scenario("stop-reporting")
    detour = corridor.scenario("detour")
    await open_operator(page, corridor)

    ghost = alert_item(page, "ghost_trip", text=cancelled["trip_id"])
    await expect(ghost).to_have_count(1, timeout=ALERT_TIMEOUT_MS)
    await expect(ghost).to_contain_text("Trip with no bus · route C")
    await expect(ghost).to_contain_text(f"due {hhmm(cancelled['start_s'])}")
    not_reporting = alert_item(page, "silent_vehicle", silent["vehicle_id"])
    await expect(not_reporting).to_have_count(1, timeout=ALERT_TIMEOUT_MS)
    await expect(not_reporting).to_contain_text(f"on trip {silent['trip_id']}")
    # the bus behind the cancelled trip runs with twice the headway ahead of it
    gap = alert_item(
        page, "gapping", cancelled["follower_vehicle_id"], cancelled["leader_vehicle_id"]
    )
    await expect(gap).to_have_count(1, timeout=ALERT_TIMEOUT_MS)
    await expect(gap).to_contain_text("Gap in service · route C")
    minutes = re.search(r"is ([\d.]+) min behind", await gap.inner_text())
    assert minutes is not None
    assert 9 <= float(minutes.group(1)) <= 15  # two 6-minute headways
    off_route = alert_item(page, "detour", detour["vehicle_id"])
    await expect(off_route).to_have_count(1, timeout=ALERT_TIMEOUT_MS)
    await expect(off_route).to_contain_text(f"Detour · route {detour['route_id']}")
    away = re.search(r"up to (\d+) m away", await off_route.inner_text())
    assert away is not None
    assert int(away.group(1)) >= 0.7 * detour["offset_m"]
    # the list follows the websocket's alert changes, besides its re-reads every 30 s
    await page.wait_for_function("BT_OPERATOR.alertLog.length > 0", timeout=ALERT_TIMEOUT_MS)
    await expect(page.locator("#alerts-count")).to_have_text(re.compile(r"^\d+$"))
    assert int(await page.locator("#alerts-count").inner_text()) >= 4
    await page.screenshot(path=screenshot_path("operator-alerts"), full_page=True)

    # the filter by route
    await page.select_option("#alerts-route", "F")
    await expect(page.locator('#alert-list li[data-kind="ghost_trip"]')).to_have_count(0)
    await expect(off_route).to_have_count(1)
    await page.select_option("#alerts-route", "")

    # each on the map: where the silent bus was last heard, the detour's path, the ghost's
    # first stop, the gap's bus
    await show_on_map(page, not_reporting, f"Bus not reporting · route {silent['route_id']}")
    await map_centre_near(page, silent["lat"], silent["lon"], 300)
    await expect(page.locator("#map .alert-marker")).to_have_count(1)

    await show_on_map(page, off_route, f"Detour · route {detour['route_id']}")
    await expect(page.locator("#map path.detour-path")).to_have_count(1)
    await expect(page.locator("#map .alert-marker.detour-left")).to_have_count(1)
    visible = await page.evaluate(
        "([lat, lon]) => BT_OPERATOR.map.getBounds().contains([lat, lon])",
        [detour["left_lat"], detour["left_lon"]],
    )
    assert visible, "the map does not show where the bus left its route"
    await page.locator(".map-panel").screenshot(path=screenshot_path("operator-alert-detour"))

    first_stop = cast(dict[str, Any], corridor.tracker.get("/api/stops/C0"))
    await show_on_map(page, ghost, "Trip with no bus · route C")
    await map_centre_near(page, first_stop["lat"], first_stop["lon"], 50)

    await show_on_map(page, gap, "Gap in service · route C")
    await expect(page.locator("#map .alert-marker")).to_have_count(1)
    await page.locator("#map-alert").get_by_role("button", name="Clear").click()
    await expect(page.locator("#map-alert")).to_be_hidden()
    await expect(page.locator("#map .alert-marker")).to_have_count(0)

    # a vehicle button chooses the vehicle as a table row does
    follower = cancelled["follower_vehicle_id"]
    await gap.locator(f'[data-vehicle="{follower}"]').click()
    await expect(page.locator(f'#fleet-body tr[data-id="{follower}"]')).to_have_class(
        re.compile(r"\bselected\b")
    )


async def diagram_lines(page: Page, corridor: Corridor, route_id: str) -> set[str]:
    """Chooses `route_id` (direction 0) in the diagram; the buses it draws, once they are the
    buses the API gives (the page and this test read at different moments)."""
    await page.select_option("#diagram-route", f"{route_id}|0")
    chart = page.locator(f'#diagram svg.td-chart[data-route="{route_id}"]')
    label = re.compile(rf"^Route {route_id}: \d+ buses from")
    await expect(chart).to_have_attribute("aria-label", label, timeout=LIVE_TIMEOUT_MS)
    wanted: set[str] = set()
    drawn: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        path = f"/api/operations/time-distance?route_id={route_id}&direction_id=0"
        answer = cast(dict[str, Any], corridor.tracker.get(path))
        wanted = {v["vehicle_id"] for v in answer["vehicles"]}
        drawn = set(
            await page.eval_on_selector_all(
                "#diagram g.td-bus", "groups => groups.map(g => g.dataset.vehicle)"
            )
        )
        if drawn == wanted:
            break
        await page.wait_for_timeout(1000)
    assert drawn == wanted, (drawn, wanted)
    return drawn


async def test_the_time_distance_diagram_draws_a_line_per_bus(
    corridor: Corridor, page: Page
) -> None:
    cancelled = corridor.scenario("cancelled-trip")
    silent = corridor.scenario("stop-reporting")
    await open_operator(page, corridor)
    drawn = await diagram_lines(page, corridor, "C")
    assert len(drawn) >= 4
    assert cancelled["vehicle_id"] not in drawn  # the cancelled trip's bus stayed home
    assert await page.locator("#diagram g.td-bus polyline").count() >= len(drawn)
    await expect(page.locator("#diagram-legend li[data-vehicle]")).to_have_count(len(drawn))
    # the timetable's trips in grey, the cancelled one among them, with no bus on it
    trip = cancelled["trip_id"]
    timetable = page.locator(f'#diagram .td-scheduled polyline[data-trip="{trip}"]')
    await expect(timetable).to_have_count(1)
    await page.locator(".panel.diagram").screenshot(path=screenshot_path("operator-diagram"))

    # the silent bus's line stops where it went silent
    drawn = await diagram_lines(page, corridor, silent["route_id"])
    assert silent["vehicle_id"] in drawn
    line = page.locator(f'#diagram g.td-bus[data-vehicle="{silent["vehicle_id"]}"]')
    last_s = float(await line.get_attribute("data-last-s") or "nan")
    last_m = float(await line.get_attribute("data-last-m") or "nan")
    assert last_s <= silent["start_s"] + 1
    assert abs(last_m - silent["shape_dist_m"]) < 300


async def test_the_headway_column_and_the_adherence_chart_of_the_frequency_line(
    corridor: Corridor, page: Page
) -> None:
    await open_operator(page, corridor)
    name = page.locator('th[scope="row"]', has_text=re.compile(r"^F$"))
    row = page.locator("#routes-body tr").filter(has=name)
    headway = row.locator("td.c-headway")
    await expect(headway.locator(".share-text")).to_have_text(
        re.compile(r"^\d+\s?% \(\d+ of \d+\)$"), timeout=LIVE_TIMEOUT_MS
    )
    counts = re.compile(r"^\d+ bunched · \d+ gapped$")
    await expect(headway.locator(".hw-counts")).to_have_text(counts)
    await expect(headway.locator(".hw-kind")).to_have_text("headway-based")
    await expect(page.locator("#adherence-figure")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    await expect(page.locator("#adherence-chart")).to_have_attribute(
        "aria-label",
        re.compile(r"^Frequency lines now: \d+ of their \d+ gaps within ±50 %.*Routes: F\.$"),
    )
    # the fleet table's Delay column shows a frequency bus's gap to the bus ahead
    gaps = page.locator("#fleet-body tr td.c-delay", has_text=re.compile(r"^gap [\d.]+ / 6 min$"))
    await expect(gaps.first).to_be_visible(timeout=LIVE_TIMEOUT_MS)


async def test_the_accuracy_table_fills_by_horizon(corridor: Corridor, page: Page) -> None:
    await open_operator(page, corridor)
    rows = page.locator("#accuracy-body tr[data-from-min]")
    await expect(rows).to_have_count(4, timeout=LIVE_TIMEOUT_MS)
    heads = await rows.locator("th").all_inner_texts()
    assert heads == ["0–5 min", "5–10 min", "10–20 min", "20+ min"]
    counted = page.locator("#accuracy-body tr[data-from-min]:not([data-predictions='0'])")
    assert await counted.count() >= 1
    cells = await counted.first.locator("td").all_inner_texts()
    assert re.fullmatch(r"\d[\d,]*", cells[0]), cells
    assert re.fullmatch(r"\d+ s|[\d.]+ min", cells[1]), cells
    assert re.match(r"\d+\s?%", cells[2]), cells
    asof = re.compile(r"^As of \d\d:\d\d:\d\d\.$")
    await expect(page.locator("#accuracy-asof")).to_have_text(asof)


def stop_with_ranges(corridor: Corridor) -> dict[str, Any]:
    """A stop of route C where a bus is predicted a few minutes away and the cancelled trip is
    still to come (so its departure says "no bus reported")."""
    cancelled = corridor.scenario("cancelled-trip")
    found: list[dict[str, Any]] = []
    for k in range(15, 0, -1):
        stop = cast(dict[str, Any], corridor.tracker.get(f"/api/stops/C{k}?limit=8"))
        ghost = [
            d for d in stop["departures"] if d["trip_id"] == cancelled["trip_id"] and d["no_bus"]
        ]
        ahead = [a for a in stop["arrivals"] if a["arrival"]["p10_s"] - stop["now_s"] > 180]
        if ghost and ahead:
            found.append(stop)
    assert found, "no stop of route C has both a predicted bus and the cancelled trip to come"
    return found[len(found) // 2]


async def open_rider_stop(page: Page, corridor: Corridor, stop_id: str, lang: str = "en") -> None:
    await page.goto(f"{corridor.url}/?routes=C&lang={lang}")
    await page.wait_for_function(
        "BT_RIDER.ready && BT_RIDER.drawnBuses().length > 0", timeout=LIVE_TIMEOUT_MS
    )
    await page.evaluate(f"BT_RIDER.open('stop', {stop_id!r})")
    await expect(page.locator("#details")).to_have_attribute("data-kind", "stop")


async def test_the_rider_stop_panel_shows_ranges_and_no_bus(corridor: Corridor, page: Page) -> None:
    cancelled = corridor.scenario("cancelled-trip")
    stop = stop_with_ranges(corridor)
    await open_rider_stop(page, corridor, stop["stop_id"])
    details = page.locator("#details")
    await expect(page.locator("#details-title")).to_have_text(f"Stop: {stop['name']}")
    arrivals = details.locator(".arrivals li.arrival:not([hidden])")
    await expect(arrivals.first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    texts = await arrivals.locator(".arr-when").all_inner_texts()
    assert texts
    assert all(WHEN.match(t) for t in texts), texts
    assert any(RANGE.match(t) for t in texts), texts
    seen = await arrivals.locator(".arr-seen").all_inner_texts()
    assert seen
    assert all(SEEN.match(t) for t in seen), seen
    ghost = details.locator(f'.departures li.no-bus-row[data-trip="{cancelled["trip_id"]}"]')
    await expect(ghost.locator(".no-bus")).to_have_text("no bus reported")
    await expect(ghost.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    assert await details.locator(f'.arrivals li[data-trip="{cancelled["trip_id"]}"]').count() == 0
    await page.screenshot(path=screenshot_path("rider-stop-arrivals"))

    # a bus on its way opens its panel, with its next stops and their predicted ranges
    bus = arrivals.first.locator("button[data-bus]")
    vehicle_id = await bus.get_attribute("data-bus")
    await bus.click()
    await expect(details).to_have_attribute("data-kind", "bus")
    await expect(details.locator(".vehicle-id")).to_contain_text(vehicle_id or "")
    stops = details.locator(".next-stops li[data-p90]")
    await expect(stops.first).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    assert WHEN.match(await stops.first.locator(".arr-when").inner_text())
    await expect(stops.first.locator("time")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    listed = await details.locator(".next-stops li button[data-stop]").evaluate_all(
        "buttons => buttons.map(b => b.dataset.stop)"
    )
    assert stop["stop_id"] in listed  # the stop it is on its way to
    await page.screenshot(path=screenshot_path("rider-bus-predictions"))


async def test_the_pages_in_french_and_arabic(corridor: Corridor, page: Page) -> None:
    cancelled = corridor.scenario("cancelled-trip")
    stop = stop_with_ranges(corridor)
    await open_rider_stop(page, corridor, stop["stop_id"], lang="fr")
    details = page.locator("#details")
    await expect(details.locator(".arrivals .arr-when").first).to_have_text(
        re.compile(r"^(dans \d+ à \d+ min|dans \d+ min|d'ici \d+ min|imminent|maintenant)$"),
        timeout=LIVE_TIMEOUT_MS,
    )
    await expect(details.locator(".arrivals .arr-seen").first).to_have_text(
        re.compile(r"^bus vu il y a \d+ (s|min)")
    )
    ghost = details.locator(f'.departures li[data-trip="{cancelled["trip_id"]}"] .no-bus')
    await expect(ghost).to_have_text("aucun bus signalé")

    await open_operator(page, corridor, lang="ar")
    await expect(page.locator("html")).to_have_attribute("dir", "rtl")
    ghost_alert = alert_item(page, "ghost_trip", text=cancelled["trip_id"])
    await expect(ghost_alert).to_contain_text("رحلة بلا حافلة", timeout=ALERT_TIMEOUT_MS)
    await expect(page.locator("#diagram svg.td-chart")).to_have_attribute(
        "aria-label", re.compile(r"^الخط ")
    )
    await expect(page.locator("#accuracy-body tr[data-from-min] th").first).to_have_text(
        re.compile(r"^\d+–\d+ دقيقة$")
    )
    # right to left: the side column (map, alerts) is on the left
    side = await page.locator(".op-side").bounding_box()
    main = await page.locator(".op-main").bounding_box()
    assert side is not None
    assert main is not None
    assert side["x"] < main["x"]
    await page.screenshot(path=screenshot_path("operator-arabic-alerts"), full_page=True)
