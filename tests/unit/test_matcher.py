"""The matching engine on tiny hand-made feeds: one behaviour per test, real values asserted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import feeds
from tracker.core.filter import Hypothesis
from tracker.core.matcher import Matcher, _hints_are_clean
from tracker.core.model import Match, Ping, Reason, State
from tracker.core.network import FloatArray, Network
from tracker.core.tables import MatcherConfig
from tracker.core.validate import clean_hints
from tracker.gtfs.load import build_network

FeedBuilder = Callable[[Path], Path]


def network_of(builder: FeedBuilder, tmp_path: Path) -> Network:
    return build_network(builder(tmp_path))


def drive(
    network: Network,
    trip_id: str,
    day: dt.date,
    *,
    vehicle: str = "bus1",
    delay_s: float = 0.0,
    every_s: float = 30.0,
    with_bearing: bool = False,
) -> list[Ping]:
    """Pings of a bus that runs a trip exactly on its shape, `delay_s` behind its schedule."""
    trip_idx = network.trip_index[trip_id]
    trip = network.trips[trip_idx]
    run = network.runs_of_trip[trip_idx][0]
    pattern = network.patterns[trip.pattern_idx]
    row = int(network.runs.row[run])
    # (time, distance) knots: arrive at a stop, wait, depart.
    times: list[float] = []
    dists: list[float] = []
    for k, dist in enumerate(pattern.stop_dist_m.tolist()):
        times += [pattern.arrival_s[row, k], pattern.departure_s[row, k]]
        dists += [dist, dist]
    origin = network.day_origin(day)
    pings = []
    t = times[0]
    while t <= times[-1]:
        along = float(np.interp(t, times, dists))
        x, y = network.point_at(trip.shape_idx, along)
        lat, lon = network.unproject(np.array([x]), np.array([y]))
        bearing = None
        if with_bearing:
            ahead = network.point_at(trip.shape_idx, along + 5.0)
            bearing = math.degrees(math.atan2(ahead[0] - x, ahead[1] - y)) % 360
        pings.append(
            Ping(
                vehicle_id=vehicle,
                timestamp=origin + t + delay_s,
                lat=float(lat[0]),
                lon=float(lon[0]),
                bearing_deg=bearing,
            )
        )
        t += every_s
    return pings


def match_all(network: Network, pings: list[Ping], matcher: Matcher | None = None) -> list[Match]:
    matcher = matcher or Matcher(network)
    now = max(p.timestamp for p in pings) + 60
    return [m for p in pings for m in matcher.match_batch([p], now=now)]


WEEKDAY = dt.date(2026, 3, 4)  # a Wednesday in the tiny feeds' "WK" service


def test_loop_progress_is_monotone_and_does_not_jump_back_to_the_start(tmp_path: Path) -> None:
    network = network_of(feeds.loop_feed, tmp_path)
    matches = match_all(network, drive(network, "L_0630", WEEKDAY))
    along = [m.shape_dist_m for m in matches]
    assert all(m.trip_id == "L_0630" for m in matches)
    assert all(a is not None for a in along)
    assert all(b >= a - 1.0 for a, b in itertools.pairwise(along))  # type: ignore[operator]
    # The last ping is back at the start corner: the end of the loop, not its beginning.
    assert along[-1] == pytest.approx(network.shapes[0].length_m, abs=20)
    assert all(abs(m.delay_s or 0.0) < 45 for m in matches)


def test_variants_sharing_a_street_are_told_apart_by_schedule(tmp_path: Path) -> None:
    network = network_of(feeds.variants_feed, tmp_path)
    for trip_id in ("V_main_0720", "V_branch_0710"):
        matches = match_all(network, drive(network, trip_id, WEEKDAY, vehicle=trip_id))
        assert [m.trip_id for m in matches] == [trip_id] * len(matches)
        shape = network.shapes[network.trips[network.trip_index[trip_id]].shape_idx].shape_id
        assert {m.shape_id for m in matches} == {shape}


@pytest.mark.parametrize("with_bearing", [False, True])
def test_both_directions_on_one_street_follow_the_direction_of_movement(
    tmp_path: Path, with_bearing: bool
) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    # A northbound trip meets southbound trips scheduled on the same street.
    pings = drive(network, "B_N_0712", WEEKDAY, with_bearing=with_bearing)
    matches = match_all(network, pings)
    settled = matches[3:]  # without a bearing, two or three fixes show the direction
    assert {m.direction_id for m in settled} == {0}
    assert {m.trip_id for m in settled} == {"B_N_0712"}


def test_a_late_bus_keeps_its_blocks_trip_rather_than_the_next_trip_on_time(
    tmp_path: Path,
) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    first = network.trips[network.trip_index["B_N_0600"]]
    following = network.runs.next_in_block[network.runs_of_trip[network.trip_index["B_N_0600"]][0]]
    second_id = network.trips[int(network.runs.trip_idx[following])].trip_id
    assert first.block_id
    assert second_id.startswith("B_S_")
    # On time on the first trip, then 8 minutes late on the second: by schedule alone the
    # second looks like the next southbound trip (12 minutes later) running 4 minutes early.
    pings = drive(network, "B_N_0600", WEEKDAY) + drive(network, second_id, WEEKDAY, delay_s=480)
    matches = match_all(network, pings)
    second = [m for p, m in zip(pings, matches, strict=True) if p.timestamp > pings[0].timestamp
              and m.shape_id == "B_south"]  # fmt: skip
    assert second, "the bus was never matched southbound"
    right = sum(m.trip_id == second_id for m in second)
    assert right / len(second) >= 0.9, [m.trip_id for m in second]
    assert np.median([m.delay_s for m in second if m.trip_id == second_id]) == pytest.approx(
        480, abs=60
    )


def test_times_past_midnight_belong_to_the_previous_service_day(tmp_path: Path) -> None:
    network = network_of(feeds.overnight_feed, tmp_path)
    pings = drive(network, "N_2330", dt.date(2026, 3, 20))
    matches = match_all(network, pings)
    after_midnight = [m for m in matches if network.local_date(m.timestamp) == dt.date(2026, 3, 21)]
    assert after_midnight
    assert {m.service_date for m in after_midnight} == {"20260320"}
    assert {m.trip_id for m in after_midnight} <= {"N_2330", "N_2420"}
    assert sum(m.trip_id == "N_2330" for m in matches) / len(matches) >= 0.9


def test_daylight_saving_day_uses_local_noon_minus_12_hours(tmp_path: Path) -> None:
    network = network_of(feeds.dst_feed, tmp_path)
    day = dt.date(2026, 3, 8)
    matches = match_all(network, drive(network, "D_1200", day))
    assert {m.trip_id for m in matches} == {"D_1200"}
    assert max(abs(m.delay_s or 0.0) for m in matches) < 45
    # 12:00 EDT is 16:00 UTC on that day.
    first = matches[0].timestamp
    assert dt.datetime.fromtimestamp(first, dt.UTC).hour == 16


def test_given_trip_id_is_believed_when_it_fits(tmp_path: Path) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    pings = [
        dataclasses.replace(p, trip_id="B_N_0712", route_id="B")
        for p in drive(network, "B_N_0712", WEEKDAY, delay_s=120)
    ]
    matches = match_all(network, pings)
    assert all(m.trip_id_given and m.trip_id == "B_N_0712" for m in matches)
    assert np.median([m.delay_s for m in matches]) == pytest.approx(120, abs=5)


def test_a_wrong_trip_id_is_detected_and_the_right_trip_inferred(tmp_path: Path) -> None:
    network = network_of(feeds.variants_feed, tmp_path)
    pings = drive(network, "V_branch_0710", WEEKDAY)
    # The hint names the main variant; the bus is seen on the branch, 1 km from that shape.
    wrong = [dataclasses.replace(p, trip_id="V_main_0720") for p in pings]
    matches = match_all(network, wrong)
    on_branch = matches[-3:]
    assert all(m.reason is Reason.TRIP_MISMATCH for m in on_branch)
    assert all(m.detail and "V_main_0720" in m.detail for m in on_branch)
    assert {m.trip_id for m in on_branch} == {"V_branch_0710"}
    assert not any(m.trip_id_given for m in on_branch)


def test_an_unknown_trip_id_is_ignored_with_a_reason(tmp_path: Path) -> None:
    network = network_of(feeds.loop_feed, tmp_path)
    pings = [dataclasses.replace(p, trip_id="nope") for p in drive(network, "L_0630", WEEKDAY)]
    matches = match_all(network, pings)
    assert {m.reason for m in matches} == {Reason.UNKNOWN_TRIP}
    assert {m.trip_id for m in matches[2:]} == {"L_0630"}


def test_frequency_trips_report_headway_not_delay(tmp_path: Path) -> None:
    network = network_of(feeds.frequency_feed, tmp_path)
    exact = match_all(network, drive(network, "F_exact", WEEKDAY))
    assert {m.trip_id for m in exact} == {"F_exact"}
    assert {m.headway_s for m in exact} == {600.0}
    assert all(m.delay_s is not None for m in exact)
    # A bus 5 minutes after the 10:00 departure of the exact_times=0 trip.
    pings = drive(network, "F_headway", WEEKDAY, delay_s=3600 + 300)
    inexact = match_all(network, pings)
    assert {m.trip_id for m in inexact} == {"F_headway"}
    assert {m.headway_s for m in inexact} == {900.0}
    assert {m.delay_s for m in inexact} == {None}


def test_bad_pings_are_rejected_with_reasons_and_matching_goes_on(tmp_path: Path) -> None:
    network = network_of(feeds.loop_feed, tmp_path)
    good = drive(network, "L_0630", WEEKDAY)
    now = good[-1].timestamp + 60
    bad = [
        dataclasses.replace(good[1], lat=91.0),
        dataclasses.replace(good[1], lon=math.nan),
        dataclasses.replace(good[1], timestamp=now + 5 * 86400),
        good[1],  # duplicate of an accepted ping
        good[0],  # older than the vehicle's latest
    ]
    matcher = Matcher(network)
    results = matcher.match_batch([good[0], good[1], *bad, good[2]], now=now)
    assert [r.reason for r in results[2:7]] == [
        Reason.BAD_COORDINATES,
        Reason.BAD_COORDINATES,
        Reason.FUTURE_TIMESTAMP,
        Reason.DUPLICATE,
        Reason.OUT_OF_ORDER,
    ]
    assert all(r.state is State.REJECTED and r.detail for r in results[2:7])
    assert results[7].trip_id == "L_0630"
    assert results[7].state is not State.REJECTED


def test_a_ping_far_from_every_route_is_not_matched(tmp_path: Path) -> None:
    network = network_of(feeds.loop_feed, tmp_path)
    lat, lon = feeds.offset_latlon(*feeds.CASABLANCA, 5000.0, 5000.0)
    origin = network.day_origin(WEEKDAY)
    ping = Ping("lost", origin + 6.5 * 3600, lat, lon)
    (match,) = Matcher(network).match_batch([ping], now=ping.timestamp)
    assert match.state is State.NOT_MATCHED
    assert match.reason is Reason.NO_SHAPE_NEARBY


def test_a_single_outlier_keeps_the_trip_and_is_flagged_off_route(tmp_path: Path) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    pings = drive(network, "B_N_0712", WEEKDAY)
    k = len(pings) // 2
    lat, lon = feeds.offset_latlon(pings[k].lat, pings[k].lon, 400.0, 0.0)
    pings[k] = dataclasses.replace(pings[k], lat=lat, lon=lon)
    matches = match_all(network, pings)
    assert matches[k].state is State.OFF_ROUTE
    assert matches[k].trip_id == "B_N_0712"
    assert {m.trip_id for m in matches[3:]} == {"B_N_0712"}


# --- fast paths answer exactly as the general path ---------------------------------------


class _NoFastPath(Matcher):
    """The matcher with the batch fast path for believed trip_ids turned off."""

    def _follow_given_trips(
        self, batch_idx: list[int], pings: list[Ping], x: FloatArray, y: FloatArray
    ) -> dict[int, Hypothesis]:
        return {}


class _CountingFastPath(Matcher):
    """The matcher, counting the pings its fast path answers."""

    fast_answers = 0

    def _follow_given_trips(
        self, batch_idx: list[int], pings: list[Ping], x: FloatArray, y: FloatArray
    ) -> dict[int, Hypothesis]:
        answered = super()._follow_given_trips(batch_idx, pings, x, y)
        self.fast_answers += len(answered)
        return answered


def test_the_fast_path_for_given_trip_ids_answers_as_the_general_path(tmp_path: Path) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    buses = []
    for n, trip_id in enumerate(["B_N_0712", "B_N_0600", "B_S_0636"]):
        pings = drive(network, trip_id, WEEKDAY, vehicle=f"bus{n}", delay_s=60.0 * n)
        buses.append([dataclasses.replace(p, trip_id=trip_id) for p in pings])
    # Turns the fast path must leave to the general one: an outlier 400 m off the shape, a
    # duplicate, a ping out of order, a wrong trip_id, a long silence.
    bus = buses[0]
    k = len(bus) // 2
    lat, lon = feeds.offset_latlon(bus[k].lat, bus[k].lon, 400.0, 0.0)
    bus[k] = dataclasses.replace(bus[k], lat=lat, lon=lon)
    bus.insert(k + 2, bus[k + 1])
    bus.insert(k + 5, bus[k + 2])
    buses[1][4] = dataclasses.replace(buses[1][4], trip_id="B_S_0636")
    del buses[2][5:40]
    pings = sorted((p for bus in buses for p in bus), key=lambda p: p.timestamp)
    now = max(p.timestamp for p in pings) + 60
    for keep_paths in (False, True):
        config = MatcherConfig(keep_paths=keep_paths)
        fast, general = _CountingFastPath(network, config), _NoFastPath(network, config)
        for start in range(0, len(pings), 25):
            batch = pings[start : start + 25]
            assert fast.match_batch(batch, now=now) == general.match_batch(batch, now=now)
        assert fast.fast_answers >= 10  # the fast path was taken


def test_hints_are_clean_exactly_when_clean_hints_changes_nothing() -> None:
    for speed, bearing, accuracy, route_id, trip_id in itertools.product(
        [None, -1.0, 0.0, 12.5, 70.0, 70.5, math.nan],
        [None, -0.5, 0.0, 359.9, 360.0, 361.0, math.nan],
        [None, -1.0, 0.0, 8.0, math.inf, math.nan],
        [None, "", " ", "R1"],
        [None, "", "T1"],
    ):
        ping = Ping("bus", 1.8e9, 33.5, -7.6, speed, bearing, accuracy, route_id, trip_id)
        cleaned = clean_hints(ping)
        unchanged = all(
            (a is b) or a == b
            for a, b in zip(dataclasses.astuple(ping), dataclasses.astuple(cleaned), strict=True)
        )
        assert _hints_are_clean(ping) == unchanged, ping


def test_a_batch_of_many_vehicles_answers_as_one_ping_at_a_time(tmp_path: Path) -> None:
    # Candidates are found for a whole batch at once: mixed vehicles, service days, route
    # filters (one known, one unknown) and bearings must not change any answer.
    network = network_of(feeds.two_directions_feed, tmp_path)
    streams = []
    for n, trip_id in enumerate(["B_N_0712", "B_N_0600", "B_S_0636"]):
        pings = drive(network, trip_id, WEEKDAY, vehicle=f"bus{n}", delay_s=90.0 * n,
                      with_bearing=n != 1)  # fmt: skip
        streams.append(pings)
    route_id = network.routes[0].route_id
    streams[1] = [dataclasses.replace(p, route_id=route_id) for p in streams[1]]
    streams[2][3] = dataclasses.replace(streams[2][3], route_id="no-such-route")
    pings = sorted((p for s in streams for p in s), key=lambda p: p.timestamp)
    now = max(p.timestamp for p in pings) + 60
    for keep_paths in (False, True):
        config = MatcherConfig(keep_paths=keep_paths)
        one_by_one = match_all(network, pings, Matcher(network, config))
        batched = Matcher(network, config).match_batch(pings, now=now)
        assert batched == one_by_one
        assert sum(m.trip_id is not None for m in batched) > len(pings) * 0.9
