"""GTFS-realtime VehiclePositions polling (tracker.ingest.gtfs_rt_poll) over real HTTP.

A real HTTP server (`http.server` in a thread, on 127.0.0.1) serves the recorded feeds of
../shared/data: Caltrain's and Bull Runner's snapshots, and VehiclePositions snapshots built
here from a few minutes of the recorded WMATA positions, as the agency's server would have
served them every 20 s. It answers conditional requests as a real server does (304 when the
ETag or Last-Modified the client sends back is current).

- The poller alone: ETag and Last-Modified sent back and answered 304; an HTTP error, a web
  page instead of the feed, a timeout and a refused connection each counted by reason and
  logged once per change of state, with the next poll backing off (to the server's
  Retry-After when longer); back to healthy when the feed is.
- The real tracker (`create_app`, real Mosquitto and PostgreSQL, as tests/integration/test_api.py)
  polling four feeds: every entity is stored exactly once in PostgreSQL though the same feeds
  are served for many polls; a feed answering 500, then a web page, is counted while the
  service goes on; the WMATA feed's next snapshots bring their new positions.

The tracker's clock is set just after the last WMATA snapshot: the tracker rejects positions
ahead of its clock (`max_future_s`), not old ones, so the older Caltrain (2023) and Bull Runner
(2017) snapshots are taken too; history is kept 20 years so that the retention task leaves
them.
"""

from __future__ import annotations

import asyncio
import csv
import email.utils
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from google.transit import gtfs_realtime_pb2 as rt
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.servers import Mosquitto, free_port
from tests.integration.test_api import eventually, get_json, running, service_settings
from tracker.app import create_app
from tracker.ingest.gtfs_rt_poll import GtfsRtPoller, Skip
from tracker.ingest.queue import AsyncIngestQueue

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CALTRAIN = DATA / "caltrain-rt" / "vehicle_positions.pb"
BULLRUNNER = DATA / "bullrunner-frequency" / "vehicle_positions.pb"
WMATA = DATA / "wmata-bus-2026-02-16" / "vehicle_positions.csv"

SNAPSHOT_EVERY_S = 20  # the WMATA snapshots served one after the other
SNAPSHOTS = 5
LISTED_FOR_S = 120  # a bus is in a snapshot while its last report is this recent
POLL_EVERY_S = 0.2
SECRET = "k3y-n0t-t0-sh0w"


# --- a real HTTP server of feeds ----------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/x-protobuf"
    etag: str | None = None
    last_modified: str | None = None
    retry_after: str | None = None
    delay_s: float = 0.0  # wait this long before answering


@dataclass
class FeedServer:
    """Serves `answers` by path (the query is ignored) and records each request's headers."""

    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def serve(self, path: str, answer: Answer) -> None:
        with self.lock:
            self.answers[path] = answer

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests_to(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [headers for p, headers in self.requests if p == path]

    def answer(self, path: str, headers: dict[str, str]) -> Answer | None:
        with self.lock:
            self.requests.append((path, headers))
            return self.answers.get(path)


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the poller's client expects

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            headers = {k.lower(): v for k, v in self.headers.items()}
            answer = server.answer(path, headers)
            if answer is None:
                answer = Answer(status=404, body=b"no such feed", content_type="text/plain")
            time.sleep(answer.delay_s)
            current = answer.status == 200 and (
                (answer.etag is not None and headers.get("if-none-match") == answer.etag)
                or (
                    answer.etag is None
                    and answer.last_modified is not None
                    and headers.get("if-modified-since") == answer.last_modified
                )
            )
            status, body = (304, b"") if current else (answer.status, answer.body)
            self.send_response(status)
            if answer.etag:
                self.send_header("ETag", answer.etag)
            if answer.last_modified:
                self.send_header("Last-Modified", answer.last_modified)
            if answer.retry_after:
                self.send_header("Retry-After", answer.retry_after)
            if status != 304:
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (the timeout case) is expected: no traceback for it."""


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    httpd = _QuietServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    httpd.block_on_close = False  # a request still sleeping (the timeout case) is not waited for
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, name="feed-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


# --- WMATA snapshots ----------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    timestamp_s: int
    positions: dict[str, int]  # vehicle id -> its position's timestamp
    data: bytes


def _wmata_snapshots(first_s: int, count: int) -> list[Snapshot]:
    """Full-dataset VehiclePositions at `first_s`, then every SNAPSHOT_EVERY_S: each bus's last
    recorded report at that time, if it is at most LISTED_FOR_S old."""
    with WMATA.open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle)
                if first_s - LISTED_FOR_S < int(r["vehicle.timestamp"])
                <= first_s + SNAPSHOT_EVERY_S * count]  # fmt: skip
    rows.sort(key=lambda r: int(r["vehicle.timestamp"]))
    snapshots = []
    for k in range(count):
        at_s = first_s + SNAPSHOT_EVERY_S * k
        latest: dict[str, dict[str, str]] = {}
        for row in rows:
            if at_s - LISTED_FOR_S < int(row["vehicle.timestamp"]) <= at_s:
                latest[row["vehicle.vehicle.id"]] = row
        message = rt.FeedMessage()
        message.header.gtfs_realtime_version = "2.0"
        message.header.incrementality = rt.FeedHeader.FULL_DATASET
        message.header.timestamp = at_s
        for vehicle_id, row in sorted(latest.items()):
            entity = message.entity.add()
            entity.id = row["id"]
            vp = entity.vehicle
            vp.trip.trip_id = row["vehicle.trip.trip_id"]
            vp.trip.route_id = row["vehicle.trip.route_id"]
            vp.trip.start_date = row["vehicle.trip.start_date"]
            vp.trip.start_time = row["vehicle.trip.start_time"]
            vp.vehicle.id = vehicle_id
            vp.vehicle.label = row["vehicle.vehicle.label"]
            vp.position.latitude = float(row["vehicle.position.latitude"])
            vp.position.longitude = float(row["vehicle.position.longitude"])
            if row["vehicle.position.bearing"]:
                vp.position.bearing = float(row["vehicle.position.bearing"])
            if row["vehicle.position.speed"]:
                vp.position.speed = float(row["vehicle.position.speed"])
            vp.timestamp = int(row["vehicle.timestamp"])
            vp.stop_id = row["vehicle.stop_id"]
        positions = {v: int(r["vehicle.timestamp"]) for v, r in latest.items()}
        snapshots.append(Snapshot(at_s, positions, message.SerializeToString()))
    return snapshots


def _http_date(epoch_s: float) -> str:
    return email.utils.formatdate(epoch_s, usegmt=True)


def _ids_and_times(path: Path) -> set[tuple[str, int]]:
    message = rt.FeedMessage()
    message.ParseFromString(path.read_bytes())
    return {
        (e.vehicle.vehicle.id, e.vehicle.timestamp or message.header.timestamp)
        for e in message.entity
    }


def _odd_feed(vehicle_id: str, at_s: int) -> bytes:
    """A feed with one position, one vehicle without a position and one TripUpdate."""
    message = rt.FeedMessage()
    message.header.gtfs_realtime_version = "2.0"
    message.header.timestamp = at_s
    good = message.entity.add()
    good.id = "1"
    good.vehicle.vehicle.id = vehicle_id
    good.vehicle.position.latitude, good.vehicle.position.longitude = 33.5731, -7.5898
    lost = message.entity.add()
    lost.id = "2"
    lost.vehicle.vehicle.id = "lost-1"
    trip = message.entity.add()
    trip.id = "3"
    trip.trip_update.trip.trip_id = "T1"
    return message.SerializeToString()


# --- the poller alone ---------------------------------------------------------------------


async def test_poller_sends_validators_counts_failures_and_backs_off(
    feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tracker.ingest.gtfs_rt_poll")
    caltrain = CALTRAIN.read_bytes()
    queue = AsyncIngestQueue(1000)
    url = feed_server.url(f"/vp.pb?api_key={SECRET}")
    poller = GtfsRtPoller(url, queue, every_s=10.0, timeout_s=0.3)
    assert SECRET not in poller.name
    async with httpx.AsyncClient() as client:
        # ETag: sent back, and the unchanged feed answered 304
        feed_server.serve("/vp.pb", Answer(body=caltrain, etag='"v1"'))
        assert [await poller.poll_once(client) for _ in range(2)] == [10.0, 10.0]
        sent = feed_server.requests_to("/vp.pb")
        assert "if-none-match" not in sent[0]
        assert sent[1]["if-none-match"] == '"v1"'
        stats = poller.stats()
        assert (stats.feeds_read, stats.not_modified, stats.sent, stats.healthy) == (1, 1, 14, True)
        assert len(queue) == 14

        # Last-Modified only: sent back as If-Modified-Since
        modified = _http_date(1699405559)
        feed_server.serve("/vp.pb", Answer(body=caltrain, last_modified=modified))
        await poller.poll_once(client)  # the server dropped its ETag: a full answer
        await poller.poll_once(client)
        assert feed_server.requests_to("/vp.pb")[-1]["if-modified-since"] == modified
        stats = poller.stats()
        assert (stats.feeds_read, stats.not_modified, stats.sent, stats.unchanged) == (2, 2, 14, 14)

        # Failing: each reason counted, the state logged once per change, the polls backing off
        caplog.clear()
        feed_server.serve("/vp.pb", Answer(status=500, body=b"oops", content_type="text/plain"))
        assert [await poller.poll_once(client) for _ in range(3)] == [10.0, 20.0, 40.0]
        feed_server.serve("/vp.pb", Answer(status=503, retry_after="200"))
        assert await poller.poll_once(client) == 200.0  # the server's Retry-After: longer
        page = b"<html><body>Down for maintenance</body></html>"
        feed_server.serve("/vp.pb", Answer(body=page, content_type="text/html; charset=utf-8"))
        assert await poller.poll_once(client) == 160.0
        assert "text/html" in (poller.stats().last_error or "")
        feed_server.serve("/vp.pb", Answer(body=caltrain, delay_s=1.0))
        assert await poller.poll_once(client) == 300.0  # at most five minutes between polls
        stats = poller.stats()
        assert stats.failures_by_reason == {"http_500": 3, "http_503": 1, "not_protobuf": 1,
                                            "timeout": 1}  # fmt: skip
        assert (stats.failures, stats.healthy) == (6, False)
        assert stats.last_error == "no complete answer within 0.3 s"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert [w.split(" failed (")[1].split(")")[0] for w in warnings] == [
            "http_500", "http_503", "not_protobuf", "timeout"
        ]  # fmt: skip
        assert "HTTP 500 Internal Server Error" in warnings[0]

        # Back: healthy, the next poll at the usual pace, nothing sent twice
        feed_server.serve("/vp.pb", Answer(body=caltrain, etag='"v2"'))
        assert await poller.poll_once(client) == 10.0
        stats = poller.stats()
        assert (stats.healthy, stats.last_error, stats.sent, stats.unchanged) == (
            True, None, 14, 28)  # fmt: skip
        assert any("is back after 6 failed polls" in r.getMessage() for r in caplog.records)
        assert len(queue) == 14

        # Nothing listening: a refused connection
        closed = GtfsRtPoller(f"http://127.0.0.1:{free_port()}/vp.pb", queue, every_s=10.0)
        assert await closed.poll_once(client) == 10.0
        assert closed.stats().failures_by_reason == {"connection": 1}
    assert not any(SECRET in r.getMessage() for r in caplog.records)


# --- the tracker polling feeds ------------------------------------------------------------


async def test_tracker_stores_each_polled_position_once_and_goes_on_through_failures(
    mosquitto: Mosquitto,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    feed_server: FeedServer,
) -> None:
    first_s = 1771257482 + LISTED_FOR_S  # 2026-02-16 11:00 in Washington, two minutes in
    snapshots = _wmata_snapshots(first_s, SNAPSHOTS)
    now_s = snapshots[-1].timestamp_s + 10
    caltrain, bullrunner = _ids_and_times(CALTRAIN), _ids_and_times(BULLRUNNER)
    wmata = {(v, t) for s in snapshots for v, t in s.positions.items()}
    flaky = {("flaky-1", now_s - 5)}
    vehicle_sets = [{v for v, _ in feed} for feed in (caltrain, bullrunner, wmata, flaky)]
    assert sum(map(len, vehicle_sets)) == len(set().union(*vehicle_sets))  # no id in two feeds
    # positions already sent that a later snapshot lists again
    wmata_unchanged = sum(
        1 for before, after in itertools.pairwise(snapshots)
        for v, t in after.positions.items() if before.positions.get(v) == t
    )  # fmt: skip
    assert wmata_unchanged > 0
    assert len(wmata) > 20

    feed_server.serve("/caltrain.pb", Answer(body=CALTRAIN.read_bytes(), etag='"c1"'))
    feed_server.serve("/bullrunner.pb", Answer(body=BULLRUNNER.read_bytes()))  # no validators
    feed_server.serve("/flaky.pb", Answer(status=500, body=b"oops", content_type="text/plain"))

    def serve_wmata(k: int) -> None:
        snapshot = snapshots[k]
        modified = _http_date(snapshot.timestamp_s)
        feed_server.serve("/wmata.pb", Answer(body=snapshot.data, last_modified=modified))

    serve_wmata(0)
    urls = [
        feed_server.url(f"/caltrain.pb?key={SECRET}"),
        feed_server.url("/bullrunner.pb"),
        feed_server.url("/wmata.pb"),
        feed_server.url("/flaky.pb"),
    ]
    base = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    settings = base.model_copy(update={
        "poll_gtfs_rt": urls,
        "poll_every_s": POLL_EVERY_S,
        "clock_offset_s": now_s - time.time(),
        "retention_days": 20 * 365,
    })  # fmt: skip
    app = create_app(settings)
    async with running(app) as client:

        async def feeds() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await get_json(client, "/api/stats"))["gtfs_rt"]
            return found

        async def flaky_failed(n: int, reason: str) -> bool:
            return bool((await feeds())[3]["failures_by_reason"].get(reason, 0) >= n)

        # The flaky feed: 500, then a web page, then a feed; the others are polled meanwhile
        await eventually(lambda: flaky_failed(2, "http_500"), "two polls answered 500")
        feed_server.serve("/flaky.pb", Answer(body=b"<html>Oops</html>", content_type="text/html"))
        await eventually(lambda: flaky_failed(1, "not_protobuf"), "a web page read")
        feed_server.serve("/flaky.pb", Answer(body=_odd_feed("flaky-1", now_s - 5)))

        async def settled() -> bool:
            cal, bull, wm, fl = await feeds()
            return bool(
                cal["not_modified"] >= 2 and bull["feeds_read"] >= 3
                and wm["not_modified"] >= 2 and fl["healthy"] and fl["sent"] == 1
            )  # fmt: skip

        await eventually(settled, "each feed polled several times, the flaky one back")

        # The WMATA feed moves on: each next snapshot read once and polled again (304s)
        for k in range(1, SNAPSHOTS):
            before = (await feeds())[2]["not_modified"]
            serve_wmata(k)

            async def read_and_polled_again(k: int = k, before: int = before) -> bool:
                wm = (await feeds())[2]
                return bool(wm["feeds_read"] == k + 1 and wm["not_modified"] >= before + 2)

            await eventually(read_and_polled_again, f"WMATA snapshot {k} read")

        expected = caltrain | bullrunner | wmata | flaky

        async def all_stored() -> bool:
            stats = await get_json(client, "/api/stats")
            return bool(stats["writer"]["stored"] >= len(expected))

        await eventually(all_stored, "every polled position stored")
        stats = await get_json(client, "/api/stats")
        metrics_text = (await client.get("/metrics")).text
    polls_at_stop = len(feed_server.requests)

    # Stored exactly once: the pipeline got each position once, so nothing was a duplicate
    assert stats["pipeline"]["messages"] == len(expected)
    assert stats["writer"]["stored"] == len(expected)
    assert stats["writer"]["duplicates"] == 0
    rejected = stats["pipeline"]["rejected_by_reason"]
    assert "duplicate" not in rejected
    assert "out_of_order" not in rejected
    connection = await asyncpg.connect(postgres_url)
    try:
        rows = await connection.fetch(
            "SELECT vehicle_id, extract(epoch FROM observed_at)::bigint AS ts, lat, speed_mps,"
            " trip_id_given, route_id_given FROM positions"
        )
    finally:
        await connection.close()
    assert len(rows) == len(expected)
    assert {(r["vehicle_id"], r["ts"]) for r in rows} == expected
    # a WMATA position as the feed told it: speed and the agency's trip as hints
    reader = csv.DictReader(WMATA.open(newline=""))
    recorded = {(r["vehicle.vehicle.id"], int(r["vehicle.timestamp"])): r for r in reader}
    for row in rows:
        key = (row["vehicle_id"], row["ts"])
        if key in wmata:
            source = recorded[key]
            assert row["trip_id_given"] == source["vehicle.trip.trip_id"]
            assert row["route_id_given"] == source["vehicle.trip.route_id"]
            assert row["lat"] == pytest.approx(float(source["vehicle.position.latitude"]), abs=1e-6)
            if source["vehicle.position.speed"]:
                speed = float(source["vehicle.position.speed"])
                assert row["speed_mps"] == pytest.approx(speed, abs=0.01)

    cal, bull, wm, fl = stats["gtfs_rt"]
    assert cal["feed"] == feed_server.url("/caltrain.pb?key=***")
    assert (cal["feeds_read"], cal["sent"], cal["unchanged"]) == (1, 14, 0)
    assert cal["not_modified"] == cal["polls"] - 1
    assert (bull["sent"], bull["unchanged"]) == (10, 10 * (bull["feeds_read"] - 1))
    assert (wm["feeds_read"], wm["sent"], wm["unchanged"]) == (SNAPSHOTS, len(wmata),
                                                                 wmata_unchanged)  # fmt: skip
    assert fl["failures_by_reason"]["http_500"] >= 2
    assert fl["failures_by_reason"]["not_protobuf"] >= 1
    assert (fl["healthy"], fl["sent"]) == (True, 1)
    # served without validators: the feed is read at each poll, its odd entities skipped each time
    odd_reads = fl["feeds_read"]
    assert fl["skipped_by_reason"] == {Skip.NO_POSITION: odd_reads,
                                       Skip.NOT_A_VEHICLE_POSITION: odd_reads}  # fmt: skip
    assert fl["unchanged"] == odd_reads - 1
    assert all(f["healthy"] for f in (cal, bull, wm))
    assert SECRET not in str(stats)
    assert SECRET not in metrics_text

    # /metrics says what /api/stats says
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics_text)
        for s in family.samples
    }
    for feed in stats["gtfs_rt"]:
        name = feed["feed"]

        def sample(metric: str, feed_name: str = name, **labels: str) -> float:
            return samples[(metric, tuple(sorted({"feed": feed_name, **labels}.items())))]

        assert sample("bus_tracker_gtfs_rt_entities_total", outcome="sent") == feed["sent"]
        assert (
            sample("bus_tracker_gtfs_rt_entities_total", outcome="unchanged") == feed["unchanged"]
        )
        assert sample("bus_tracker_gtfs_rt_polls_total", result="failed") == feed["failures"]
        assert sample("bus_tracker_gtfs_rt_feed_up") == 1.0
    assert samples[("bus_tracker_gtfs_rt_failures_total",
                    (("feed", fl["feed"]), ("reason", "http_500")))] >= 2  # fmt: skip

    # Stopped with the service: no poll after it
    await asyncio.sleep(5 * POLL_EVERY_S)
    assert len(feed_server.requests) == polls_at_stop
