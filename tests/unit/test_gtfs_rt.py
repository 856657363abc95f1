"""The GTFS-realtime feed builder (tracker.export.gtfs_rt.FeedBuilder) on tiny feeds: what it
keeps encoded between builds gives the same bytes as a build from nothing, and a bus that moved
or got new predictions is told anew; a trip the operator cancelled is CANCELED with a NO_SERVICE
alert while it should run; a bus on a detour (found by the real operations monitor) has the
stops it passed off its route SKIPPED, and its alert names them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.transit import gtfs_realtime_pb2 as rt

from tests import feeds
from tests.unit import test_operations as operations_tests
from tests.unit.test_matcher import WEEKDAY, drive, network_of
from tracker.core.cancellations import Cancellation, Cause, cancellation
from tracker.core.engine import Engine, EngineConfig
from tracker.core.model import Ping, State
from tracker.core.network import Network
from tracker.core.operations import Detour, OperationsMonitor
from tracker.core.predict import Prediction
from tracker.export import gtfs_rt
from tracker.live.vehicle import LiveVehicle

STALE_AFTER_S = 90.0


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return network_of(feeds.two_directions_feed, tmp_path)


LiveStates = list[tuple[float, dict[str, LiveVehicle], dict[str, list[Prediction]]]]


def live_states(network: Network) -> LiveStates:
    """After each ping of two buses (one late), the live vehicles and their predictions."""
    return replayed(
        network,
        drive(network, "B_N_0600", WEEKDAY, vehicle="bus1", every_s=20.0)
        + drive(network, "B_S_0600", WEEKDAY, vehicle="bus2", every_s=20.0, delay_s=120.0),
    )


def replayed(network: Network, pings: list[Ping]) -> LiveStates:
    """`pings` through the live engine in time order, a second after each: then the clock, the
    live vehicles and their predictions (as the hub and insight would hold them)."""
    engine = Engine(network, EngineConfig(predict_every_s=60.0))
    pings = sorted(pings, key=lambda p: p.timestamp)
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


# --- cancelled trips ---------------------------------------------------------------------------

DAY = WEEKDAY.strftime("%Y%m%d")


def cancelled(network: Network, trip_id: str, at_s: float, **extra: Any) -> Cancellation:
    return cancellation(network, trip_id, DAY, cancelled_at_s=at_s, **extra)


def test_a_cancelled_trip_is_canceled_with_a_no_service_alert(network: Network) -> None:
    states = live_states(network)
    now_s, live, predictions = states[len(states) // 2]
    # B_N_0612 has no bus yet; bus1 runs B_N_0600, which the operator cancels all the same.
    gone = [
        cancelled(network, "B_N_0612", now_s - 60, cause=Cause.TECHNICAL_PROBLEM,
                  reason="No driver"),
        cancelled(network, "B_N_0600", now_s - 30),
    ]  # fmt: skip
    built = gtfs_rt.FeedBuilder(network).build(
        live.values(), predictions, (), now_s, stale_after_s=STALE_AFTER_S, cancelled=gone
    )
    updates = {e.id: e.trip_update for e in gtfs_rt.message(*built["trip-updates"]).entity}
    for trip_id in ("B_N_0612", "B_N_0600"):
        update = updates[f"{trip_id}:{DAY}"]
        assert update.trip.trip_id == trip_id
        assert update.trip.schedule_relationship == rt.TripDescriptor.CANCELED
        assert (update.trip.start_date, update.trip.route_id) == (DAY, "B")
        assert len(update.stop_time_update) == 0
        assert not update.HasField("vehicle")
        assert update.timestamp <= now_s
    assert updates[f"B_S_0600:{DAY}"].stop_time_update  # the other bus's trip as before
    # The bus still reported on its cancelled trip is told without it.
    positions = {e.vehicle.vehicle.id: e.vehicle for e in
                 gtfs_rt.message(*built["vehicle-positions"]).entity}  # fmt: skip
    assert not positions["bus1"].HasField("trip")
    assert positions["bus2"].trip.trip_id == "B_S_0600"
    alerts = {e.id: e.alert for e in gtfs_rt.message(*built["alerts"]).entity}
    alert = alerts[f"cancelled:B_N_0612:{DAY}"]
    assert alert.effect == rt.Alert.NO_SERVICE
    assert alert.cause == rt.Alert.TECHNICAL_PROBLEM
    (informed,) = alert.informed_entity
    assert (informed.route_id, informed.trip.trip_id, informed.trip.start_date) == (
        "B", "B_N_0612", DAY,
    )  # fmt: skip
    departure_s = network.day_origin(WEEKDAY) + 6 * 3600 + 12 * 60
    assert [(p.start, p.end) for p in alert.impact_period] == [(departure_s, departure_s + 540)]
    assert alert.communication_period[0].start <= departure_s
    assert len(alert.active_period) == 0  # deprecated: the two periods above replace it
    assert alert.header_text.translation[0].text == "Route B: the 06:12 trip is cancelled"
    description = alert.description_text.translation[0].text
    assert "06:12 trip from Stop BN1 to Stop BN5" in description
    assert description.endswith("Reason: No driver.")
    assert alerts[f"cancelled:B_N_0600:{DAY}"].cause == rt.Alert.UNKNOWN_CAUSE


def test_a_cancelled_trip_is_told_from_a_day_before_it_leaves_until_it_should_arrive(
    network: Network,
) -> None:
    trip = cancelled(network, "B_N_0612", 0.0)
    told = {
        at_s: [c.trip_id for c in gtfs_rt.shown_cancellations([trip], at_s)]
        for at_s in (
            trip.scheduled_departure_s - gtfs_rt.CANCELLED_AHEAD_S - 1,
            trip.scheduled_departure_s - gtfs_rt.CANCELLED_AHEAD_S,
            trip.scheduled_arrival_s,
            trip.scheduled_arrival_s + 1,
        )
    }
    assert list(told.values()) == [[], ["B_N_0612"], ["B_N_0612"], []]
    built = gtfs_rt.FeedBuilder(network).build(
        (), {}, (), trip.scheduled_arrival_s + 1, stale_after_s=STALE_AFTER_S, cancelled=[trip]
    )
    assert len(gtfs_rt.message(*built["trip-updates"]).entity) == 0
    assert len(gtfs_rt.message(*built["alerts"]).entity) == 0


def test_kept_entities_give_the_bytes_of_a_build_from_nothing_with_cancellations(
    network: Network,
) -> None:
    builder = gtfs_rt.FeedBuilder(network)
    states = live_states(network)
    gone = [cancelled(network, "B_S_0600", states[0][0])]
    checked = 0
    for now_s, live, predictions in states:
        kept = builder.build(live.values(), predictions, (), now_s,
                             stale_after_s=STALE_AFTER_S, cancelled=gone)  # fmt: skip
        fresh = gtfs_rt.FeedBuilder(network).build(
            live.values(), predictions, (), now_s, stale_after_s=STALE_AFTER_S, cancelled=gone
        )
        assert kept == fresh
        updates = gtfs_rt.message(*kept["trip-updates"]).entity
        told = [e.trip_update.trip.schedule_relationship for e in updates
                if e.trip_update.trip.trip_id == "B_S_0600"]  # fmt: skip
        if now_s <= gone[0].scheduled_arrival_s:  # after, its (late) bus tells it again
            assert told == [rt.TripDescriptor.CANCELED]
            checked += 1
    assert checked > 10


# --- a bus on a detour: the stops it skipped -----------------------------------------------------


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return network_of(operations_tests.corridor_feed, tmp_path_factory.mktemp("corridor"))


def north_of(network: Network, trip_id: str, along_m: float, north_m: float) -> tuple[float, float]:
    """(lat, lon) `north_m` north of the spot `along_m` along the trip's shape."""
    x, y = network.point_at(network.trips[network.trip_index[trip_id]].shape_idx, along_m)
    lat, lon = network.unproject(np.array([x]), np.array([y + north_m]))
    return float(lat[0]), float(lon[0])


def detour_of(
    corridor: Network, on_until_m: float, off_fixes: int
) -> tuple[Detour, LiveVehicle, float]:
    """Bus "a" on C_0700 (stops every 400 m): every 10 s 80 m further, on its shape up to
    `on_until_m`, then `off_fixes` fixes along a street 200 m north of it: the monitor's
    detour, the bus's live state and the time."""
    monitor = OperationsMonitor(corridor)
    t0 = operations_tests.clock(corridor, "07:08")
    on = [on_until_m - 80.0 * k for k in range(5, -1, -1)]
    fixes = [operations_tests.answer(corridor, "a", "C_0700", t0 + 10 * k, along)
             for k, along in enumerate(on)]  # fmt: skip
    for k in range(1, off_fixes + 1):
        lat, lon = north_of(corridor, "C_0700", on_until_m + 80.0 * k, 200.0)
        fixes.append(operations_tests.unmatched("a", t0 + 50 + 10 * k, lat, lon))
    for ping, match in fixes:
        monitor.observe([ping], [match])
    now_s = fixes[-1][0].timestamp + 1
    (detour,) = monitor.assess(now_s).alerts
    assert isinstance(detour, Detour)
    ping, match = fixes[-1]
    return detour, LiveVehicle.from_match(ping, match), now_s


def test_the_stops_a_bus_passed_on_a_detour_are_skipped_and_the_next_is_unknown(
    corridor: Network,
) -> None:
    detour, bus, now_s = detour_of(corridor, 2200.0, 16)  # off from 2280 m to 3480 m
    assert detour.left_shape_dist_m == pytest.approx(2240.0, abs=5.0)
    assert detour.reached_shape_dist_m == pytest.approx(3480.0, abs=5.0)
    assert gtfs_rt.skipped_stops(corridor, detour) == [6, 7, 8]  # C6 .. C8, 2405 .. 3206 m
    builder = gtfs_rt.FeedBuilder(corridor)
    built = builder.build([bus], {}, [detour], now_s, stale_after_s=STALE_AFTER_S)
    assert built == gtfs_rt.FeedBuilder(corridor).build([bus], {}, [detour], now_s,
                                                         stale_after_s=STALE_AFTER_S)  # fmt: skip
    (entity,) = gtfs_rt.message(*built["trip-updates"]).entity
    update = entity.trip_update
    assert (update.trip.trip_id, update.trip.start_date) == ("C_0700", operations_tests.DATE)
    assert update.trip.schedule_relationship == rt.TripDescriptor.SCHEDULED
    assert update.vehicle.id == "a"
    assert not update.HasField("delay")  # a bus off its route: how late it will be is unknown
    stu = rt.TripUpdate.StopTimeUpdate
    assert [(s.stop_sequence, s.stop_id, s.schedule_relationship)
            for s in update.stop_time_update] == [
        (7, "C6", stu.SKIPPED), (8, "C7", stu.SKIPPED), (9, "C8", stu.SKIPPED),
        (10, "C9", stu.NO_DATA),
    ]  # fmt: skip
    assert not any(s.HasField("arrival") or s.HasField("departure")
                   for s in update.stop_time_update)  # fmt: skip
    # The position is told without the trip (it is far from its shape), as before.
    (position,) = gtfs_rt.message(*built["vehicle-positions"]).entity
    assert not position.vehicle.HasField("trip")
    # The alert names the stops it missed, and is on each of them (for this route).
    (alert,) = [e.alert for e in gtfs_rt.message(*built["alerts"]).entity]
    assert alert.effect == rt.Alert.DETOUR
    assert [(i.route_id, i.trip.trip_id, i.stop_id) for i in alert.informed_entity] == [
        ("C", "C_0700", ""), ("C", "", "C6"), ("C", "", "C7"), ("C", "", "C8"),
    ]  # fmt: skip
    assert "did not serve Stop C6, Stop C7, Stop C8;" in alert.description_text.translation[0].text
    # A second later nothing changed: the alerts' entities are the same bytes (the header,
    # with the time, is apart), so the feed keeps its ETag
    later = builder.build([bus], {}, [detour], now_s + 1.0, stale_after_s=STALE_AFTER_S)
    assert later["alerts"][1] == built["alerts"][1]
    assert later["alerts"][0] != built["alerts"][0]
    assert gtfs_rt.message(*later["alerts"]).header.timestamp == round(now_s + 1.0)


def test_a_detour_that_passed_no_stop_yet_says_only_that_the_next_is_unknown(
    corridor: Network,
) -> None:
    detour, bus, now_s = detour_of(corridor, 2000.0, 3)  # off from 2080 m to 2240 m
    assert gtfs_rt.skipped_stops(corridor, detour) == []  # C5 is at 2004 m, C6 at 2405 m
    built = gtfs_rt.FeedBuilder(corridor).build(
        [bus], {}, [detour], now_s, stale_after_s=STALE_AFTER_S
    )
    (entity,) = gtfs_rt.message(*built["trip-updates"]).entity
    assert [(s.stop_id, s.schedule_relationship) for s in entity.trip_update.stop_time_update] == [
        ("C6", rt.TripUpdate.StopTimeUpdate.NO_DATA)
    ]
    (alert,) = gtfs_rt.message(*built["alerts"]).entity
    assert len(alert.alert.informed_entity) == 1
    assert "some stops may be missed" in alert.alert.description_text.translation[0].text


def test_a_bus_near_its_shape_on_a_detour_keeps_its_trip_and_its_skipped_stops(
    corridor: Network,
) -> None:
    detour, bus, now_s = detour_of(corridor, 2200.0, 16)
    # Its latest fix 120 m from the shape, off route on its trip: close enough to be told on it.
    near = dataclasses.replace(bus, state=State.OFF_ROUTE.value, route_id="C", trip_id="C_0700",
                               shape_id="C_line", shape_dist_m=3480.0, offset_m=120.0,
                               delay_s=30.0)  # fmt: skip
    built = gtfs_rt.FeedBuilder(corridor).build([near], {}, [detour], now_s,
                                                stale_after_s=STALE_AFTER_S)  # fmt: skip
    (position,) = gtfs_rt.message(*built["vehicle-positions"]).entity
    assert position.vehicle.trip.trip_id == "C_0700"
    (entity,) = gtfs_rt.message(*built["trip-updates"]).entity
    assert [s.stop_id for s in entity.trip_update.stop_time_update] == ["C6", "C7", "C8", "C9"]
    # The detour over (no longer an active alert): its next stop by the schedule again.
    built = gtfs_rt.FeedBuilder(corridor).build([near], {}, [], now_s,
                                                stale_after_s=STALE_AFTER_S)  # fmt: skip
    (entity,) = gtfs_rt.message(*built["trip-updates"]).entity
    (stop,) = entity.trip_update.stop_time_update
    assert (stop.stop_id, stop.schedule_relationship, stop.arrival.delay) == (
        "C9", rt.TripUpdate.StopTimeUpdate.SCHEDULED, 30,
    )  # fmt: skip
