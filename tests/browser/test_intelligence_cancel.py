"""The operator marks a ghost trip cancelled, and undoes it, on the operator page in Chromium
against the real corridor tracker (`tests.browser.corridor`: its cancelled trip is a ghost, a
trip with no bus):

- the ghost's alert has a "Mark cancelled" button; clicking it takes the alert off the list and
  lists the trip under "Cancelled trips", and the tracker's GTFS-realtime TripUpdates
  (`/gtfs-rt/trip-updates?format=json`) say the trip is CANCELED, with a NO_SERVICE alert;
- "Undo" takes it off that list, the ghost's alert comes back, and the feeds no longer cancel it.

It runs right after tests/browser/test_intelligence.py (whose alerts are open for a few minutes
only) and leaves the corridor as it found it: the cancellation is undone, by the page or at the
end.
"""

from __future__ import annotations

import time
import urllib.error
from typing import Any, cast

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Corridor, screenshot_path
from tests.browser.test_intelligence import ALERT_TIMEOUT_MS, alert_item, hhmm, open_operator

pytestmark = pytest.mark.asyncio(loop_scope="session")

FEED_TIMEOUT_S = 15.0  # the feeds are built once a second


def trip_told(corridor: Corridor, trip_id: str) -> dict[str, Any]:
    """What the corridor's feeds say of a trip: its TripUpdates' schedule relationships and
    its alerts' effects."""
    updates = cast(dict[str, Any], corridor.tracker.get("/gtfs-rt/trip-updates?format=json"))
    alerts = cast(dict[str, Any], corridor.tracker.get("/gtfs-rt/alerts?format=json"))
    return {
        "updates": [e["trip_update"]["trip"].get("schedule_relationship", "SCHEDULED")
                    for e in updates.get("entity", [])
                    if e["trip_update"]["trip"]["trip_id"] == trip_id],
        "alerts": [e["alert"]["effect"] for e in alerts.get("entity", [])
                   if any(i.get("trip", {}).get("trip_id") == trip_id
                          for i in e["alert"]["informed_entity"])],
    }  # fmt: skip


def eventually_told(corridor: Corridor, trip_id: str, wanted: dict[str, Any]) -> None:
    deadline = time.monotonic() + FEED_TIMEOUT_S
    told = trip_told(corridor, trip_id)
    while told != wanted and time.monotonic() < deadline:
        time.sleep(0.5)
        told = trip_told(corridor, trip_id)
    assert told == wanted, told


def undo(corridor: Corridor, service_date: str, trip_id: str) -> None:
    """Undo the cancellation through the API, if it is still there."""
    try:
        corridor.tracker.send("DELETE", f"/api/operator/cancellations/{service_date}/{trip_id}")
    except urllib.error.HTTPError as error:
        if error.code != 404:  # 404: not cancelled (any more)
            raise


async def test_a_ghost_trip_marked_cancelled_is_canceled_in_the_feeds_and_undone(
    corridor: Corridor, page: Page
) -> None:
    cancelled = corridor.scenario("cancelled-trip")
    trip_id, service_date = cancelled["trip_id"], cancelled["service_date"]
    await open_operator(page, corridor)
    ghost = alert_item(page, "ghost_trip", text=trip_id)
    await expect(ghost).to_have_count(1, timeout=ALERT_TIMEOUT_MS)
    listed = page.locator(f'#cancelled-list li[data-trip="{trip_id}"]')
    await expect(page.locator("#cancelled-list li.none")).to_have_text("No trip is cancelled.")
    try:
        mark = ghost.locator("button.alert-cancel")
        await expect(mark).to_have_text("Mark cancelled")
        await mark.click()
        await expect(ghost).to_have_count(0)
        await expect(listed).to_have_count(1)
        await expect(listed).to_contain_text(
            f"Trip {trip_id} · route C · due {hhmm(cancelled['start_s'])}"
        )
        await expect(listed).to_have_attribute("data-in-feeds", "true")
        await expect(page.locator("#cancelled-count")).to_have_text("1")
        eventually_told(corridor, trip_id, {"updates": ["CANCELED"], "alerts": ["NO_SERVICE"]})
        alerts = cast(dict[str, Any], corridor.tracker.get("/api/operations/alerts"))
        assert not [a for a in alerts["alerts"] if a.get("trip_id") == trip_id
                    and a["kind"] == "ghost_trip"]  # fmt: skip
        await page.locator(".panel.alerts").screenshot(path=screenshot_path("operator-cancelled"))

        await listed.locator("button.cancel-undo").click()
        await expect(listed).to_have_count(0)
        await expect(ghost).to_have_count(1, timeout=ALERT_TIMEOUT_MS)  # a ghost again
        eventually_told(corridor, trip_id, {"updates": [], "alerts": []})
    finally:
        undo(corridor, service_date, trip_id)
