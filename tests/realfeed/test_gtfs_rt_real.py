"""The GTFS-realtime feeds out (tracker.export.gtfs_rt) on real feeds, from a simulated morning
matched by the real engine: they pass the independent `gtfs-rt-validator` with no error, read
back with the official bindings, and agree with the static GTFS (every trip, route and stop
exists, stop sequences are the trip's and increase, times never go backwards along a trip).

WMATA's (timetabled trips in blocks: delays, the block's next trips) and the bundled Nairobi
feed (headway-only frequency trips: start_time, several buses on one trip_id).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from bench.feed_replay import replay, validate_feeds
from simulator.day import simulate
from tracker.core.network import Network
from tracker.demo import BUNDLED_FEED
from tracker.export import gtfs_rt
from tracker.gtfs.load import load_network

ROOT = Path(__file__).resolve().parents[2]
WMATA = ROOT.parent / "shared" / "data" / "wmata-bus-2026-02-16" / "gtfs.zip"
STALE_AFTER_S = 90.0


@dataclass(frozen=True)
class Moment:
    now_s: float
    feeds: dict[str, rt.FeedMessage]


def morning(
    feed: Path, date: dt.date, start_s: float, minutes: float, vehicles: int
) -> Iterator[Moment]:
    """The feeds every 10 simulated minutes of a morning matched live by the engine
    (`bench.feed_replay.replay`, 5 s of pings per step)."""
    network = load_network(feed)
    stream = simulate(network, np.random.default_rng(7), date, start_s=start_s,
                      end_s=start_s + 60 * minutes, max_vehicles=vehicles)  # fmt: skip
    pings = sorted((s.ping for s in stream), key=lambda p: p.timestamp)
    for m in replay(network, pings, step_s=5.0, every_s=600.0):
        yield Moment(m.now_s, {
            "vp": gtfs_rt.vehicle_positions(network, m.vehicles, m.now_s,
                                            stale_after_s=STALE_AFTER_S),
            "tu": gtfs_rt.trip_updates(network, m.vehicles, m.predictions, m.now_s,
                                       stale_after_s=STALE_AFTER_S),
            "sa": gtfs_rt.alerts(network, m.alerts, m.now_s),
        })  # fmt: skip


def static_tables(feed: Path) -> tuple[set[str], set[str], dict[str, dict[int, str]]]:
    """(route ids, stop ids, trip id -> stop_sequence -> stop id) read from the zip itself."""
    with zipfile.ZipFile(feed) as z:

        def rows(name: str) -> Iterator[dict[str, str]]:
            with z.open(name) as f:
                yield from csv.DictReader(io.TextIOWrapper(f, "utf-8-sig"))

        routes = {r["route_id"] for r in rows("routes.txt")}
        stops = {r["stop_id"] for r in rows("stops.txt")}
        calls: dict[str, dict[int, str]] = defaultdict(dict)
        for r in rows("stop_times.txt"):
            calls[r["trip_id"]][int(r["stop_sequence"])] = r["stop_id"]
    return routes, stops, calls


def check_against_static(moment: Moment, feed: Path) -> int:
    routes, stops, calls = static_tables(feed)
    checked = 0
    for entity in moment.feeds["vp"].entity:
        vp = entity.vehicle
        if vp.HasField("trip"):
            assert vp.trip.route_id in routes
            assert vp.stop_id == calls[vp.trip.trip_id][vp.current_stop_sequence]
            checked += 1
    for entity in moment.feeds["tu"].entity:
        update = entity.trip_update
        assert update.trip.route_id in routes
        trip_calls = calls[update.trip.trip_id]
        assert trip_calls, f"trip {update.trip.trip_id} is not in stop_times.txt"
        sequences = [s.stop_sequence for s in update.stop_time_update]
        assert sequences == sorted(set(sequences))
        times: list[int] = []
        for s in update.stop_time_update:
            assert s.stop_id in stops
            assert trip_calls[s.stop_sequence] == s.stop_id
            for event in (s.arrival, s.departure):
                if event.HasField("time"):
                    times.append(event.time)
        assert times == sorted(times)
        checked += 1
    for entity in moment.feeds["sa"].entity:
        assert all(i.route_id in routes for i in entity.alert.informed_entity)
    return checked


def assert_valid(moment: Moment, feed: Path, folder: Path) -> None:
    """No error from the validator; the bytes read back to the same messages."""
    bodies = {}
    for role, message in moment.feeds.items():
        body = message.SerializeToString()
        again = rt.FeedMessage()
        again.ParseFromString(body)
        assert again == message
        bodies[role] = body
    result = validate_feeds(bodies, feed, moment.now_s, folder)
    assert not result.has_errors(), result.error_ids()


@pytest.mark.parametrize(
    ("feed", "date", "vehicles"),
    [
        pytest.param(WMATA, dt.date(2026, 2, 16), 60, id="wmata-timetabled-blocks"),
        pytest.param(BUNDLED_FEED, None, 150, id="nairobi-frequencies"),
    ],
)
def test_the_feeds_pass_the_validator_and_agree_with_the_static_gtfs(
    feed: Path, date: dt.date | None, vehicles: int, tmp_path: Path
) -> None:
    if not feed.exists():
        pytest.fail(f"{feed} is missing: ../shared/data holds the project's real feeds")
    network: Network = load_network(feed)
    if date is None:
        from simulator.day import busiest_date

        date = busiest_date(network)
    moments = list(morning(feed, date, 7.5 * 3600, 35, vehicles))
    assert len(moments) >= 3
    for moment in moments:
        assert_valid(moment, feed, tmp_path)
        assert check_against_static(moment, feed) > 10
    last = moments[-1].feeds
    positions = [e.vehicle for e in last["vp"].entity]
    assert len(positions) >= 10
    assert sum(vp.HasField("trip") for vp in positions) >= 0.7 * len(positions)
    predicted = [s for e in last["tu"].entity for s in e.trip_update.stop_time_update
                 if s.arrival.HasField("time")]  # fmt: skip
    assert len(predicted) > 50
    # the p10–p90 range: a stop the bus is about to reach can have none left
    assert sum(s.arrival.uncertainty > 0 for s in predicted) >= 0.9 * len(predicted)
    if feed == BUNDLED_FEED:  # headway-only: told apart by start_time, one entity per bus
        trips = [vp.trip for vp in positions if vp.HasField("trip")]
        assert all(t.schedule_relationship == rt.TripDescriptor.UNSCHEDULED for t in trips)
        assert all(t.start_time for t in trips)
        instances = [(t.trip_id, t.start_date, t.start_time) for t in trips]
        assert len(instances) == len(set(instances))
    else:  # timetabled: delays, and the block's next trips predicted
        assert any(e.trip_update.HasField("delay") for e in last["tu"].entity)
        on_now = {vp.trip.trip_id for vp in positions if vp.HasField("trip")}
        assert any(e.trip_update.trip.trip_id not in on_now for e in last["tu"].entity)
