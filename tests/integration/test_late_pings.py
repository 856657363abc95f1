"""A phone back in coverage (against a real Mosquitto and PostgreSQL, over the OsmAnd endpoint):
it sends its live position first, then the hour it buffered while out of coverage. Every
buffered position is stored once, in order, answered with hindsight a little later (its trip,
as the block's schedule says), and the live view never goes back to them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.integration.servers import Mosquitto
from tests.integration.test_api import (
    SERVICE_DAY,
    _position,
    eventually,
    get_json,
    running,
    service_settings,
)
from tracker.app import create_app
from tracker.core.network import Network

pytestmark = pytest.mark.integration

EVERY_S = 10.0
SLOT_S = 12 * 60.0  # a trip leaves each way every 12 minutes from 06:00
TRIP_S = 9 * 60.0


def blk1_trip(network: Network, at_s: float) -> tuple[str, float]:
    """The trip that block blk1 of the two-directions feed runs (or has just ended) at `at_s`,
    and the time the bus is where it is (its last stop, during the layover)."""
    first_s = network.day_origin(SERVICE_DAY) + 6 * 3600.0
    slot = int((at_s - first_s) // SLOT_S)
    start_s = first_s + slot * SLOT_S
    minutes = round(6 * 60 + slot * 12)
    trip_id = f"B_{'N' if slot % 2 == 0 else 'S'}_{minutes // 60:02d}{minutes % 60:02d}"
    return trip_id, min(at_s, start_s + TRIP_S)


async def send(client: httpx.AsyncClient, network: Network, at_s: float) -> None:
    trip_id, where_s = blk1_trip(network, at_s)
    lat, lon = _position(network, trip_id, where_s)
    query: dict[str, str | float] = {"id": "phone-1", "lat": lat, "lon": lon}
    query |= {"timestamp": round(at_s), "accuracy": 5}
    response = await client.get("/ingest/osmand", params=query)
    assert response.status_code == 200, response.text


async def test_an_hour_of_buffered_pings_after_the_live_one(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app) as client:
        network = app.state.network
        newest_s = float(round(settings.now()))
        gap_from_s = newest_s - 3600.0 - 10 * EVERY_S
        before = [gap_from_s + EVERY_S * k for k in range(10)]  # in coverage
        buffered = [newest_s - 3600.0 + EVERY_S * k for k in range(360)]  # the hour without
        for at_s in before:
            await send(client, network, at_s)
        await send(client, network, newest_s)  # back in coverage: the live position first

        async def shown_at(at_s: float) -> bool:
            vehicles = (await get_json(client, "/api/vehicles"))["vehicles"]
            return any(v["observed_at_s"] == at_s for v in vehicles)

        await eventually(lambda: shown_at(newest_s), "the live position shown")
        for at_s in buffered:  # then the buffer, as fast as the phone can
            await send(client, network, at_s)
        sent = len(before) + 1 + len(buffered)

        async def all_stored() -> bool:
            return bool((await get_json(client, "/api/stats"))["writer"]["stored"] == sent)

        await eventually(all_stored, "every position stored")
        assert await shown_at(newest_s)  # the live view did not go back
        stats = await get_json(client, "/api/stats")
        assert stats["pipeline"]["late"] == len(buffered)
        assert stats["pipeline"]["rejected_by_reason"] == {}

        async def late_matched() -> bool:
            stats = await get_json(client, "/api/stats")
            return bool(stats["pipeline"]["late_matched"] == len(buffered))

        await eventually(late_matched, "the buffered hour answered with hindsight")

        async def history() -> list[dict[str, object]]:
            window = {"start_s": gap_from_s - 1, "end_s": newest_s + 1, "vehicle_id": "phone-1"}
            found = await get_json(client, f"/api/history?{urlencode(window)}")
            positions: list[dict[str, object]] = found["positions"]
            return positions

        async def revised() -> bool:  # the answers' revision is written after the stats count
            rows = await history()
            return all(row["state"] != "not_matched" for row in rows[len(before) :])

        await eventually(revised, "the buffered rows revised")
        rows = await history()
        times = [row["observed_at_s"] for row in rows]
        assert times == sorted([*before, *buffered, newest_s])  # each once, in order
        wrong = []
        for row in rows[len(before) : -1]:
            at_s = float(str(row["observed_at_s"]))
            trip_id, where_s = blk1_trip(network, at_s)
            expected = {trip_id}
            if where_s < at_s:  # at the layover: the trip it ended, or the one it waits for
                expected.add(blk1_trip(network, at_s + SLOT_S - TRIP_S)[0])
            if row["trip_id"] not in expected:
                wrong.append((at_s, row["trip_id"], expected))
        assert len(wrong) <= 0.02 * len(buffered), wrong
        vehicles = (await get_json(client, "/api/vehicles"))["vehicles"]
        assert [v["observed_at_s"] for v in vehicles if v["vehicle_id"] == "phone-1"] == [newest_s]
