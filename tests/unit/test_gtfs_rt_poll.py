"""GTFS-realtime VehiclePositions in (tracker.ingest.gtfs_rt_poll), without HTTP: real feeds
decoded into the tracker's position messages and read back by the pipeline's own decoder; each
position sent once; what is not a position skipped with its reason; bytes that are not a feed
refused with a reason. The HTTP side (ETags, failures, the app) is in
tests/integration/test_gtfs_rt_poll.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from tracker.core.model import Ping, Reason
from tracker.core.validate import validate_ping
from tracker.ingest.gtfs_rt_poll import (
    GtfsRtPoller,
    PollError,
    Skip,
    feed_names,
    read_feed,
    shown_url,
)
from tracker.ingest.queue import AsyncIngestQueue, Received
from tracker.wire import decode_ping

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CALTRAIN = DATA / "caltrain-rt" / "vehicle_positions.pb"
BULLRUNNER = DATA / "bullrunner-frequency" / "vehicle_positions.pb"


def _message(path: Path) -> rt.FeedMessage:
    message = rt.FeedMessage()
    message.ParseFromString(path.read_bytes())
    return message


def _decoded(topic: str, payload: bytes) -> Ping:
    ping = decode_ping(topic, payload)
    assert isinstance(ping, Ping), ping
    return ping


def test_caltrain_snapshot_gives_each_train_with_its_trip_and_time() -> None:
    message = _message(CALTRAIN)
    feed = read_feed(CALTRAIN.read_bytes())

    assert (feed.entities, feed.skipped) == (14, {})
    assert feed.header_timestamp_s == 1699405559
    assert [p.vehicle_id for p in feed.positions] == [e.vehicle.vehicle.id for e in message.entity]
    for position, entity in zip(feed.positions, message.entity, strict=True):
        ping = _decoded(position.topic, position.payload)
        vp = entity.vehicle
        assert position.topic == f"bus-tracker/v1/vehicles/{vp.vehicle.id}/position"
        assert ping.vehicle_id == vp.vehicle.id
        # the vehicle's time, not the header's (10 s later)
        assert ping.timestamp == position.timestamp_s == 1699405549
        assert ping.lat == pytest.approx(vp.position.latitude, abs=1e-6)
        assert ping.lon == pytest.approx(vp.position.longitude, abs=1e-6)
        assert (ping.trip_id, ping.route_id) == (vp.trip.trip_id, vp.trip.route_id)
        assert (ping.speed_mps, ping.bearing_deg) == (None, None)  # Caltrain sends neither
    # 32-bit floats in the feed: the payload carries 7 decimals, not the float's noise
    first = json.loads(feed.positions[0].payload)
    assert first["lat"] == 37.3704605


def test_bullrunner_vehicle_times_of_zero_take_the_header_time() -> None:
    message = _message(BULLRUNNER)
    feed = read_feed(BULLRUNNER.read_bytes())

    assert (feed.entities, feed.skipped, len(feed.positions)) == (10, {}, 10)
    assert {e.vehicle.timestamp for e in message.entity} == {0}
    for position, entity in zip(feed.positions, message.entity, strict=True):
        ping = _decoded(position.topic, position.payload)
        assert ping.vehicle_id == entity.vehicle.vehicle.id  # "1536", not the entity id "1"
        assert ping.timestamp == message.header.timestamp == 1505314375
        assert ping.bearing_deg == entity.vehicle.position.bearing
        assert (ping.route_id, ping.trip_id) == (entity.vehicle.trip.route_id, None)
        assert validate_ping(ping, now=ping.timestamp) is None


def _odd_feed() -> rt.FeedMessage:
    """A feed with each kind of entity an agency's feed may hold (no header timestamp)."""
    message = rt.FeedMessage()
    message.header.gtfs_realtime_version = "2.0"

    def vehicle(entity_id: str, *, ts: int = 1_700_000_000) -> rt.VehiclePosition:
        entity = message.entity.add()
        entity.id = entity_id
        entity.vehicle.position.latitude = 33.57
        entity.vehicle.position.longitude = -7.59
        entity.vehicle.timestamp = ts
        return entity.vehicle

    vehicle("e-1").vehicle.id = "bus-1"
    vehicle("e-2").vehicle.label = " 12 "  # a label only: the vehicle is "12"
    vehicle("bus-3")  # no vehicle descriptor: the entity id names it
    vehicle("e-4", ts=0).vehicle.id = "bus-4"  # no time here nor in the header
    vehicle("e-5").vehicle.id = "route/5"  # cannot be a topic level
    vehicle("")  # no id at all
    no_position = message.entity.add()
    no_position.id = "e-7"
    no_position.vehicle.vehicle.id = "bus-7"
    no_position.vehicle.timestamp = 1_700_000_000
    trip_update = message.entity.add()
    trip_update.id = "e-8"
    trip_update.trip_update.trip.trip_id = "T1"
    deleted = vehicle("e-9")
    deleted.vehicle.id = "bus-9"
    message.entity[-1].is_deleted = True
    odd = vehicle("e-10")
    odd.vehicle.id = "bus-10"
    odd.position.latitude = 91.0  # sent on: the pipeline rejects it with its reason
    odd.position.speed = math.nan  # not a number: left out
    odd.position.bearing = 90.0
    return message


def test_entities_that_are_not_positions_are_skipped_with_their_reason() -> None:
    feed = read_feed(_odd_feed().SerializeToString())

    assert feed.header_timestamp_s is None
    assert feed.entities == 10
    assert [p.vehicle_id for p in feed.positions] == ["bus-1", "12", "bus-3", "bus-10"]
    assert feed.skipped == {
        Skip.NO_TIMESTAMP: 1,
        Skip.BAD_VEHICLE_ID: 1,
        Skip.NO_VEHICLE_ID: 1,
        Skip.NO_POSITION: 1,
        Skip.NOT_A_VEHICLE_POSITION: 1,
        Skip.DELETED: 1,
    }
    odd = _decoded(feed.positions[-1].topic, feed.positions[-1].payload)
    assert (odd.speed_mps, odd.bearing_deg) == (None, 90.0)
    assert "speed" not in json.loads(feed.positions[-1].payload)
    problem = validate_ping(odd, now=odd.timestamp)
    assert problem is not None
    assert problem[0] == Reason.BAD_COORDINATES


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "the body is empty (sent as text/html)"),
        (b"<html><body>Service unavailable</body></html>", "not a GTFS-realtime feed (sent as"),
        (None, "not a GTFS-realtime feed"),  # the Caltrain feed cut short
        # parses as protobuf (an unknown varint field) but has no header
        (b"\x08\x01", "without a GTFS-realtime header"),
        (b'{"header": {"gtfs_realtime_version": "2.0"}, "entity": []}', "not a GTFS-realtime"),
    ],
    ids=["empty", "web page", "truncated", "no header", "json"],
)
def test_bytes_that_are_not_a_feed_are_refused_with_the_reason(
    data: bytes | None, says: str
) -> None:
    if data is None:
        data = CALTRAIN.read_bytes()[:100]
    with pytest.raises(PollError) as raised:
        read_feed(data, content_type="text/html")
    assert raised.value.reason == "not_protobuf"
    assert says in str(raised.value)


def _received(queue_items: list[Received]) -> list[tuple[str, int]]:
    out = []
    for item in queue_items:
        obj = json.loads(item.payload)
        out.append((obj["vehicle_id"], obj["timestamp"]))
    return out


async def _drain(queue: AsyncIngestQueue) -> list[Received]:
    if len(queue) == 0:
        return []
    return (await queue.next_batch(10_000, 0.0)).live


async def test_each_position_is_sent_once_however_often_the_feed_repeats_it() -> None:
    queue = AsyncIngestQueue(1000)
    poller = GtfsRtPoller("http://feed.invalid/vp.pb", queue)
    message = _message(CALTRAIN)

    await poller.ingest(read_feed(message.SerializeToString()))
    await poller.ingest(read_feed(message.SerializeToString()))  # the next poll: nothing new
    first = await _drain(queue)
    assert _received(first) == [(e.vehicle.vehicle.id, e.vehicle.timestamp) for e in message.entity]
    stats = poller.stats()
    assert (stats.sent, stats.unchanged, stats.skipped_by_reason) == (14, 14, {})
    assert (stats.feeds_read, stats.entities, stats.vehicles) == (2, 28, 14)
    assert stats.feed_timestamp_s == 1699405559

    # Next snapshot: one train moved on, one is listed with an older time (a stale replica
    # behind the agency's load balancer), the others did not report.
    message.entity[0].vehicle.timestamp += 30
    message.entity[1].vehicle.timestamp -= 30
    await poller.ingest(read_feed(message.SerializeToString()))
    assert _received(await _drain(queue)) == [("124", 1699405549 + 30)]
    stats = poller.stats()
    assert (stats.sent, stats.unchanged) == (15, 14 + 12)
    assert stats.skipped_by_reason == {Skip.OLDER_THAN_SENT: 1}


async def test_a_vehicle_listed_twice_in_one_feed_is_sent_once() -> None:
    queue = AsyncIngestQueue(1000)
    poller = GtfsRtPoller("http://feed.invalid/vp.pb", queue)
    message = _message(BULLRUNNER)
    message.entity.add().CopyFrom(message.entity[0])

    await poller.ingest(read_feed(message.SerializeToString()))

    assert len(await _drain(queue)) == 10
    assert (poller.stats().sent, poller.stats().unchanged) == (10, 1)


async def test_positions_the_full_queue_cannot_take_are_sent_at_the_next_poll() -> None:
    queue = AsyncIngestQueue(5, superseded_capacity=5)
    poller = GtfsRtPoller("http://feed.invalid/vp.pb", queue, queue_wait_s=0.1)
    data = CALTRAIN.read_bytes()

    await poller.ingest(read_feed(data))  # no pipeline takes from the queue: 5 fit
    first = await _drain(queue)
    assert len(first) == 5
    assert poller.stats().skipped_by_reason == {Skip.QUEUE_FULL: 9}
    await poller.ingest(read_feed(data))  # the same snapshot: 5 unchanged, 5 more sent
    await poller.ingest(read_feed(data))  # still full: nothing is sent
    second = await _drain(queue)
    await poller.ingest(read_feed(data))
    third = await _drain(queue)

    sent = _received(first + second + third)
    assert len(sent) == len(set(sent)) == 14
    stats = poller.stats()
    assert stats.sent == 14
    assert stats.skipped_by_reason == {Skip.QUEUE_FULL: 9 + 4 + 4}


def test_shown_urls_mask_keys_and_passwords() -> None:
    url = "https://me:s3cret@api.example.org/gtfs-rt/vp.pb?api_key=abc123&format=&agency=1"
    assert (
        shown_url(url)
        == "https://me:***@api.example.org/gtfs-rt/vp.pb?api_key=***&format=&agency=***"
    )
    assert shown_url("http://127.0.0.1:8080/vp.pb") == "http://127.0.0.1:8080/vp.pb"
    names = feed_names(["http://a/vp.pb?key=1", "http://a/vp.pb?key=2", "http://b/vp.pb"])
    assert names == ["http://a/vp.pb?key=***", "http://a/vp.pb?key=*** (2)", "http://b/vp.pb"]


def test_a_poller_needs_a_positive_period() -> None:
    with pytest.raises(ValueError, match="every_s"):
        GtfsRtPoller("http://feed.invalid/vp.pb", None, every_s=0)  # type: ignore[arg-type]
