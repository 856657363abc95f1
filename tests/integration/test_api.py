"""The HTTP API end to end: the real app (`create_app`) on a real Mosquitto and PostgreSQL.

Buses of ``two_directions.zip`` publish pings over MQTT; the pipeline matches, stores and
broadcasts them; the test reads every endpoint through httpx's ASGI transport with the app's
lifespan running. The service clock is set to Wednesday 2026-03-04 08:06 in Casablanca (UTC+0
that day), six minutes into trips B_N_0800 and B_S_0800 (both run 08:00–08:09).

The buses, each publishing 10 pings 10 s apart up to the clock's "now":

    bus-1    B_N_0800 on time                                    in service, on time
    bus-2    B_S_0748 twelve minutes late                        in service, late
    bus-3    B_S_0800 on time, its last 3 pings 400 m east       off route
    bus-4    2 km east of any route                              not matched
    bus-5    one ping on B_N_0800, 200 s before "now"            stale (stale_after_s = 90)
    bus-bad  a payload that is not JSON                          rejected: malformed

The error mapping of `tracker.api.errors` is checked on a bare app, without servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import paho.mqtt.client as paho
import pytest
import shapely.geometry
from fastapi import FastAPI
from google.transit import gtfs_realtime_pb2 as rt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from simulator.publish import MqttPublisher
from tests import feeds
from tests.integration.servers import Mosquitto
from tracker import accounts
from tracker.accounts import AccountError, Role
from tracker.api.errors import (
    STATUS_OF_ERROR,
    BadParameterError,
    ForbiddenError,
    NotAuthenticatedError,
    NotFoundError,
    ServiceBrokenError,
    TooManyError,
    install_error_handlers,
)
from tracker.app import create_app
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.errors import StoreError
from tracker.ingest.mqtt import MqttIngest
from tracker.live.hub import SubscriptionError
from tracker.settings import Settings
from tracker.store import accounts as stored_accounts
from tracker.store.postgres import Store
from tracker.wire import position_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 15.0  # the longest the test waits for anything
SERVICE_NOW = dt.datetime(2026, 3, 4, 8, 6, tzinfo=dt.UTC)  # = local time in Casablanca
SERVICE_DAY = dt.date(2026, 3, 4)
STEP_S = 10.0
PINGS_PER_BUS = 10
LATE_S = 720.0
STALE_AGE_S = 200.0
MATCHED = ("bus-1", "bus-2", "bus-3")
TEST_PASSWORD = "a test operator's password"
TEST_PASSWORD_HASH = accounts.hash_password(TEST_PASSWORD)
ALL_BUSES = ("bus-1", "bus-2", "bus-3", "bus-4", "bus-5")


# --- the buses ------------------------------------------------------------------------------


def _position(
    network: Network, trip_id: str, at_s: float, *, east_m: float = 0.0
) -> tuple[float, float]:
    """(lat, lon) where `trip_id` is scheduled at `at_s`, moved `east_m` metres east."""
    (run,) = network.runs_of_trip[network.trip_index[trip_id]]
    pattern = network.patterns[int(network.runs.pattern_idx[run])]
    row = int(network.runs.row[run])
    times_s = network.day_origin(SERVICE_DAY) + np.ravel(
        np.column_stack([pattern.arrival_s[row], pattern.departure_s[row]])
    )
    along_m = float(np.interp(at_s, times_s, np.repeat(pattern.stop_dist_m, 2)))
    x, y = network.point_at(pattern.shape_idx, along_m)
    lat, lon = network.unproject(np.array([x + east_m]), np.array([y]))
    return float(lat[0]), float(lon[0])


def _pings(network: Network, now_s: float) -> list[Ping]:
    out: list[Ping] = []
    far_lat, far_lon = feeds.offset_latlon(*feeds.CASABLANCA, 2000.0, 1500.0)
    for k in range(PINGS_PER_BUS):
        t = now_s - STEP_S * (PINGS_PER_BUS - 1 - k)
        detour_m = 400.0 if k >= PINGS_PER_BUS - 3 else 0.0
        out += [
            Ping("bus-1", t, *_position(network, "B_N_0800", t), trip_id="B_N_0800"),
            Ping("bus-2", t, *_position(network, "B_S_0748", t - LATE_S), trip_id="B_S_0748"),
            Ping("bus-3", t, *_position(network, "B_S_0800", t, east_m=detour_m)),
            Ping("bus-4", t, far_lat, far_lon + k * 1e-5),
        ]
    stale_s = now_s - STALE_AGE_S
    out.append(Ping("bus-5", stale_s, *_position(network, "B_N_0800", stale_s)))
    return out


def _publish(url: str, pings: Sequence[Ping]) -> None:
    with MqttPublisher(url, connect_timeout_s=TIMEOUT_S, flush_timeout_s=TIMEOUT_S) as publisher:
        for ping in pings:
            publisher.publish(ping)


def _publish_raw(port: int, topic: str, payload: bytes) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="test-raw-publisher")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)
    finally:
        client.disconnect()
        client.loop_stop()


# --- the app ------------------------------------------------------------------------------


@asynccontextmanager
async def running(app: FastAPI, *, operator: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the started app; with `operator`, it sends an operator's API token (made in
    the app's database), else it is a rider's."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {await operator_token(app)}"} if operator else {}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tracker", headers=headers
        ) as client:
            yield client


async def operator_token(app: FastAPI, name: str = "test-operator") -> str:
    """A new API token of the operator account `name` (made if missing) in the app's database."""
    return await account_token(app.state.store, name, Role.OPERATOR)


async def account_token(store: Store, name: str, role: Role) -> str:
    """A new API token of the account `name` (made with `role` if missing) in `store`."""
    with contextlib.suppress(AccountError):  # made by an earlier test on the same database
        await stored_accounts.create(store, name, role, TEST_PASSWORD_HASH)
    token = accounts.new_token()
    await stored_accounts.add_token(store, name, token[-12:], accounts.token_digest(token))
    return token


async def eventually(check: Callable[[], Any], what: str) -> None:
    """Wait until `check()` (sync or async) is truthy."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {TIMEOUT_S} s waiting for {what}")
        await asyncio.sleep(0.05)


async def get_json(client: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    response = await client.get(url)
    assert response.status_code == status, (url, response.status_code, response.text)
    return response.json()


def _assert_geojson(collection: dict[str, Any]) -> None:
    assert collection["type"] == "FeatureCollection"
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        assert shapely.geometry.shape(feature["geometry"]).is_valid


def service_settings(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The service on the two-directions feed, its clock at SERVICE_NOW, its network cache in
    `tmp_path`, on the test's broker and database, without a limit on requests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the network cache
    return Settings(
        broker_url=mosquitto.url,
        database_url=postgres_url,
        gtfs=feeds.two_directions_feed(tmp_path),
        http_port=0,
        clock_offset_s=SERVICE_NOW.timestamp() - time.time(),
        batch_interval_s=0.05,
        live_tick_s=0.1,
        rate_limit="off",  # the tests ask faster than any rider; test_auth tests the limit
    )


# --- the test -----------------------------------------------------------------------------


async def test_every_endpoint_against_real_servers(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    install_error_handlers(app)  # create_app is to call it too; installing twice is harmless
    async with running(app) as client:
        network = app.state.network
        ingest = app.state.ingest
        assert isinstance(ingest, MqttIngest)
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        ready = await get_json(client, "/readyz")
        assert ready == {"ready": True, "network": True, "database": True, "mqtt": True,
                         "problems": []}  # fmt: skip
        assert await get_json(client, "/healthz") == {"status": "ok"}

        now_s = settings.now()
        pings = _pings(network, now_s)
        await asyncio.to_thread(_publish, mosquitto.url, pings)
        topic = position_topic("bus-bad")
        await asyncio.to_thread(_publish_raw, mosquitto.port, topic, b"not json")

        async def all_in() -> bool:
            body = await get_json(client, "/api/stats")
            vehicles = await get_json(client, "/api/vehicles")
            states = {v["vehicle_id"]: v["state"] for v in vehicles["vehicles"]}
            return bool(
                body["writer"]["stored"] == len(pings)
                and body["pipeline"]["rejected_by_reason"].get("malformed") == 1
                and states.get("bus-3") == "off_route"
                and len(states) == len(ALL_BUSES)
            )

        await eventually(all_in, "every ping matched and stored")

        await _check_vehicles(client, now_s)
        await _check_one_vehicle(client, now_s)
        await _check_routes(client)
        await _check_stops(client, network)
        await _check_fleet(client)
        await _check_problems(client)
        await _check_history(client, pings, now_s)
        await _check_stats(client, pings)
        await _check_config(client, settings)
        await _check_docs(client)
        await _check_gtfs_rt(client)
        await _check_metrics(client, pings)

        mosquitto.stop()

        async def not_ready() -> bool:
            return (await client.get("/readyz")).status_code == 503

        await eventually(not_ready, "/readyz to answer 503 once the broker is gone")
        body = await get_json(client, "/readyz", status=503)
        assert (body["ready"], body["network"], body["database"], body["mqtt"]) == (
            False, True, True, False,
        )  # fmt: skip
        assert body["problems"] == [f"mqtt: not connected to the broker {mosquitto.url}"]


async def _check_vehicles(client: httpx.AsyncClient, now_s: float) -> None:
    body = await get_json(client, "/api/vehicles")
    assert body["count"] == len(ALL_BUSES)
    assert body["now_s"] == pytest.approx(now_s, abs=TIMEOUT_S)
    by_id = {v["vehicle_id"]: v for v in body["vehicles"]}
    assert list(by_id) == sorted(ALL_BUSES)
    bus1, bus2, bus5 = by_id["bus-1"], by_id["bus-2"], by_id["bus-5"]
    assert (bus1["state"], bus1["route_id"], bus1["trip_id"]) == ("in_service", "B", "B_N_0800")
    assert bus1["delay_s"] == pytest.approx(0, abs=30)
    assert bus1["direction_id"] == 0
    assert bus1["stale"] is False
    assert bus1["age_s"] == pytest.approx(body["now_s"] - bus1["observed_at_s"], abs=0.1)
    assert bus2["delay_s"] == pytest.approx(LATE_S, abs=30)
    assert (bus5["stale"], bus5["age_s"] > STALE_AGE_S) == (True, True)
    assert by_id["bus-4"]["state"] == "not_matched"
    assert by_id["bus-4"]["route_id"] is None

    on_b = await get_json(client, "/api/vehicles?routes=B")
    assert {v["vehicle_id"] for v in on_b["vehicles"]} == {"bus-1", "bus-2", "bus-3", "bus-5"}
    none = await get_json(client, "/api/vehicles?routes=X,Y")
    assert none["count"] == 0
    lat, lon = by_id["bus-4"]["lat"], by_id["bus-4"]["lon"]
    box = f"{lon - 0.001},{lat - 0.001},{lon + 0.001},{lat + 0.001}"
    boxed = await get_json(client, f"/api/vehicles?bbox={box}")
    assert [v["vehicle_id"] for v in boxed["vehicles"]] == ["bus-4"]
    both = await get_json(client, f"/api/vehicles?bbox={box}&routes=B")
    assert both["count"] == 0

    for query, message in (
        ("bbox=1,2,3", "bbox has 3 numbers; give 4"),
        ("bbox=a,b,c,d", "'a' is not a number"),
        ("bbox=-7.5,33.6,-7.7,33.5", "with min <= max"),
        ("bbox=-7.7,33.5,-7.5,95", "outside -90..90"),
        ("routes=", "routes is empty"),
    ):
        problem = await get_json(client, f"/api/vehicles?{query}", status=422)
        assert message in problem["detail"], (query, problem)


async def _check_one_vehicle(client: httpx.AsyncClient, now_s: float) -> None:
    body = await get_json(client, "/api/vehicles/bus-1?trail_s=65")
    assert body["vehicle"]["vehicle_id"] == "bus-1"
    trip = body["trip"]
    assert trip["trip_id"] == "B_N_0800"
    assert (trip["route_id"], trip["route_short_name"]) == ("B", "B")
    assert trip["headsign"] == "Stop BN5"  # the feed has no trip_headsign: the last stop
    assert (trip["direction_id"], trip["service_date"], trip["exact_times"]) == (
        0, "20260304", True,
    )  # fmt: skip
    # Six minutes in: between BN3 (1600 m, left 08:05) and BN4 (2400 m, reached at 08:07).
    stops = trip["next_stops"]
    assert [s["stop_id"] for s in stops] == ["BN4", "BN5"]
    bn4 = stops[0]
    assert bn4["scheduled_s"] == SERVICE_NOW.timestamp() + 60
    assert bn4["expected_s"] == pytest.approx(bn4["scheduled_s"] + bn4["delay_s"], abs=0.1)
    assert bn4["name"] == "Stop BN4"
    # The trail: pings of the last 65 s, oldest first (those at now - 60 ... now).
    trail = body["trail"]
    assert body["trail_s"] == 65
    times = [p["observed_at_s"] for p in trail]
    assert times == sorted(times)
    assert len(trail) == 7
    assert times[-1] == pytest.approx(now_s, abs=0.01)
    assert all(p["state"] == "in_service" for p in trail)

    late = await get_json(client, "/api/vehicles/bus-2")
    assert late["trip"]["trip_id"] == "B_S_0748"
    first_ahead = late["trip"]["next_stops"][0]
    assert first_ahead["expected_s"] - first_ahead["scheduled_s"] == pytest.approx(LATE_S, abs=30)
    unmatched = await get_json(client, "/api/vehicles/bus-4")
    assert unmatched["trip"] is None
    assert len(unmatched["trail"]) == PINGS_PER_BUS

    missing = await get_json(client, "/api/vehicles/bus-404", status=404)
    assert "no vehicle 'bus-404'" in missing["detail"]
    await get_json(client, "/api/vehicles/bus-1?trail_s=-1", status=422)


async def _check_routes(client: httpx.AsyncClient) -> None:
    routes = await get_json(client, "/api/routes")
    assert routes == {
        "routes": [
            {"route_id": "B", "short_name": "B", "long_name": "North-South", "color": "#2CA02C",
             "text_color": None, "route_type": 3, "has_shape": True}
        ]
    }  # fmt: skip
    response = await client.get("/api/routes/B.geojson")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    route = response.json()
    _assert_geojson(route)
    assert route == await get_json(client, "/api/routes/B")
    shapes = [f["properties"] for f in route["features"] if f["properties"]["kind"] == "shape"]
    assert {(s["shape_id"], s["direction_id"]) for s in shapes} == {("B_north", 0), ("B_south", 1)}
    stops = [f for f in route["features"] if f["properties"]["kind"] == "stop"]
    assert len(stops) == 10
    missing = await get_json(client, "/api/routes/NOPE.geojson", status=404)
    assert missing == {"detail": "no route 'NOPE' in the feed; /api/routes lists them"}

    response = await client.get("/api/network.geojson")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    everything = response.json()
    _assert_geojson(everything)
    assert {f["properties"]["shape_id"] for f in everything["features"]} == {"B_north", "B_south"}
    again = await client.get("/api/network.geojson")
    assert again.content == response.content
    etag = response.headers["etag"]
    unchanged = await client.get("/api/network.geojson", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304


async def _check_stops(client: httpx.AsyncClient, network: Network) -> None:
    lat, lon = network.stops["BN1"][1:]
    box = f"{lon - 0.0005},{lat - 0.0005},{lon + 0.0005},{lat + 0.0005}"  # ± ~50 m
    response = await client.get(f"/api/stops?bbox={box}")
    assert response.headers["content-type"] == "application/geo+json"
    stops = response.json()
    _assert_geojson(stops)
    assert sorted(f["properties"]["stop_id"] for f in stops["features"]) == ["BN1", "BS5"]
    assert stops["truncated"] is False
    capped = await get_json(client, "/api/stops?limit=3")
    assert (len(capped["features"]), capped["truncated"]) == (3, True)
    await get_json(client, "/api/stops?bbox=0,0,1", status=422)

    # BS4: B_S_0748 left it at 07:55 in the schedule; twelve minutes late, bus-2 is due 08:07.
    body = await get_json(client, "/api/stops/BS4?limit=3")
    assert (body["stop_id"], body["name"], body["route_ids"]) == ("BS4", "Stop BS4", ["B"])
    first = body["departures"][0]
    assert (first["trip_id"], first["live"], first["vehicle_id"]) == ("B_S_0748", True, "bus-2")
    assert first["scheduled_s"] == SERVICE_NOW.timestamp() - 11 * 60
    assert first["delay_s"] == pytest.approx(LATE_S, abs=30)
    assert first["expected_s"] == pytest.approx(first["scheduled_s"] + first["delay_s"], abs=0.1)
    assert (first["headsign"], first["direction_id"], first["service_date"]) == (
        "Stop BS5", 1, "20260304",
    )  # fmt: skip
    later = body["departures"][1:]
    assert [d["trip_id"] for d in later] == ["B_S_0800", "B_S_0812"]
    assert later[1]["live"] is False
    assert later[1]["expected_s"] == later[1]["scheduled_s"]
    missing = await get_json(client, "/api/stops/NOPE", status=404)
    assert "no stop 'NOPE'" in missing["detail"]


async def _check_fleet(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/api/fleet")
    by_id = {v["vehicle_id"]: v for v in body["vehicles"]}
    assert set(by_id) == set(ALL_BUSES)
    assert by_id["bus-2"]["route_short_name"] == "B"
    assert by_id["bus-2"]["headsign"] == "Stop BS5"
    assert by_id["bus-5"]["stale"] is True
    (route,) = body["routes"]
    assert route["route_id"] == "B"
    assert (route["vehicles"], route["in_service"], route["stale"]) == (4, 3, 1)
    # Counted: bus-1 (on time) and bus-2 (12 min late); not bus-3 (off route), bus-5 (stale).
    punctuality = route["punctuality"]
    assert (punctuality["with_delay"], punctuality["on_time"]) == (2, 1)
    assert punctuality["on_time_share"] == 0.5
    assert punctuality["median_delay_s"] == pytest.approx(LATE_S / 2, abs=30)
    assert punctuality["p90_delay_s"] == pytest.approx(0.9 * LATE_S, abs=30)
    totals = body["totals"]
    assert totals["vehicles"] == len(ALL_BUSES)
    assert totals["by_state"] == {"in_service": 3, "off_route": 1, "not_matched": 1}
    assert totals["punctuality"]["on_time_share"] == 0.5


async def _check_problems(client: httpx.AsyncClient) -> None:
    body = await get_json(client, "/api/problems")
    assert [v["vehicle_id"] for v in body["stale"]] == ["bus-5"]
    assert [v["vehicle_id"] for v in body["off_route"]] == ["bus-3"]
    assert body["off_route"][0]["offset_m"] == pytest.approx(400, abs=60)
    assert [v["vehicle_id"] for v in body["not_matched"]] == ["bus-4"]
    assert body["not_matched"][0]["reason"] == "no_shape_nearby"
    (rejected,) = body["rejected"]
    assert (rejected["vehicle_id"], rejected["reason"]) == ("bus-bad", "malformed")
    assert "not JSON" in rejected["detail"]
    assert body["rejected_by_reason"] == {"malformed": 1}


async def _check_history(client: httpx.AsyncClient, pings: Sequence[Ping], now_s: float) -> None:
    start_s, end_s = now_s - 3600, now_s + 1
    window = f"start_s={start_s}&end_s={end_s}"
    body = await get_json(client, f"/api/history?{window}")
    assert (body["count"], body["truncated"], body["limit"]) == (len(pings), False, 50_000)
    times = [p["observed_at_s"] for p in body["positions"]]
    assert times == sorted(times)
    assert body["positions"][0]["vehicle_id"] == "bus-5"  # the oldest ping
    assert set(body["positions"][0]) == {
        "vehicle_id", "observed_at_s", "lat", "lon", "bearing_deg", "speed_mps", "state",
        "route_id", "trip_id", "delay_s",
    }  # fmt: skip
    capped = await get_json(client, f"/api/history?{window}&limit=3")
    assert (capped["count"], capped["truncated"]) == (3, True)
    one = await get_json(client, f"/api/history?{window}&vehicle_id=bus-2")
    assert one["count"] == PINGS_PER_BUS
    assert {p["trip_id"] for p in one["positions"]} == {"B_S_0748"}
    on_b = await get_json(client, f"/api/history?{window}&routes=B")
    assert {p["vehicle_id"] for p in on_b["positions"]} == {"bus-1", "bus-2", "bus-3", "bus-5"}
    empty = await get_json(client, f"/api/history?start_s={now_s + 10}&end_s={now_s + 20}")
    assert (empty["count"], empty["positions"]) == (0, [])
    problem = await get_json(client, f"/api/history?start_s={end_s}&end_s={start_s}", status=422)
    assert "start_s < end_s" in problem["detail"]
    await get_json(client, f"/api/history?{window}&limit=200001", status=422)
    await get_json(client, "/api/history?start_s=1", status=422)  # end_s is required

    bounds = await get_json(client, "/api/history/bounds")
    assert bounds["first_s"] == pytest.approx(min(p.timestamp for p in pings), abs=0.01)
    assert bounds["last_s"] == pytest.approx(now_s, abs=0.01)


async def _check_stats(client: httpx.AsyncClient, pings: Sequence[Ping]) -> None:
    body = await get_json(client, "/api/stats")
    pipeline = body["pipeline"]
    assert pipeline["messages"] == len(pings) + 1
    assert pipeline["pings_matched"] == len(pings)
    assert pipeline["rejected_by_reason"] == {"malformed": 1}
    assert sum(pipeline["by_state"].values()) == len(pings)
    assert pipeline["max_batch_s"] >= pipeline["last_batch_s"] >= 0
    assert body["queue"]["put"] == len(pings) + 1
    assert body["queue_capacity"] == Settings.model_fields["queue_capacity"].default
    ingest = body["ingest"]
    assert (ingest["connected"], ingest["connects"], ingest["reconnects"]) == (True, 1, 0)
    assert ingest["messages_received"] == len(pings) + 1
    writer = body["writer"]
    # Answers that settled differently are revised in the stored history, each once.
    assert pipeline["superseded_stored"] == 0
    assert writer == {"healthy": True, "stored": len(pings), "duplicates": 0,
                      "revised": pipeline["revised"], "stop_events": pipeline["stop_events"],
                      "dropped_batches": 0, "dropped_pings": 0, "failures": 0,
                      "pending_batches": 0}  # fmt: skip
    assert body["hub"]["ticks"] > 0


async def _check_config(client: httpx.AsyncClient, settings: Settings) -> None:
    body = await get_json(client, "/api/config")
    assert body["timezone"] == "Africa/Casablanca"
    assert body["now_s"] == pytest.approx(settings.now(), abs=5)
    assert (body["stale_after_s"], body["hide_after_s"]) == (90, 600)
    assert body["tiles_url"] == settings.tiles_url
    assert body["tiles_attribution"] == settings.tiles_attribution
    assert len(body["feed_hash"]) > 10
    min_lon, min_lat, max_lon, max_lat = body["bounds"]
    lat0, lon0 = feeds.CASABLANCA
    assert min_lat == pytest.approx(lat0, abs=1e-6)
    assert min_lon < lon0 < max_lon  # stops 4 m either side of the street
    assert max_lat == pytest.approx(feeds.offset_latlon(lat0, lon0, 0, 3000)[0], abs=1e-4)


async def _check_docs(client: httpx.AsyncClient) -> None:
    schema = await get_json(client, "/openapi.json")
    paths = set(schema["paths"])
    assert paths >= {
        "/healthz", "/readyz", "/api/vehicles", "/api/vehicles/{vehicle_id}", "/api/routes",
        "/api/routes/{route_id}", "/api/network.geojson", "/api/stops", "/api/stops/{stop_id}",
        "/api/fleet", "/api/problems", "/api/history", "/api/history/bounds", "/api/stats",
        "/api/config", "/gtfs-rt/vehicle-positions", "/gtfs-rt/trip-updates", "/gtfs-rt/alerts",
        "/metrics",
    }  # fmt: skip
    assert (await client.get("/docs")).status_code == 200


async def _check_gtfs_rt(client: httpx.AsyncClient) -> None:
    """The GTFS-realtime feeds: protobuf that reads back, JSON on request, ETags that save
    pollers the body while nothing changed, and a cache lifetime."""
    response = await client.get("/gtfs-rt/vehicle-positions")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    assert response.headers["cache-control"] == "public, max-age=1"
    feed = rt.FeedMessage()
    feed.ParseFromString(response.content)
    assert feed.header.incrementality == rt.FeedHeader.FULL_DATASET
    assert feed.header.timestamp > 0
    by_id = {e.vehicle.vehicle.id: e.vehicle for e in feed.entity}
    assert set(by_id) == set(ALL_BUSES) - {"bus-5"}  # stale: not told
    bus1 = by_id["bus-1"]
    assert (bus1.trip.trip_id, bus1.trip.route_id, bus1.trip.direction_id) == ("B_N_0800", "B", 0)
    assert bus1.trip.start_date == SERVICE_NOW.strftime("%Y%m%d")
    assert bus1.stop_id.startswith("BN")
    again = await client.get("/gtfs-rt/vehicle-positions",
                             headers={"If-None-Match": response.headers["etag"]})  # fmt: skip
    assert again.status_code == 304
    assert again.content == b""
    readable = await get_json(client, "/gtfs-rt/vehicle-positions?format=json")
    assert {e["id"] for e in readable["entity"]} == set(by_id)
    updates = rt.FeedMessage()
    updates.ParseFromString((await client.get("/gtfs-rt/trip-updates")).content)
    trips = {e.trip_update.trip.trip_id for e in updates.entity}
    assert "B_N_0800" in trips
    alerts = await client.get("/gtfs-rt/alerts?format=json")
    assert alerts.status_code == 200
    assert alerts.json()["header"]["gtfs_realtime_version"] == "2.0"
    assert (await client.get("/gtfs-rt/alerts?format=xml")).status_code == 422


async def _check_metrics(client: httpx.AsyncClient, pings: Sequence[Ping]) -> None:
    """/metrics in the Prometheus format says what /api/stats says."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = list(text_string_to_metric_families(response.text))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families
        for s in family.samples
    }
    stats = await get_json(client, "/api/stats")
    for state, n in stats["pipeline"]["by_state"].items():
        assert samples[("bus_tracker_pings_matched_total", (("state", state),))] == n
    assert samples[("bus_tracker_pings_rejected_total", (("reason", "malformed"),))] == 1
    assert samples[("bus_tracker_pings_stored_total", ())] == len(pings)
    assert samples[("bus_tracker_mqtt_connected", ())] == 1
    # every message received went through the pipeline's latency histogram
    latency = samples[("bus_tracker_receive_to_push_seconds_count", ())]
    assert latency == stats["pipeline"]["messages"]
    assert samples[("bus_tracker_receive_to_push_seconds_bucket", (("le", "+Inf"),))] == latency
    assert samples[("bus_tracker_batch_duration_seconds_count", ())] >= 1
    # the Grafana dashboard in deploy/ asks only for metrics the service has
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "bus-tracker.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"bus_tracker_[a-z_]+", target["expr"])
    }
    # a family with no sample yet (no alert, no prediction scored) is still described
    exported = {name for name, _ in samples} | {family.name for family in families}
    assert asked, "the dashboard queries no metric"
    assert asked <= exported, asked - exported


# --- the error mapping -------------------------------------------------------------------


async def test_each_mapped_error_answers_its_status_with_a_json_detail() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{index}")
    async def raise_one(index: int) -> None:
        error_type, _ = STATUS_OF_ERROR[index]
        raise error_type(f"message of {error_type.__name__}")

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a bug, not the client's fault")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for index, (error_type, status) in enumerate(STATUS_OF_ERROR):
            response = await client.get(f"/raise/{index}")
            assert response.status_code == status, error_type
            assert response.json() == {"detail": f"message of {error_type.__name__}"}
        assert (await client.get("/bug")).status_code == 500


def test_the_mapping_is_the_one_documented() -> None:
    assert dict(STATUS_OF_ERROR) == {
        NotAuthenticatedError: 401,
        ForbiddenError: 403,
        NotFoundError: 404,
        BadParameterError: 422,
        SubscriptionError: 422,
        TooManyError: 429,
        StoreError: 503,
        ServiceBrokenError: 503,
    }
    assert issubclass(NotFoundError, LookupError)
    assert issubclass(BadParameterError, ValueError)
