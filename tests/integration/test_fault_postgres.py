"""PostgreSQL stopped for 30 s mid-stream, then started again: nothing accepted is lost.

The real app on a real Mosquitto and a PostgreSQL server of this test's own (so stopping it
leaves the session's shared server alone). Buses publish over MQTT at a steady pace, with a
malformed message now and then; once the first rows are stored the server process is stopped
(`pg_ctl stop -m fast`), kept down `OUTAGE_S`, and started again on the same data folder and URL.
Meanwhile:

- the live view goes on: `/api/vehicles` shows positions observed after the server went away;
- memory stays bounded: the store writer holds at most its `max_batches`, drops none, and the
  process's RSS grows less than `RSS_GROWTH_BOUND_MIB`;
- nobody reconnects anything: the store's pool and writer find the server again by themselves.

At the end every accepted ping is in `positions` exactly once, and the counts are printed
(`pytest -s` shows them; docs/security.md has a run's figures).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import paho.mqtt.client as paho
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.publish import MqttPublisher
from tests.integration.servers import Mosquitto, OwnPostgres, own_postgres
from tests.integration.test_api import _position, get_json, running, service_settings
from tracker.app import create_app
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.ingest.mqtt import MqttIngest
from tracker.service import Pipeline
from tracker.wire import position_topic

pytestmark = pytest.mark.integration

OUTAGE_S = 30.0  # as the issue asks: longer than the writer's backoff cap (15 s) reaches
BEFORE_S = 3.0  # pings stored normally before the outage
AFTER_S = 3.0  # pings flowing after the restart
TICK_S = 0.2  # each bus publishes one ping per tick
BUSES = 5
BAD_EVERY = 5  # ticks between malformed messages
TIMEOUT_S = 40.0  # the longest any wait lasts (catching up may wait out a 15 s backoff)
SAMPLE_S = 0.1  # how often the outage is watched
# What the writer holds while the database is away is ~1 KiB per ping (a Ping, a Match): some
# 30 s x 25 pings/s = 750 of them. 64 MiB is far above that and the allocator's noise, and far
# below what a leak per failed write or an unbounded queue would come to.
RSS_GROWTH_BOUND_MIB = 64.0
TRIPS = ("B_N_0800", "B_S_0800")


@pytest.fixture
def postgres() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


@dataclass
class Stream:
    """Publishes pings (and now and then a malformed message) until told to stop."""

    url: str
    port: int
    network: Network
    first_s: float
    stop: threading.Event = field(default_factory=threading.Event)
    sent: list[Ping] = field(default_factory=list)
    bad: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e

    def _run(self) -> None:
        raw = paho.Client(CallbackAPIVersion.VERSION2, client_id="fault-test-raw")
        raw.connect("127.0.0.1", self.port)
        raw.loop_start()
        bad_topic = position_topic("bus-bad")
        try:
            with MqttPublisher(self.url, client_id="fault-test-buses") as publisher:
                tick = 0
                started = time.monotonic()
                while not self.stop.is_set():
                    t = self.first_s + tick * TICK_S
                    for n in range(BUSES):
                        trip = TRIPS[n % 2]
                        lat, lon = _position(self.network, trip, t - 20.0 * n)
                        ping = Ping(f"bus-{n + 1}", t, lat, lon)
                        publisher.publish(ping)
                        self.sent.append(ping)
                    if tick % BAD_EVERY == 0:
                        raw.publish(bad_topic, b"not json", qos=1).wait_for_publish(TIMEOUT_S)
                        self.bad += 1
                    tick += 1
                    publisher.wait(max(0.0, started + tick * TICK_S - time.monotonic()))
        finally:
            raw.disconnect()
            raw.loop_stop()


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def wait_for(what: str, check: Callable[[], bool]) -> float:
    """Wait until `check()` is true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > TIMEOUT_S:
            raise AssertionError(f"timed out after {TIMEOUT_S} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_postgres_stopped_30_s_mid_stream_loses_nothing_and_stores_nothing_twice(
    mosquitto: Mosquitto,
    postgres: OwnPostgres,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = service_settings(mosquitto, postgres.url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app) as client:
        ingest = app.state.ingest
        assert isinstance(ingest, MqttIngest)
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        pipeline: Pipeline = app.state.pipeline
        writer = pipeline.writer
        stream = Stream(mosquitto.url, mosquitto.port, app.state.network, settings.now())
        publishing = asyncio.create_task(asyncio.to_thread(stream.run))
        try:
            await wait_for("the first rows stored", lambda: writer.stored > 0)
            await asyncio.sleep(BEFORE_S)

            # --- the outage ---
            await asyncio.to_thread(postgres.stop)
            down_at = time.monotonic()
            vehicles = await get_json(client, "/api/vehicles")
            newest_at_stop_s = max(v["observed_at_s"] for v in vehicles["vehicles"])
            rss_before_mib = rss_mib()
            rss_high_mib = rss_before_mib
            pending_high = writer.pending_batches
            readyz_down = False
            while time.monotonic() - down_at < OUTAGE_S:
                await asyncio.sleep(SAMPLE_S)
                pending_high = max(pending_high, writer.pending_batches)
                rss_high_mib = max(rss_high_mib, rss_mib())
                if not readyz_down:
                    body = (await client.get("/readyz")).json()
                    readyz_down = body["database"] is False
            vehicles = await get_json(client, "/api/vehicles")
            newest_at_end_s = max(v["observed_at_s"] for v in vehicles["vehicles"])
            failures_down = writer.failures
            healthy_down = writer.healthy
            stored_down = writer.stored
            await asyncio.to_thread(postgres.start)
            outage_s = time.monotonic() - down_at

            # --- nobody reconnects anything: the writer finds the server by itself ---
            catch_up_s = await wait_for(
                "the backlog written", lambda: writer.healthy and not writer.pending_batches
            )
            await asyncio.sleep(AFTER_S)
        finally:
            stream.stop.set()
            await publishing
        assert stream.error is None, stream.error
        published = len(stream.sent) + stream.bad

        def all_processed() -> bool:
            return pipeline.stats.messages >= published and not writer.pending_batches

        await wait_for("every message processed and written", all_processed)

    stats = pipeline.stats
    rejected = dict(stats.rejected_by_reason)
    accepted = stats.messages - sum(rejected.values()) - stats.ignored
    conn = await asyncpg.connect(postgres.url)
    try:
        counts = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT (vehicle_id, observed_at)) FROM positions"
        )
        assert counts is not None
        stored, distinct = counts
        rows = await conn.fetch(
            "SELECT vehicle_id, extract(epoch FROM observed_at)::float8 AS t FROM positions"
        )
    finally:
        await conn.close()
    keys = Counter((r["vehicle_id"], round(r["t"], 3)) for r in rows)
    lost = [p for p in stream.sent if (p.vehicle_id, round(p.timestamp, 3)) not in keys]

    print(
        f"\nPostgreSQL stopped {OUTAGE_S:g} s mid-stream: published {published} "
        f"({len(stream.sent)} pings, {stream.bad} malformed), accepted {accepted}, "
        f"rejected {rejected}, stored {stored} ({distinct} distinct), lost {len(lost)}, "
        f"duplicated {stored - distinct}, duplicates absorbed {writer.duplicates}, "
        f"write failures {writer.failures}, pending batches high water {pending_high} "
        f"(bound {settings.store_queue_batches}), dropped batches {writer.dropped_batches}, "
        f"RSS {rss_before_mib:.0f} -> {rss_high_mib:.0f} MiB during the outage, "
        f"outage {outage_s:.1f} s, catch-up {catch_up_s:.1f} s"
    )

    # the database was really away, and the writer saw it
    assert readyz_down
    assert failures_down > 0
    assert not healthy_down
    assert stored_down < len(stream.sent)
    # the live view went on meanwhile
    assert newest_at_end_s > newest_at_stop_s + OUTAGE_S / 2
    # memory bounded
    assert pending_high <= settings.store_queue_batches
    assert writer.dropped_batches == writer.dropped_pings == 0
    assert rss_high_mib - rss_before_mib < RSS_GROWTH_BOUND_MIB
    # nothing lost, nothing twice
    assert rejected == {"malformed": stream.bad}
    assert accepted == len(stream.sent)
    assert lost == []
    assert stored == distinct == len(stream.sent)
    assert writer.stored == len(stream.sent)
