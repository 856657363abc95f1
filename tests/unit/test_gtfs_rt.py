"""The GTFS-realtime feed builder (tracker.export.gtfs_rt.FeedBuilder) on a tiny feed: what it
keeps encoded between builds gives the same bytes as a build from nothing, and a bus that moved
or got new predictions is told anew."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.transit import gtfs_realtime_pb2 as rt

from tests import feeds
from tests.unit.test_matcher import WEEKDAY, drive, network_of
from tracker.core.engine import Engine, EngineConfig
from tracker.core.model import State
from tracker.core.network import Network
from tracker.core.predict import Prediction
from tracker.export import gtfs_rt
from tracker.live.vehicle import LiveVehicle

STALE_AFTER_S = 90.0


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return network_of(feeds.two_directions_feed, tmp_path)


def live_states(
    network: Network,
) -> list[tuple[float, dict[str, LiveVehicle], dict[str, list[Prediction]]]]:
    """After each ping of two buses (one late), the live vehicles and their predictions."""
    engine = Engine(network, EngineConfig(predict_every_s=60.0))
    pings = sorted(
        drive(network, "B_N_0600", WEEKDAY, vehicle="bus1", every_s=20.0)
        + drive(network, "B_S_0600", WEEKDAY, vehicle="bus2", every_s=20.0, delay_s=120.0),
        key=lambda p: p.timestamp,
    )
    live: dict[str, LiveVehicle] = {}
    predictions: dict[str, list[Prediction]] = {}
    out = []
    for ping in pings:
        step = engine.step([ping], ping.timestamp + 1.0)
        (match,) = step.matches
        if match.state is not State.REJECTED:
            live = live | {ping.vehicle_id: LiveVehicle.from_match(ping, match)}
        predictions = predictions | step.predictions
        out.append((ping.timestamp + 1.0, live, predictions))
    return out


def test_kept_entities_give_the_bytes_of_a_build_from_nothing(network: Network) -> None:
    builder = gtfs_rt.FeedBuilder(network)
    told: set[bytes] = set()
    for now_s, live, predictions in live_states(network):
        kept = builder.build(live.values(), predictions, (), now_s, stale_after_s=STALE_AFTER_S)
        fresh = gtfs_rt.FeedBuilder(network).build(
            live.values(), predictions, (), now_s, stale_after_s=STALE_AFTER_S
        )
        assert kept == fresh
        told.add(kept["vehicle-positions"][1])
    assert len(told) > 10  # the buses moved, and the feed said so


def test_the_feeds_say_where_each_bus_is_and_when_it_arrives(network: Network) -> None:
    states = live_states(network)
    now_s, live, predictions = states[len(states) // 2]
    built = gtfs_rt.FeedBuilder(network).build(
        live.values(), predictions, (), now_s, stale_after_s=STALE_AFTER_S
    )
    positions = gtfs_rt.message(*built["vehicle-positions"])
    assert positions.header.incrementality == rt.FeedHeader.FULL_DATASET
    assert positions.header.timestamp == int(now_s)
    by_id = {e.vehicle.vehicle.id: e.vehicle for e in positions.entity}
    assert {v: p.trip.trip_id for v, p in by_id.items()} == {"bus1": "B_N_0600", "bus2": "B_S_0600"}
    assert all(p.trip.start_date == WEEKDAY.strftime("%Y%m%d") for p in by_id.values())
    assert by_id["bus1"].stop_id.startswith("BN")
    assert by_id["bus2"].stop_id.startswith("BS")
    updates = gtfs_rt.message(*built["trip-updates"])
    trips = {e.trip_update.trip.trip_id: e.trip_update for e in updates.entity}
    assert {"B_N_0600", "B_S_0600"} <= set(trips)
    late = trips["B_S_0600"]
    assert late.delay == pytest.approx(120, abs=40)
    times = [s.arrival.time for s in late.stop_time_update]
    assert times == sorted(times)
    assert all(t >= now_s - 1 for t in times)
    # gone stale: told no more
    later = gtfs_rt.FeedBuilder(network).build(
        live.values(), predictions, (), now_s + STALE_AFTER_S + 60, stale_after_s=STALE_AFTER_S
    )
    assert len(gtfs_rt.message(*later["vehicle-positions"]).entity) == 0
