"""Live intelligence end to end, with real parts: a simulated morning with each operations case
(a late bus that catches up, a bus that stops reporting, a cancelled trip, a detour) →
Mosquitto → the tracker (the real app on uvicorn in this process, its engine in its own
process) → PostgreSQL, the HTTP API and a `websockets` client on /ws/live.

The simulated morning of the corridor feed (tests/unit/test_operations.py: route C, a bus every
6 minutes) is published at `SPEED` times real time, and the service clock runs at the same pace
from the window's start, so the tracker lives the morning as it would have: every answer, stop
event, prediction and alert comes as time passes. The tests check each signal against the
simulator's ground truth, and that stop events and predictions reach the database and the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from pgserver.postgres_server import PostgresServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from simulator.publish import MqttPublisher
from simulator.scenarios import (
    CANCELLED_TRIP,
    DETOUR,
    LATE_CATCH_UP,
    STOP_REPORTING,
    ScenarioTruth,
    simulate_day,
)
from tests.integration.servers import Mosquitto, free_port
from tests.integration.test_api import operator_token
from tests.unit.test_operations import WEDNESDAY, corridor_feed
from tracker.app import create_app
from tracker.core.model import Ping
from tracker.core.network import Network, haversine_m
from tracker.gtfs.load import load_network
from tracker.settings import Settings

pytestmark = pytest.mark.integration

SPEED = 80.0  # simulated seconds per real second
START_S, END_S = 6.67 * 3600, 8.67 * 3600  # the window, from the service day's origin
TIMEOUT_S = 30.0
SEED = 2


class Clock:
    """The simulated morning's time, running `SPEED` times faster than the wall clock."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self.wall_start_s = time.monotonic()

    def now(self) -> float:
        return self.start_s + (time.monotonic() - self.wall_start_s) * SPEED

    def wall_s_until(self, at_s: float) -> float:
        return (at_s - self.now()) / SPEED


CLOCK: list[Clock] = []


class MorningSettings(Settings):
    """The service's settings, its clock the simulated morning's."""

    def now(self) -> float:
        return CLOCK[0].now()


@dataclass
class Run:
    network: Network
    truth: tuple[ScenarioTruth, ...]
    pings: list[Ping]
    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # alert id -> changes
    answers: dict[str, Any] = field(default_factory=dict)  # endpoint -> JSON, at the end
    midway: dict[str, Any] = field(default_factory=dict)  # endpoint -> JSON, mid-morning
    stored_events: int = 0
    stored_positions: int = 0


@pytest.fixture(scope="module")
def run(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("intelligence")
    database = f"test_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {database};")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield _run(broker, postgres_server.get_uri(database), folder)
    finally:
        broker.stop()


def _run(broker: Mosquitto, postgres_url: str, folder: Path) -> Run:
    network = load_network(corridor_feed(folder))
    made = simulate_day(
        network, np.random.default_rng(SEED), WEDNESDAY,
        scenarios=[LATE_CATCH_UP, STOP_REPORTING, CANCELLED_TRIP, DETOUR],
        start_s=START_S, end_s=END_S, route_ids=["C"],
    )  # fmt: skip
    pings = sorted((s.ping for s in made.pings), key=lambda p: p.timestamp)
    result = Run(network, made.truth, pings)
    origin = network.day_origin(WEDNESDAY)
    CLOCK[:] = [Clock(origin + START_S)]
    settings = MorningSettings(
        broker_url=broker.url,
        database_url=postgres_url,
        gtfs=folder / "corridor.zip",
        http_port=free_port(),
        mqtt_client_id="test-intelligence",
        live_tick_s=0.05,
    )
    asyncio.run(_live_the_morning(settings, network, result))
    return result


async def _live_the_morning(settings: Settings, network: Network, result: Run) -> None:
    async with _serving(settings, network) as app:
        base = f"http://127.0.0.1:{settings.http_port}"
        operator = {"Authorization": f"Bearer {await operator_token(app)}"}  # alerts, /api/fleet
        listening = asyncio.create_task(_listen(f"ws://127.0.0.1:{settings.http_port}/ws/live",
                                                operator, result))  # fmt: skip
        midway = asyncio.create_task(_midway(base, operator, network, result))
        await asyncio.to_thread(_publish_in_time, settings.broker_url, result.pings)
        await midway
        # The last pings are processed; then a few more simulated minutes pass.
        end_s = network.day_origin(WEDNESDAY) + END_S
        await asyncio.sleep(max(CLOCK[0].wall_s_until(end_s + 120.0), 0.0) + 2.0)
        async with httpx.AsyncClient(base_url=base, headers=operator, timeout=TIMEOUT_S) as http:
            now_s = CLOCK[0].now()
            for name, url in (
                ("alerts", "/api/operations/alerts"),
                ("detours", "/api/operations/detours"),
                ("accuracy", "/api/predictions/accuracy"),
                ("events", f"/api/stop-events?start_s={now_s - 7200}&end_s={now_s}"),
                ("stats", "/api/stats"),
            ):
                response = await http.get(url)
                assert response.status_code == 200, (url, response.text)
                result.answers[name] = response.json()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    conn = await asyncpg.connect(settings.database_url)
    try:
        result.stored_events = await conn.fetchval("SELECT count(*) FROM stop_events")
        result.stored_positions = await conn.fetchval("SELECT count(*) FROM positions")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _serving(settings: Settings, network: Network) -> AsyncIterator[FastAPI]:
    app = create_app(settings, network=network)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.http_host, settings.http_port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serve = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not server.started:
                assert not serve.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.01)
            await app.state.ingest.wait_subscribed()
        yield app
    finally:
        server.should_exit = True
        await asyncio.wait_for(serve, TIMEOUT_S)
        listener.close()


async def _midway(base: str, headers: dict[str, str], network: Network, result: Run) -> None:
    """Three quarters into the morning, with buses on the road: the headway views."""
    at_s = network.day_origin(WEDNESDAY) + START_S + 0.75 * (END_S - START_S)
    await asyncio.sleep(CLOCK[0].wall_s_until(at_s))
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=TIMEOUT_S) as http:
        for name, url in (
            ("headways", "/api/operations/headways"),
            ("diagram", "/api/operations/time-distance?route_id=C&minutes=60"),
            ("fleet", "/api/fleet"),
            ("predictions", "/api/predictions"),
            ("stop", "/api/stops/C10"),
        ):
            response = await http.get(url)
            assert response.status_code == 200, (url, response.text)
            result.midway[name] = response.json()


async def _listen(url: str, headers: dict[str, str], result: Run) -> None:
    """Keep every alert change the live feed pushes (to operators)."""
    async with connect(url, additional_headers=headers) as ws:
        with contextlib.suppress(ConnectionClosed):
            async for text in ws:
                message = json.loads(text)
                if message["type"] == "alerts":
                    for change in message["changes"]:
                        change["at_s"] = message["server_time_s"]
                        alert_id = change["alert"]["alert_id"]
                        result.alerts.setdefault(alert_id, []).append(change)


def _publish_in_time(broker_url: str, pings: list[Ping]) -> None:
    """Each ping when the morning's clock reaches its time (the publisher's network loop runs
    while it waits, so each goes out then)."""
    with MqttPublisher(broker_url, connect_timeout_s=TIMEOUT_S,
                       flush_timeout_s=TIMEOUT_S) as publisher:  # fmt: skip
        for ping in pings:
            wait_s = CLOCK[0].wall_s_until(ping.timestamp)
            if wait_s > 0:
                publisher.wait(wait_s)
            publisher.publish(ping)


def _truth(run: Run, kind: str) -> ScenarioTruth:
    (found,) = [t for t in run.truth if t.kind == kind]
    return found


def _opened(run: Run, kind: str) -> list[dict[str, Any]]:
    """The first value of every alert of `kind` pushed on the websocket."""
    firsts = [changes[0] for changes in run.alerts.values()]
    return [c["alert"] for c in firsts if c["change"] == "opened" and c["alert"]["kind"] == kind]


def test_every_accepted_ping_is_stored_and_stop_events_reach_the_database(run: Run) -> None:
    stats = run.answers["stats"]
    assert stats["writer"]["stored"] == run.stored_positions
    assert run.stored_positions >= 0.98 * len(run.pings)  # the simulator's duplicates aside
    assert stats["pipeline"]["stop_events"] == run.stored_events > 100
    events = run.answers["events"]["events"]
    assert len(events) > 100
    for e in events:
        assert e["arrival_s"] is not None or e["departure_s"] is not None
        if e["arrival_s"] is not None and e["departure_s"] is not None:
            assert e["arrival_s"] <= e["departure_s"]
        assert e["route_id"] == "C"


def test_the_cancelled_trip_is_a_ghost_and_the_silent_bus_is_listed(run: Run) -> None:
    cancelled = _truth(run, CANCELLED_TRIP)
    ghosts = _opened(run, "ghost_trip")
    assert [g["trip_id"] for g in ghosts] == [cancelled.trip_id]
    silent = _truth(run, STOP_REPORTING)
    listed = _opened(run, "silent_vehicle")
    assert silent.vehicle_id in {a["vehicle_id"] for a in listed}
    assert len(listed) <= 2  # a real 6-minute GPS drop-out at most besides


def test_the_late_bus_is_seen_bunching_and_a_hold_is_suggested(run: Run) -> None:
    late = _truth(run, LATE_CATCH_UP)
    bunching = [
        a
        for a in _opened(run, "bunching")
        if late.vehicle_id in (a["follower_vehicle_id"], a["leader_vehicle_id"])
    ]
    assert bunching
    assert all(a["hold_s"] >= 0 for a in bunching)
    assert any(a["hold_vehicle_id"] == a["follower_vehicle_id"] for a in bunching)
    assert _opened(run, "gapping")  # the late bus leaves a gap behind it


def test_the_detour_is_found_with_where_it_left_and_rejoined(run: Run) -> None:
    truth = _truth(run, DETOUR)
    ended = [d for d in run.answers["detours"]["ended"] if d["vehicle_id"] == truth.vehicle_id]
    assert len(ended) == 1
    (detour,) = ended
    assert truth.left_lat is not None
    assert truth.left_lon is not None
    assert haversine_m(detour["left_lat"], detour["left_lon"], truth.left_lat,
                       truth.left_lon) < 150  # fmt: skip
    assert truth.rejoined_lat is not None
    assert truth.rejoined_lon is not None
    assert haversine_m(detour["rejoined_lat"], detour["rejoined_lon"], truth.rejoined_lat,
                       truth.rejoined_lon) < 200  # fmt: skip
    assert {a["vehicle_id"] for a in _opened(run, "detour")} == {truth.vehicle_id}


def test_headways_and_the_time_distance_diagram_are_served(run: Run) -> None:
    headways = run.midway["headways"]
    routes = headways["routes"]
    assert [r["route_id"] for r in routes] == ["C"]
    assert routes[0]["gaps"] >= 2
    for gap in headways["gaps"]:
        assert gap["gap_s"] > 0
        assert gap["scheduled_gap_s"] == pytest.approx(360, abs=60)  # a bus every 6 minutes
    fleet = {r["route_id"]: r for r in run.midway["fleet"]["routes"]}
    assert fleet["C"]["headway"]["gaps"] == routes[0]["gaps"]
    with_gap = [v for v in run.midway["fleet"]["vehicles"] if v["gap_s"] is not None]
    assert len(with_gap) == routes[0]["gaps"]
    diagram = run.midway["diagram"]
    assert diagram["shape_id"] == "C_line"
    assert len(diagram["vehicles"]) >= 8
    assert len(diagram["stops"]) == 16
    assert diagram["scheduled"]
    for trace in diagram["vehicles"]:
        times = [t for t, _ in trace["points"]]
        assert times == sorted(times)


def test_predictions_have_ordered_ranges_and_are_scored(run: Run) -> None:
    predictions = run.midway["predictions"]["predictions"]
    assert predictions
    for p in predictions:
        arrival = p["arrival"]
        assert arrival["p10_s"] <= arrival["predicted_s"] <= arrival["p90_s"]
        assert arrival["observed_at_s"] is not None
    buckets = run.answers["accuracy"]["buckets"]
    assert sum(b["predictions"] for b in buckets) > 50
    for b in buckets:
        if b["predictions"] >= 30:
            assert b["mae_s"] is not None
            assert b["mae_s"] < 600
            assert 0.4 <= b["coverage"] <= 1.0
    stop = run.midway["stop"]
    assert stop["arrivals"]
    assert {a["stop_id"] for a in stop["arrivals"]} == {"C10"}
    times = [a["arrival"]["predicted_s"] for a in stop["arrivals"]]
    assert times == sorted(times)
    assert all(math.isfinite(a["arrival"]["predicted_s"]) for a in stop["arrivals"])
