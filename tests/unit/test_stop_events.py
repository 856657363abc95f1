"""Stop events (`tracker.core.stop_events`) on the tiny feeds of tests.feeds: hand-made matcher
answers with the times worked out by hand, and a simulated day against the simulator's truth.

The Ramadan feed's trip R_0800 (2026-03-04, Casablanca at UTC+0) runs 5 km east with stops
R1..R6 every 1000 m: R1 08:00:00, R2 08:11:36/08:12:06, R3 08:23:42/08:24:12, ..., R6 09:00:00.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt

import numpy as np
import pytest

from simulator.day import SimConfig, simulate
from simulator.gps import GpsConfig
from tracker.core.matcher import Matcher
from tracker.core.model import Match, State
from tracker.core.network import Network
from tracker.core.stop_events import (
    DetectorConfig,
    Observed,
    StopEvent,
    StopEventDetector,
    stop_events,
)

RAMADAN_DAY = dt.date(2026, 3, 4)
WEDNESDAY = dt.date(2026, 3, 4)  # the "WK" service of the other feeds


def at_8(network: Network, seconds: float, day: dt.date = RAMADAN_DAY) -> float:
    """Epoch seconds of 08:00 local on `day`, plus `seconds`."""
    return network.day_origin(day) + 8 * 3600 + seconds


def answer(
    network: Network,
    t: float,
    along: float,
    *,
    trip: str = "R_0800",
    day: dt.date = RAMADAN_DAY,
    state: State = State.IN_SERVICE,
    vehicle: str = "bus1",
    with_delay: bool = True,
) -> Match:
    """A matcher's answer: the vehicle on `trip` at `along` metres at epoch `t`, with the delay
    the matcher would give there (none on frequency runs without exact times)."""
    trip_idx = network.trip_index[trip]
    run = network.runs_of_trip[trip_idx][0]
    scheduled = network.day_origin(day) + network.scheduled_time_s(run, along)
    return Match(
        vehicle_id=vehicle,
        timestamp=t,
        state=state,
        trip_id=trip,
        service_date=day.strftime("%Y%m%d"),
        shape_dist_m=along,
        delay_s=t - scheduled if with_delay else None,
    )


def stops_m(network: Network, trip: str = "R_0800") -> list[float]:
    """The distance of each stop of the trip along its shape (R2 is at 1001.96 m: UTM's scale)."""
    pattern = network.patterns[network.trips[network.trip_index[trip]].pattern_idx]
    return [float(d) for d in pattern.stop_dist_m]


def feed(network: Network, answers: list[Match]) -> list[StopEvent]:
    return StopEventDetector(network).feed_all(answers)


def times(
    events: list[StopEvent], network: Network
) -> list[tuple[int, float | None, float | None]]:
    """(stop_sequence, arrival, departure) with the times as seconds after 08:00."""
    base = at_8(network, 0.0)
    return [
        (
            e.stop_sequence,
            None if e.arrival_s is None else round(e.arrival_s - base, 3),
            None if e.departure_s is None else round(e.departure_s - base, 3),
        )
        for e in events
    ]


# --- stops passed and stops dwelt at --------------------------------------------------------


def test_a_stop_passed_between_two_answers_is_interpolated(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    path = ((0, r2 - 700), (30, r2 - 400), (60, r2 - 100), (90, r2 + 300))
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    assert times(events, ramadan) == [(1, 67.5, 67.5)]  # 60 + 100/400 * 30
    event = events[0]
    assert (event.stop_id, event.trip_id, event.route_id) == ("R2", "R_0800", "R")
    assert event.observed is Observed.INTERPOLATED
    assert event.service_date == "20260304"
    assert event.scheduled_arrival_s == at_8(ramadan, 11 * 60 + 36)
    assert event.scheduled_departure_s == at_8(ramadan, 12 * 60 + 6)
    assert event.delay_s == pytest.approx(67.5 - 696)  # 10 min early


def test_dwelling_at_a_stop_gives_its_arrival_and_departure(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    path = ((0, r2 - 700), (30, r2 - 400), (60, r2 - 100), (90, r2), (120, r2 + 4),
            (150, r2 + 2), (180, r2 + 300))  # fmt: skip
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    # Moving at 10 m/s: it reached R2 (100 m on) at 70 s, then stood. It was last seen
    # standing at 150 s (2 m past R2) and at 180 s was 298 m on: it left at 180 - 29.8 s.
    assert times(events, ramadan) == [(1, 70.0, 150.2)]
    assert events[0].observed is Observed.DWELLING


def test_gps_jitter_backwards_reports_no_stop_twice(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    path = ((0, r2 - 700), (30, r2 - 400), (60, r2 - 100), (90, r2 + 300), (120, r2 - 10),
            (150, r2 + 290), (180, r2 + 600))  # fmt: skip
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    assert [e.stop_sequence for e in events] == [1]
    # ... nor when it jitters back and forth in a stop's zone while dwelling
    path = ((0, r2 - 400), (30, r2 - 100), (60, r2), (90, r2 - 15), (120, r2 + 10),
            (150, r2 - 10), (180, r2 + 400))  # fmt: skip
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    assert [(e.stop_sequence, e.observed) for e in events] == [(1, Observed.DWELLING)]


def test_no_stop_is_reported_across_a_long_gap(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2, r5 = stops_m(ramadan)[1], stops_m(ramadan)[4]
    # Silent for 370 s (more than max_gap_s, 180 s) while passing R2, R3 and R4.
    path = ((0, r2 - 700), (30, r2 - 400), (400, r5 - 400), (430, r5 - 100), (460, r5 + 200))
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    assert times(events, ramadan) == [(4, 440.0, 440.0)]  # only R5, after the gap


def test_a_dwell_broken_by_a_gap_keeps_its_arrival_only(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2, r3 = stops_m(ramadan)[1:3]
    path = ((0, r2 - 400), (30, r2 - 100), (60, r2), (90, r2 + 1), (400, r3 - 200),
            (430, r3 + 100))  # fmt: skip
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    # At R2 from 40 s (the last 100 m at 10 m/s); gone by 400 s, but when is not known.
    assert times(events, ramadan) == [(1, 40.0, None), (2, 420.0, 420.0)]


def test_a_stop_first_seen_at_and_left_across_a_gap_is_not_reported(ramadan: Network) -> None:
    # Seen first standing at R2 (its arrival unknown), then silent past the gap limit: neither
    # time is known, so there is no event for R2 (the store needs one of them).
    base = at_8(ramadan, 0.0)
    r2, r3 = stops_m(ramadan)[1:3]
    path = ((0, r2), (30, r2 + 2), (400, r3 - 200), (430, r3 + 100))
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    assert times(events, ramadan) == [(2, 420.0, 420.0)]
    assert all(e.arrival_s is not None or e.departure_s is not None for e in events)


def test_stops_on_a_detour_are_not_served_but_an_outlier_is_bridged(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    start = [answer(ramadan, base + t, r2 + d) for t, d in ((0, -700), (30, -400), (60, -100))]
    off = State.OFF_ROUTE
    detour = [answer(ramadan, base + t, r2 - 100, state=off) for t in (90, 120)]
    back = [answer(ramadan, base + 150, r2 + 500), answer(ramadan, base + 180, r2 + 800)]
    assert feed(ramadan, start + detour + back) == []  # R2 was skipped on the detour
    outlier = [answer(ramadan, base + 90, r2 - 100, state=off)]
    events = feed(ramadan, start + outlier + [answer(ramadan, base + 120, r2 + 500)])
    assert times(events, ramadan) == [(1, 70.0, 70.0)]  # 60 + 100/600 * 60


def test_the_last_stop_has_an_arrival_only(ramadan: Network) -> None:
    base = at_8(ramadan, 3000.0)
    r6 = stops_m(ramadan)[5]
    path = ((0, r6 - 600), (30, r6 - 300), (60, r6 - 50), (90, r6 - 10), (120, r6 - 5))
    events = feed(ramadan, [answer(ramadan, base + t, d) for t, d in path])
    assert [(e.stop_sequence, e.departure_s) for e in events] == [(5, None)]
    # In the last stop's zone (60 m) at 60 s: 250 m on at 10 m/s, 25 s after 30 s.
    assert events[0].arrival_s == pytest.approx(base + 55.0)
    assert events[0].observed is Observed.DWELLING


# --- the first stop ----------------------------------------------------------------------------


def test_the_first_stop_arrival_is_the_layover_start(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    waiting = [answer(ramadan, base + t, 0.0, state=State.LAYOVER) for t in range(-600, 1, 30)]
    going = [answer(ramadan, base + 30, 120.0), answer(ramadan, base + 60, 400.0)]
    events = feed(ramadan, waiting + going)
    first = events[0]
    assert (first.stop_id, first.stop_sequence) == ("R1", 0)
    assert first.arrival_s == base - 600  # first seen there
    # Last seen standing at 0 s; 120 m on at 30 s, at 7 m/s (no speed measured yet).
    assert first.departure_s == pytest.approx(base + 30 - 120 / 7)
    assert first.delay_s == pytest.approx(30 - 120 / 7)  # departure minus 08:00:00


def test_a_bus_parked_down_the_route_before_its_departure_has_not_left(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    at_stop = [answer(ramadan, base + t, 0.0, state=State.LAYOVER) for t in range(-900, -599, 30)]
    # 400 m down the route 15 minutes early, standing there, then back at the stop.
    parked = [answer(ramadan, base + t, 400.0) for t in range(-570, -299, 30)]
    back = [answer(ramadan, base + t, 0.0, state=State.LAYOVER) for t in range(-270, 1, 30)]
    going = [answer(ramadan, base + 30, 200.0), answer(ramadan, base + 60, 500.0)]
    events = feed(ramadan, at_stop + parked + back + going)
    assert [e.stop_sequence for e in events] == [0]
    assert events[0].departure_s == pytest.approx(base + 30 - 200 / 7)


def test_standing_anywhere_at_the_terminal_counts_as_at_the_first_stop(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    # Parked 60 m past the first stop (inside the 150 m terminal, outside the 25 m stop zone).
    parked = [answer(ramadan, base + t, 60.0, state=State.LAYOVER) for t in range(-300, 1, 30)]
    going = [answer(ramadan, base + 30, 200.0), answer(ramadan, base + 60, 500.0)]
    events = feed(ramadan, parked + going)
    assert events[0].arrival_s == base - 300
    assert events[0].departure_s == pytest.approx(base + 10)  # 140 m on from 60 m at 7 m/s


# --- trips ---------------------------------------------------------------------------------


def test_a_trip_change_at_the_terminal_ends_one_trip_and_starts_the_next(
    two_directions: Network,
) -> None:
    # Block blk1: B_N_0600 arrives at BN5 (3000 m) at 06:09, B_S_0612 leaves BS1 at 06:12.
    def at_6(seconds: float) -> float:
        return two_directions.day_origin(WEDNESDAY) + 6 * 3600 + seconds

    def on(trip: str, t: float, d: float, state: State = State.IN_SERVICE) -> Match:
        return answer(two_directions, at_6(t), d, trip=trip, day=WEDNESDAY, state=state)

    bn5 = stops_m(two_directions, "B_N_0600")[4]
    north = [on("B_N_0600", t, bn5 + d) for t, d in ((460, -500), (490, -200), (520, -40))]
    layover = [on("B_S_0612", t, 0.0, State.LAYOVER) for t in range(550, 721, 30)]
    south = [on("B_S_0612", 750, 200.0), on("B_S_0612", 780, 500.0)]
    events = feed(two_directions, north + layover + south)
    got = [(e.trip_id, e.stop_id, e.arrival_s, e.departure_s) for e in events]
    assert got == [
        ("B_N_0600", "BN5", at_6(506), None),  # 160 m at 10 m/s after 490 s
        ("B_S_0612", "BS1", at_6(550), pytest.approx(at_6(750 - 200 / 7))),
    ]
    assert events[1].delay_s == pytest.approx(750 - 200 / 7 - 720, abs=1e-3)


def test_a_trip_handed_over_on_the_way_into_the_terminal_still_reaches_its_last_stop(
    two_directions: Network,
) -> None:
    def at_6(seconds: float) -> float:
        return two_directions.day_origin(WEDNESDAY) + 6 * 3600 + seconds

    def on(trip: str, t: float, d: float, state: State = State.IN_SERVICE) -> Match:
        return answer(two_directions, at_6(t), d, trip=trip, day=WEDNESDAY, state=state)

    bn5 = stops_m(two_directions, "B_N_0600")[4]  # BS1, where B_S_0612 starts, is 8 m across
    north = [on("B_N_0600", 460, bn5 - 500), on("B_N_0600", 490, bn5 - 200)]
    next_trip = [on("B_S_0612", 520, 0.0, State.LAYOVER)]
    events = feed(two_directions, north + next_trip)
    # Handed over 200 m short of BN5 at 10 m/s: it got there 20 s later, before the next answer.
    assert [(e.stop_id, e.arrival_s, e.departure_s, e.observed) for e in events] == [
        ("BN5", at_6(510), None, Observed.INTERPOLATED)
    ]
    # ... but not from 500 m short, nor to a next trip first seen away from its first stop.
    far = [on("B_N_0600", 460, bn5 - 900), on("B_N_0600", 490, bn5 - 700)]
    assert feed(two_directions, far + next_trip) == []
    assert feed(two_directions, [*north, on("B_S_0612", 520, 400.0)]) == []


def test_a_matcher_flipping_between_trips_reports_each_stop_once(two_directions: Network) -> None:
    def on(trip: str, t: float, d: float) -> Match:
        base = two_directions.day_origin(WEDNESDAY) + 6 * 3600
        return answer(two_directions, base + t, d, trip=trip, day=WEDNESDAY)

    path = [
        on("B_N_0600", 0, 500),
        on("B_N_0600", 30, 700),
        on("B_N_0612", 60, 900),  # the matcher hesitates: the next trip on the same street
        on("B_N_0600", 90, 1100),
        on("B_N_0612", 120, 1400),
        on("B_N_0600", 150, 1700),
    ]
    events = feed(two_directions, path)
    assert [(e.trip_id, e.stop_id) for e in events] == [("B_N_0600", "BN2"), ("B_N_0600", "BN3")]
    bn2 = stops_m(two_directions, "B_N_0600")[1]  # passed between 700 m (30 s) and 1100 m (90 s)
    assert events[0].arrival_s == pytest.approx(path[1].timestamp + (bn2 - 700) / 400 * 60)


def test_a_dwell_left_open_by_a_trip_change_is_dropped(two_directions: Network) -> None:
    def on(trip: str, t: float, d: float) -> Match:
        base = two_directions.day_origin(WEDNESDAY) + 6 * 3600
        return answer(two_directions, base + t, d, trip=trip, day=WEDNESDAY)

    path = [on("B_N_0600", 0, 600), on("B_N_0600", 30, 800), on("B_N_0612", 60, 805)]
    path += [on("B_N_0612", 90, 1200)]
    events = feed(two_directions, path)
    # B_N_0600's dwell at BN2 never ended on that trip; B_N_0612 was first seen at BN2, so its
    # arrival there is not known.
    assert [(e.trip_id, e.stop_id, e.arrival_s) for e in events] == [("B_N_0612", "BN2", None)]


def test_frequency_runs_without_exact_times_have_no_schedule(frequency: Network) -> None:
    day = WEDNESDAY
    base = frequency.day_origin(day) + 9 * 3600 + 15 * 60  # the 09:15 run of F_headway
    f2 = stops_m(frequency, "F_headway")[1]
    path = [(0, f2 - 700), (30, f2 - 400), (60, f2 - 100), (90, f2 + 300)]
    events = feed(frequency, [answer(frequency, base + t, d, trip="F_headway", day=day,
                                     with_delay=False) for t, d in path])  # fmt: skip
    assert [(e.stop_id, e.arrival_s) for e in events] == [("F2", base + 67.5)]
    assert events[0].scheduled_arrival_s is None
    assert events[0].delay_s is None


def test_rejected_and_unmatched_answers_are_ignored(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    path = [answer(ramadan, base + t, r2 + d) for t, d in ((0, -700), (30, -400), (60, -100))]
    noise = [
        Match("bus1", base + 70, State.REJECTED),
        Match("bus1", base + 80, State.NOT_MATCHED),
    ]
    events = feed(ramadan, [*path, *noise, answer(ramadan, base + 90, r2 + 300)])
    assert times(events, ramadan) == [(1, 67.5, 67.5)]


def test_progress_says_where_the_vehicle_is(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    detector = StopEventDetector(ramadan)
    path = ((0, r2 - 400), (30, r2 - 100), (60, r2))
    detector.feed_all([answer(ramadan, base + t, d) for t, d in path])
    progress = detector.progress("bus1")
    assert progress is not None
    assert (progress.trip_id, progress.next_stop, progress.at_stop) == ("R_0800", 2, 1)
    assert progress.arrived_at_s == pytest.approx(base + 30 + 100 / 10)
    assert (progress.seen_at_s, progress.along_m) == (base + 60, r2)
    assert progress.exact_times
    assert detector.progress("nobody") is None
    assert detector.forget(base + 61) == 1
    assert detector.progress("bus1") is None


def test_stop_events_of_a_recorded_list_take_each_vehicle_in_time_order(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    path = ((0, r2 - 700), (30, r2 - 400), (60, r2 - 100), (90, r2 + 300))
    one = [answer(ramadan, base + t, d) for t, d in path]
    two = [dataclasses.replace(m, vehicle_id="bus2", timestamp=m.timestamp + 5) for m in one]
    shuffled = [two[3], one[2], one[0], two[0], one[3], two[1], one[1], two[2]]
    events = stop_events(ramadan, shuffled)
    assert sorted((e.vehicle_id, round((e.arrival_s or 0.0) - base, 3)) for e in events) == [
        ("bus1", 67.5),
        ("bus2", 72.5),
    ]


# --- against the simulator's truth ---------------------------------------------------------


def test_a_simulated_day_against_the_simulators_truth(two_directions: Network) -> None:
    """Two buses, 06:00-10:00, dwelling 10-40 s at most stops, pinged every 30 s without GPS
    noise: their true positions every 5 s give when they truly reached and left each stop."""
    clean = GpsConfig(noise_m=0.0, outlier_rate=0.0, dropout_rate=0.0, duplicate_rate=0.0,
                      out_of_order_rate=0.0, jitter_s=0.0)  # fmt: skip
    sims = list(
        simulate(
            two_directions,
            np.random.default_rng(7),
            WEDNESDAY,
            config=SimConfig(interval_s=5.0, gps=clean),
            start_s=6 * 3600.0,
            end_s=10 * 3600.0,
        )
    )
    true_path: dict[tuple[str, str], list[tuple[float, float]]] = collections.defaultdict(list)
    for s in sims:
        true_path[(s.truth.vehicle_id, s.truth.trip_id)].append(
            (s.truth.timestamp, s.truth.shape_dist_m)
        )
    seen: collections.Counter[str] = collections.Counter()
    pings = []
    for s in sims:  # every 6th fix of each bus: one every 30 s
        if seen[s.ping.vehicle_id] % 6 == 0:
            pings.append(s.ping)
        seen[s.ping.vehicle_id] += 1
    matcher = Matcher(two_directions)
    now = max(p.timestamp for p in pings) + 60
    matches = [
        m for i in range(0, len(pings), 20) for m in matcher.match_batch(pings[i : i + 20], now=now)
    ]
    events = stop_events(two_directions, matches)

    def truly(e: StopEvent) -> tuple[float, float]:
        """When the bus truly got to and left the stop (it stands exactly at it)."""
        stop_m = stops_m(two_directions, e.trip_id)[e.stop_sequence]
        path = np.array(true_path[(e.vehicle_id, e.trip_id)])
        at = np.flatnonzero(np.abs(path[:, 1] - stop_m) < 0.5)
        if len(at):
            return float(path[at[0], 0]), float(path[at[-1], 0])
        crossed = float(np.interp(stop_m, path[:, 1], path[:, 0]))  # passed without stopping
        return crossed, crossed

    keys = [(e.vehicle_id, e.trip_id, e.stop_sequence) for e in events]
    assert len(keys) == len(set(keys))  # each visit once
    visits = {(v, trip, k) for (v, trip), path in true_path.items()
              for k in range(5) if len(path) > 20}  # fmt: skip
    assert len(set(keys) & visits) >= 0.9 * len(visits)
    arrival_errors = [e.arrival_s - truly(e)[0] for e in events
                      if e.arrival_s is not None and e.stop_sequence > 0]  # fmt: skip
    departure_errors = [e.departure_s - truly(e)[1] for e in events if e.departure_s is not None]
    assert len(arrival_errors) >= 40
    assert len(departure_errors) >= 40
    # With a ping every 30 s the times are within seconds (the truth itself is every 5 s).
    assert np.mean(np.abs(arrival_errors)) < 8.0
    assert np.mean(np.abs(departure_errors)) < 8.0
    assert np.percentile(np.abs(arrival_errors), 95) < 20.0
    assert np.percentile(np.abs(departure_errors), 95) < 20.0


def test_the_detector_can_be_tuned(ramadan: Network) -> None:
    base = at_8(ramadan, 0.0)
    r2 = stops_m(ramadan)[1]
    path = [answer(ramadan, base + t, r2 + d) for t, d in ((0, -700), (30, -400), (120, 300))]
    assert feed(ramadan, path) != []  # 90 s apart: interpolated
    strict = StopEventDetector(ramadan, DetectorConfig(max_gap_s=60.0))
    assert strict.feed_all(path) == []
