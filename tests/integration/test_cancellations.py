"""The operator's trip cancellations end to end: the real app (`create_app`) on a real Mosquitto
and PostgreSQL, read through httpx on its ASGI interface.

A trip cancelled with `POST /api/operator/cancellations` is CANCELED in the GTFS-realtime
TripUpdates with a NO_SERVICE alert, is listed, and is still cancelled after the app restarts
on the same database; undone with `DELETE`, it is gone, after a restart too. Bad requests get a
4xx with a message naming the problem, and are counted. The clock is Wednesday 2026-03-04 08:06
in Casablanca (`tests.integration.test_api.service_settings`, the two-directions feed: trips
every 12 min each way from 06:00 to 10:00, 9 min long, Monday to Friday).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.servers import Mosquitto
from tests.integration.test_api import eventually, get_json, running, service_settings
from tracker.app import create_app
from tracker.settings import Settings

pytestmark = pytest.mark.integration

URL = "/api/operator/cancellations"
DAY = "20260304"
TRIP = "B_N_0812"  # leaves at 08:12, six minutes after the clock's "now"


async def told(client: httpx.AsyncClient) -> dict[str, Any]:
    """What the feeds say of TRIP: its TripUpdate and alert (None when not told)."""
    updates = await get_json(client, "/gtfs-rt/trip-updates?format=json")
    alerts = await get_json(client, "/gtfs-rt/alerts?format=json")
    update = [e["trip_update"] for e in updates.get("entity", [])
              if e["trip_update"]["trip"]["trip_id"] == TRIP]  # fmt: skip
    alert = [e["alert"] for e in alerts.get("entity", []) if e["id"] == f"cancelled:{TRIP}:{DAY}"]
    return {"update": update[0] if update else None, "alert": alert[0] if alert else None}


async def restarted(settings: Settings) -> dict[str, Any]:
    """The list of cancellations and what the feeds say, as a new app on the same database
    sees them."""
    async with running(create_app(settings)) as client:
        listed = await get_json(client, URL)
        return {"listed": listed, "told": await told(client)}


async def test_a_cancelled_trip_is_in_the_feeds_and_survives_a_restart(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    async with running(create_app(settings)) as client:
        assert (await get_json(client, URL))["count"] == 0
        response = await client.post(URL, json={
            "trip_id": TRIP, "service_date": DAY, "cause": "TECHNICAL_PROBLEM",
            "reason": "No driver",
        })  # fmt: skip
        assert response.status_code == 201, response.text
        made = response.json()
        assert (made["trip_id"], made["service_date"], made["route_id"], made["cause"]) == (
            TRIP, DAY, "B", "TECHNICAL_PROBLEM",
        )  # fmt: skip
        assert made["reason"] == "No driver"
        assert made["in_feeds"] is True
        assert made["scheduled_arrival_s"] - made["scheduled_departure_s"] == 540
        # Marked again: the same cancellation, with the new reason.
        again = await client.post(URL, json={"trip_id": TRIP, "service_date": DAY,
                                             "reason": "Bus broken down"})  # fmt: skip
        assert again.status_code == 200, again.text
        assert again.json()["cancelled_at_s"] == made["cancelled_at_s"]
        assert (again.json()["reason"], again.json()["cause"]) == ("Bus broken down",
                                                                   "UNKNOWN_CAUSE")  # fmt: skip

        async def in_the_feeds() -> bool:
            return (await told(client))["alert"] is not None

        await eventually(in_the_feeds, "the cancellation in the feeds (built once a second)")
        now = await told(client)
        assert now["update"]["trip"]["schedule_relationship"] == "CANCELED"
        assert "stop_time_update" not in now["update"]
        assert now["alert"]["effect"] == "NO_SERVICE"
        assert "Bus broken down" in now["alert"]["description_text"]["translation"][0]["text"]
        listed = await get_json(client, f"{URL}?service_date={DAY}")
        assert [c["trip_id"] for c in listed["cancellations"]] == [TRIP]
        assert (await get_json(client, f"{URL}?service_date=20260305"))["count"] == 0

    after = await restarted(settings)
    assert [(c["trip_id"], c["reason"]) for c in after["listed"]["cancellations"]] == [
        (TRIP, "Bus broken down")
    ]
    assert after["listed"]["cancellations"][0]["cancelled_at_s"] == pytest.approx(
        made["cancelled_at_s"], abs=1e-3
    )  # stored to the microsecond
    assert after["told"]["update"]["trip"]["schedule_relationship"] == "CANCELED"
    assert after["told"]["alert"] is not None

    async with running(create_app(settings)) as client:
        undone = await client.delete(f"{URL}/{DAY}/{TRIP}")
        assert undone.status_code == 200, undone.text
        assert undone.json()["trip_id"] == TRIP
        assert (await get_json(client, URL))["count"] == 0
        gone = await client.delete(f"{URL}/{DAY}/{TRIP}")
        assert gone.status_code == 404
        assert f"trip '{TRIP}' is not cancelled on {DAY}" in gone.json()["detail"]

    after = await restarted(settings)
    assert after["listed"]["count"] == 0
    assert after["told"] == {"update": None, "alert": None}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"trip_id": "B_X_0812", "service_date": DAY}, "no trip 'B_X_0812' in the static GTFS"),
        ({"trip_id": TRIP, "service_date": "20260307"}, "does not run on 20260307"),
        ({"trip_id": TRIP, "service_date": "2026-03-04"}, "is not a date written YYYYMMDD"),
        ({"trip_id": TRIP, "service_date": DAY, "reason": "x" * 501}, "keep it to 500"),
    ],
)
async def test_a_cancellation_that_cannot_be_is_refused_with_its_reason_and_counted(
    mosquitto: Mosquitto,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    body: dict[str, str],
    says: str,
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    async with running(create_app(settings)) as client:
        refused = await client.post(URL, json=body)
        assert refused.status_code == 422, refused.text
        assert says in refused.json()["detail"]
        listed = await get_json(client, URL)
        assert listed["count"] == 0
        assert sum(listed["refused"].values()) == 1


async def test_malformed_requests_get_a_4xx_that_names_the_problem(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    async with running(create_app(settings)) as client:
        missing = await client.post(URL, json={"service_date": DAY})
        assert missing.status_code == 422
        assert missing.json()["detail"][0]["loc"] == ["body", "trip_id"]
        cause = await client.post(URL, json={"trip_id": TRIP, "service_date": DAY,
                                              "cause": "ALIENS"})  # fmt: skip
        assert cause.status_code == 422
        assert "TECHNICAL_PROBLEM" in str(cause.json()["detail"])  # the allowed values
        bad_day = await client.delete(f"{URL}/03-04-2026/{TRIP}")
        assert bad_day.status_code == 422
        assert "'03-04-2026' is not a date written YYYYMMDD" in bad_day.json()["detail"]
        listing = await client.get(f"{URL}?service_date=tomorrow")
        assert listing.status_code == 422
        listed = await get_json(client, URL)
        assert listed["refused"] == {"bad_service_date": 2}
