"""tracker.core.departures on the tiny feeds of tests.feeds (times from their docstrings).

Every Casablanca date used here falls in Ramadan 2026 (UTC+0), so local times equal UTC.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tracker.core import departures
from tracker.core.departures import Departure, next_departures
from tracker.core.network import Network

CASABLANCA_TZ = ZoneInfo("Africa/Casablanca")
UTC = dt.UTC


def _at(year: int, month: int, day: int, time: str, tz: dt.tzinfo = CASABLANCA_TZ) -> float:
    hours, minutes, seconds = (int(part) for part in time.split(":"))
    return dt.datetime(year, month, day, hours, minutes, seconds, tzinfo=tz).timestamp()


def _trips(found: list[Departure]) -> list[str]:
    return [d.trip_id for d in found]


# --- departures from a stop ----------------------------------------------------------------


def test_next_departures_from_the_schedule(loop: Network) -> None:
    now_s = _at(2026, 3, 4, "07:00:00")  # a Wednesday: service "WK" runs
    found = next_departures(loop, "L2", now_s=now_s, live_delays={}, limit=3)
    assert _trips(found) == ["L_0700", "L_0715", "L_0730"]  # L_0645 left L2 at 06:48:45
    first = found[0]
    assert first.scheduled_s == _at(2026, 3, 4, "07:03:45")  # L2 departs at +3:45
    assert first.expected_s == first.scheduled_s
    assert (first.live, first.delay_s) == (False, None)
    assert (first.route_id, first.service_date, first.stop_id) == ("L", "20260304", "L2")
    assert first.headsign == "Stop L1"  # no trip_headsign: the last stop's name
    assert first.direction_id is None  # the feed gives none
    assert (first.exact_times, first.headway_s) == (True, None)


def test_a_live_delay_moves_the_expected_time_and_keeps_a_passed_departure(loop: Network) -> None:
    now_s = _at(2026, 3, 4, "07:00:00")
    delays = {("L_0645", "20260304"): 840.0, ("L_0715", "20260303"): 600.0}  # 0715: other day
    found = next_departures(loop, "L2", now_s=now_s, live_delays=delays, limit=3)
    assert _trips(found) == ["L_0645", "L_0700", "L_0715"]
    late = found[0]
    assert late.scheduled_s == _at(2026, 3, 4, "06:48:45")
    assert (late.live, late.delay_s) == (True, 840.0)
    assert late.expected_s == _at(2026, 3, 4, "07:02:45")
    assert not found[2].live  # a delay of another service day does not apply


def test_a_departure_expected_before_now_is_left_out(loop: Network) -> None:
    now_s = _at(2026, 3, 4, "07:00:00")
    found = next_departures(loop, "L2", now_s=now_s, live_delays={("L_0645", "20260304"): 60.0})
    assert "L_0645" not in _trips(found)


def test_a_stop_served_first_and_last_lists_only_the_departures(loop: Network) -> None:
    # L1 starts and ends every loop: arriving there at +9:30 is no departure.
    found = next_departures(loop, "L1", now_s=_at(2026, 3, 4, "07:00:00"), live_delays={})
    assert _trips(found) == ["L_0700", "L_0715", "L_0730", "L_0745", "L_0800"]
    assert found[0].scheduled_s == _at(2026, 3, 4, "07:00:00")


def test_no_departures_on_a_day_without_service(loop: Network) -> None:
    saturday = _at(2026, 3, 7, "06:00:00")
    assert next_departures(loop, "L2", now_s=saturday, live_delays={}) == []


def test_times_past_midnight_come_from_yesterdays_service_day(overnight: Network) -> None:
    now_s = _at(2026, 3, 21, "00:25:00")  # service NIGHT runs on 20260320 only
    found = next_departures(overnight, "N4", now_s=now_s, live_delays={})
    assert _trips(found) == ["N_2330", "N_2420"]
    assert [d.service_date for d in found] == ["20260320", "20260320"]
    assert found[0].scheduled_s == _at(2026, 3, 21, "00:30:18")  # 24:30:18
    assert found[1].scheduled_s == _at(2026, 3, 21, "00:44:18")  # 24:44:18
    # ... and a live delay keyed by that service day applies
    late = next_departures(overnight, "N4", now_s=now_s, live_delays={("N_2330", "20260320"): 60})
    assert late[0].expected_s == _at(2026, 3, 21, "00:31:18")


def test_daylight_saving_day_counts_from_noon_minus_12_hours(dst: Network) -> None:
    # 2026-03-08 in New York: 02:00 EST becomes 03:00 EDT; the origin is 2026-03-08 04:00Z.
    now_s = dt.datetime(2026, 3, 8, 5, 0, tzinfo=UTC).timestamp()
    found = next_departures(dst, "D1", now_s=now_s, live_delays={}, horizon_s=12 * 3600)
    assert _trips(found) == ["D_0130", "D_1200"]
    assert found[0].scheduled_s == dt.datetime(2026, 3, 8, 5, 30, tzinfo=UTC).timestamp()
    assert found[1].scheduled_s == dt.datetime(2026, 3, 8, 16, 0, tzinfo=UTC).timestamp()
    assert _trips(next_departures(dst, "D1", now_s=now_s, live_delays={})) == ["D_0130"]  # 6 h
    d3 = next_departures(dst, "D3", now_s=now_s, live_delays={})
    assert d3[0].trip_id == "D_0130"  # 02:18:12, a time no wall clock showed that day
    assert d3[0].scheduled_s == dt.datetime(2026, 3, 8, 6, 18, 12, tzinfo=UTC).timestamp()


def test_headway_based_frequency_trips_say_their_times_are_not_exact(frequency: Network) -> None:
    now_s = _at(2026, 3, 4, "09:20:00")
    delays = {("F_headway", "20260304"): 120.0}
    found = next_departures(frequency, "F1", now_s=now_s, live_delays=delays, limit=3)
    assert _trips(found) == ["F_headway"] * 3
    assert [d.scheduled_s for d in found] == [
        _at(2026, 3, 4, t) for t in ("09:30:00", "09:45:00", "10:00:00")
    ]
    assert all(not d.exact_times and d.headway_s == 900 for d in found)
    assert not any(d.live for d in found)  # one trip_id, many runs: which one is late?


def test_exact_frequency_trips_are_listed_as_scheduled(frequency: Network) -> None:
    found = next_departures(
        frequency, "F1", now_s=_at(2026, 3, 4, "08:45:00"), live_delays={}, limit=2
    )
    assert [(d.trip_id, d.exact_times, d.headway_s) for d in found] == [
        ("F_exact", True, 600),
        ("F_headway", False, 900),
    ]
    assert found[0].scheduled_s == _at(2026, 3, 4, "08:50:00")


def test_an_unknown_stop_raises_key_error(loop: Network) -> None:
    with pytest.raises(KeyError, match="NOPE"):
        next_departures(loop, "NOPE", now_s=_at(2026, 3, 4, "07:00:00"), live_delays={})


def test_routes_and_trips_of_stop(loop: Network) -> None:
    assert departures.routes_of_stop(loop, "L3") == ["L"]
    assert departures.routes_of_stop(loop, "NOPE") == []
    assert len(departures.trip_ids_of_stop(loop, "L3")) == 9
    assert departures.trip_ids_of_stop(loop, "NOPE") == set()


# --- a vehicle's trip --------------------------------------------------------------------


def test_locate_run_finds_yesterdays_service_day_after_midnight(overnight: Network) -> None:
    located = departures.locate_run(overnight, "N_2420", _at(2026, 3, 21, "00:30:00"))
    assert located is not None
    assert located.service_date == dt.date(2026, 3, 20)
    assert departures.locate_run(overnight, "NOPE", _at(2026, 3, 21, "00:30:00")) is None
    assert departures.locate_run(overnight, "N_2420", _at(2026, 3, 25, "00:30:00")) is None


def test_locate_run_picks_the_departure_of_a_frequency_trip(frequency: Network) -> None:
    # At F2 (1000 m) at 08:13 with 60 s of delay: the run that left F1 at 08:10.
    located = departures.locate_run(
        frequency, "F_exact", _at(2026, 3, 4, "08:13:00"), along_m=1000.0, delay_s=60.0
    )
    assert located is not None
    start_s = frequency.day_origin(located.service_date) + frequency.runs.start_s[located.run]
    assert start_s == _at(2026, 3, 4, "08:10:00")


def test_locate_run_looks_near_the_time_only_and_finds_what_a_full_scan_finds(
    frequency: Network,
) -> None:
    # A frequency trip has a run per departure: `locate_run` looks at the few next to the time;
    # the answer is the nearest of all the trip's runs, the earliest of those as near.
    def full_scan(trip_id: str, at_s: float, along_m: float | None) -> tuple[int, dt.date]:
        best: tuple[float, int, dt.date] | None = None
        for day in departures.service_days_around(frequency, at_s):
            at_day_s = at_s - frequency.day_origin(day)
            for run in frequency.runs_of_trip[frequency.trip_index[trip_id]]:
                if not frequency.active_runs(day)[run]:
                    continue
                start_s, end_s = frequency.runs.start_s[run], frequency.runs.end_s[run]
                miss_s = (abs(frequency.scheduled_time_s(run, along_m) - at_day_s)
                          if along_m is not None
                          else max(0.0, start_s - at_day_s, at_day_s - end_s))  # fmt: skip
                if best is None or miss_s < best[0]:
                    best = (miss_s, run, day)
        assert best is not None
        return best[1], best[2]

    for trip_id in ("F_exact", "F_headway"):
        for minute in range(6 * 60, 23 * 60, 7):
            at_s = _at(2026, 3, 4, "00:00:00") + 60.0 * minute
            for along_m in (None, 0.0, 700.0, 1000.0, 5000.0):
                located = departures.locate_run(frequency, trip_id, at_s, along_m=along_m)
                assert located is not None
                assert (located.run, located.service_date) == full_scan(trip_id, at_s, along_m)


def test_next_stops_ahead_of_a_vehicle_with_its_delay(loop: Network) -> None:
    at_s = _at(2026, 3, 4, "07:04:15")
    located = departures.locate_run(loop, "L_0700", at_s, along_m=1300.0, delay_s=60.0)
    assert located is not None
    calls = departures.next_stops(loop, located, along_m=1300.0, delay_s=60.0, limit=10)
    # At L2 (1300 m, it counts as ahead while the bus is there), then L3, L4 and back to L1.
    assert [c.stop_id for c in calls] == ["L2", "L3", "L4", "L1"]
    assert [c.stop_index for c in calls] == [1, 2, 3, 4]
    assert calls[1].scheduled_s == _at(2026, 3, 4, "07:05:45")  # arrival at L3
    assert calls[1].expected_s == _at(2026, 3, 4, "07:06:45")
    assert calls[-1].scheduled_s == _at(2026, 3, 4, "07:09:30")
    on_time = departures.next_stops(loop, located, along_m=1300.0, delay_s=None, limit=2)
    l3 = calls[1]
    assert on_time[1] == departures.StopCall(
        "L3", 2, l3.dist_m, l3.scheduled_s, None, l3.scheduled_s
    )


def test_next_stops_from_the_start_without_a_position(loop: Network) -> None:
    located = departures.locate_run(loop, "L_0700", _at(2026, 3, 4, "06:58:00"))
    assert located is not None
    calls = departures.next_stops(loop, located, along_m=None, delay_s=None, limit=2)
    assert [c.stop_id for c in calls] == ["L1", "L2"]
    assert calls[0].scheduled_s == _at(2026, 3, 4, "07:00:00")  # the first stop's departure
