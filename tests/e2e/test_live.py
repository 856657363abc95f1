"""The whole live path with real parts and no mocks: simulator → Mosquitto → the tracker (the
real app, served by uvicorn in this process) → PostgreSQL → a `websockets` client on /ws/live.

One scenario runs once for the module (`scenario`) on half an hour's morning of the real Cairns
feed (48 buses; ids hidden, so the tracker infers every trip), in three phases:

A. the tracker runs; the simulator publishes 4 minutes of the buses at 120× speed, with more
   GPS faults than usual (3 % duplicates, 2 % late pings), then malformed messages follow;
B. the tracker stops (its lifespan exits) and 90 s more are published while it is down; it
   starts again with the same MQTT client id and must get them from its persistent session;
C. the database refuses the tracker's role every write (INSERT on `positions` is revoked) and
   the reads of its hourly retention (SELECT on `pg_inherits`; retention then runs every
   half second) while 150 s more are published at 40× speed; then both are granted back.

The tests below each check one property on what the scenario recorded. The service clock
(`Settings.clock_offset_s`) stands just after the simulated window on the feed's busiest date,
so no ping is in the future and none is old enough to leave the live view.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import numpy as np
import paho.mqtt.client as paho
import pytest
import uvicorn
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from pgserver.postgres_server import PostgresServer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import tracker.app
from simulator.day import SimConfig, SimPing, busiest_date, simulate
from simulator.gps import GpsConfig
from simulator.publish import MqttPublisher
from simulator.replay import Pacer
from tests.integration.servers import Mosquitto, free_port
from tracker.app import create_app, live_vehicle_of_row
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.gtfs.load import load_network
from tracker.ingest.mqtt import parse_broker_url
from tracker.service import Pipeline
from tracker.settings import Settings
from tracker.store.postgres import VehicleRow, open_store
from tracker.wire import position_topic

pytestmark = [pytest.mark.integration, pytest.mark.realfeed]

FEED = Path("static") / "cairns.zip"  # in the shared data folder
SEED = 1
WINDOW_START_S = 7.5 * 3600  # 07:30 on the service day
INTERVAL_S = 5.0
GPS = GpsConfig(duplicate_rate=0.03, out_of_order_rate=0.02)
PHASE_A_S, PHASE_B_S, PHASE_C_S = 240.0, 90.0, 150.0  # simulated seconds
SPEED_A, SPEED_C = 120.0, 40.0
TIMEOUT_S = 20.0  # the longest the scenario waits for any one thing
TRIP_ACCURACY_FLOOR = 0.80
RETENTION_EVERY_S = 0.5  # instead of hourly, so that it runs during the outage

Key = tuple[str, float]  # (vehicle_id, timestamp rounded to the millisecond)


def key(vehicle_id: str, timestamp_s: float) -> Key:
    return vehicle_id, round(timestamp_s, 3)


# -- what the scenario records -------------------------------------------------------------------


@dataclass(frozen=True)
class RunStats:
    """The counters of one run of the tracker, copied when it stopped."""

    messages: int
    rejected_by_reason: Counter[str]
    stored: int
    store_duplicates: int
    store_failures: int
    dropped_pings: int
    queue_superseded: int
    queue_dropped: int
    max_batch_s: float

    @classmethod
    def of(cls, app: FastAPI) -> RunStats:
        pipeline: Pipeline = app.state.pipeline
        queue = app.state.queue.stats()
        return cls(
            messages=pipeline.stats.messages,
            rejected_by_reason=Counter(pipeline.stats.rejected_by_reason),
            stored=pipeline.writer.stored,
            store_duplicates=pipeline.writer.duplicates,
            store_failures=pipeline.writer.failures,
            dropped_pings=pipeline.writer.dropped_pings,
            queue_superseded=queue.superseded,
            queue_dropped=queue.dropped_full,
            max_batch_s=pipeline.stats.max_batch_s,
        )


@dataclass(frozen=True)
class LiveMessage:
    received_at: float  # time.monotonic()
    kind: str
    vehicles: list[dict[str, Any]]
    removed: list[str]


@dataclass
class Outage:
    """What was seen while the database refused writes (phase C)."""

    started_at: float = math.nan  # time.monotonic()
    ended_at: float = math.nan
    writer_unhealthy_seen: bool = False
    failures_during: int = 0
    pending_batches_at_end: int = 0
    phase_c_rows_at_end: int = -1
    recovered_after_s: float = math.nan  # from the grant until every queued batch was written


@dataclass
class Scenario:
    sims: dict[str, list[SimPing]]  # by phase
    bad: list[tuple[str, bytes, str]]  # topic, payload, expected reason
    runs: list[RunStats] = field(default_factory=list)
    live: list[list[LiveMessage]] = field(default_factory=list)  # per run's websocket client
    live_closed: list[int | None] = field(default_factory=list)  # close code per client
    final_view: dict[str, dict[str, Any]] = field(default_factory=dict)  # the client's last view
    latest: list[VehicleRow] = field(default_factory=list)  # Store.latest() at the end
    history: list[VehicleRow] = field(default_factory=list)  # Store.history() at the end
    row_keys: Counter[Key] = field(default_factory=Counter)
    healthz_after_bad: int = 0
    phase_b_stored_in_run_2: int = 0
    outage: Outage = field(default_factory=Outage)
    logged: list[tuple[int, str]] = field(default_factory=list)  # WARNING and above

    @property
    def all_sims(self) -> list[SimPing]:
        return [s for phase in ("A", "B", "C") for s in self.sims[phase]]


# -- helpers: the tracker, the live client, publishing -----------------------------------------


@contextlib.asynccontextmanager
async def serving(settings: Settings, network: Network) -> AsyncIterator[FastAPI]:
    """The real app on uvicorn in this event loop, started, subscribed; stopped at exit (the
    lifespan's exit: the broker connection closes, queued pings are processed and stored)."""
    app = create_app(settings, network=network)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((settings.http_host, settings.http_port))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    )
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


class LiveClient:
    """A `websockets` client of /ws/live that keeps every message and the view they build."""

    def __init__(self) -> None:
        self.messages: list[LiveMessage] = []
        self.view: dict[str, dict[str, Any]] = {}
        self.close_code: int | None = None
        self.snapshot = asyncio.Event()
        self.other: dict[str, int] = {}  # messages of the other kinds, by kind

    async def read(self, url: str) -> None:
        async with connect(url) as ws:
            try:
                async for text in ws:
                    assert isinstance(text, str), "the live feed sends text frames"
                    self._apply(json.loads(text))
            except ConnectionClosed:
                pass
            self.close_code = ws.close_code

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        assert kind in ("snapshot", "update", "alerts", "revised"), message
        if kind in ("alerts", "revised"):  # not the view of positions: tests of their own
            self.other[kind] = self.other.get(kind, 0) + 1
            return
        if kind == "snapshot":
            self.view = {}
            self.snapshot.set()
        for vehicle in message["vehicles"]:
            self.view[vehicle["vehicle_id"]] = vehicle
        for vehicle_id in message["removed"]:
            self.view.pop(vehicle_id, None)
        self.messages.append(
            LiveMessage(time.monotonic(), kind, message["vehicles"], message["removed"])
        )


async def live_client(port: int) -> tuple[LiveClient, asyncio.Task[None]]:
    """A client connected and holding its snapshot, and the task that reads for it (which
    ends when the server closes the connection)."""
    client = LiveClient()
    reading = asyncio.create_task(client.read(f"ws://127.0.0.1:{port}/ws/live"))
    async with asyncio.timeout(TIMEOUT_S):
        await client.snapshot.wait()
    return client, reading


def publish(url: str, sims: Sequence[SimPing], *, speed: float, client_id: str) -> None:
    """Publish the simulator's messages in send order, `speed` times faster than the day, as
    `simulator run` does (QoS 1; the pacer's waits keep the connection serviced)."""
    with MqttPublisher(url, mqtt_version="5", client_id=client_id) as publisher:
        pacer = Pacer(speed, wait=publisher.wait)
        for sim in sims:
            pacer.wait_for(sim.sent_at)
            publisher.publish(sim.ping)


def publish_raw(url: str, messages: Sequence[tuple[str, bytes]]) -> None:
    """Publish payloads as they are (the tracker's publisher only sends well-formed pings)."""
    address = parse_broker_url(url)
    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"e2e-raw-{uuid.uuid4().hex[:8]}")
    client.on_connect = lambda *_: connected.set()
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        assert connected.wait(TIMEOUT_S), "the broker did not accept the raw publisher"
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(TIMEOUT_S)
            assert info.is_published(), "the broker did not acknowledge a raw message"
    finally:
        client.disconnect()
        client.loop_stop()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(TIMEOUT_S):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"waited {TIMEOUT_S} s for {what}") from None


def processed(app: FastAPI, messages: int) -> Callable[[], bool]:
    """True once the tracker took `messages` messages and wrote every batch it could."""
    pipeline: Pipeline = app.state.pipeline
    return lambda: (
        pipeline.stats.messages >= messages
        and len(app.state.queue) == 0
        and pipeline.writer.pending_batches == 0
    )


def with_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


class Warnings(logging.Handler):
    """Keeps the tracker's log records at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelno, f"{record.name}: {record.getMessage()}"))


# -- the scenario ---------------------------------------------------------------------------------


def phases(network: Network, date: dt.date) -> dict[str, list[SimPing]]:
    """The simulator's messages of the window, split into the phases by when they are sent."""
    config = SimConfig(interval_s=INTERVAL_S, gps=GPS)
    end_s = WINDOW_START_S + PHASE_A_S + PHASE_B_S + PHASE_C_S
    stream = simulate(network, np.random.default_rng(SEED), date,
                      start_s=WINDOW_START_S, end_s=end_s, config=config)  # fmt: skip
    start = network.day_origin(date) + WINDOW_START_S
    out: dict[str, list[SimPing]] = {"A": [], "B": [], "C": []}
    for sim in stream:
        since_s = sim.sent_at - start
        if since_s < PHASE_A_S:
            out["A"].append(sim)
        elif since_s < PHASE_A_S + PHASE_B_S:
            out["B"].append(sim)
        else:
            out["C"].append(sim)
    return out


def malformed(like: Ping) -> list[tuple[str, bytes, str]]:
    """Messages the tracker must reject, otherwise like `like`: (topic, payload, reason)."""
    t, lat, lon = like.timestamp, like.lat, like.lon
    intruder = {"vehicle_id": like.vehicle_id, "timestamp": t, "lat": lat, "lon": lon}
    return [
        (position_topic("e2e-bad-json"), b'{"timestamp": %f, "lat": ' % t, "malformed"),
        (position_topic("e2e-lat-91"), b'{"timestamp": %f, "lat": 91.0, "lon": %f}' % (t, lon),
         "bad_coordinates"),
        (position_topic("e2e-nan"), b'{"timestamp": %f, "lat": NaN, "lon": %f}' % (t, lon),
         "bad_coordinates"),
        # a real bus's id in the payload, on another vehicle's topic
        (position_topic("e2e-intruder"), json.dumps(intruder).encode(), "malformed"),
    ]  # fmt: skip


async def run_scenario(
    network: Network, date: dt.date, broker: Mosquitto, pg: PostgresServer, feed: Path
) -> Scenario:
    sims = phases(network, date)
    scenario = Scenario(sims=sims, bad=malformed(sims["A"][-1].ping))
    end_s = network.day_origin(date) + WINDOW_START_S + PHASE_A_S + PHASE_B_S + PHASE_C_S

    # The tracker gets a role of its own, so that the database can refuse it writes (phase C).
    role = f"e2e_tracker_{uuid.uuid4().hex[:8]}"
    database = f"e2e_{uuid.uuid4().hex[:12]}"
    pg.psql(f"CREATE ROLE {role} LOGIN; CREATE DATABASE {database} OWNER {role};")
    admin_url = pg.get_uri(database)
    settings = Settings(
        broker_url=broker.url,
        database_url=with_user(admin_url, role),
        gtfs=feed,
        http_port=free_port(),
        mqtt_client_id=f"e2e-tracker-{uuid.uuid4().hex[:8]}",
        clock_offset_s=end_s + 30.0 - time.time(),
    )
    port = settings.http_port

    # A: the tracker runs; pings, then malformed messages.
    async with serving(settings, network) as app:
        live, reading = await live_client(port)
        await asyncio.to_thread(
            publish, broker.url, sims["A"], speed=SPEED_A, client_id="e2e-sim-a"
        )
        await asyncio.to_thread(publish_raw, broker.url, [(t, p) for t, p, _ in scenario.bad])
        await eventually(processed(app, len(sims["A"]) + len(scenario.bad)), "phase A stored")
        async with httpx.AsyncClient() as http:
            response = await http.get(f"http://127.0.0.1:{port}/healthz")
            scenario.healthz_after_bad = response.status_code
        await asyncio.sleep(2 * settings.live_tick_s)  # the last tick reaches the client
        run_1 = app
    await asyncio.wait_for(reading, TIMEOUT_S)  # the server closed the connection
    scenario.runs.append(RunStats.of(run_1))
    scenario.live.append(live.messages)
    scenario.live_closed.append(live.close_code)

    # B: published while the tracker is down; the broker keeps them for its session.
    await asyncio.to_thread(publish, broker.url, sims["B"], speed=0, client_id="e2e-sim-b")

    async with serving(settings, network) as app:
        live, reading = await live_client(port)
        pipeline: Pipeline = app.state.pipeline
        await eventually(processed(app, len(sims["B"])), "phase B stored after the restart")
        scenario.phase_b_stored_in_run_2 = pipeline.writer.stored

        # C: the database refuses writes while pings flow.
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f"REVOKE INSERT ON positions FROM {role}")
            await admin.execute("REVOKE SELECT ON pg_inherits FROM PUBLIC")
            outage = scenario.outage
            outage.started_at = time.monotonic()
            failures_before = pipeline.writer.failures
            publishing = asyncio.create_task(
                asyncio.to_thread(
                    publish, broker.url, sims["C"], speed=SPEED_C, client_id="e2e-sim-c"
                )
            )
            while not publishing.done():
                outage.writer_unhealthy_seen |= not pipeline.writer.healthy
                await asyncio.sleep(0.05)
            await publishing
            total = len(sims["B"]) + len(sims["C"])
            await eventually(lambda: pipeline.stats.messages >= total, "phase C processed")
            await asyncio.sleep(2 * settings.live_tick_s)
            outage.writer_unhealthy_seen |= not pipeline.writer.healthy
            outage.failures_during = pipeline.writer.failures - failures_before
            outage.pending_batches_at_end = pipeline.writer.pending_batches
            first_c = min(s.ping.timestamp for s in sims["C"])
            records = await admin.fetch(
                "SELECT vehicle_id, extract(epoch FROM observed_at)::float8 FROM positions "
                "WHERE observed_at >= to_timestamp($1)",
                first_c,
            )
            phase_c = {key(s.ping.vehicle_id, s.ping.timestamp) for s in sims["C"]}
            outage.phase_c_rows_at_end = len({key(*r) for r in records} & phase_c)
            await admin.execute(f"GRANT INSERT ON positions TO {role}")
            await admin.execute("GRANT SELECT ON pg_inherits TO PUBLIC")
            outage.ended_at = time.monotonic()
            await eventually(processed(app, total), "the writes queued in the outage")
            outage.recovered_after_s = time.monotonic() - outage.ended_at
        finally:
            await admin.close()

        # The live view catches up with the hub within a tick or two.
        hub_view = app.state.hub.vehicles
        await eventually(
            lambda: (
                {v: round(s.observed_at_s, 1) for v, s in hub_view().items()}
                == {v: s.get("observed_at_s") for v, s in live.view.items()}
            ),
            "the live client's view to reach the hub's",
        )
        scenario.final_view = dict(live.view)
        async with open_store(settings.database_url, apply_migrations=False) as store:
            scenario.latest = await store.latest()
            scenario.history = await store.history(
                start_s=end_s - 3 * 3600, end_s=end_s + 3600, limit=1_000_000
            )
        run_2 = app
    await asyncio.wait_for(reading, TIMEOUT_S)
    scenario.runs.append(RunStats.of(run_2))
    scenario.live.append(live.messages)
    scenario.live_closed.append(live.close_code)
    scenario.row_keys = Counter(key(r.vehicle_id, r.observed_at_s) for r in scenario.history)
    return scenario


@pytest.fixture(scope="module")
def scenario(
    shared_data: Path,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scenario:
    feed = shared_data / FEED
    network = load_network(feed, cache_dir=tmp_path_factory.mktemp("network-cache"))
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    warnings = Warnings()
    logger = logging.getLogger("tracker")
    broker.start()
    logger.addHandler(warnings)
    started = time.perf_counter()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tracker.app, "RETENTION_EVERY_S", RETENTION_EVERY_S)
            recorded = asyncio.run(
                run_scenario(network, busiest_date(network), broker, postgres_server, feed)
            )
    finally:
        logger.removeHandler(warnings)
        broker.stop()
    recorded.logged = warnings.records
    print(f"\nscenario: {time.perf_counter() - started:.1f} s")
    return recorded


# -- the properties -----------------------------------------------------------------------------


def test_every_accepted_ping_is_stored_exactly_once(scenario: Scenario) -> None:
    sims = scenario.all_sims
    published = len(sims) + len(scenario.bad)
    runs = scenario.runs
    # Nothing lost on the way in: every message reached a pipeline, none was given up.
    assert sum(r.messages for r in runs) == published
    assert sum(r.queue_superseded + r.queue_dropped + r.dropped_pings for r in runs) == 0
    # Each accepted message was written once: a new row, or a copy of a row already stored.
    for r in runs:
        assert r.messages - r.rejected_by_reason.total() == r.stored + r.store_duplicates
    assert sum(r.stored for r in runs) == len(scenario.row_keys)
    assert max(scenario.row_keys.values()) == 1
    # Rows are exactly the simulator's pings: those sent late too (older than a ping of their
    # vehicle sent before them: stored, matched later with hindsight); duplicates once.
    every = {key(s.ping.vehicle_id, s.ping.timestamp) for s in sims}
    rows = set(scenario.row_keys)
    assert rows == every
    repeated = sum(r.rejected_by_reason["duplicate"] for r in runs)
    assert len(sims) - repeated - sum(r.store_duplicates for r in runs) == len(rows)
    published_copies = sum(s.truth.duplicate for s in sims)
    published_late = sum(s.truth.out_of_order for s in sims)
    print(
        f"\n{len(sims)} pings published ({published_copies} duplicates, {published_late} late) "
        f"-> {len(rows)} rows; refused {repeated} duplicates"
    )


def test_malformed_messages_are_rejected_by_reason_and_the_service_goes_on(
    scenario: Scenario,
) -> None:
    run_1 = scenario.runs[0]
    expected = Counter(reason for _, _, reason in scenario.bad)
    for reason, count in expected.items():
        assert run_1.rejected_by_reason[reason] == count, (reason, run_1.rejected_by_reason)
    assert set(run_1.rejected_by_reason) <= {*expected, "duplicate"}
    assert set(scenario.runs[1].rejected_by_reason) <= {"duplicate"}
    rows = {vehicle_id for vehicle_id, _ in scenario.row_keys}
    assert not any(vehicle_id.startswith("e2e-") for vehicle_id in rows)
    # It kept running: it answered, and went on matching and storing everything after them.
    assert scenario.healthz_after_bad == 200
    assert scenario.runs[1].stored > 0
    assert [text for level, text in scenario.logged if level >= logging.ERROR] == []


def test_matched_trips_agree_with_the_simulators_truth(scenario: Scenario) -> None:
    """In-service pings (not outliers, not repeated or late, not among a bus's first two on a
    trip, which no matcher can place yet): the stored trip is the simulated one."""
    trip_of = {key(r.vehicle_id, r.observed_at_s): r.trip_id for r in scenario.history}
    seen: Counter[tuple[str, str]] = Counter()
    right = judged = 0
    for sim in scenario.all_sims:
        truth = sim.truth
        if truth.duplicate or truth.out_of_order:
            continue
        seen[truth.vehicle_id, truth.trip_id] += 1
        first_two = seen[truth.vehicle_id, truth.trip_id] <= 2
        if truth.state != "in_service" or truth.outlier or first_two:
            continue
        judged += 1
        right += trip_of[key(truth.vehicle_id, truth.timestamp)] == truth.trip_id
    share = right / judged
    print(f"\ntrip ids agree with the truth for {share:.1%} of {judged} in-service pings")
    assert judged > 1000
    assert share >= TRIP_ACCURACY_FLOOR


def test_the_live_view_ends_equal_to_the_latest_stored_state(scenario: Scenario) -> None:
    stored = {row.vehicle_id: live_vehicle_of_row(row).to_json_dict() for row in scenario.latest}
    assert len(stored) >= 30
    assert scenario.final_view.keys() == stored.keys()
    for vehicle_id, state in stored.items():
        assert scenario.final_view[vehicle_id] == state, vehicle_id
    # Both clients got a snapshot, then updates that showed every bus that sent a ping while
    # they listened, and were closed by the server when it stopped.
    for messages, phase in zip(scenario.live, ("A", "C"), strict=True):
        assert messages[0].kind == "snapshot"
        updated = {v["vehicle_id"] for m in messages[1:] for v in m.vehicles}
        assert updated >= {s.ping.vehicle_id for s in scenario.sims[phase]}
    assert scenario.live_closed == [1012, 1012]  # uvicorn's "service restart"


def test_pings_published_while_the_tracker_was_down_are_stored_after_its_restart(
    scenario: Scenario,
) -> None:
    down = scenario.sims["B"]
    assert len(down) > 200
    rows = set(scenario.row_keys)
    sent = {key(s.ping.vehicle_id, s.ping.timestamp) for s in down}  # late ones too
    assert sent <= rows
    # The restarted tracker got every one of them (from the broker: the session kept them).
    assert scenario.runs[1].messages == len(down) + len(scenario.sims["C"])
    assert scenario.phase_b_stored_in_run_2 >= len(sent)
    # And the first run got none of them.
    assert scenario.runs[0].messages == len(scenario.sims["A"]) + len(scenario.bad)


def test_live_updates_flow_while_the_database_refuses_writes_and_all_is_stored_after(
    scenario: Scenario,
) -> None:
    outage = scenario.outage
    refused = scenario.sims["C"]
    shown = {(s.ping.vehicle_id, round(s.ping.timestamp, 1)) for s in refused}  # as on the wire
    # The database did refuse: nothing of phase C was stored during the outage, the writer
    # failed, retried and held its batches.
    assert outage.phase_c_rows_at_end == 0
    assert outage.writer_unhealthy_seen
    assert outage.failures_during >= 2
    assert outage.pending_batches_at_end > 0
    # ... and so did the retention's reads: both were logged, and neither ended the service.
    logged = [text for _, text in scenario.logged]
    assert any("database write failed, will retry" in text for text in logged), logged
    assert any("retention failed, will try again" in text for text in logged), logged
    # The live view did not wait for it.
    during = [
        m
        for m in scenario.live[1]
        if outage.started_at <= m.received_at <= outage.ended_at
        and any((v["vehicle_id"], v["observed_at_s"]) in shown for v in m.vehicles)
    ]
    assert len(during) >= 3
    # Afterwards, everything is stored.
    rows = set(scenario.row_keys)
    assert {key(s.ping.vehicle_id, s.ping.timestamp) for s in refused} <= rows
    print(
        f"\noutage of {outage.ended_at - outage.started_at:.1f} s: {len(during)} live updates, "
        f"{outage.failures_during} failed writes, {outage.pending_batches_at_end} batches held; "
        f"all written {outage.recovered_after_s:.1f} s after the grant"
    )
